#include "supervisor/supervisor.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "sys/pidfd.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include "supervisor/entry.hpp"
#include "supervisor/log_limiter.hpp"
#include "sys/proc.hpp"
#include "sys/spawn.hpp"
#include "util/id.hpp"
#include "util/log.hpp"

#include <systemd/sd-journal.h>

namespace repvisor {

namespace fs = std::filesystem;

namespace {
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

uint64_t usec_to_ms_ceil(usec_t usec) { return (usec + USEC_PER_MSEC - 1) / USEC_PER_MSEC; }

sigset_t only_sigchld() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  return set;
}
}  // namespace

Supervisor::Supervisor(uv_loop_t* loop, config::Config cfg) : loop_(loop), cfg_(std::move(cfg)) {
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
  // Four spawns at a time: each mostly waits for its child's exec to get a core (bench/README.md:
  // on 2 cores, 1,000 starts took 0.63 s one at a time, ~0.5 s two at a time, ~0.47 s four).
  spawner_ = std::make_unique<sys::Spawner>(4);
  remover_ = std::make_unique<sys::Remover>();
  deadlines_ = std::make_unique<Deadlines>(loop_, [this](const std::string& id) {
    auto* job = find_by_id(id);
    if (!job) return;
    if (job->sub_state() == core::SubState::StopSigterm) crash_point("stop-escalate");
    job->on_timer();
  });
}

Supervisor::~Supervisor() = default;

void Supervisor::init() {
  std::error_code ec;
  for (const auto& dir : {cfg_.state_dir, cfg_.state_dir + "/logs", cfg_.runtime_dir}) {
    fs::create_directories(dir, ec);
    if (ec) throw std::runtime_error("cannot create " + dir + ": " + ec.message());
  }
  chmod(cfg_.runtime_dir.c_str(), 0755);
  for (const auto& root : cfg_.volume_roots) {
    // Volumes hold replicated disks: root-only, like the state dir.
    if (!fs::exists(root, ec) && fs::create_directories(root, ec))
      chmod(root.c_str(), 0700);
    else if (ec)
      log::warning("volume root {}: {}", root, ec.message());
  }
  lock_state_dir();
  store_ = std::make_unique<store::Store>(cfg_.state_dir + "/repvisor.db");
  // Deleted jobs' logs, emptied, become new jobs' logs (sys/file_pool.hpp). As many as a large
  // batch of jobs: more would only leave more empty files about.
  logs_.emplace(cfg_.state_dir + "/logs/.pool", 1024);
  start_log_limiter();
  if (const char* at = getenv("REPVISOR_TEST_CRASH_AT")) crash_at_ = at;

  sys::raise_fd_limit();
  // Orphans of our jobs come back to us, not to PID 1, so we can reap them ourselves.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
    throw std::runtime_error(std::string("PR_SET_CHILD_SUBREAPER: ") + strerror(errno));

  if (cfg_.cgroup_root == "none") {
    log::warning(
        "cgroup_root = \"none\": jobs run in their own session only; a process that leaves the "
        "session escapes supervision");
  } else {
    std::string why;
    cgroups_ = sys::CgroupTree::open(cfg_.cgroup_root, cfg_.state_dir, &why);
    if (cgroups_) {
      log::info("job cgroups under {}", cgroups_->root());
    } else {
      if (cfg_.cgroup_root != "auto") throw std::runtime_error("cgroup_root: " + why);
      log::warning(
          "no writable cgroup v2 ({}): falling back to a session per job with the daemon as child "
          "subreaper; a process that leaves the session escapes supervision",
          why);
    }
  }

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
  open_notify_socket();
  recover();
  track_logs();
}

namespace {
// Whether `pid` is a live repvisord (the holder of a lock we cannot get).
bool is_live_repvisord(pid_t pid) {
  if (pid <= 0 || kill(pid, 0) < 0) return false;
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  return name == "repvisord";
}

void on_alarm(int) {}
}  // namespace

