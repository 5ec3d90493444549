#include "log_follow.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

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
  if (start < avail && (keep == "head" || (keep.empty() && avail - start >= 512))) {
    const std::string now = read_at(start, static_cast<size_t>(avail - start));
    size_t same = 0;
    while (same < now.size() && now[same] == seen_[same]) ++same;
    if (same == now.size() || keep == "head") {
      offset_ = start + same;
      seen_.resize(same);
      return;
    }
  }
  // The front was cut (tail, both): the bytes last shown moved towards the start. Searched for
  // from the end, in chunks overlapping by what is searched for.
  constexpr size_t kChunk = 1 << 20;
  uint64_t end = avail;
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

void LogFollower::drain(FILE* out, const std::string& keep) {
  catch_cut(keep);
  char buf[65536];
  for (;;) {
    const ssize_t n = pread(fd_, buf, sizeof buf, static_cast<off_t>(offset_));
    if (n <= 0) break;
    // A cut between the look above and this read would make these bytes the wrong ones: they
    // are shown only if what was shown before is still where it was.
    if (catch_cut(keep)) continue;
    fwrite(buf, 1, static_cast<size_t>(n), out);
    remember(buf, static_cast<size_t>(n));
    offset_ += static_cast<uint64_t>(n);
  }
  fflush(out);
}

}  // namespace repvisor::ctl
