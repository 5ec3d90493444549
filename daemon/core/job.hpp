// The job state machine. It owns every transition and does no I/O: it asks a JobDriver to act
// (spawn, signal, arm a timer, clean up) and is told of what happened through its on_*() events.
// Shape borrowed from systemd's service.c: each enter_<state>() acts, then arms its timer, then
// sets the state; the outcome (exit status, stop request) is kept apart from the state.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/job_spec.hpp"
#include "util/time.hpp"

namespace repvisor::core {

enum class JobState { Pending, Starting, Running, Stopping, Cleaning, Completed, Failed, Cancelled };

enum class SubState {
  Queued,        // pending: waiting for a free slot
  Setup,         // starting: the job's resources (NBD servers, volumes) are being set up
  Running,       // running
  StopSigterm,   // stopping: stop signal sent, waiting up to the stop timeout
  StopSigkill,   // stopping: SIGKILL sent to the whole tree, waiting for it to go
  FinalSigkill,  // stopping: the main process exited on its own, its leftovers are being killed
  Unkillable,    // stopping: SIGKILL did not end every process within final_kill_timeout
  Cleanup,       // cleaning: processes gone, teardown running
  Dead,          // terminal
};

enum class StopMode { None, Graceful, Force };

// Why the job ended, kept apart from its state as systemd's service result is: the first reason
// it had to end wins and is never overwritten (until a resume starts a new run). None while the
// job runs and nothing went wrong yet.
enum class JobResult {
  None,
  Success,        // exited 0 (or said EXIT_STATUS=0 when its status could not be read)
  ExitCode,       // exited non-zero
  Signal,         // killed by a signal that no stop sent
  StartFailed,    // its command could not be started
  Resources,      // a resource could not be set up, or failed while the job ran
  Cancelled,      // stopped on request
  DaemonRestart,  // its processes were gone when the daemon came back
  Unknown,        // its main process ended, and nothing can tell how
};

const char* to_string(JobState s);
const char* to_string(SubState s);
const char* to_string(StopMode m);
const char* to_string(JobResult r);
bool job_result_from_string(std::string_view s, JobResult* out);
bool job_state_from_string(std::string_view s, JobState* out);
bool sub_state_from_string(std::string_view s, SubState* out);
bool is_terminal(JobState s);
// Processes or teardown of this job may still exist.
bool is_active(JobState s);

// Bits naming what changed, so the bus layer emits PropertiesChanged for just those.
enum Changed : uint32_t {
  kChangedState = 1u << 0,  // State, SubState
  kChangedPid = 1u << 1,
  kChangedStop = 1u << 2,         // StopRequestedUSec, StopDeadlineUSec, StopMode, CancelReason/Notes, RequestedByUID
  kChangedExit = 1u << 3,         // ExitCode, ExitSignal
  kChangedTimes = 1u << 4,        // StartedUSec, FinishedUSec, CancelledUSec
  kChangedStatus = 1u << 5,       // StatusText
  kChangedProgress = 1u << 6,     // Phase, Progress, BytesDone, BytesTotal
  kChangedCheckpoint = 1u << 7,   // Checkpoint: durable at once
  kChangedResources = 1u << 8,    // Resources, ResourceEndpoints, CleanupState, CleanupError
  kChangedRuns = 1u << 9,         // Runs (a resume)
  kChangedLog = 1u << 10,         // LogBytesCut, LogKeep, LogLimit
  kChangedResult = 1u << 11,      // Result
  kChangedLogWritten = 1u << 12,  // LogBytesWritten: the log grew (reported at most every 100 ms)
};

// The uid of a stop the daemon makes itself (shutdown, recovery): systemd's UID_INVALID.
inline constexpr uint32_t kDaemonUid = UINT32_MAX;

struct StopRequest {
  bool force = false;
  usec_t timeout = USEC_INFINITY;  // USEC_INFINITY: the job's own stop_timeout
  std::string reason = "user_request";
  std::string notes;
  uint32_t uid = 0;           // kDaemonUid: the daemon's own decision
  usec_t requested_usec = 0;  // when it was asked (0: now); the stop timeout counts from it
};

// "uid 1000", or "repvisord" for the daemon's own stops.
std::string requester(uint32_t uid);

struct StopOutcome {
  bool already = false;  // nothing changed: the job was already finished or already stopping so
};

class Job;

// What the state machine asks of the world. Every call returns at once; results come back as
// Job::on_*() events. Return values are 0 or a negative errno.
class JobDriver {
 public:
  virtual ~JobDriver() = default;
  // Sets up the job's resources; completion is reported by Job::on_setup_done(), possibly before
  // begin_setup() returns.
  virtual void begin_setup(Job& job) = 0;
  // A stop during setup: whatever is in flight is abandoned (cleanup tears down what was made).
  virtual void abort_setup(Job& job) = 0;
  virtual int spawn(Job& job) = 0;  // on success the job's main_pid is set and it is alive
  virtual int signal_main(Job& job, int sig) = 0;
  virtual int signal_tree(Job& job, int sig) = 0;  // every process of the job
  virtual int kill_tree(Job& job) = 0;             // SIGKILL to the whole tree at once
  virtual void arm_timer(Job& job, usec_t after) = 0;
  virtual void disarm_timer(Job& job) = 0;
  virtual std::vector<pid_t> tree_pids(Job& job) = 0;
  // Teardown once no process is left; completion is reported by Job::on_cleanup_done(),
  // possibly before begin_cleanup() returns.
  virtual void begin_cleanup(Job& job) = 0;
  virtual void changed(Job& job, uint32_t what) = 0;
  virtual void finished(Job& job) = 0;  // reached a terminal state
  virtual void event(Job& job, std::string_view type, std::string_view message) = 0;
  virtual usec_t now() = 0;
};

class Job {
 public:
  Job(JobDriver& driver, std::string id, JobSpec spec, usec_t final_kill_timeout);

