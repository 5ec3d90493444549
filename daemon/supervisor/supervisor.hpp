// The supervisor: owns every job, runs the state machines against real processes and cgroups,
// and offers the operations the API exposes. It knows nothing of D-Bus; the bus layer watches it
// through SupervisorObserver.
#pragma once
#include <uv.h>

#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include "config/config.hpp"
#include "core/errors.hpp"
#include "core/job.hpp"
#include "store/store.hpp"
#include "supervisor/deadlines.hpp"
#include "supervisor/state_dirs.hpp"
#include "sys/cgroup.hpp"
#include "sys/file_pool.hpp"
#include "sys/remover.hpp"
#include "sys/spawner.hpp"
#include "sys/volume.hpp"
#include "util/fd.hpp"
#include "util/uv.hpp"

namespace repvisor {

class HostResources;
class LogLimiter;
struct LogCutReport;
struct LogRead;
struct LogReadRequest;

class SupervisorObserver {
 public:
  virtual ~SupervisorObserver() = default;
  virtual void job_added(const core::Job& job) = 0;
  virtual void job_changed(const core::Job& job, uint32_t what) = 0;
  virtual void job_removed(const std::string& id) = 0;
  virtual void jobs_active_changed() = 0;
  virtual void limits_changed() = 0;
};

// Who asked, for the audit trail. uid from the kernel; pid and command where the transport
// tells them.
struct Caller {
  uint32_t uid = 0;
  pid_t pid = 0;
  std::string command;
};

struct DeleteOptions {
  bool force = false;
  bool keep_data = false;
  uint32_t uid = 0;
};

struct DeleteResult {
  std::string id;
  usec_t deleted_usec = 0;
};

class Supervisor final : public core::JobDriver {
 public:
  Supervisor(uv_loop_t* loop, config::Config cfg);
  ~Supervisor() override;

  // Locks the state dir, opens the store, creates directories and the cgroup subtree, becomes
  // child subreaper, and recovers the jobs the store says were not finished. Throws on failure.
  void init();
  void set_observer(SupervisorObserver* o) { observer_ = o; }

  const core::Job& submit(core::JobSpec spec, const Caller& caller);
  // By full id, unique id prefix (4+ hex chars) or name. Throws NoSuchJob / InvalidArgs.
  core::Job& lookup(std::string_view key);
  core::Job* find_by_id(std::string_view id);
  std::vector<const core::Job*> jobs() const;
  core::StopOutcome stop(core::Job& job, const core::StopRequest& req, const Caller* caller = nullptr);
  // Runs `fn` once the job is terminal (at once if it is); fn gets nullptr if the job was deleted.
  void when_finished(const std::string& id, std::function<void(core::Job*)> fn);
  // Deletes a job; active jobs need `force`. `done` gets the result or an ApiError.
  void delete_job(core::Job& job, const DeleteOptions& opts, const Caller* caller,
                  std::function<void(std::optional<DeleteResult>, std::optional<ApiError>)> done);
  std::string log_path(const core::Job& job) const;
  // Part of a job's log, by the positions of the bytes it wrote (supervisor/log_reader.cpp).
  // Throws std::system_error when the log cannot be read.
  LogRead read_log(const core::Job& job, const LogReadRequest& req) const;
  // Tears down what is left of a finished job's resources again; `done` gets whether it worked.
  // Throws JobActive for a job that has not finished.
  void retry_cleanup(core::Job& job, const Caller* caller, std::function<void(bool ok)> done);
  // Runs a stopped or failed job again on its kept resources. Throws NotResumable, JobActive.
  void resume(core::Job& job, const Caller* caller);
  // The checks of a submitted spec that need this host's configuration (volume roots).
  void check_resources_here(const core::JobSpec& spec) const;

  // Stops every job (graceful, force after shutdown_timeout) and calls done when all are terminal.
  void shutdown(std::function<void()> done);
  bool shutting_down() const { return shutting_down_; }

  unsigned jobs_active() const { return active_; }
  size_t job_count() const { return entries_.size(); }
  // Applies what can change while running (limits and timeouts for new stops); a higher job limit
  // starts queued jobs at once.
  void reconfigure(const config::Config& cfg);
  const config::Config& config() const { return cfg_; }
  bool using_cgroups() const { return cgroups_.has_value(); }

  // Called by the loop glue once per iteration, before it blocks: runs deferred work (finished
  // jobs, queued starts). Returns true when it did something.
  bool run_deferred();
  // The cleanup's first part (orphans reaped, cgroup removed) for the jobs whose processes ended
  // in this loop iteration. Run before each commit too: a job's exit and its cgroup's removal,
  // often its whole end, then share one commit instead of two.
  void end_cgroups();

