// Reading a job's log while the daemon bounds it (docs/design.md, Job logs): the file may lose
// its first blocks (keep = "tail", "both") or its end (keep = "head") under the reader.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace repvisor::ctl {

// "PATH (cut: 2.4 GiB dropped, the first and last 32 MiB kept)", or PATH when nothing was cut.
std::string log_status(const std::string& path, uint64_t cut, const std::string& keep, uint64_t limit);

// Copies a log to a stream as it grows, by offset, and notices a cut as `tail -F` notices a
// truncation: the file is shorter than what was read, or the bytes last shown are no longer
// where they were. It then goes on from the same place in the new content (where the bytes
// last shown are now), or, when those were cut too, from the first bytes kept after the cut.
class LogFollower {
 public:
  // Shows the file from offset `from` on.
  explicit LogFollower(int fd, uint64_t from = 0) : fd_(fd), offset_(from) {}
  // `keep`: the job's LogKeep property ("" until its log was first cut). `whole_lines`: a line
  // not yet ended waits for its end (while following; not for the last read).
  void drain(const std::function<void(std::string_view)>& out, const std::string& keep, bool whole_lines);
  // Inside `out`: the file offset of the piece it is given.
  uint64_t offset() const { return offset_; }

 private:
  bool moved(uint64_t size);                // a cut since the last drain
  bool catch_cut(const std::string& keep);  // moved: on from the right place, and says so
  void resync(uint64_t size, const std::string& keep);
  std::string read_at(uint64_t offset, size_t len) const;
  uint64_t size_now() const;
  void remember(const char* data, size_t n);

  static constexpr size_t kSeen = 4096;
  int fd_;
  uint64_t offset_ = 0;
  std::string seen_;  // the last bytes shown, up to kSeen
};

}  // namespace repvisor::ctl
