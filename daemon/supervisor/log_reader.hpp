// Reading a job's log for a client (Job.ReadLog) by positions that count every byte the job
// wrote to it, cut ones too, so that a reader's place survives the cuts that bound the file
// (sys/log_cut.hpp): a position names the same byte before and after a cut, and a position whose
// byte was cut reads on from the first byte kept after it. The index of when bytes were written
// (core/log_index.hpp) counts the same way, so each read comes with the stamps that date it.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/log_index.hpp"
#include "supervisor/log_limiter.hpp"
#include "util/time.hpp"

namespace repvisor {

struct LogReadRequest {
  uint64_t offset = 0;     // a position; with from_end, how far back from the end
  uint64_t max_bytes = 0;  // at most this many bytes of data (the caller caps it)
  bool from_end = false;
  std::optional<usec_t> since;  // not before the first byte written at or after this time
  // Data starts at a line's start and ends after a newline (see read_log).
  bool whole_lines = false;
  bool growing = false;  // the job may still write: a line not yet ended waits for its end
};

// Positions [from, to) that the file still holds.
struct LogRange {
  uint64_t from = 0, to = 0;
};

struct LogRead {
  std::string data;
  uint64_t start = 0;  // the position of data's first byte (past `offset` when bytes were cut)
  uint64_t end = 0;    // the bytes written in all: the position after the last one
  std::vector<LogRange> kept;
  std::vector<core::LogStamp> stamps;  // those that date data's bytes, in order
  uint64_t cut = 0;                    // as the file is now, which LogBytesCut may not say yet
  config::LogKeep keep = config::LogKeep::Both;
};

// A stretch of the file and the position of its first byte.
struct LogPiece {
  uint64_t file_offset = 0, position = 0, length = 0;
};

// What a file of `size` bytes holds of the job's output, given its shape.
std::vector<LogPiece> log_pieces(const LogShape& shape, uint64_t size);

// Reads what `req` asks of the log file open at `fd`, whose shape the caller holds steady (the
// log thread cannot cut it meanwhile: LogLimiter::with_shape). `stamps`: the log's index.
// With whole_lines, a read that starts within a line (after a cut, or from_end, since) skips to
// the next line's start, and the data ends after its last newline; a line without one is
// returned as it is only when nothing will be added to it (the job ended, a cut follows it) or
// it alone fills max_bytes. Throws std::system_error when the file cannot be read.
LogRead read_log(int fd, const LogShape& shape, const std::vector<core::LogStamp>& stamps, const LogReadRequest& req);

}  // namespace repvisor