  // Drops a submission whose record could not be written (it never started).
  void forget_unrecorded(const std::string& id);

  // The audit trail.
  std::vector<store::Event> events(const store::EventFilter& f);
  // Writes what this iteration changed; throws store::StoreError (the changes stay queued).
  bool store_dirty() const { return store_ && store_->dirty(); }
  void commit();
  // What was committed becomes durable (see Store::sync); nothing is told to anyone before.
  void sync();
  bool store_unsynced() const { return store_ && store_->unsynced(); }
  // Records an event that belongs to no job state change (e.g. a denied request).
  void audit(const std::string& job_id, const std::string& type, const std::string& message, const Caller* caller);

  // core::JobDriver
  int spawn(core::Job& job) override;
  int signal_main(core::Job& job, int sig) override;
  int signal_tree(core::Job& job, int sig) override;
  int kill_tree(core::Job& job) override;
  void arm_timer(core::Job& job, usec_t after) override;
  void disarm_timer(core::Job& job) override;
  std::vector<pid_t> tree_pids(core::Job& job) override;
  void begin_cleanup(core::Job& job) override;
  void begin_setup(core::Job& job) override;
  void abort_setup(core::Job& job) override;
  void changed(core::Job& job, uint32_t what) override;
  void finished(core::Job& job) override;
  void event(core::Job& job, std::string_view type, std::string_view message) override;
  usec_t now() override;

 private:
  struct Entry;
  // A job's spawn made ready, and handed to the spawner, before its start() asks for it.
  struct PreparedSpawn {
    sys::SpawnRequest req;
    sys::SpawnTask task;                 // submitted unless `error`
    int error = 0;                       // preparing it failed (-errno): nothing was submitted
    Fd out, progress_write, cgroup_dir;  // the child's copies are made at the clone
    std::string cgroup;
  };
  int prepare_spawn(core::Job& job, PreparedSpawn& p);  // 0 or -errno, undone on failure
  void spawn_ahead();
  Entry& entry(const core::Job& job);
  void on_pidfd(Entry& e);
  void on_reap_overdue(Entry& e);  // an adopted main process ended, and nobody reaped it
  void main_gone(Entry& e);        // the main process ended, its status unknown
  void on_cgroup_event(Entry& e);
  void watch_cgroup(Entry& e);  // its cgroup.events, through inotify
  void check_tree(Entry& e);
  static void block_sigchld();  // in the calling thread, which must be the only one
  void watch_sigchld();
  void on_sigchld();
  void reap_orphans();
  // A child we no longer wait for (a server that survived SIGKILL): reaped whenever it ends, so
  // that it never stays a zombie (the orphan reaper does not see the spawner thread's children).
  void reap_when_gone(Fd pidfd);
  std::string runtime_dir_of(const std::string& id) const { return dirs_.job_runtime_dir(id); }
  int make_runtime_dir(Entry& e);  // 0 or -errno
  void remove_runtime_dir(Entry& e);
  // The notify socket every job is given (notify_socket.cpp), and the one of its own that a job
  // started by an older daemon still sends to.
  std::string notify_socket_path() const;
  void open_notify_socket();  // throws
  void drain_notify();        // what was sent so far counts, before a main process is reaped
  std::string job_notify_path(const std::string& id) const;
  int open_job_notify_socket(Entry& e);
  void close_job_notify_socket(Entry& e);
  void track_main(core::Job& job);  // its main PID, for the senders of notify messages
  void forget_main(const core::Job& job);
  Entry* notify_sender(pid_t pid);  // the job a process belongs to, or none
  // Datagrams on `fd`: the shared socket (own == nullptr) or a job's own.
  void on_notify(int fd, Entry* own);
  // Rejected notify messages are logged a few per window, so a flood cannot fill the log.
  struct RejectLog {
    usec_t window_start = 0;
    unsigned in_window = 0, suppressed = 0;
  };
  void reject_notify(RejectLog& rl, const std::string& who, const std::string& why);
  // Waits for the orphans of these job cgroups that are between leaving the cgroup and becoming
  // zombies; one read of our children list for all of them.
  void reap_exiting_orphans(const std::vector<std::string>& cgroups);
  void hand_over_cgroup(const std::string& id);  // to the remover (begin_cleanup)
  void start_queued();
  void remove_entry(const std::string& id, bool keep_data);
  bool finish_delete(core::Job& job, bool keep_data, uint32_t uid, const Caller* caller, std::string* why = nullptr);
  void update_active();  // tells the observer when the count changed
  void sync_active(Entry& e);
  void recover();
  void recover_job(Entry& e);
  void clean_strays();
  void watch_stray(const std::string& name);
  void crash_point(const char* name);
  Entry& add_entry(std::unique_ptr<core::Job> job);
  std::string cgroup_name(const core::Job& job) const { return "job-" + job.id(); }

