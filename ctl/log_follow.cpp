#include "log_follow.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "config/logs.hpp"

namespace repvisor::ctl {

std::string log_status(const std::string& path, uint64_t cut, const std::string& keep, uint64_t limit) {
  if (cut == 0) return path;
  std::string kept;
  if (keep == "head")
    kept = fmt::format("the first {} kept", config::format_size(limit));
  else if (keep == "tail")
    kept = fmt::format("the last {} kept", config::format_size(limit));
  else
    kept = fmt::format("the first and last {} kept", config::format_size(limit / 2));
  return fmt::format("{} (cut: {} dropped, {})", path, config::format_size(cut), kept);
}

uint64_t LogFollower::size_now() const {
  struct stat st {};
  return fstat(fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

std::string LogFollower::read_at(uint64_t offset, size_t len) const {
  std::string buf(len, '\0');
  size_t got = 0;
  while (got < len) {
    const ssize_t n = pread(fd_, buf.data() + got, len - got, static_cast<off_t>(offset + got));
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  buf.resize(got);
  return buf;
}

void LogFollower::remember(const char* data, size_t n) {
  if (n >= kSeen) {
    seen_.assign(data + n - kSeen, kSeen);
    return;
  }
  seen_.append(data, n);
  if (seen_.size() > kSeen) seen_.erase(0, seen_.size() - kSeen);
}

bool LogFollower::moved(uint64_t size) {
  if (offset_ == 0 || seen_.empty()) return false;
  if (size < offset_) return true;
  // Cheap: one read of the last bytes shown, where they should be.
  return read_at(offset_ - seen_.size(), seen_.size()) != seen_;
}

void LogFollower::resync(uint64_t size, const std::string& keep) {
  // Each way below sets the new place and the bytes before it (seen_) from the same read, so
  // that a cut that comes right after is noticed by the next look.
  const uint64_t start = offset_ - seen_.size();
  const uint64_t avail = std::min<uint64_t>(size, offset_);
  // The end was cut (head): what was shown is still there up to the file's new end, or up to
  // the marker that replaced its last bytes. Before the job's LogKeep is known, only a long
  // enough stretch says so: a few bytes alike can be chance (every line starts alike).
  if (start < avail && (keep == "head" || keep.empty())) {
    const std::string now = read_at(start, static_cast<size_t>(avail - start));
    size_t same = 0;
    while (same < now.size() && now[same] == seen_[same]) ++same;
    // (What was read is checked, not what fstat said: the file may have been cut again since.)
    if (keep == "head" || (same == now.size() && now.size() >= 512)) {
      offset_ = start + same;
      seen_.resize(same);
      return;
    }
  }
  // The front was cut (tail, both): the bytes last shown moved towards the start. Searched for
  // from the end, in chunks overlapping by what is searched for. A cut during the search can
  // hide them (a chunk read half before it): searched for again, a few times.
  constexpr size_t kChunk = 1 << 20;
  for (int attempt = 0; attempt < 4; ++attempt) {
    uint64_t end = attempt == 0 ? avail : size_now();
    while (end >= seen_.size()) {
      const uint64_t from = end > kChunk ? end - kChunk : 0;
      const std::string chunk = read_at(from, static_cast<size_t>(end - from));
      const size_t at = chunk.rfind(seen_);
      if (at != std::string::npos) {
        offset_ = from + at + seen_.size();
        return;
      }
      if (from == 0) break;
      end = from + seen_.size() - 1;
    }
  }
  // They were cut as well: on from the first whole line kept after the cut (past the marker
  // line, if any): a cut falls on a block boundary, mostly within a line.
  const std::string head = read_at(0, static_cast<size_t>(std::min<uint64_t>(size, kChunk)));
  size_t from = 0;
  if (const size_t m = head.find("\n[repvisor: "); m != std::string::npos) from = m + 1;
  const size_t nl = head.find('\n', from);
  offset_ = nl == std::string::npos ? 0 : nl + 1;
  const size_t before = std::min<size_t>(static_cast<size_t>(offset_), kSeen);
  seen_ = head.substr(static_cast<size_t>(offset_) - before, before);
}

bool LogFollower::catch_cut(const std::string& keep) {
  struct stat st {};
  if (fstat(fd_, &st) < 0 || !moved(static_cast<uint64_t>(st.st_size))) return false;
  resync(static_cast<uint64_t>(st.st_size), keep);
  fmt::print(stderr, "repvisorctl: the log was cut; following its new content\n");
  return true;
}

void LogFollower::drain(const std::function<void(std::string_view)>& out, const std::string& keep, bool whole_lines) {
  catch_cut(keep);
  char buf[65536];
  for (;;) {
    const ssize_t n = pread(fd_, buf, sizeof buf, static_cast<off_t>(offset_));
    if (n <= 0) break;
    // A cut between the look above and this read would make these bytes the wrong ones: they
    // are shown only if what was shown before is still where it was, and read again they are
    // the same (a cut during the read leaves a splice of the file before and after it).
    if (catch_cut(keep)) continue;
    if (read_at(offset_, static_cast<size_t>(n)) != std::string_view(buf, static_cast<size_t>(n))) continue;
    // Whole lines only while following: a cut may take the rest of a line shown in part, and
    // what comes after the cut would be spliced onto it.
    auto show = static_cast<size_t>(n);
    if (whole_lines) {
      if (const void* nl = memrchr(buf, '\n', show))
        show = static_cast<size_t>(static_cast<const char*>(nl) - buf) + 1;
      else if (show < sizeof buf)
        break;  // a line not yet ended: shown once it is (a longer one than buf, in parts)
    }
    out(std::string_view(buf, show));
    remember(buf, show);
    offset_ += show;
    if (show < static_cast<size_t>(n)) break;
  }
}

}  // namespace repvisor::ctl
