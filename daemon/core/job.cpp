#include "core/job.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include <utility>

#include "util/string_table.hpp"
#include "util/text.hpp"

namespace repvisor::core {

namespace {
constexpr StringTable<JobState, 8> kStates({"pending", "starting", "running", "stopping", "cleaning", "completed",
                                            "failed", "cancelled"});
constexpr StringTable<SubState, 9> kSubStates({"queued", "setup", "running", "stop-sigterm", "stop-sigkill",
                                               "final-sigkill", "unkillable", "cleanup", "dead"});
constexpr StringTable<StopMode, 3> kStopModes({"", "graceful", "force"});
constexpr StringTable<JobResult, 9> kResults({"", "success", "exit-code", "signal", "start-failed", "resources",
                                              "cancelled", "daemon-restart", "unknown"});
constexpr StringTable<KillMode, 2> kKillModes({"mixed", "control-group"});
constexpr StringTable<ProgressSource, 2> kProgressSources({"notify", "nbdcopy"});

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : std::to_string(sig);
}
}  // namespace

const char* to_string(JobState s) { return kStates.name(s); }
const char* to_string(SubState s) { return kSubStates.name(s); }
const char* to_string(StopMode m) { return kStopModes.name(m); }
const char* to_string(JobResult r) { return kResults.name(r); }
bool job_result_from_string(std::string_view s, JobResult* out) { return kResults.value(s, out); }
const char* to_string(KillMode m) { return kKillModes.name(m); }
const char* to_string(ProgressSource p) { return kProgressSources.name(p); }
bool progress_source_from_string(std::string_view s, ProgressSource* out) { return kProgressSources.value(s, out); }
bool kill_mode_from_string(std::string_view s, KillMode* out) { return kKillModes.value(s, out); }
bool job_state_from_string(std::string_view s, JobState* out) { return kStates.value(s, out); }
bool sub_state_from_string(std::string_view s, SubState* out) { return kSubStates.value(s, out); }

bool is_terminal(JobState s) { return s == JobState::Completed || s == JobState::Failed || s == JobState::Cancelled; }
bool is_active(JobState s) {
  return s == JobState::Starting || s == JobState::Running || s == JobState::Stopping || s == JobState::Cleaning;
}

Job::Job(JobDriver& driver, std::string id, JobSpec spec, usec_t final_kill_timeout)
    : driver_(driver), id_(std::move(id)), spec_(std::move(spec)), final_kill_timeout_(final_kill_timeout) {
  created_usec = driver_.now();
  resources.resize(spec_.resources.size());
}

void Job::set_state(JobState s, SubState sub) {
  if (s == state_ && sub == sub_state_) return;
  state_ = s;
  sub_state_ = sub;
  driver_.changed(*this, kChangedState);
}

void Job::set_result(JobResult r) {
  if (r == result_ || r == JobResult::None) return;
  if (result_ != JobResult::None && (result_ != JobResult::Success || r == JobResult::Success)) return;
  result_ = r;
  driver_.changed(*this, kChangedResult);
}

void Job::start() {
  if (state_ != JobState::Pending) return;
  if (!spec_.resources.empty()) {
    enter_setup();
    return;
  }
  launch();
}

void Job::enter_setup() {
  // The state is set before acting: setup may complete synchronously.
  set_state(JobState::Starting, SubState::Setup);
  driver_.begin_setup(*this);
}

void Job::on_setup_done(bool ok, const std::string& error) {
  if (state_ != JobState::Starting) return;
  if (!ok) {
    fail_reason = status_text = "setting up resources failed: " + error;
    set_result(JobResult::Resources);
    driver_.changed(*this, kChangedStatus);
    driver_.event(*this, "start-failed", status_text);
    enter_cleaning();
    return;
  }
  launch();
}

