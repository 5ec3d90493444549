// The copy itself: chunks handed out to one thread per NBD connection, which reads them, and
// written by a second thread per connection; the contiguous prefix of finished chunks, once
// fdatasync'ed, is the checkpoint. A stop request lets the chunks in
// flight finish, flushes, reports the final checkpoint and ends.
#pragma once
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "checkpoint.hpp"

namespace repvisor::worker {

// Documented exit statuses (repvisor-copy(1), docs/worker.md).
enum Exit : int {
  kExitDone = 0,
  kExitError = 1,
  kExitUsage = 2,
  kExitVerifyMismatch = 3,
  kExitStopped = 75,  // stopped cleanly on request: resume from the last checkpoint
};

struct CopyOptions {
  uint64_t chunk_size = 4ull << 20;
  unsigned connections = 4;  // repvisor-copy's default: one per usable CPU, at most 4
  unsigned requests = 4;     // reads in flight per connection
  std::optional<Checkpoint> resume;
  bool verify = false;
  uint64_t checkpoint_interval_ms = 5000;
};

// Set from the signal handler: 1 = finish the chunks in flight and stop.
extern std::atomic<int> stop_requested;

int run_copy(const std::string& source_uri, const std::string& target_path, const CopyOptions& opts);

}  // namespace repvisor::worker