void Supervisor::lock_state_dir() {
  const std::string path = cfg_.state_dir + "/lock";
  lock_fd_.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock_fd_) throw std::runtime_error("cannot open " + path + ": " + strerror(errno));
  if (flock(lock_fd_.get(), LOCK_EX | LOCK_NB) < 0) {
    char buf[32] = {};
    ssize_t n = pread(lock_fd_.get(), buf, sizeof buf - 1, 0);
    const pid_t holder = n > 0 ? static_cast<pid_t>(strtol(buf, nullptr, 10)) : 0;
    if (is_live_repvisord(holder))
      throw std::runtime_error("another repvisord (pid " + std::to_string(holder) + ") is using the state directory " +
                               cfg_.state_dir);
    // The daemon that held it is gone; a job it was starting (between clone and exec) still has
    // the lock for a moment. Wait for it, a bounded time.
    log::notice("state directory lock still held after repvisord {} ended: waiting for it", holder);
    struct sigaction sa {
    }, old{};
    sa.sa_handler = on_alarm;  // no SA_RESTART: the alarm interrupts flock()
    sigaction(SIGALRM, &sa, &old);
    alarm(10);
    const int r = flock(lock_fd_.get(), LOCK_EX);
    const int saved = errno;
    alarm(0);
    sigaction(SIGALRM, &old, nullptr);
    if (r < 0)
      throw std::runtime_error("the state directory " + cfg_.state_dir + " stayed locked (" + strerror(saved) +
                               "); is another repvisord using it?");
  }
  const std::string pid = std::to_string(getpid());
  if (ftruncate(lock_fd_.get(), 0) == 0 && pwrite(lock_fd_.get(), pid.data(), pid.size(), 0) < 0)
    log::warning("cannot write pid to {}: {}", path, strerror(errno));
}

void Supervisor::crash_point(const char* name) {
  // Test-only fault injection: die like a SIGKILLed daemon at a named point.
  if (crash_at_.empty() || crash_at_ != name) return;
  log::warning("REPVISOR_TEST_CRASH_AT={}: killing myself", name);
  raise(SIGKILL);
}

void Supervisor::commit() {
  if (store_) store_->commit();
}

void Supervisor::sync() {
  if (store_) store_->sync();
}

std::vector<store::Event> Supervisor::events(const store::EventFilter& f) { return store_->events(f); }

namespace {
nlohmann::json caller_details(const Caller* c) {
  nlohmann::json d = nlohmann::json::object();
  if (!c) return d;
  d["uid"] = c->uid;
  if (c->pid > 0) d["pid"] = c->pid;
  if (!c->command.empty()) d["command"] = c->command;
  return d;
}

}  // namespace

void Supervisor::audit(const std::string& job_id, const std::string& type, const std::string& message,
                       const Caller* caller) {
  log::notice("{}{}{}", job_id.empty() ? "" : "job " + job_id + ": ", type + ": ", message);
  if (store_) store_->append({now(), job_id, type, message, caller_details(caller)});
}

usec_t Supervisor::now() { return now_realtime(); }

Supervisor::Entry& Supervisor::entry(const core::Job& job) { return *entries_.at(job.id()); }

Supervisor::Entry& Supervisor::add_entry(std::unique_ptr<core::Job> job) {
  auto e = std::make_unique<Entry>();
  e->owner = this;
  e->job = std::move(job);
  if (!host_resources_) host_resources_ = std::make_unique<HostResources>(*this);
  e->resources = std::make_unique<ResourcePipeline>(*e->job, *this, *host_resources_, cfg_);
  const std::string id = e->job->id();
  if (!e->job->spec().name.empty()) names_[e->job->spec().name] = id;
  return *entries_.emplace(id, std::move(e)).first->second;
}

const core::Job& Supervisor::submit(core::JobSpec spec, const Caller& caller) {
  if (shutting_down_) throw ApiError(ErrorKind::ShuttingDown, "the daemon is shutting down");
  if (!spec.name.empty() && names_.count(spec.name))
    throw ApiError(ErrorKind::InvalidArgs, "name: a job named '" + spec.name + "' already exists");
  check_resources_here(spec);
  std::string id;
  do id = new_job_id();
  while (entries_.count(id));

  CallerScope scope(caller_, &caller);
  Entry& e = add_entry(std::make_unique<core::Job>(*this, id, std::move(spec), cfg_.final_kill_timeout));
  e.runtime_dir = false;  // a new id: nothing of it exists yet
  core::Job& job = *e.job;
  store_->save(job);
  store_->append({job.created_usec, id, "submitted",
                  fmt::format("{} submitted by uid {}", job.spec().argv_shown().front(), caller.uid), [&] {
                    auto d = caller_details(&caller);
                    d["spec"] = store::audit_spec_json(job.spec(), cfg_.audit_env_values);
                    return d;
                  }()});
  log::info("job {} submitted by uid {}: {}", id, caller.uid, job.spec().argv_shown().front());
  if (observer_) observer_->job_added(job);
  // Started from run_deferred(), once the submission is on disk: a crash never loses a job
  // that ran, and never runs one that was not recorded.
  queue_.push_back(id);
  return job;
}