void Job::launch() {
  int r = driver_.spawn(*this);
  if (r < 0) {
    start_error = -r;
    fail_reason = status_text =
        fmt::format("could not start {}: {}", spec_.argv.empty() ? "" : spec_.argv[0], strerror(-r));
    set_result(JobResult::StartFailed);
    driver_.changed(*this, kChangedStatus);
    driver_.event(*this, "start-failed", status_text);
    enter_cleaning();
    return;
  }
  enter_running();
}

void Job::enter_running() {
  started_usec = driver_.now();
  main_alive = tree_alive = true;
  driver_.changed(*this, kChangedPid | kChangedTimes);
  driver_.event(*this, "started", fmt::format("main process {}", main_pid));
  set_state(JobState::Running, SubState::Running);
}

// A deadline never wraps: a timeout near USEC_INFINITY would otherwise mean an immediate SIGKILL.
static usec_t saturating_add(usec_t a, usec_t b) {
  return a >= USEC_INFINITY - 1 || b >= USEC_INFINITY - 1 - a ? USEC_INFINITY - 1 : a + b;
}

std::string requester(uint32_t uid) { return uid == kDaemonUid ? "repvisord" : fmt::format("uid {}", uid); }

StopOutcome Job::request_stop(const StopRequest& req) {
  if (is_terminal(state_) || state_ == JobState::Cleaning) return {.already = true};

  const bool escalate = req.force && stop_mode == StopMode::Graceful;
  if (stop_requested && !escalate) return {.already = true};

  if (!stop_requested) {
    stop_requested = true;
    // A stop carried through a restart keeps the time it was asked at.
    stop_requested_usec = req.requested_usec ? req.requested_usec : driver_.now();
    cancel_reason = req.reason;
    cancel_notes = req.notes;
    requested_by_uid = req.uid;
    set_result(JobResult::Cancelled);
  }
  stop_mode = req.force ? StopMode::Force : StopMode::Graceful;
  driver_.changed(*this, kChangedStop);
  driver_.event(*this, "stop-requested",
                fmt::format("{} stop by {}, reason {}{}", to_string(stop_mode), requester(req.uid), req.reason,
                            req.notes.empty() ? "" : ", notes " + quote(req.notes, 500)));

  switch (state_) {
    case JobState::Pending:
      // Never started: nothing to signal or tear down.
      enter_dead();
      break;
    case JobState::Starting:
      // No process yet: abandon the setup and tear down what it made.
      driver_.abort_setup(*this);
      enter_cleaning();
      break;
    case JobState::Running:
      if (req.force)
        enter_stop_sigkill(SubState::StopSigkill);
      else
        enter_stop_sigterm(req.timeout == USEC_INFINITY ? spec_.stop_timeout : req.timeout);
      break;
    case JobState::Stopping:
      // A force stop during a graceful one escalates at once; the leftovers of a main process
      // that exited on its own are already being SIGKILLed.
      if (req.force && sub_state_ == SubState::StopSigterm) enter_stop_sigkill(SubState::StopSigkill);
      break;
    default:
      break;
  }
  return {};
}

void Job::enter_stop_sigterm(usec_t timeout) {
  const int sig = spec_.stop_signal;
  const auto send = [&](int s) {
    return spec_.kill_mode == KillMode::Mixed ? driver_.signal_main(*this, s) : driver_.signal_tree(*this, s);
  };
  int r = send(sig);
  // A stopped process (SIGSTOP, a debugger, ^Z) cannot act on the stop signal until it runs
  // again: without SIGCONT it could only ever run into the SIGKILL. systemd does the same.
  if (sig != SIGCONT && sig != SIGKILL) send(SIGCONT);
  driver_.event(*this, "signal",
                fmt::format("{} sent to {}{}", signal_name(sig),
                            spec_.kill_mode == KillMode::Mixed ? fmt::format("main process {}", main_pid)
                                                               : std::string("every process"),
                            r < 0 ? fmt::format(" (failed: {})", strerror(-r)) : ""));
  stop_timeout_used = timeout;
  stop_deadline_usec = 0;
  if (timeout != USEC_INFINITY) {
    // The timeout counts from the request: a 1 s timeout means SIGKILL 1 s after it was asked,
    // also when the stop was carried through a daemon restart.
    const usec_t now = driver_.now();
    const usec_t since = stop_requested && stop_requested_usec && stop_requested_usec < now ? stop_requested_usec : now;
    stop_deadline_usec = saturating_add(since, timeout);
    driver_.arm_timer(*this, stop_deadline_usec > now ? stop_deadline_usec - now : 1);
  }
  driver_.changed(*this, kChangedStop);
  set_state(JobState::Stopping, SubState::StopSigterm);
}

