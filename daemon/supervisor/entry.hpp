// A job as the supervisor holds it: the state machine plus the handles that watch its processes.
// Private to supervisor/*.cpp.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "supervisor/supervisor.hpp"

namespace repvisor {

struct Supervisor::Entry {
  std::unique_ptr<core::Job> job;
  Fd pidfd;
  UvPtr<uv_poll_t> pid_poll;
  UvPtr<uv_fs_event_t> cgroup_watch;
  UvPtr<uv_timer_t> timer;
  Fd notify_fd;
  UvPtr<uv_poll_t> notify_poll;
  std::vector<std::function<void(core::Job*)>> waiters;
  bool in_cgroup = false;
  bool pidfd_is_child = true;  // false for a main process taken over after a daemon restart
  bool deleting = false;
  Supervisor* owner = nullptr;
  // Rejected notify messages are logged a few per window, so a flood cannot fill the log.
  usec_t reject_window_start = 0;
  unsigned rejects_in_window = 0, rejects_suppressed = 0;
};

}  // namespace repvisor