core::Job* Supervisor::find_by_id(std::string_view id) {
  auto it = entries_.find(std::string(id));
  return it == entries_.end() ? nullptr : it->second->job.get();
}

core::Job& Supervisor::lookup(std::string_view key) {
  if (key.empty()) throw ApiError(ErrorKind::InvalidArgs, "job: empty job id or name");
  if (auto* j = find_by_id(key)) return *j;
  if (auto it = names_.find(std::string(key)); it != names_.end()) return *entries_.at(it->second)->job;
  if (is_job_id_prefix(key)) {
    auto it = entries_.lower_bound(std::string(key));
    if (it != entries_.end() && it->first.compare(0, key.size(), key) == 0) {
      auto next = std::next(it);
      if (next != entries_.end() && next->first.compare(0, key.size(), key) == 0)
        throw ApiError(ErrorKind::InvalidArgs, "job: id prefix '" + std::string(key) + "' matches more than one job");
      return *it->second->job;
    }
  }
  throw ApiError(ErrorKind::NoSuchJob, "no job with id or name '" + std::string(key) + "'");
}

std::vector<const core::Job*> Supervisor::jobs() const {
  std::vector<const core::Job*> out;
  out.reserve(entries_.size());
  for (const auto& [id, e] : entries_) out.push_back(e->job.get());
  return out;
}

std::string Supervisor::log_path(const core::Job& job) const { return cfg_.state_dir + "/logs/" + job.id() + ".log"; }

core::StopOutcome Supervisor::stop(core::Job& job, const core::StopRequest& req, const Caller* caller) {
  CallerScope scope(caller_, caller);
  if (job.state() == core::JobState::Pending)
    queue_.erase(std::remove(queue_.begin(), queue_.end(), job.id()), queue_.end());
  crash_point("stop-before-signal");
  auto outcome = job.request_stop(req);
  crash_point("stop-after-signal");
  return outcome;
}

void Supervisor::when_finished(const std::string& id, std::function<void(core::Job*)> fn) {
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    fn(nullptr);
    return;
  }
  if (core::is_terminal(it->second->job->state()) &&
      std::find(finished_.begin(), finished_.end(), id) == finished_.end()) {
    fn(it->second->job.get());
    return;
  }
  it->second->waiters.push_back(std::move(fn));
}

void Supervisor::delete_job(core::Job& job, const DeleteOptions& opts, const Caller* caller,
                            std::function<void(std::optional<DeleteResult>, std::optional<ApiError>)> done) {
  const std::string id = job.id();
  CallerScope scope(caller_, caller);
  if (!core::is_terminal(job.state())) {
    if (!opts.force) {
      done(std::nullopt, ApiError(ErrorKind::JobActive, "job " + id + " is " + core::to_string(job.state()) +
                                                            ": stop it first or delete with force"));
      return;
    }
    if (!job.delete_requested) {
      // Recorded before anything happens: a daemon that dies now finishes the delete on restart.
      job.delete_requested = true;
      job.delete_keep_data = opts.keep_data;
      job.delete_uid = opts.uid;
      store_->save(job);
      event(job, "delete-requested",
            fmt::format("forced delete by uid {}{}", opts.uid, opts.keep_data ? ", keeping data" : ""));
    } else if (opts.keep_data && !job.delete_keep_data) {
      // A second delete asks to keep what the first would have discarded: keep wins while the
      // teardown has not reached its discard; past that, the trail says what happens instead.
      if (entry(job).resources->phase() == ResourcePhase::Discard) {
        event(
            job, "delete-requested",
            fmt::format("forced delete by uid {}, keeping data: too late, the volumes are being discarded", opts.uid));
      } else {
        job.delete_keep_data = true;
        store_->save(job);
        event(job, "delete-requested", fmt::format("forced delete by uid {}, keeping data", opts.uid));
      }
    }
    if (!job.stop_requested || job.stop_mode != core::StopMode::Force)
      job.request_stop(core::StopRequest{.force = true, .reason = "deleted", .uid = opts.uid});
  }
  auto caller_copy = caller ? std::optional<Caller>(*caller) : std::nullopt;
  when_finished(id, [this, id, opts, caller_copy, done = std::move(done)](core::Job* j) {
    if (!j) {  // another delete got there first: the job is gone, which is what was asked
      done(DeleteResult{id, now()}, std::nullopt);
      return;
    }
    std::string why;
    if (!finish_delete(*j, opts.keep_data || j->delete_keep_data, opts.uid, caller_copy ? &*caller_copy : nullptr,
                       &why)) {
      done(std::nullopt, ApiError(ErrorKind::CleanupFailed, why));
      return;
    }
    done(DeleteResult{id, now()}, std::nullopt);
  });
}