void Job::enter_stop_sigkill(SubState sub) {
  driver_.disarm_timer(*this);
  if (stop_deadline_usec != 0) driver_.changed(*this, kChangedStop);
  stop_deadline_usec = 0;
  int r = driver_.kill_tree(*this);
  driver_.event(
      *this, "signal",
      fmt::format("SIGKILL sent to the whole process tree{}", r < 0 ? fmt::format(" (failed: {})", strerror(-r)) : ""));
  if (final_kill_timeout_ != USEC_INFINITY) driver_.arm_timer(*this, final_kill_timeout_);
  set_state(JobState::Stopping, sub);
}

void Job::enter_unkillable() {
  stuck_pids = driver_.tree_pids(*this);
  std::string list;
  for (pid_t p : stuck_pids) list += (list.empty() ? "" : " ") + std::to_string(p);
  status_text = "processes did not die after SIGKILL: " + list;
  driver_.changed(*this, kChangedStatus);
  driver_.event(*this, "unkillable", status_text);
  // No timer: the job finishes when the kernel lets the processes go (tree-empty event).
  set_state(JobState::Stopping, SubState::Unkillable);
}

void Job::on_main_exited(int code, int status) {
  if (!main_alive) return;
  main_alive = false;
  if (code == CLD_EXITED) {
    exit_code = status;
    exit_signal = 0;
    set_result(status == 0 ? JobResult::Success : JobResult::ExitCode);
  } else {
    exit_code = -1;
    exit_signal = status;
    set_result(JobResult::Signal);
  }
  driver_.changed(*this, kChangedExit | kChangedPid);  // MainPID reads 0 once it is gone
  driver_.event(*this, "exited",
                code == CLD_EXITED ? fmt::format("main process exited with status {}", status)
                                   : fmt::format("main process killed by {}", signal_name(status)));
  after_main_exit();
}

void Job::on_main_gone() {
  if (!main_alive) return;
  main_alive = false;
  exit_unknown = true;
  exit_code = reported_exit_status.value_or(-1);
  exit_signal = 0;
  set_result(!reported_exit_status ? JobResult::Unknown : exit_code == 0 ? JobResult::Success : JobResult::ExitCode);
  driver_.changed(*this, kChangedExit | kChangedPid);  // MainPID reads 0 once it is gone
  driver_.event(*this, "exited",
                reported_exit_status
                    ? fmt::format("main process gone (not our child after a daemon restart); it reported "
                                  "EXIT_STATUS={}",
                                  *reported_exit_status)
                    : std::string("main process gone, exit status unknown (not our child after a daemon restart)"));
  after_main_exit();
}

void Job::after_main_exit() {
  if (!tree_alive) {
    maybe_done();
    return;
  }
  // Whatever the main process left behind is killed: nothing a job started outlives it.
  switch (sub_state_) {
    case SubState::Running:
      enter_stop_sigkill(SubState::FinalSigkill);
      break;
    case SubState::StopSigterm:
      enter_stop_sigkill(SubState::StopSigkill);
      break;
    default:
      break;  // already SIGKILLed
  }
}

