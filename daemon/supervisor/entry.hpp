// A job as the supervisor holds it: the state machine plus the handles that watch its processes.
// Private to supervisor/*.cpp.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "core/nbdcopy_progress.hpp"
#include "supervisor/host_resources.hpp"
#include "supervisor/resource_pipeline.hpp"
#include "supervisor/supervisor.hpp"

namespace repvisor {

// Sets the caller for the events recorded during one API call.
class CallerScope {
 public:
  CallerScope(const Caller*& slot, const Caller* c) : slot_(slot), saved_(slot) { slot_ = c; }
  ~CallerScope() { slot_ = saved_; }
  CallerScope(const CallerScope&) = delete;
  CallerScope& operator=(const CallerScope&) = delete;

 private:
  const Caller*& slot_;
  const Caller* saved_;
};

struct Supervisor::Entry {
  std::unique_ptr<core::Job> job;
  Fd pidfd;
  UvPtr<uv_poll_t> pid_poll;
  UvPtr<uv_fs_event_t> cgroup_watch;
  Fd cgroup_events;  // its cgroup.events, read on each process and cgroup event while it runs
  Fd cgroup_kill;    // its cgroup.kill while it runs: a stop's kill is one write
  std::shared_ptr<sys::Removal> cgroup_removal;  // its cgroup's, if handed over (begin_cleanup)
  Fd notify_fd;  // its own notify socket: only a job started by a daemon older than the shared one
  UvPtr<uv_poll_t> notify_poll;
  std::vector<std::function<void(core::Job*)>> waiters;
  bool in_cgroup = false;
  bool pidfd_is_child = true;    // false for a main process taken over after a daemon restart
  bool awaiting_reap = false;    // such a process ended: its status comes once its parent reaps it
  UvPtr<uv_timer_t> reap_timer;  // ... if that comes within kReapGrace (processes.cpp)
  bool deleting = false;
  bool counted_active = false;  // included in Supervisor::active_
  // Its runtime directory may exist: false only while it is known not to (a job submitted to
  // this daemon that has made none), so that the end of a job without one costs no rmdir.
  bool runtime_dir = true;
  Supervisor* owner = nullptr;
  RejectLog rejects;  // its notify messages dropped

  // Its resources, set up before it starts and torn down after its processes are gone.
  std::unique_ptr<ResourcePipeline> resources;
  // nbdcopy --progress=FD
  Fd progress_fd;
  UvPtr<uv_poll_t> progress_poll;
  core::NbdcopyProgress progress;
};

}  // namespace repvisor