bool Supervisor::finish_delete(core::Job& job, bool keep_data, uint32_t uid, const Caller* caller, std::string* why) {
  CallerScope scope(caller_, caller);
  crash_point("delete-before-remove");
  // Nothing of a deleted job may be left running or attached; its volumes go unless kept.
  std::string error;
  if (keep_data ? (job.cleanup_state == "failed" || job.cleanup_state == "running")
                : !discard_for_delete(job, &error)) {
    if (error.empty())
      error = fmt::format(
          "job {}: its cleanup {} ({}); a job is deleted only once nothing of it is left (retry with "
          "RetryCleanup)",
          job.id(), job.cleanup_state == "failed" ? "failed" : "is running", job.cleanup_error);
    event(job, "delete-refused", error);
    if (why) *why = error;
    return false;
  }
  // A copy on purpose: remove_entry() below destroys the job, and with it job.id().
  const std::string id = job.id();  // NOLINT(performance-unnecessary-copy-initialization)
  auto details = caller_details(caller);
  details["name"] = job.spec().name;
  details["state"] = core::to_string(job.state());
  details["keep_data"] = keep_data;
  details["by_uid"] = uid;
  store_->append({now(), id, "deleted",
                  fmt::format("job {} ({}) deleted by uid {}{}", id, core::to_string(job.state()), uid,
                              keep_data ? ", data kept" : ""),
                  details});
  log::info("job {} deleted by uid {}{}", id, uid, keep_data ? " (data kept)" : "");
  remove_entry(id, keep_data);
  return true;
}

void Supervisor::forget_unrecorded(const std::string& id) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second->job->state() != core::JobState::Pending) return;
  queue_.erase(std::remove(queue_.begin(), queue_.end(), id), queue_.end());
  store_->discard(id);
  if (!it->second->job->spec().name.empty()) names_.erase(it->second->job->spec().name);
  auto waiters = std::move(it->second->waiters);
  if (it->second->counted_active) --active_;
  sessions_.erase(id);
  entries_.erase(it);
  for (auto& w : waiters) w(nullptr);
  if (observer_) observer_->job_removed(id);
  log::warning("job {}: submission dropped, it could not be recorded", id);
}

void Supervisor::remove_entry(const std::string& id, bool keep_data) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  core::Job& job = *it->second->job;
  log_limiter_->forget(id);  // before its file can become another job's log
  if (!keep_data)
    if (int r = logs_->release(log_path(job)); r < 0)
      log::warning("job {}: cannot remove its log {}: {}", id, log_path(job), strerror(-r));
  remove_runtime_dir(*it->second);
  deadlines_->disarm(id);
  if (!job.spec().name.empty()) names_.erase(job.spec().name);
  store_->remove(id);
  // Waiters of a job deleted under them learn it is gone.
  auto waiters = std::move(it->second->waiters);
  if (it->second->counted_active) --active_;
  sessions_.erase(id);
  entries_.erase(it);
  for (auto& w : waiters) w(nullptr);
  if (observer_) observer_->job_removed(id);
}

// ---- starting ------------------------------------------------------------------------------

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
    e.progress_buf.clear();
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
  return 0;
}

