// Start-up: every job the store says was not finished is looked at against what the system
// shows (its cgroup, its recorded main PID), and carried to a consistent end.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <filesystem>

#include "supervisor/entry.hpp"
#include "sys/pidfd.hpp"
#include "sys/proc.hpp"
#include "util/id.hpp"
#include "util/log.hpp"

namespace repvisor {

namespace fs = std::filesystem;

void Supervisor::recover() {
  auto jobs = store_->load(*this, cfg_.final_kill_timeout);
  std::vector<std::string> ids;
  for (auto& j : jobs) ids.push_back(add_entry(std::move(j)).job->id());
  size_t unfinished = 0;
  for (const auto& id : ids) {
    auto it = entries_.find(id);
    if (it == entries_.end()) continue;
    if (!core::is_terminal(it->second->job->state())) ++unfinished;
    recover_job(*it->second);
  }
  // Restored states bypass the state machine's change reports: count them once here.
  for (auto& [id, e] : entries_) sync_active(*e);
  clean_strays();
  if (!ids.empty())
    log::notice("recovered {} job(s) from {}, {} of them unfinished", ids.size(), store_->path(), unfinished);
  store_->commit();
}

void Supervisor::recover_job(Entry& e) {
  core::Job& job = *e.job;
  const std::string id = job.id();
  const std::string cg = cgroup_name(job);

  if (core::is_terminal(job.state())) {
    // Finished, but a crash may have come between the record and the teardown.
    if (cgroups_ && fs::exists(cgroups_->path_of(cg))) {
      cgroups_->kill(cg);
      cgroups_->remove(cg);
    }
    if (job.cleanup_state == "running" || job.cleanup_state == "failed") {
      // A teardown cut short by the crash, or one that failed: try it again now.
      event(job, "recovered", "cleanup of the job's resources unfinished: running it again");
      e.resources->when_torn_down([this, id](bool) {
        auto* j = find_by_id(id);
        if (j && j->delete_requested) finish_delete(*j, j->delete_keep_data, j->delete_uid, nullptr);
      });
      start_resource_cleanup(e, false);
      return;
    }
    remove_runtime_dir(e);
    if (job.delete_requested) finish_delete(job, job.delete_keep_data, job.delete_uid, nullptr);
    return;
  }

  // Is anything of the job still running?
  const bool have_cgroup = cgroups_ && fs::exists(cgroups_->path_of(cg));
  pid_t main = 0;
  if (job.main_pid > 0 && job.main_start_time != 0 && sys::process_start_time(job.main_pid) == job.main_start_time) {
    // Same PID and start time: the same process, unless it left the job's cgroup (it cannot).
    const bool in_job = have_cgroup ? sys::process_cgroup(job.main_pid) == cgroups_->cgroup_of(cg)
                                    : sys::process_session(job.main_pid) == job.main_pid;
    if (in_job) main = job.main_pid;
  }
  const bool alive = have_cgroup ? cgroups_->populated(cg)
                                 : (main > 0 || (job.main_pid > 0 && !sys::session_members(job.main_pid).empty()));

  if (job.delete_requested)
    when_finished(id, [this, id](core::Job* j) {
      if (j) finish_delete(*j, j->delete_keep_data, j->delete_uid, nullptr);
    });

  if (!alive) {
    if (job.state() == core::JobState::Pending) {
      queue_.push_back(id);  // never started: it waits for a slot as before
      return;
    }
    if (job.state() == core::JobState::Cleaning) {
      // The processes were gone already; the teardown was cut short: run it again.
      event(job, "recovered", "cleanup was in progress when the daemon stopped: running it again");
      e.in_cgroup = have_cgroup;
      job.restart_cleanup();
      return;
    }
    event(job, "recovered",
          job.state() == core::JobState::Starting
              ? "the daemon stopped during the job's setup: its command never ran; tearing the setup down"
              : "the job's processes were gone when the daemon started");
    e.in_cgroup = have_cgroup;
    job.finish_interrupted();
    return;
  }

  // Alive: watch it again, then stop it (or, with recovery = "adopt", supervise it on).
  // A job still recorded pending was started by a daemon that stopped before it recorded the
  // start: which process is its main one is not known, so it cannot be supervised on.
  const bool start_recorded = job.state() != core::JobState::Pending;
  e.in_cgroup = have_cgroup;
  if (!have_cgroup) sessions_.insert(id);
  job.restore(core::JobState::Running, core::SubState::Running);
  job.main_alive = true;
  job.tree_alive = true;
  if (main > 0) {
    e.pidfd.reset(sys::pidfd_open(main, 0));
    e.pidfd_is_child = false;
    track_main(job);
    if (e.pidfd) {
      e.pid_poll = make_uv<uv_poll_t>([&](uv_poll_t* p) { return uv_poll_init(loop_, p, e.pidfd.get()); }, &e);
      uv_poll_start(e.pid_poll.get(), UV_READABLE, [](uv_poll_t* p, int, int) {
        if (auto* en = static_cast<Entry*>(p->data)) en->owner->on_pidfd(*en);
      });
    }
  }
  if (have_cgroup) {
    // Opened as a start opens them; without them, check_tree and the kill go by name.
    if (Fd dir(::open(cgroups_->path_of(cg).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)); dir) {
      sys::CgroupTree::open_events(dir.get(), &e.cgroup_events);
      sys::CgroupTree::open_kill(dir.get(), &e.cgroup_kill);
    }
    watch_cgroup(e);
  }
  // The job keeps its NOTIFY_SOCKET path. The shared one is bound again already; a job started
  // by a daemon from before it has a socket of its own, which that daemon left behind: bind it
  // again.
  std::error_code ec;
  if (fs::exists(job_notify_path(id), ec)) {
    if (int r = open_job_notify_socket(e); r < 0)
      log::warning("job {}: cannot recreate its notify socket: {}", id, strerror(-r));
  }

  const bool stop_in_flight = job.stop_requested;
  if (stop_in_flight || job.delete_requested) {
    // Carry the acknowledged stop through, as it was asked.
    // As it was asked: by whom, when, and with the timeout it was given, which counts from the
    // request (what is left of it, not a fresh one).
    core::StopRequest req{.force = job.stop_mode == core::StopMode::Force || job.delete_requested,
                          .reason = job.cancel_reason.empty() ? "daemon_restart" : job.cancel_reason,
                          .notes = job.cancel_notes,
                          .uid = job.requested_by_uid,
                          .requested_usec = job.stop_requested_usec};
    if (!req.force && job.stop_timeout_used != 0) req.timeout = job.stop_timeout_used;
    job.stop_requested = false;
    job.stop_mode = core::StopMode::None;
    event(job, "recovered", "stop in flight when the daemon stopped: carrying it through");
    job.request_stop(req);
  } else if (cfg_.recovery == "adopt" && start_recorded) {
    adopt_resources(e);
    event(job, "adopted",
          fmt::format("processes still running: supervising them on{}",
                      main ? fmt::format(" (main process {})", main) : std::string()));
    changed(job, core::kChangedState);
  } else {
    event(job, "recovered",
          start_recorded ? "processes still running after a daemon restart: stopping them (recovery = \"stop\")"
                         : "started just before the daemon stopped, which did not record the start: its processes "
                           "are stopped (its main process is not known)");
    job.request_stop(core::StopRequest{.reason = "daemon_restart", .uid = core::kDaemonUid});
  }
  if (main == 0) job.on_main_gone();  // its leftovers go too
  if (job.tree_alive) check_tree(e);  // it may have ended while we looked
}

void Supervisor::clean_strays() {
  auto owned_and_active = [&](const std::string& id) {
    auto it = entries_.find(id);
    return it != entries_.end() && !core::is_terminal(it->second->job->state());
  };
  if (cgroups_) {
    std::error_code ec;
    for (const auto& d : fs::directory_iterator(cgroups_->root(), ec)) {
      const std::string name = d.path().filename();
      const bool server = name.rfind("srv-", 0) == 0;
      if (!d.is_directory() || (name.rfind("job-", 0) != 0 && !server)) continue;
      const std::string id = server ? name.substr(4, name.find('-', 4) - 4) : name.substr(4);
      if (owned_and_active(id)) continue;
      if (server) {
        // A job's NBD server outlives its processes until cleanup: kept while cleanup is owed.
        auto it = entries_.find(id);
        if (it != entries_.end() && it->second->job->cleanup_state != "done") continue;
      }
      const auto pids = cgroups_->procs(name);
      if (!cgroups_->owns(name)) {
        // Another daemon's (one that used this root before us), or made by hand: not ours to kill.
        log::warning("cgroup {} with {} process(es) was not created by this daemon: left alone", d.path().string(),
                     pids.size());
        continue;
      }
      // Nobody owns it (a job deleted while the daemon was down, a leftover of ours): nothing
      // may run that no job accounts for.
      audit(is_job_id(id) ? id : "", "stray-cleaned",
            fmt::format("stray cgroup {} with {} process(es) killed and removed", d.path().string(), pids.size()),
            nullptr);
      cgroups_->kill(name);
      if (cgroups_->remove(name) < 0) watch_stray(name);
    }
  }
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(cfg_.runtime_dir + "/jobs", ec)) {
    const std::string id = d.path().filename();
    if (owned_and_active(id)) continue;
    if (auto it = entries_.find(id); it != entries_.end() && it->second->job->cleanup_state == "running") continue;
    log::warning("stray runtime directory {}: removing it", d.path().string());
    fs::remove_all(d.path(), ec);
  }
}

void Supervisor::watch_stray(const std::string& name) {
  // Killed but not yet empty: remove it when the kernel says it is.
  auto sw = std::make_unique<StrayWatch>();
  sw->owner = this;
  sw->name = name;
  StrayWatch* raw = sw.get();
  sw->watch = make_uv<uv_fs_event_t>([&](uv_fs_event_t* w) { return uv_fs_event_init(loop_, w); }, raw);
  uv_fs_event_start(
      sw->watch.get(),
      [](uv_fs_event_t* h, const char*, int, int) {
        auto* s = static_cast<StrayWatch*>(h->data);
        if (!s || s->owner->cgroups_->populated(s->name)) return;
        s->owner->cgroups_->remove(s->name);
        s->owner->strays_.remove_if([&](const auto& p) { return p.get() == s; });  // closes the watch
      },
      cgroups_->events_file(name).c_str(), 0);
  strays_.push_back(std::move(sw));
  // It may have emptied before the watch was there, and then no event comes: look once more.
  if (!cgroups_->populated(name) && cgroups_->remove(name) == 0) strays_.pop_back();
}

}  // namespace repvisor
