// The jobs' processes once started: each main process watched through its pidfd, each tree
// through its cgroup's cgroup.events (or, without cgroups, SIGCHLD and the session), orphans
// reaped, signals and the whole-tree kill sent, and the first part of a job's end (its cgroup
// handed to the remover). Never waitpid(-1): only the processes we know are reaped.
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "supervisor/entry.hpp"
#include "sys/pidfd.hpp"
#include "sys/proc.hpp"
#include "util/log.hpp"
#include "util/time.hpp"

namespace repvisor {

namespace fs = std::filesystem;

namespace {
// How long an adopted main process that has ended may stay unreaped before the job ends without
// its exit status (on_pidfd says why). systemd reaps at once; other inits poll (one took 1.5 s).
constexpr usec_t kReapGrace = 5 * USEC_PER_SEC;

sigset_t only_sigchld() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  return set;
}
}  // namespace

void Supervisor::block_sigchld() {
  // SIGCHLD is read from a signalfd, not caught: a handler costs every job's end a signal frame
  // and libuv's three pipe writes. Blocked here, before the spawner and the store's checkpointer
  // start their threads, it is blocked in every thread of ours (they inherit the mask, and so do
  // libuv's pool threads, started later by this thread), so it waits for the signalfd and is
  // never taken, and dropped, by a thread with the default disposition. The processes we start
  // unblock every signal (sys/spawn.cpp).
  const sigset_t chld = only_sigchld();
  if (int r = pthread_sigmask(SIG_BLOCK, &chld, nullptr); r != 0)
    throw std::runtime_error(std::string("blocking SIGCHLD: ") + strerror(r));
  // A thread started before us would not have it blocked: say so now rather than lose orphans.
  std::error_code ec;
  if (auto tasks = fs::directory_iterator("/proc/self/task", ec); !ec && std::distance(tasks, {}) > 1)
    throw std::logic_error("the Supervisor must be made before any other thread starts (SIGCHLD stays blocked)");
}

void Supervisor::watch_sigchld() {
  const sigset_t chld = only_sigchld();
  sigchld_fd_ = Fd(signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!sigchld_fd_) throw std::runtime_error(std::string("signalfd: ") + strerror(errno));
  sigchld_ = make_uv<uv_poll_t>([&](uv_poll_t* p) { return uv_poll_init(loop_, p, sigchld_fd_.get()); }, this);
  uv_poll_start(sigchld_.get(), UV_READABLE, [](uv_poll_t* p, int, int) {
    auto* self = static_cast<Supervisor*>(p->data);
    if (!self) return;
    // One read takes it: SIGCHLD is not queued, so at most one is pending however many
    // children ended; the reaping below finds them all.
    signalfd_siginfo info[4];
    while (::read(self->sigchld_fd_.get(), info, sizeof info) < 0 && errno == EINTR) {
    }
    self->on_sigchld();
  });
  uv_unref(reinterpret_cast<uv_handle_t*>(sigchld_.get()));
}

