// Starting a job's main process: its environment, log, notify socket and cgroup made ready,
// the spawn handed to the spawner thread (ahead of time for queued jobs, so that a start costs
// the loop one pidfd), and the queue of pending jobs run as slots free up.
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <utility>

#include "supervisor/entry.hpp"
#include "sys/pidfd.hpp"
#include "sys/proc.hpp"
#include "util/log.hpp"

namespace repvisor {

namespace fs = std::filesystem;

namespace {
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}  // namespace

void Supervisor::start_queued() {
  // A spawn returns once its child has exec'd (~0.4 ms here, mostly the kernel's exec and the
  // wait for a core). The next few jobs that only spawn are handed to the spawner first, so
  // their clones run while this thread records the ones before them: starting a batch, the
  // loop no longer waits for each exec in turn. Nothing shows: each job still goes from
  // pending to running (or failed) in its own start(), within this iteration.
  while (!queue_.empty() && active_ < cfg_.max_concurrent_jobs && !shutting_down_) {
    spawn_ahead();
    std::string id = queue_.front();
    queue_.pop_front();
    if (auto* job = find_by_id(id)) {
      job->start();
      update_active();
    }
  }
  // Left only if a job could not be started after all (shutdown): its process must not run.
  for (auto& [id, p] : ahead_) {
    log::warning("job {}: started ahead but not run; its process is killed", id);
    if (p->error == 0 && spawner_->wait(&p->task) == 0) {
      sys::pidfd_send_signal(p->task.child.pidfd.get(), SIGKILL, nullptr, 0);
      siginfo_t si{};
      waitid(P_PIDFD, static_cast<id_t>(p->task.child.pidfd.get()), &si, WEXITED);
    }
    if (p->cgroup_dir) cgroups_->remove(p->cgroup);
  }
  ahead_.clear();
}

void Supervisor::spawn_ahead() {
  // The jobs the caller's loop is about to start (each takes a slot), in order; only the ones
  // whose start() spawns at once (no resources to set up first).
  constexpr size_t kAhead = 8;  // twice the spawner's threads: one waiting for each as it finishes
  const size_t slots = cfg_.max_concurrent_jobs - active_;
  size_t seen = 0;
  for (const std::string& id : queue_) {
    if (seen == std::min(slots, kAhead)) break;
    core::Job* job = find_by_id(id);
    if (!job || job->state() != core::JobState::Pending) continue;
    ++seen;
    if (!job->spec().resources.empty() || ahead_.count(id)) continue;
    auto p = std::make_unique<PreparedSpawn>();
    p->error = prepare_spawn(*job, *p);
    if (p->error == 0) spawner_->submit(&p->task);
    ahead_.emplace(id, std::move(p));
  }
}

int Supervisor::prepare_spawn(core::Job& job, PreparedSpawn& p) {
  Entry& e = entry(job);
  const auto& spec = job.spec();
  sys::SpawnRequest& req = p.req;
  p.task.req = &req;
  // Checked at submit, and again here: a job queued before a restart that lost the pids
  // controller (or its cgroups) must not run without the limit it was accepted with.
  if (spec.tasks_max && (!cgroups_ || !cgroups_->pids_unavailable().empty())) return -EOPNOTSUPP;

  std::string path_env = kDefaultPath;
  if (auto it = spec.env.find("PATH"); it != spec.env.end()) path_env = it->second;
  int err = 0;
  req.executable = sys::find_executable(spec.argv[0], path_env, &err);
  if (req.executable.empty()) return -err;
  req.argv = spec.argv;
  req.working_directory = spec.working_directory;
  std::map<std::string, std::string> env{{"PATH", kDefaultPath}, {"REPVISOR_JOB_ID", job.id()}};
  env["NOTIFY_SOCKET"] = notify_socket_path();
  if (!spec.name.empty()) env["REPVISOR_JOB_NAME"] = spec.name;
  for (const auto& [k, v] : spec.env) env[k] = v;
  add_resource_env(e, env, req.argv);
  for (const auto& [k, v] : env) req.env.push_back(k + "=" + v);
  if (spec.progress == core::ProgressSource::Nbdcopy) {
    // nbdcopy writes "N/100" lines to the descriptor named by --progress=FD: ours is 3.
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) return -errno;
    e.progress_fd.reset(fds[0]);
    p.progress_write.reset(fds[1]);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    req.pass_fds.push_back(fds[1]);
    req.argv.insert(req.argv.begin() + 1, "--progress=3");
  }