// ---- watching -----------------------------------------------------------------------------

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
      e.awaiting_reap = true;
      uv_poll_start(e.pid_poll.get(), UV_DISCONNECT, [](uv_poll_t* p, int, int) {
        if (auto* en = static_cast<Entry*>(p->data)) en->owner->on_pidfd(*en);
      });
      return;
    }
    if (r < 0) {
      forget_main(*e.job);
      e.pid_poll.reset();
      e.pidfd.reset();
      if (e.job->tree_alive) check_tree(e);
      e.job->on_main_gone();
      return;
    }
  } else if (waitid(P_PIDFD, static_cast<id_t>(e.pidfd.get()), &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0) {
    return;
  }
  core::Job& job = *e.job;
  forget_main(job);
  e.pid_poll.reset();
  e.pidfd.reset();
  // Look at the tree first: if the main process was the last one, nothing needs killing. This
  // also covers a tree that emptied before our cgroup watch was set up.
  if (job.tree_alive) check_tree(e);
  job.on_main_exited(si.si_code, si.si_status);
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

void Supervisor::arm_timer(core::Job& job, usec_t after) { deadlines_->arm(job.id(), after); }

void Supervisor::disarm_timer(core::Job& job) { deadlines_->disarm(job.id()); }

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

void Supervisor::on_progress(Entry& e) {
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(e.progress_fd.get(), buf, sizeof buf);
    if (n <= 0) {
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) e.progress_poll.reset();  // EOF: nbdcopy ended
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    e.progress_buf.append(buf, static_cast<size_t>(n));
    if (e.progress_buf.size() > 4096) e.progress_buf.erase(0, e.progress_buf.size() - 64);
  }
  // Only whole lines; the last one counts.
  size_t end = e.progress_buf.rfind('\n');
  if (end == std::string::npos) return;
  size_t start = e.progress_buf.rfind('\n', end == 0 ? std::string::npos : end - 1);
  start = start == std::string::npos ? 0 : start + 1;
  const std::string line = e.progress_buf.substr(start, end - start);
  e.progress_buf.erase(0, end + 1);
  // "N/D": a chunk started (not written: never a checkpoint).
  uint64_t num = 0, den = 0;
  const char* p = line.data();
  const char* end_p = line.data() + line.size();
  auto r1 = std::from_chars(p, end_p, num);
  if (r1.ec != std::errc() || r1.ptr == end_p || *r1.ptr != '/') return;
  auto r2 = std::from_chars(r1.ptr + 1, end_p, den);
  if (r2.ec != std::errc() || r2.ptr != end_p || den == 0 || num > den) return;
  e.job->set_progress("copying", 100.0 * static_cast<double>(num) / static_cast<double>(den));
}

void Supervisor::changed(core::Job& job, uint32_t what) {
  if (what & core::kChangedState) sync_active(entry(job));
  // Progress and status may change many times a second: they are written with the job's next
  // durable change, or within a second, in one commit for every job that changed (the status
  // text is the job's own word on where it is, and a crash must not lose it for good).
  if (what & ~(core::kChangedProgress | core::kChangedStatus)) {
    store_->save(job);
    unsaved_.erase(job.id());
  } else if (unsaved_.insert(job.id()).second && unsaved_.size() == 1) {
    if (!save_timer_) {
      save_timer_ = make_uv<uv_timer_t>([&](uv_timer_t* t) { return uv_timer_init(loop_, t); }, this);
      uv_unref(reinterpret_cast<uv_handle_t*>(save_timer_.get()));
    }
    uv_timer_start(
        save_timer_.get(),
        [](uv_timer_t* t) {
          auto* self = static_cast<Supervisor*>(t->data);
          for (const auto& id : std::exchange(self->unsaved_, {}))
            if (core::Job* j = self->find_by_id(id)) self->store_->save(*j);
        },
        1000, 0);
  }
  if (observer_) observer_->job_changed(job, what);
}

void Supervisor::finished(core::Job& job) {
  disarm_timer(job);
  // Waiters and queued starts run from run_deferred(), never inside a state transition: a
  // waiter may delete the very job whose transition is still on the stack.
  finished_.push_back(job.id());
}