void Supervisor::on_pidfd(Entry& e) {
  // What the job said before its main process ended counts, and is told by that PID: read
  // before the PID is released.
  drain_notify();
  siginfo_t si{};
  if (!e.pidfd_is_child) {
    // Not our child (taken over after a restart): the kernel tells its status to a pidfd's
    // holder once its parent has reaped it, which the pidfd reports as POLLHUP.
    const int r = sys::pidfd_exit_status(e.pidfd.get(), &si.si_code, &si.si_status);
    if (r == -ENODATA && !e.awaiting_reap) {
      // Ended, a zombie until its parent reaps it, and that parent is never this daemon: the
      // process was the child of the daemon that started it, and when that daemon died its
      // children went to the nearest child subreaper above it, or to the PID namespace's init
      // (the kernel's find_new_reaper walks up the dead process's ancestors); this daemon,
      // started after, is no ancestor of it. Under systemd that is PID 1, which reaps at once.
      // A parent that does not reap (an init that never waits, a subreaper that is stopped or
      // stuck) would hold the job for ever: its status is waited for kReapGrace, then the job
      // ends without it (tests/integration/store_test.cpp reproduces it).
      e.awaiting_reap = true;
      uv_poll_start(e.pid_poll.get(), UV_DISCONNECT, [](uv_poll_t* p, int, int) {
        if (auto* en = static_cast<Entry*>(p->data)) en->owner->on_pidfd(*en);
      });
      e.reap_timer = make_uv<uv_timer_t>([&](uv_timer_t* t) { return uv_timer_init(loop_, t); }, &e);
      uv_timer_start(
          e.reap_timer.get(),
          [](uv_timer_t* t) {
            if (auto* en = static_cast<Entry*>(t->data)) en->owner->on_reap_overdue(*en);
          },
          kReapGrace / USEC_PER_MSEC, 0);
      return;
    }
    if (r < 0) {
      main_gone(e);
      return;
    }
  } else if (waitid(P_PIDFD, static_cast<id_t>(e.pidfd.get()), &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0) {
    return;
  }
  core::Job& job = *e.job;
  forget_main(job);
  e.pid_poll.reset();
  e.pidfd.reset();
  e.reap_timer.reset();
  e.awaiting_reap = false;
  // Look at the tree first: if the main process was the last one, nothing needs killing. This
  // also covers a tree that emptied before our cgroup watch was set up.
  if (job.tree_alive) check_tree(e);
  job.on_main_exited(si.si_code, si.si_status);
}

void Supervisor::on_reap_overdue(Entry& e) {
  e.reap_timer.reset();
  if (!e.pidfd || !e.awaiting_reap) return;
  int code = 0, status = 0;
  if (sys::pidfd_exit_status(e.pidfd.get(), &code, &status) != -ENODATA) {
    on_pidfd(e);  // reaped after all (its POLLHUP not yet seen): the status is known
    return;
  }
  event(*e.job, "unreaped",
        fmt::format("main process {} ended, but its parent has not reaped it within {}: its exit status "
                    "cannot be known",
                    e.job->main_pid, format_timespan(kReapGrace)));
  main_gone(e);
}

void Supervisor::main_gone(Entry& e) {
  // Its end is known, its status is not (the job's own EXIT_STATUS= report may still tell it).
  forget_main(*e.job);
  e.pid_poll.reset();
  e.pidfd.reset();
  e.reap_timer.reset();
  e.awaiting_reap = false;
  if (e.job->tree_alive) check_tree(e);
  e.job->on_main_gone();
}

void Supervisor::on_cgroup_event(Entry& e) {
  if (e.job->tree_alive) check_tree(e);
}

void Supervisor::watch_cgroup(Entry& e) {
  // cgroup.events changes ("populated 0") arrive as inotify modify events.
  e.cgroup_watch = make_uv<uv_fs_event_t>([&](uv_fs_event_t* w) { return uv_fs_event_init(loop_, w); }, &e);
  uv_fs_event_start(
      e.cgroup_watch.get(),
      [](uv_fs_event_t* w, const char*, int, int) {
        if (auto* en = static_cast<Entry*>(w->data)) en->owner->on_cgroup_event(*en);
      },
      cgroups_->events_file(cgroup_name(*e.job)).c_str(), 0);
}

void Supervisor::check_tree(Entry& e) {
  core::Job& job = *e.job;
  // Without cgroups, orphans of the session come to us: reap the dead ones, and count the
  // zombies still there (one may die between the two steps) as members, so that the session is
  // empty only once every process of it is reaped. Its SIGCHLD brings us back here.
  if (!e.in_cgroup) reap_orphans();
  auto populated = [&] {
    return e.cgroup_events ? sys::CgroupTree::populated(e.cgroup_events.get()) : cgroups_->populated(cgroup_name(job));
  };
  bool alive = e.in_cgroup ? populated() : !sys::session_members(job.main_pid, true).empty();
  if (alive && e.in_cgroup && !e.cgroup_watch) {
    // A cgroup is watched only once its main process has ended with the rest of its tree still
    // there: before, the tree cannot be empty, and most trees (a force stop's, with cgroup.kill)
    // end with their main process, so most jobs never add or remove an inotify watch. An end
    // before the watch was set is seen by this second look; one after, by the watch.
    watch_cgroup(e);
    alive = populated();
  }
  if (!alive) job.on_tree_empty();
}

void Supervisor::on_sigchld() {
  reap_orphans();
  // Without cgroups the end of a session is seen only through its members dying, and the
  // orphans among them are ours (child subreaper).
  const std::vector<std::string> ids(sessions_.begin(), sessions_.end());  // check_tree may end one
  for (const auto& id : ids) {
    auto it = entries_.find(id);
    if (it != entries_.end() && it->second->job->tree_alive && !it->second->job->main_alive) check_tree(*it->second);
  }
}

void Supervisor::reap_orphans() {
  // Only the orphans, reparented to us: never waitpid(-1), which would steal exit statuses. The
  // processes we start are the spawner thread's children (sys/spawner.hpp), reaped through their
  // pidfds; this thread's own children (__WNOTHREAD) are the orphans alone, whoever reaps them.
  for (;;) {
    siginfo_t si{};
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | __WNOTHREAD) < 0 || si.si_pid == 0) return;
  }
}