void Job::on_resource_failed(const std::string& reason) {
  if (state_ == JobState::Starting) {
    on_setup_done(false, reason);
    return;
  }
  if (state_ != JobState::Running && state_ != JobState::Stopping) return;
  if (stop_requested || !fail_reason.empty()) return;  // already ending for another reason
  fail_reason = status_text = reason;
  set_result(JobResult::Resources);
  driver_.changed(*this, kChangedStatus);
  driver_.event(*this, "resource-failed", reason);
  if (state_ == JobState::Running) enter_stop_sigterm(spec_.stop_timeout);
}

void Job::reset_for_resume() {
  if (!is_terminal(state_)) return;
  ++runs;
  main_pid = 0;
  main_alive = tree_alive = false;
  started_usec = stop_requested_usec = finished_usec = cancelled_usec = 0;
  stop_mode = StopMode::None;
  cancel_reason.clear();
  cancel_notes.clear();
  requested_by_uid = 0;
  stop_requested = false;
  exit_code = -1;
  exit_signal = 0;
  start_error = 0;
  exit_unknown = false;
  reported_exit_status.reset();
  main_start_time = 0;
  status_text.clear();
  fail_reason.clear();
  progress = -1;
  stuck_pids.clear();
  stop_timeout_used = 0;
  stop_deadline_usec = 0;
  cleanup_state.clear();
  cleanup_error.clear();
  result_ = JobResult::None;
  driver_.changed(*this, kChangedPid | kChangedStop | kChangedExit | kChangedTimes | kChangedStatus | kChangedProgress |
                             kChangedResources | kChangedRuns | kChangedResult);
  set_state(JobState::Pending, SubState::Queued);
}

void Job::finish_interrupted() {
  main_alive = tree_alive = false;
  if (!stop_requested && state_ != JobState::Starting && reported_exit_status) {
    // It said how it ended (EXIT_STATUS=) before the daemon went: the best truth there is.
    exit_unknown = true;
    exit_code = *reported_exit_status;
    exit_signal = 0;
    set_result(exit_code == 0 ? JobResult::Success : JobResult::ExitCode);
    driver_.changed(*this, kChangedExit | kChangedPid);
    driver_.event(*this, "exited",
                  fmt::format("main process gone while the daemon was down; it reported EXIT_STATUS={}", exit_code));
  } else if (!stop_requested) {
    // A job recorded starting was still being set up: its command never ran.
    const bool ran = state_ != JobState::Starting;
    exit_unknown = ran;
    cancel_reason = "interrupted";
    fail_reason = ran ? "interrupted: the job's processes were gone when the daemon restarted; exit status unknown"
                      : "interrupted: the daemon stopped during the job's setup; its command never ran";
    // The status text is the job's own word: kept, and only filled in when the job said nothing.
    if (status_text.empty()) status_text = fail_reason;
    set_result(JobResult::DaemonRestart);
    driver_.changed(*this, kChangedExit | kChangedPid | kChangedStop | kChangedStatus);
  }
  enter_cleaning();
}

void Job::on_tree_empty() {
  if (!tree_alive) return;
  tree_alive = false;
  maybe_done();
}

void Job::maybe_done() {
  if (main_alive || tree_alive) return;
  if (state_ == JobState::Running || state_ == JobState::Stopping) {
    driver_.disarm_timer(*this);
    if (stop_deadline_usec != 0) {  // ended within its stop timeout: no SIGKILL is due
      stop_deadline_usec = 0;
      driver_.changed(*this, kChangedStop);
    }
    enter_cleaning();
  }
}

void Job::on_timer() {
  switch (sub_state_) {
    case SubState::StopSigterm:
      driver_.event(*this, "stop-timeout",
                    fmt::format("stop timeout of {} expired", format_timespan(stop_timeout_used)));
      enter_stop_sigkill(SubState::StopSigkill);
      break;
    case SubState::StopSigkill:
    case SubState::FinalSigkill:
      enter_unkillable();
      break;
    default:
      break;
  }
}

void Job::enter_cleaning() {
  // The state is set before acting: cleanup may complete synchronously.
  set_state(JobState::Cleaning, SubState::Cleanup);
  driver_.begin_cleanup(*this);
}

