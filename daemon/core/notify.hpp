// The job-to-daemon notify protocol: sd_notify(3) datagrams ("KEY=VALUE" lines), so that tools
// already speaking to systemd work unchanged. Pure parsing, no I/O: fed by the supervisor.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace repvisor::core {

inline constexpr size_t kNotifyMaxMessage = 8192;

struct NotifyMessage {
  bool ready = false;
  bool stopping = false;
  bool barrier = false;
  std::optional<std::string> status;                // STATUS=
  std::optional<std::string> phase;                 // PHASE=
  std::optional<double> progress;                   // PROGRESS= 0..100
  std::optional<uint64_t> bytes_done, bytes_total;  // BYTES_DONE=, BYTES_TOTAL=
  std::optional<std::string> checkpoint;            // CHECKPOINT= (opaque, at most 4 KiB)
  std::optional<uint64_t> extend_timeout_usec;      // EXTEND_TIMEOUT_USEC=
  std::optional<int> exit_status;                   // EXIT_STATUS= 0..255: how the job says it ends
};

inline constexpr size_t kCheckpointMax = 4096;

// False with *error naming the offending line when the message is malformed; a malformed
// message is dropped whole. Unknown keys (MAINPID=, WATCHDOG=, ...) are accepted and ignored.
bool parse_notify(std::string_view data, NotifyMessage* out, std::string* error);

bool is_valid_utf8(std::string_view s);

}  // namespace repvisor::core