void Supervisor::reap_when_gone(Fd pidfd) {
  auto l = std::make_unique<Lingering>();
  l->owner = this;
  l->pidfd = std::move(pidfd);
  Lingering* raw = l.get();
  l->poll = make_uv<uv_poll_t>([&](uv_poll_t* p) { return uv_poll_init(loop_, p, raw->pidfd.get()); }, raw);
  uv_poll_start(l->poll.get(), UV_READABLE, [](uv_poll_t* p, int, int) {
    auto* lg = static_cast<Lingering*>(p->data);
    if (!lg) return;
    siginfo_t si{};
    if (waitid(P_PIDFD, static_cast<id_t>(lg->pidfd.get()), &si, WEXITED | WNOHANG) == 0 && si.si_pid == 0) return;
    lg->owner->lingering_.remove_if([&](const auto& x) { return x.get() == lg; });  // closes the poll
  });
  uv_unref(reinterpret_cast<uv_handle_t*>(l->poll.get()));
  lingering_.push_back(std::move(l));
}

void Supervisor::reap_exiting_orphans(const std::vector<std::string>& cgroups) {
  // A process leaves its cgroup (cgroup_exit) a moment before it becomes a zombie and is
  // reported to its parent (exit_notify). Orphans of these jobs that are in that window still
  // name their job's cgroup in /proc/PID/cgroup: wait for them here, so that a job is never
  // reported finished while a zombie of it remains. The wait is bounded by the kernel's own
  // exit path, not by anything the job does. One read of this thread's children list (the
  // orphans only: sys/spawner.hpp) serves every job that ended in this loop iteration.
  if (cgroups.empty() || !sys::thread_has_children()) return;  // the usual case: no orphan at all
  for (pid_t pid : sys::thread_children()) {
    const std::string cg = sys::process_cgroup(pid);
    const bool ours = std::any_of(cgroups.begin(), cgroups.end(), [&](const std::string& job_cg) {
      return cg.compare(0, job_cg.size(), job_cg) == 0 && (cg.size() == job_cg.size() || cg[job_cg.size()] == '/');
    });
    if (!ours) continue;
    Fd fd(sys::pidfd_open(pid, 0));
    if (!fd) continue;
    siginfo_t si{};
    waitid(P_PIDFD, static_cast<id_t>(fd.get()), &si, WEXITED);
  }
}

// ---- acting -------------------------------------------------------------------------------

int Supervisor::signal_main(core::Job& job, int sig) {
  Entry& e = entry(job);
  if (!e.pidfd) return -ESRCH;
  return sys::pidfd_send_signal(e.pidfd.get(), sig, nullptr, 0) < 0 ? -errno : 0;
}