  // A file, not a pipe: the job's output does not depend on the daemon staying up.
  const int log_fd = logs_->open_append(log_path(job));
  if (log_fd < 0) {
    e.progress_fd.reset();
    return log_fd;
  }
  p.out.reset(log_fd);
  req.output_fd = p.out.get();

  if (cgroups_) {
    p.cgroup = cgroup_name(job);
    if (int r = cgroups_->create(p.cgroup, &p.cgroup_dir); r < 0) {
      e.progress_fd.reset();
      return r;
    }
    // Before the first process enters it: a fork bomb is held from its first fork.
    if (job.spec().tasks_max)
      if (int r = sys::CgroupTree::set_pids_max(p.cgroup_dir.get(), job.spec().tasks_max); r < 0) {
        e.progress_fd.reset();
        return r;
      }
    req.cgroup_fd = p.cgroup_dir.get();
  }
  return 0;
}

int Supervisor::spawn(core::Job& job) {
  std::unique_ptr<PreparedSpawn> p;
  if (auto it = ahead_.find(job.id()); it != ahead_.end()) {
    p = std::move(it->second);
    ahead_.erase(it);
  } else {
    p = std::make_unique<PreparedSpawn>();
    p->error = prepare_spawn(job, *p);
    if (p->error == 0) spawner_->submit(&p->task);
  }
  if (p->error < 0) return p->error;
  Entry& e = entry(job);
  if (int r = spawner_->wait(&p->task); r < 0) {
    if (p->cgroup_dir) cgroups_->remove(p->cgroup);
    e.progress_fd.reset();
    return r;
  }
  sys::Spawned& child = p->task.child;
  if (e.progress_fd) {
    e.progress = {};
    e.progress_poll = make_uv<uv_poll_t>([&](uv_poll_t* h) { return uv_poll_init(loop_, h, e.progress_fd.get()); }, &e);
    uv_poll_start(e.progress_poll.get(), UV_READABLE, [](uv_poll_t* h, int, int) {
      if (auto* en = static_cast<Entry*>(h->data)) en->owner->on_progress(*en);
    });
  }
  job.main_pid = child.pid;
  job.main_start_time = child.start_time;
  track_main(job);
  e.pidfd = std::move(child.pidfd);
  e.in_cgroup = cgroups_.has_value();
  if (!e.in_cgroup) sessions_.insert(job.id());
  e.pid_poll = make_uv<uv_poll_t>([&](uv_poll_t* h) { return uv_poll_init(loop_, h, e.pidfd.get()); }, &e);
  uv_poll_start(e.pid_poll.get(), UV_READABLE, [](uv_poll_t* h, int, int) {
    auto* en = static_cast<Entry*>(h->data);
    if (en) en->owner->on_pidfd(*en);
  });
  if (e.in_cgroup) {
    // Without it (it cannot fail but for lack of descriptors), check_tree opens it by name.
    sys::CgroupTree::open_events(p->cgroup_dir.get(), &e.cgroup_events);
    sys::CgroupTree::open_kill(p->cgroup_dir.get(), &e.cgroup_kill);  // without it: by name, at the kill
    // Its cgroup is watched only if its tree outlives its main process (check_tree).
  }
  track_log(job, true);
  crash_point("job-spawned");  // running in its cgroup, its start not yet recorded
  return 0;
}

// ---- watching -----------------------------------------------------------------------------

}  // namespace repvisor