  // Resources (resources.cpp). Each job's setup and teardown is its ResourcePipeline
  // (supervisor/resource_pipeline.hpp), acting on the host through host_resources_.
  friend class HostResources;
  sys::VolumePolicy volume_policy() const;
  void add_resource_env(Entry& e, std::map<std::string, std::string>& env, std::vector<std::string>& argv);
  // `earlier_error`: a failure of the teardown's first part (the job's cgroup), reported with it.
  void start_resource_cleanup(Entry& e, bool for_job, const std::string& earlier_error = "");
  bool discard_for_delete(core::Job& job, std::string* why);
  void adopt_resources(Entry& e);
  // nbdcopy --progress=FD
  void on_progress(Entry& e);
  // The bound on the jobs' logs (logs.cpp, supervisor/log_limiter.hpp).
  void start_log_limiter();
  void track_logs();  // every recovered job's log, once recovery is done
  void track_log(const core::Job& job, bool running);
  void log_ended(const core::Job& job);
  void on_log_cuts(const std::vector<LogCutReport>& reports);

  uv_loop_t* loop_;
  config::Config cfg_;
  std::optional<sys::CgroupTree> cgroups_;
  StateDirs dirs_{cfg_};  // after cfg_: it reads it
  std::unique_ptr<store::Store> store_;
  std::optional<sys::FilePool> logs_;  // the jobs' log files, made and removed through it
  const Caller* caller_ = nullptr;     // while an API call is being handled
  std::string crash_at_;               // test-only fault injection (REPVISOR_TEST_CRASH_AT)
  SupervisorObserver* observer_ = nullptr;
  std::unique_ptr<HostResources> host_resources_;                // the jobs' pipelines act through it
  std::map<std::string, std::unique_ptr<Entry>> entries_;        // ordered by id: prefix lookups
  std::unordered_map<std::string, std::string> names_;           // name -> id
  std::deque<std::string> queue_;                                // pending job ids, FIFO
  std::map<std::string, std::unique_ptr<PreparedSpawn>> ahead_;  // start_queued()'s spawns under way
  std::deque<std::string> finished_;                             // terminal, waiters not yet run
  std::vector<std::string> ending_;                              // processes gone, cgroup not yet removed
  // Jobs whose processes are followed without a cgroup (as session members): the only ones a
  // SIGCHLD can tell anything about. Kept apart so that a SIGCHLD costs nothing per job.
  std::set<std::string> sessions_;
  unsigned active_ = 0;           // jobs in an active state, kept by sync_active()
  unsigned reported_active_ = 0;  // what the observer was last told
  bool shutting_down_ = false;
  std::function<void()> shutdown_done_;
  struct StrayWatch {
    Supervisor* owner;
    std::string name;
    UvPtr<uv_fs_event_t> watch;
  };
  std::list<std::unique_ptr<StrayWatch>> strays_;  // killed cgroups nobody owns, until empty
  struct Lingering {
    Supervisor* owner;
    Fd pidfd;
    UvPtr<uv_poll_t> poll;
  };
  std::list<std::unique_ptr<Lingering>> lingering_;  // see reap_when_gone()
  Fd sigchld_fd_;  // signalfd: SIGCHLD stays blocked in every thread (see the constructor)
  UvPtr<uv_poll_t> sigchld_;
  Fd notify_fd_;  // the jobs' notify socket
  UvPtr<uv_poll_t> notify_poll_;
  std::unordered_map<pid_t, std::string> mains_;  // main PID -> job id, while the process is unreaped
  RejectLog unknown_rejects_;                     // messages from processes of no job
  UvPtr<uv_timer_t> shutdown_timer_;
  // Jobs whose status text or progress changed since they were last saved, and the timer that
  // saves them (see changed()).
  std::set<std::string> unsaved_;
  UvPtr<uv_timer_t> save_timer_;
  std::unique_ptr<Deadlines> deadlines_;     // the jobs' stop timeouts, by job id
  std::unique_ptr<sys::Spawner> spawner_;    // every process we start is its thread's child
  std::unique_ptr<sys::Remover> remover_;    // ended jobs' cgroups
  std::unique_ptr<LogLimiter> log_limiter_;  // last: its thread stops first
};

}  // namespace repvisor