int Supervisor::signal_tree(core::Job& job, int sig) {
  Entry& e = entry(job);
  if (e.in_cgroup) return cgroups_->signal_all(cgroup_name(job), sig);
  int r = 0;
  if (e.pidfd && sys::pidfd_send_signal(e.pidfd.get(), sig, nullptr, 0) < 0) r = -errno;
  for (pid_t pid : sys::session_members(job.main_pid)) {
    Fd fd(sys::pidfd_open(pid, 0));
    if (fd) sys::pidfd_send_signal(fd.get(), sig, nullptr, 0);
  }
  return r;
}

int Supervisor::kill_tree(core::Job& job) {
  Entry& e = entry(job);
  if (e.in_cgroup) {
    int r = e.cgroup_kill ? sys::CgroupTree::kill(e.cgroup_kill.get()) : cgroups_->kill(cgroup_name(job));
    if (r < 0) r = cgroups_->signal_all(cgroup_name(job), SIGKILL);  // kernels without cgroup.kill
    return r;
  }
  return signal_tree(job, SIGKILL);
}

std::vector<pid_t> Supervisor::tree_pids(core::Job& job) {
  Entry& e = entry(job);
  if (e.in_cgroup) return cgroups_->procs(cgroup_name(job));
  return sys::session_members(job.main_pid);
}

void Supervisor::begin_cleanup(core::Job& job) {
  crash_point("cleanup");
  Entry& e = entry(job);
  log_ended(job);
  sessions_.erase(job.id());
  e.pid_poll.reset();
  e.cgroup_watch.reset();
  e.cgroup_events.reset();
  e.cgroup_kill.reset();
  if (e.notify_fd) on_notify(e.notify_fd.get(), &e);  // what the job said last still counts
  close_job_notify_socket(e);
  forget_main(job);
  if (e.progress_fd) on_progress(e);
  e.progress_poll.reset();
  e.progress_fd.reset();
  if (e.in_cgroup) {
    // Its cgroup is empty. Its exiting orphans are reaped, and the cgroup removed, from
    // run_deferred(), for every job that ended in this loop iteration at once (end_cgroups).
    // When several end together, the remover's thread removes their cgroups while we read the
    // next ends (sys/remover.hpp); a lone job's is removed there, without a thread's wake-up.
    ending_.push_back(job.id());
    if (ending_.size() == 2) hand_over_cgroup(ending_.front());
    if (ending_.size() >= 2) hand_over_cgroup(job.id());
    return;
  }
  if (cgroups_ && job.start_error) cgroups_->remove(cgroup_name(job));
  event(job, "cleanup", "processes gone");
  start_resource_cleanup(e, true);
}

void Supervisor::hand_over_cgroup(const std::string& id) {
  if (auto it = entries_.find(id); it != entries_.end())
    it->second->cgroup_removal = remover_->submit(cgroups_->path_of(cgroup_name(*it->second->job)));
}

void Supervisor::end_cgroups() {
  if (ending_.empty()) return;
  std::vector<std::string> ids;
  ids.swap(ending_);
  std::vector<std::string> cgroups;
  for (const auto& id : ids)
    if (auto* job = find_by_id(id)) cgroups.push_back(cgroups_->cgroup_of(cgroup_name(*job)));
  reap_exiting_orphans(cgroups);
  for (const auto& id : ids) {
    auto it = entries_.find(id);
    if (it == entries_.end()) continue;
    Entry& e = *it->second;
    core::Job& job = *e.job;
    std::string error;
    const int r = e.cgroup_removal ? remover_->take(*e.cgroup_removal) : cgroups_->remove(cgroup_name(job));
    e.cgroup_removal.reset();
    if (r < 0)
      error = "cannot remove cgroup " + cgroups_->path_of(cgroup_name(job)) + ": " + strerror(-r);
    else
      event(job, "cleanup", "cgroup " + cgroup_name(job) + " removed");
    // Then the resources, in their safe order; the pipeline reports to the state machine when
    // done (possibly at once), with the cgroup's error if there was one.
    start_resource_cleanup(e, true, error);
  }
}

}  // namespace repvisor
