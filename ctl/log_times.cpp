#include "log_times.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <ctime>
#include <fstream>
#include <sstream>

#include "sys/log_cut.hpp"

namespace repvisor::ctl {

namespace {
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string read_at(int fd, uint64_t offset, size_t len) {
  std::string buf(len, '\0');
  const ssize_t n = pread(fd, buf.data(), len, static_cast<off_t>(offset));
  buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return buf;
}

// A both log's marker ends its head's last block: where the head's size (half the limit it was
// first cut to, in whole blocks) puts it, which is checked; else searched for in the head.
uint64_t marker_end(int fd, uint64_t limit) {
  struct stat st {};
  const uint64_t block = fstat(fd, &st) == 0 && st.st_blksize > 0 ? static_cast<uint64_t>(st.st_blksize) : 4096;
  const std::string prefix = "\n[repvisor: ";
  const uint64_t guess = (limit / 2) / block * block + block;
  if (guess >= sys::kLogMarkerSize && read_at(fd, guess - sys::kLogMarkerSize, prefix.size()) == prefix) return guess;
  const std::string head = read_at(fd, 0, static_cast<size_t>(std::min<uint64_t>(limit + block, 64 << 20)));
  const size_t at = head.find(prefix);
  return at == std::string::npos ? 0 : at + sys::kLogMarkerSize;
}
}  // namespace

LogTimes::LogTimes(const std::string& log_path, int fd, const std::string& keep, uint64_t cut, uint64_t limit)
    : index_path_(core::log_index_path(log_path)), fd_(fd) {
  layout_.keep = keep;
  layout_.cut = cut;
  if (keep == "both" && cut > 0) {
    layout_.marker_size = sys::kLogMarkerSize;
    layout_.marker_end = marker_end(fd, limit);
  }
  reload();
}

void LogTimes::reload() { stamps_ = core::decode_log_index(read_file(index_path_)); }

std::optional<usec_t> LogTimes::time_of(uint64_t offset) const {
  const auto written = layout_.written_at(offset);
  if (!written) return std::nullopt;
  return core::written_by(stamps_, *written);
}

uint64_t LogTimes::offset_since(usec_t since) const {
  return layout_.offset_of(core::first_written_since(stamps_, since));
}

std::optional<usec_t> parse_since(const std::string& text, usec_t now, std::string* error) {
  if (text == "now") return now;
  std::string span;
  if (text.size() > 4 && text.ends_with(" ago"))
    span = text.substr(0, text.size() - 4);
  else if (text.size() > 1 && text[0] == '-')
    span = text.substr(1);
  if (!span.empty()) {
    std::string why;
    const auto ago = parse_timespan(span, &why);
    if (!ago) {
      *error = "'" + text + "': " + why;
      return std::nullopt;
    }
    return *ago > now ? 0 : now - *ago;
  }
  if (text.size() > 1 && text[0] == '@') {
    // Seconds since the epoch, with up to six decimals.
    uint64_t secs = 0, frac = 0;
    const char* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(text.data() + 1, end, secs);
    bool ok = ec == std::errc() && secs < UINT64_MAX / USEC_PER_SEC - 1;
    if (ok && p != end) {
      const char* digits = p + 1;
      auto [q, ec2] = std::from_chars(digits, end, frac);
      ok = *p == '.' && ec2 == std::errc() && q == end && q - digits <= 6;
      for (auto n = q - digits; ok && n < 6; ++n) frac *= 10;
    }
    if (ok) return secs * USEC_PER_SEC + frac;
  }
  for (const char* format : {"%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"}) {
    tm tm{};
    tm.tm_isdst = -1;
    const char* end = strptime(text.c_str(), format, &tm);
    if (!end || *end != '\0') continue;
    const time_t t = mktime(&tm);
    if (t < 0) break;
    return static_cast<usec_t>(t) * USEC_PER_SEC;
  }
  *error = "'" + text +
           "' is not a time: use \"YYYY-MM-DD [HH:MM[:SS]]\" (local time), \"@SECONDS[.FRACTION]\", \"now\", \"10min "
           "ago\" or "
           "\"-10min\"";
  return std::nullopt;
}

}  // namespace repvisor::ctl