  // Events.
  void start();
  StopOutcome request_stop(const StopRequest& req);
  void on_main_exited(int code, int status);  // waitid() si_code, si_status
  // The main process is gone and the kernel cannot tell its exit status (it was not our child:
  // the job was taken over after a daemon restart, on a kernel without PIDFD_INFO_EXIT). What
  // the job said with EXIT_STATUS= then decides; without it the status stays unknown.
  void on_main_gone();
  void on_tree_empty();
  void on_timer();
  void on_cleanup_done(bool ok, const std::string& error);
  void on_setup_done(bool ok, const std::string& error);
  // Something the job depends on (its NBD server) failed while it ran: the job is stopped
  // gracefully and ends failed with this reason.
  void on_resource_failed(const std::string& reason);
  // Recovery, resume: back to pending for another run of the same job (same id, same
  // resources); the per-run record is cleared, the checkpoint kept. Only from a terminal state.
  void reset_for_resume();

  // Recovery only: put a job read from the store back in the state it was recorded in.
  void restore(JobState s, SubState sub) {
    state_ = s;
    sub_state_ = sub;
  }
  // Recovery only: the result recorded with it.
  void restore_result(JobResult r) { result_ = r; }
  // Recovery only: a job recorded cleaning runs its teardown again.
  void restart_cleanup() {
    if (state_ == JobState::Cleaning) driver_.begin_cleanup(*this);
  }
  // Recovery only: the job's processes vanished while the daemon was down.
  void finish_interrupted();

  // Progress reported by the job (notify protocol).
  void set_progress(std::string phase, double progress);
  void set_status_text(std::string text);
  void set_reported_exit_status(int status) {
    if (reported_exit_status == status) return;
    reported_exit_status = status;
    driver_.changed(*this, kChangedStatus);  // kept with the next save: a restart must know it
  }
  void set_bytes(std::optional<uint64_t> done, std::optional<uint64_t> total);
  void set_checkpoint(std::string checkpoint);
  // EXTEND_TIMEOUT_USEC during a graceful stop: the SIGKILL deadline moves to now + usec, never
  // past stop start + stop timeout + max_extension. Ignored in any other state.
  void extend_stop_timeout(usec_t usec, usec_t max_extension);

  const std::string& id() const { return id_; }
  const JobSpec& spec() const { return spec_; }
  JobState state() const { return state_; }
  SubState sub_state() const { return sub_state_; }
  JobResult result() const { return result_; }

  // Recorded facts, read by the bus layer.
  pid_t main_pid = 0;
  bool main_alive = false;
  bool tree_alive = false;
  usec_t created_usec = 0, started_usec = 0, stop_requested_usec = 0, finished_usec = 0, cancelled_usec = 0;
  StopMode stop_mode = StopMode::None;
  std::string cancel_reason, cancel_notes;
  uint32_t requested_by_uid = 0;
  bool stop_requested = false;
  int exit_code = -1;   // -1: did not exit normally (yet)
  int exit_signal = 0;  // signal that ended the main process, 0 if none
  int start_error = 0;  // errno of a failed start
  bool exit_unknown = false;
  std::optional<int> reported_exit_status;                  // EXIT_STATUS= from the job, for this run
  uint64_t main_start_time = 0;                             // /proc/PID/stat starttime: tells a recycled PID apart
  bool delete_requested = false, delete_keep_data = false;  // a forced delete in flight
  uint32_t delete_uid = 0;
  std::string status_text, phase;
  double progress = -1;
  uint64_t bytes_done = 0, bytes_total = 0;
  std::string checkpoint;
  usec_t stop_deadline_usec = 0;  // when the stop signal phase ends (realtime), 0 when not in it
  std::vector<pid_t> stuck_pids;
  usec_t stop_timeout_used = 0;
  std::string fail_reason;          // sticky: why the job failed other than by its exit status
  std::vector<Resource> resources;  // one per spec().resources, same order
  std::string cleanup_state;        // "", "running", "done", "failed"
  std::string cleanup_error;
  uint32_t runs = 1;  // 1 + the number of resumes
  // Its log's bound (supervisor/log_limiter.hpp): bytes cut from it, what was kept ("head",
  // "tail", "both"; "" while nothing was cut) and the size it was cut to.
  uint64_t log_bytes_cut = 0;
  std::string log_keep;
  uint64_t log_limit = 0;
  // The bytes the job has written to its log in all, cut ones too, as the log thread last saw
  // them (not stored: the thread's first look after a start or a restart reports it).
  uint64_t log_written = 0;

 private:
  void enter_setup();
  void launch();
  void enter_running();
  void enter_stop_sigterm(usec_t timeout);
  void enter_stop_sigkill(SubState sub);
  void enter_unkillable();
  void enter_cleaning();
  void enter_dead();
  void set_state(JobState s, SubState sub);
  // The first reason to end wins: a later one (the exit status of a process a stop killed, say)
  // never replaces it. Success only fills a result still empty.
  void set_result(JobResult r);
  void maybe_done();
  void after_main_exit();

  JobDriver& driver_;
  std::string id_;
  JobSpec spec_;
  usec_t final_kill_timeout_;
  JobState state_ = JobState::Pending;
  SubState sub_state_ = SubState::Queued;
  JobResult result_ = JobResult::None;
};

}  // namespace repvisor::core