void Job::on_cleanup_done(bool ok, const std::string& error) {
  if (state_ != JobState::Cleaning) return;
  if (!ok) driver_.event(*this, "cleanup-failed", error);
  enter_dead();
}

void Job::enter_dead() {
  finished_usec = driver_.now();
  if (result_ == JobResult::None)  // a run recorded before results were kept
    set_result(start_error                             ? JobResult::StartFailed
               : exit_unknown && !reported_exit_status ? JobResult::Unknown
               : exit_signal                           ? JobResult::Signal
               : exit_code == 0 && fail_reason.empty() ? JobResult::Success
                                                       : JobResult::ExitCode);
  JobState final_state;
  if (stop_requested) {
    final_state = JobState::Cancelled;
    cancelled_usec = finished_usec;
  } else {
    final_state = result_ == JobResult::Success ? JobState::Completed : JobState::Failed;
  }
  if (final_state == JobState::Failed && fail_reason.empty())
    fail_reason = exit_unknown && reported_exit_status
                      ? fmt::format("exited with status {} (as the job reported it)", *reported_exit_status)
                  : exit_unknown ? std::string("exit status unknown")
                  : exit_signal  ? fmt::format("killed by {}", signal_name(exit_signal))
                                 : fmt::format("exited with status {}", exit_code);
  // The job's own status text stays; the daemon's reason fills it only when the job said nothing.
  if (final_state == JobState::Failed && status_text.empty()) status_text = fail_reason;
  driver_.changed(*this, kChangedTimes | kChangedStatus);
  set_state(final_state, SubState::Dead);
  std::string summary;
  if (final_state == JobState::Cancelled)
    summary = fmt::format("stopped on request ({}, reason {})", to_string(stop_mode), cancel_reason);
  else if (final_state == JobState::Completed)
    summary = "exited with status 0";
  else
    summary = fail_reason;
  driver_.event(*this, to_string(final_state), summary);
  driver_.finished(*this);
}

void Job::set_progress(std::string new_phase, double new_progress) {
  if (new_phase == phase && new_progress == progress) return;
  phase = std::move(new_phase);
  progress = new_progress;
  driver_.changed(*this, kChangedProgress);
}

void Job::set_bytes(std::optional<uint64_t> done, std::optional<uint64_t> total) {
  const uint64_t d = done.value_or(bytes_done), t = total.value_or(bytes_total);
  if (d == bytes_done && t == bytes_total) return;
  bytes_done = d;
  bytes_total = t;
  driver_.changed(*this, kChangedProgress);
}

void Job::set_checkpoint(std::string cp) {
  if (cp == checkpoint) return;
  checkpoint = std::move(cp);
  driver_.changed(*this, kChangedCheckpoint);
}

void Job::extend_stop_timeout(usec_t usec, usec_t max_extension) {
  if (sub_state_ != SubState::StopSigterm || stop_deadline_usec == 0) return;
  const usec_t now = driver_.now();
  const usec_t limit = saturating_add(saturating_add(stop_requested_usec, stop_timeout_used), max_extension);
  usec_t wanted = usec > USEC_INFINITY - now ? USEC_INFINITY : now + usec;
  const bool capped = wanted > limit;
  if (capped) wanted = limit;
  if (wanted <= stop_deadline_usec) {
    if (capped) driver_.event(*this, "extend-refused", "stop timeout extension refused: the maximum is reached");
    return;
  }
  stop_deadline_usec = wanted;
  driver_.changed(*this, kChangedStop);
  driver_.arm_timer(*this, wanted - now);
  driver_.event(*this, "stop-extended",
                fmt::format("stop timeout extended by the job to {} from now{}", format_timespan(wanted - now),
                            capped ? " (capped at the configured maximum)" : ""));
}

void Job::set_status_text(std::string text) {
  if (text == status_text) return;
  status_text = std::move(text);
  driver_.changed(*this, kChangedStatus);
}

}  // namespace repvisor::core
