// When a job's log bytes were written, as near as the daemon can tell: the job writes its log
// directly, so the daemon sees only how far it had got at each look of its log thread. Each
// look that finds the log grown appends a stamp (the time, and the bytes the job had written in
// all by then) to the log's index, `ID.idx` beside `ID.log`. Counting every byte ever written,
// not the file's offsets, keeps the stamps true across the cuts that bound the log: they are
// never rewritten for a cut, and a reader maps them onto the file it reads (LogLayout).
//
// Pure: the format, its bound, and the lookups. The daemon's log thread writes the file
// (supervisor/log_limiter.cpp), repvisorctl reads it.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/time.hpp"

namespace repvisor::core {

struct LogStamp {
  usec_t usec = 0;       // CLOCK_REALTIME of the look
  uint64_t written = 0;  // the bytes the job had written to its log, in all, by then
};

inline constexpr size_t kLogStampSize = 16;  // two little-endian 64-bit integers
// An index past this many stamps is thinned to half (every other one dropped): a job that
// writes a line a second for a year keeps its index under 128 KiB, at a coarser resolution.
inline constexpr size_t kLogStampsMax = 8192;

// ID.idx beside ID.log.
std::string log_index_path(const std::string& log_path);

std::string encode(const LogStamp& s);
// The whole stamps in `data` (a torn last one is left out), in file order.
std::vector<LogStamp> decode_log_index(std::string_view data);
// Every other stamp but the last, which the next append builds on.
std::vector<LogStamp> thin(const std::vector<LogStamp>& stamps);

// When byte `written` (counted as in LogStamp) had been written at the latest: the first stamp
// past it. Nothing when no stamp covers it yet (the thread has not looked since).
std::optional<usec_t> written_by(const std::vector<LogStamp>& stamps, uint64_t byte);
// The first byte written at or after `since`, as far as the stamps tell: the bytes up to the
// last stamp before `since` were all written before it; the rest may not have been.
uint64_t first_written_since(const std::vector<LogStamp>& stamps, usec_t since);

// How the bytes of a log file map to the bytes the job wrote, given what the bound did to it
// (sys/log_cut.hpp): a tail log lost its first `cut` bytes; a both log keeps its head up to the
// marker and lost `cut` bytes before its tail (the marker overwrote kLogMarkerSize of them); a
// head log lost its end only.
struct LogLayout {
  std::string keep;  // the job's LogKeep: "" (never cut), "head", "tail", "both"
  uint64_t cut = 0;
  uint64_t marker_end = 0;  // both: the file offset just past the marker line
  uint64_t marker_size = 0;
  // The written-byte count of file offset `offset`; nothing for the marker's own bytes.
  std::optional<uint64_t> written_at(uint64_t offset) const;
  // The file offset of written byte `byte`, or of the first byte kept after it when it was cut.
  uint64_t offset_of(uint64_t byte) const;
};

}  // namespace repvisor::core