void Supervisor::event(core::Job& job, std::string_view type, std::string_view message) {
  auto details = caller_details(caller_);
  if (!job.spec().name.empty()) details["name"] = job.spec().name;
  store_->append({now(), job.id(), std::string(type), std::string(message), details});
  if (getenv("JOURNAL_STREAM")) {
    // Under systemd: structured fields, so `journalctl REPVISOR_JOB_ID=...` finds a job's story.
    sd_journal_send("MESSAGE=job %s: %.*s: %.*s", job.id().c_str(), static_cast<int>(type.size()), type.data(),
                    static_cast<int>(message.size()), message.data(), "PRIORITY=6", "REPVISOR_JOB_ID=%s",
                    job.id().c_str(), "REPVISOR_EVENT=%.*s", static_cast<int>(type.size()), type.data(), nullptr);
    return;
  }
  log::info("job {}{}{}: {}: {}", job.id(), job.spec().name.empty() ? "" : " ", job.spec().name, type, message);
}

void Supervisor::sync_active(Entry& e) {
  // Counted as states change, not by walking every job per loop iteration (which, at 1,000
  // jobs, was the daemon's top user-space cost while stopping them all).
  const bool active = core::is_active(e.job->state());
  if (active == e.counted_active) return;
  e.counted_active = active;
  if (active)
    ++active_;
  else
    --active_;
}

void Supervisor::update_active() {
  if (active_ == reported_active_) return;
  reported_active_ = active_;
  if (observer_) observer_->jobs_active_changed();
}

bool Supervisor::run_deferred() {
  bool did = false;
  if (!ending_.empty()) {
    end_cgroups();
    did = true;
  }
  while (!finished_.empty()) {
    did = true;
    std::string id = finished_.front();
    finished_.pop_front();
    update_active();
    auto it = entries_.find(id);
    if (it != entries_.end()) {
      auto waiters = std::move(it->second->waiters);
      for (auto& w : waiters) w(find_by_id(id));
    }
  }
  if (!queue_.empty() && active_ < cfg_.max_concurrent_jobs && !shutting_down_) {
    start_queued();
    did = true;
  }
  update_active();
  if (shutting_down_ && shutdown_done_ && active_ == 0 && finished_.empty()) {
    bool all_done = std::all_of(entries_.begin(), entries_.end(), [](const auto& kv) {
      return !core::is_active(kv.second->job->state()) && kv.second->job->cleanup_state != "running";
    });
    if (all_done) {
      shutdown_timer_.reset();
      auto done = std::move(shutdown_done_);
      shutdown_done_ = nullptr;
      done();
    }
  }
  return did;
}

void Supervisor::reconfigure(const config::Config& cfg) {
  const bool limit_changed = cfg.max_concurrent_jobs != cfg_.max_concurrent_jobs;
  cfg_ = cfg;
  log_limiter_->reconfigure(cfg_.logs);
  if (limit_changed && observer_) observer_->limits_changed();
  // Queued jobs that now have a slot start from run_deferred(), after this is recorded.
}

// ---- shutdown -----------------------------------------------------------------------------

void Supervisor::shutdown(std::function<void()> done) {
  if (shutting_down_) return;
  shutting_down_ = true;
  shutdown_done_ = std::move(done);
  log::notice("shutting down: stopping {} active job(s)", active_);
  for (auto& [id, e] : entries_) {
    core::Job& job = *e->job;
    // Queued jobs stay queued: they start when the daemon is back.
    if (core::is_terminal(job.state()) || job.state() == core::JobState::Pending) continue;
    core::StopRequest req{.reason = "daemon_shutdown", .uid = core::kDaemonUid};
    req.timeout = std::min(job.spec().stop_timeout, cfg_.shutdown_timeout);
    stop(job, req);
  }
  queue_.clear();
  shutdown_timer_ = make_uv<uv_timer_t>([&](uv_timer_t* t) { return uv_timer_init(loop_, t); }, this);
  uv_timer_start(
      shutdown_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Supervisor*>(t->data);
        log::warning("shutdown timeout expired: killing what is left");
        for (auto& [id, e] : self->entries_)
          if (core::is_active(e->job->state()))
            self->stop(*e->job, core::StopRequest{.force = true, .reason = "daemon_shutdown", .uid = core::kDaemonUid});
      },
      usec_to_ms_ceil(cfg_.shutdown_timeout), 0);
}

}  // namespace repvisor
