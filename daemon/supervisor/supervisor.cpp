// The supervisor as a registry plus operations: the jobs by id and name, the queue, submit,
// stop, delete and their audit, the state machines' driver callbacks, commits and shutdown.
// Starting processes (spawning.cpp), watching and signalling them (processes.cpp), the notify
// socket, recovery, resources and logs each have a file of their own.
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

#include "core/log_index.hpp"
#include "supervisor/entry.hpp"
#include "supervisor/log_limiter.hpp"
#include "sys/proc.hpp"
#include "sys/spawn.hpp"
#include "util/id.hpp"
#include "util/log.hpp"

namespace repvisor {

namespace fs = std::filesystem;

namespace {
uint64_t usec_to_ms_ceil(usec_t usec) { return (usec + USEC_PER_MSEC - 1) / USEC_PER_MSEC; }
}  // namespace

Supervisor::Supervisor(uv_loop_t* loop, config::Config cfg) : loop_(loop), cfg_(std::move(cfg)) {
  // Before the spawner and the store start their threads (processes.cpp says why).
  block_sigchld();
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
  dirs_.create_and_lock();
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

  watch_sigchld();
  open_notify_socket();
  recover();
  track_logs();
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

// Every event of the audit trail is recorded here: in the store, and in the daemon's log (the
// journal, with its fields, under systemd: util/log.hpp), so both tell the same story.
void record(store::Store* store, store::Event ev, log::Level level, std::string_view job_name = "") {
  log::event(level, ev.job_id, job_name, ev.type, ev.message);
  if (store) store->append(std::move(ev));
}

}  // namespace

void Supervisor::audit(const std::string& job_id, const std::string& type, const std::string& message,
                       const Caller* caller) {
  record(store_.get(), {now(), job_id, type, message, caller_details(caller)}, log::Notice);
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
  record(store_.get(),
         {job.created_usec, id, "submitted",
          fmt::format("{} submitted by uid {}", job.spec().argv_shown().front(), caller.uid),
          [&] {
            auto d = caller_details(&caller);
            d["spec"] = store::audit_spec_json(job.spec(), cfg_.audit_env_values);
            return d;
          }()},
         log::Info, job.spec().name);
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
  record(store_.get(),
         {now(), id, "deleted",
          fmt::format("job {} ({}) deleted by uid {}{}", id, core::to_string(job.state()), uid,
                      keep_data ? ", data kept" : ""),
          details},
         log::Info, job.spec().name);
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
  if (!keep_data) {
    if (int r = logs_->release(log_path(job)); r < 0)
      log::warning("job {}: cannot remove its log {}: {}", id, log_path(job), strerror(-r));
    ::unlink(core::log_index_path(log_path(job)).c_str());  // none, for a job that never wrote
  }
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

void Supervisor::arm_timer(core::Job& job, usec_t after) { deadlines_->arm(job.id(), after); }

void Supervisor::disarm_timer(core::Job& job) { deadlines_->disarm(job.id()); }

void Supervisor::on_progress(Entry& e) {
  char buf[512];
  for (;;) {
    const ssize_t n = ::read(e.progress_fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0 || errno != EAGAIN) e.progress_poll.reset();  // EOF: nbdcopy ended
      break;
    }
    if (auto percent = e.progress.feed(std::string_view(buf, static_cast<size_t>(n))))
      e.job->set_progress("copying", *percent);
  }
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
  record(store_.get(), {now(), job.id(), std::string(type), std::string(message), std::move(details)}, log::Info,
         job.spec().name);
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
