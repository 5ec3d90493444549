// When a job's log lines were written, for `logs --since` and `logs -t`: the daemon's index of
// the log (core/log_index.hpp, ID.idx beside ID.log) mapped onto the file as the bound has cut
// it. The times are those of the daemon's looks at the log (every 10 ms at most while it
// grows): when a line was written at the latest, not to the microsecond.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/log_index.hpp"

namespace repvisor::ctl {

class LogTimes {
 public:
  // `keep` and `cut`: the job's LogKeep and LogBytesCut; `limit` its LogLimit.
  LogTimes(const std::string& log_path, int fd, const std::string& keep, uint64_t cut, uint64_t limit);
  void reload();  // stamps written since
  // The time the byte at file offset `offset` had been written by; nothing when no look has
  // seen it yet (or it is the daemon's marker line).
  std::optional<usec_t> time_of(uint64_t offset) const;
  // The file offset of the first byte written at `since` or later, as far as the stamps tell.
  uint64_t offset_since(usec_t since) const;
  bool empty() const { return stamps_.empty(); }

 private:
  std::string index_path_;
  int fd_;
  core::LogLayout layout_;
  std::vector<core::LogStamp> stamps_;
};

// "2026-12-08 01:44:15", "2026-12-08 01:44", "2026-12-08" (local time), "@1765155855.25" (seconds
// since the epoch), "now", "10min ago", "-10min": a time for --since. Nothing, with *error, when
// it is none of those.
std::optional<usec_t> parse_since(const std::string& text, usec_t now, std::string* error);

}  // namespace repvisor::ctl
