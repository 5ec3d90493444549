// The state machine on its own: every transition, driven by a driver that records what the
// machine asked for. (Real processes are the integration tests' business.)
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <random>

#include "core/job.hpp"

using namespace repvisor;
using namespace repvisor::core;

namespace {

class RecordingDriver : public JobDriver {
 public:
  int spawn_result = 0;
  std::vector<std::string> calls;
  usec_t timer = 0;  // 0: disarmed
  int finished_count = 0;
  bool cleanup_sync = true;
  Job* pending_cleanup = nullptr;
  bool setup_sync = true;
  Job* pending_setup = nullptr;
  usec_t clock = 1000;

  int spawn(Job& j) override {
    calls.emplace_back("spawn");
    if (spawn_result == 0) j.main_pid = 4242;
    return spawn_result;
  }
  int signal_main(Job&, int sig) override {
    calls.emplace_back("signal_main " + std::to_string(sig));
    return 0;
  }
  int signal_tree(Job&, int sig) override {
    calls.emplace_back("signal_tree " + std::to_string(sig));
    return 0;
  }
  int kill_tree(Job&) override {
    calls.emplace_back("kill_tree");
    return 0;
  }
  void arm_timer(Job&, usec_t after) override { timer = after; }
  void disarm_timer(Job&) override { timer = 0; }
  std::vector<pid_t> tree_pids(Job&) override { return {4242, 4243}; }
  void begin_cleanup(Job& j) override {
    calls.emplace_back("cleanup");
    if (cleanup_sync)
      j.on_cleanup_done(true, "");
    else
      pending_cleanup = &j;
  }
  void begin_setup(Job& j) override {
    calls.emplace_back("setup");
    if (setup_sync)
      j.on_setup_done(true, "");
    else
      pending_setup = &j;
  }
  void abort_setup(Job&) override {
    calls.emplace_back("abort_setup");
    pending_setup = nullptr;
  }
  void changed(Job&, uint32_t) override {}
  void finished(Job&) override { ++finished_count; }
  void event(Job&, std::string_view, std::string_view) override {}
  usec_t now() override { return clock += 10; }
  // The armed timer expires.
  void fire(Job& j) {
    ASSERT_NE(timer, 0u) << "no timer armed";
    timer = 0;
    j.on_timer();
  }

  bool called(const std::string& c) const { return std::find(calls.begin(), calls.end(), c) != calls.end(); }
};

JobSpec spec(KillMode mode = KillMode::Mixed) {
  JobSpec s;
  s.argv = {"/bin/true"};
  s.stop_timeout = 30 * USEC_PER_SEC;
  s.kill_mode = mode;
  return s;
}

JobSpec spec_with_resource() {
  JobSpec s = spec();
  ResourceSpec r;
  r.kind = ResourceKind::NbdServer;
  r.name = "src";
  r.path = "/var/lib/repvisor/volumes/src.img";
  s.resources.push_back(r);
  return s;
}

constexpr usec_t kFinalKill = 10 * USEC_PER_SEC;

struct Fixture : ::testing::Test {
  RecordingDriver d;
  std::unique_ptr<Job> job = std::make_unique<Job>(d, "0123456789abcdef0123456789abcdef", spec(), kFinalKill);
  void running() {
    job->start();
    ASSERT_EQ(job->state(), JobState::Running);
  }
};

}  // namespace

TEST_F(Fixture, StartsPendingAndRuns) {
  EXPECT_EQ(job->state(), JobState::Pending);
  EXPECT_EQ(job->sub_state(), SubState::Queued);
  running();
  EXPECT_EQ(job->sub_state(), SubState::Running);
  EXPECT_TRUE(job->main_alive);
  EXPECT_TRUE(job->tree_alive);
  EXPECT_GT(job->started_usec, 0u);
}

TEST_F(Fixture, CleanExitCompletes) {
  running();
  job->on_main_exited(CLD_EXITED, 0);
  EXPECT_EQ(job->state(), JobState::Stopping) << "children remain until the tree is empty";
  EXPECT_EQ(job->sub_state(), SubState::FinalSigkill);
  EXPECT_TRUE(d.called("kill_tree"));
  job->on_tree_empty();
  EXPECT_EQ(job->state(), JobState::Completed);
  EXPECT_EQ(job->exit_code, 0);
  EXPECT_EQ(d.finished_count, 1);
  EXPECT_EQ(d.timer, 0u);
}

TEST_F(Fixture, TreeEmptyBeforeMainExitWaitsForBoth) {
  running();
  job->on_tree_empty();
  EXPECT_EQ(job->state(), JobState::Running);
  job->on_main_exited(CLD_EXITED, 0);
  EXPECT_EQ(job->state(), JobState::Completed);
  EXPECT_FALSE(d.called("kill_tree"));
}

TEST_F(Fixture, NonZeroExitFails) {
  running();
  job->on_tree_empty();
  job->on_main_exited(CLD_EXITED, 3);
  EXPECT_EQ(job->state(), JobState::Failed);
  EXPECT_EQ(job->exit_code, 3);
  EXPECT_EQ(job->status_text, "exited with status 3");
}

TEST_F(Fixture, UnrequestedSignalFails) {
  running();
  job->on_tree_empty();
  job->on_main_exited(CLD_KILLED, SIGSEGV);
  EXPECT_EQ(job->state(), JobState::Failed);
  EXPECT_EQ(job->exit_signal, SIGSEGV);
  EXPECT_EQ(job->status_text, "killed by SIGSEGV");
}

TEST_F(Fixture, StartFailureFails) {
  d.spawn_result = -ENOENT;
  job->start();
  EXPECT_EQ(job->state(), JobState::Failed);
  EXPECT_EQ(job->start_error, ENOENT);
  EXPECT_NE(job->status_text.find("could not start"), std::string::npos);
  EXPECT_EQ(d.finished_count, 1);
}

TEST_F(Fixture, GracefulStopSignalsMainThenEscalates) {
  running();
  auto out = job->request_stop({.reason = "maintenance", .notes = "n", .uid = 7});
  EXPECT_FALSE(out.already);
  EXPECT_EQ(job->sub_state(), SubState::StopSigterm);
  EXPECT_TRUE(d.called("signal_main 15"));
  // SIGCONT after the stop signal, so that a stopped process wakes to act on it.
  EXPECT_TRUE(d.called("signal_main 18"));
  EXPECT_FALSE(d.called("signal_tree 18"));
  // The timeout counts from the request (the clock moves 10 µs each time it is read).
  EXPECT_EQ(job->stop_deadline_usec, job->stop_requested_usec + 30 * USEC_PER_SEC);
  EXPECT_EQ(d.timer, job->stop_deadline_usec - d.clock);
  EXPECT_EQ(job->cancel_reason, "maintenance");
  EXPECT_EQ(job->requested_by_uid, 7u);
  EXPECT_EQ(job->stop_mode, StopMode::Graceful);
  d.fire(*job);
  EXPECT_EQ(job->sub_state(), SubState::StopSigkill);
  EXPECT_TRUE(d.called("kill_tree"));
  EXPECT_EQ(d.timer, kFinalKill);
  job->on_main_exited(CLD_KILLED, SIGKILL);
  job->on_tree_empty();
  EXPECT_EQ(job->state(), JobState::Cancelled);
  EXPECT_GT(job->cancelled_usec, 0u);
  EXPECT_EQ(job->cancel_notes, "n");
}

TEST_F(Fixture, GracefulStopHonoursRequestTimeout) {
  running();
  job->request_stop({.timeout = 2 * USEC_PER_SEC});
  EXPECT_EQ(job->stop_deadline_usec, job->stop_requested_usec + 2 * USEC_PER_SEC);
  EXPECT_LE(d.timer, 2 * USEC_PER_SEC);
}

// Carried through a restart: the time it was asked at, and what is left of its timeout.
TEST_F(Fixture, AStopAskedEarlierKeepsItsTimeAndCountsItsTimeoutFromIt) {
  running();
  const usec_t asked = d.clock - 500;
  job->request_stop({.timeout = 2000, .uid = kDaemonUid, .requested_usec = asked});
  EXPECT_EQ(job->stop_requested_usec, asked);
  EXPECT_EQ(job->stop_deadline_usec, asked + 2000);
  EXPECT_EQ(d.timer, asked + 2000 - d.clock);
  EXPECT_EQ(job->requested_by_uid, kDaemonUid);
  EXPECT_EQ(requester(kDaemonUid), "repvisord");
  EXPECT_EQ(requester(1000), "uid 1000");
}

TEST_F(Fixture, MainExitDuringGracefulStopKillsTheRest) {
  running();
  job->request_stop({});
  job->on_main_exited(CLD_KILLED, SIGTERM);
  EXPECT_EQ(job->sub_state(), SubState::StopSigkill);
  EXPECT_TRUE(d.called("kill_tree"));
  job->on_tree_empty();
  EXPECT_EQ(job->state(), JobState::Cancelled);
}

TEST_F(Fixture, ControlGroupModeSignalsEveryProcess) {
  job = std::make_unique<Job>(d, "0123456789abcdef0123456789abcdef", spec(KillMode::ControlGroup), kFinalKill);
  running();
  job->request_stop({});
  EXPECT_TRUE(d.called("signal_tree 15"));
  EXPECT_TRUE(d.called("signal_tree 18"));
  EXPECT_FALSE(d.called("signal_main 15"));
}

TEST_F(Fixture, ForceStopKillsAtOnce) {
  running();
  job->request_stop({.force = true});
  EXPECT_EQ(job->sub_state(), SubState::StopSigkill);
  EXPECT_EQ(job->stop_mode, StopMode::Force);
  EXPECT_FALSE(d.called("signal_main 15"));
  EXPECT_TRUE(d.called("kill_tree"));
}

TEST_F(Fixture, ForceDuringGracefulEscalates) {
  running();
  job->request_stop({});
  auto out = job->request_stop({.force = true});
  EXPECT_FALSE(out.already);
  EXPECT_EQ(job->sub_state(), SubState::StopSigkill);
  EXPECT_EQ(job->stop_mode, StopMode::Force);
}

TEST_F(Fixture, SecondGracefulStopIsANoOp) {
  running();
  job->request_stop({.reason = "first"});
  const usec_t timer = d.timer;
  auto calls = d.calls.size();
  auto out = job->request_stop({.reason = "second"});
  EXPECT_TRUE(out.already);
  EXPECT_EQ(job->cancel_reason, "first");
  EXPECT_EQ(d.calls.size(), calls);
  EXPECT_EQ(d.timer, timer);
}

TEST_F(Fixture, StopOfPendingCancelsWithoutStarting) {
  job->request_stop({});
  EXPECT_EQ(job->state(), JobState::Cancelled);
  EXPECT_FALSE(d.called("spawn"));
  EXPECT_EQ(d.finished_count, 1);
  job->start();  // a late start of a cancelled job does nothing
  EXPECT_FALSE(d.called("spawn"));
}

TEST_F(Fixture, StopOfFinishedChangesNothing) {
  running();
  job->on_tree_empty();
  job->on_main_exited(CLD_EXITED, 0);
  auto out = job->request_stop({.force = true, .reason = "late"});
  EXPECT_TRUE(out.already);
  EXPECT_EQ(job->state(), JobState::Completed);
  EXPECT_EQ(job->cancel_reason, "");
  EXPECT_EQ(d.finished_count, 1);
}

TEST_F(Fixture, UnkillableAfterFinalTimeoutThenFinishesWhenFreed) {
  running();
  job->request_stop({.force = true});
  d.fire(*job);
  EXPECT_EQ(job->sub_state(), SubState::Unkillable);
  EXPECT_EQ(job->stuck_pids, (std::vector<pid_t>{4242, 4243}));
  EXPECT_NE(job->status_text.find("4242 4243"), std::string::npos);
  EXPECT_EQ(d.timer, 0u) << "no polling while unkillable";
  job->on_main_exited(CLD_KILLED, SIGKILL);
  job->on_tree_empty();
  EXPECT_EQ(job->state(), JobState::Cancelled);
}

TEST_F(Fixture, StopDuringCleanupIsAlready) {
  d.cleanup_sync = false;
  running();
  job->on_tree_empty();
  job->on_main_exited(CLD_EXITED, 0);
  EXPECT_EQ(job->state(), JobState::Cleaning);
  EXPECT_TRUE(job->request_stop({}).already);
  d.pending_cleanup->on_cleanup_done(true, "");
  EXPECT_EQ(job->state(), JobState::Completed);
}

struct ResourceFixture : ::testing::Test {
  RecordingDriver d;
  std::unique_ptr<Job> job =
      std::make_unique<Job>(d, "0123456789abcdef0123456789abcdef", spec_with_resource(), kFinalKill);
};

TEST_F(ResourceFixture, SetupComesBeforeSpawn) {
  d.setup_sync = false;
  job->start();
  EXPECT_EQ(job->state(), JobState::Starting);
  EXPECT_EQ(job->sub_state(), SubState::Setup);
  EXPECT_FALSE(d.called("spawn"));
  job->on_setup_done(true, "");
  EXPECT_EQ(job->state(), JobState::Running);
  EXPECT_EQ(d.calls, (std::vector<std::string>{"setup", "spawn"}));
}

TEST_F(ResourceFixture, FailedSetupCleansUpAndFailsWithTheReason) {
  d.setup_sync = false;
  job->start();
  job->on_setup_done(false, "nbd-server 'src' exited with status 1 before serving");
  EXPECT_FALSE(d.called("spawn"));
  EXPECT_TRUE(d.called("cleanup"));
  EXPECT_EQ(job->state(), JobState::Failed);
  EXPECT_NE(job->status_text.find("exited with status 1 before serving"), std::string::npos);
}

TEST_F(ResourceFixture, StopDuringSetupAbortsItAndCleansUp) {
  d.setup_sync = false;
  job->start();
  EXPECT_FALSE(job->request_stop({}).already);
  EXPECT_EQ(d.calls, (std::vector<std::string>{"setup", "abort_setup", "cleanup"}));
  EXPECT_EQ(job->state(), JobState::Cancelled);
  job->on_setup_done(true, "");  // a late completion changes nothing
  EXPECT_EQ(job->state(), JobState::Cancelled);
  EXPECT_FALSE(d.called("spawn"));
}

TEST_F(ResourceFixture, ResourceFailureStopsTheJobGracefullyAndFailsIt) {
  job->start();
  ASSERT_EQ(job->state(), JobState::Running);
  job->on_resource_failed("nbd-server 'src' exited with status 1 while the job ran");
  EXPECT_EQ(job->sub_state(), SubState::StopSigterm);
  EXPECT_TRUE(d.called("signal_main 15"));
  EXPECT_FALSE(job->stop_requested) << "not a user's stop";
  job->on_main_exited(CLD_EXITED, 0);
  job->on_tree_empty();
  EXPECT_EQ(job->state(), JobState::Failed) << "even though the command exited 0";
  EXPECT_NE(job->status_text.find("while the job ran"), std::string::npos);
}

TEST_F(ResourceFixture, ResumeClearsTheRunButKeepsCheckpointAndRuns) {
  job->start();
  job->set_checkpoint("repvisor-copy/1 done=4096 size=8192");
  job->request_stop({.reason = "maintenance", .notes = "n"});
  job->on_main_exited(CLD_KILLED, SIGTERM);
  job->on_tree_empty();
  ASSERT_EQ(job->state(), JobState::Cancelled);
  job->reset_for_resume();
  EXPECT_EQ(job->state(), JobState::Pending);
  EXPECT_EQ(job->runs, 2u);
  EXPECT_EQ(job->checkpoint, "repvisor-copy/1 done=4096 size=8192");
  EXPECT_FALSE(job->stop_requested);
  EXPECT_TRUE(job->cancel_reason.empty());
  EXPECT_EQ(job->exit_signal, 0);
  job->start();
  EXPECT_EQ(job->state(), JobState::Running);
  job->on_main_exited(CLD_EXITED, 0);
  job->on_tree_empty();
  EXPECT_EQ(job->state(), JobState::Completed);
}

TEST_F(ResourceFixture, ResumeOfAnActiveJobDoesNothing) {
  job->start();
  job->reset_for_resume();
  EXPECT_EQ(job->state(), JobState::Running);
  EXPECT_EQ(job->runs, 1u);
}

// Random event sequences: terminal states absorb everything, finished() fires exactly once,
// and the state always agrees with what is alive.
TEST(JobStateMachine, RandomEventSequencesKeepInvariants) {
  std::mt19937 rng(12345);
  for (int run = 0; run < 5000; ++run) {
    RecordingDriver d;
    d.spawn_result = (rng() % 10 == 0) ? -EACCES : 0;
    d.setup_sync = rng() % 2 == 0;
    JobSpec sp = rng() % 2 ? spec_with_resource() : spec();
    sp.kill_mode = rng() % 2 ? KillMode::Mixed : KillMode::ControlGroup;
    Job job(d, "0123456789abcdef0123456789abcdef", sp, kFinalKill);
    JobState terminal_seen = JobState::Pending;
    bool was_terminal = false;
    JobResult failure_seen = JobResult::None;  // the first result other than success
    for (int step = 0; step < 12; ++step) {
      switch (rng() % 8) {
        case 6:
          job.on_setup_done(rng() % 3 != 0, "setup failed");
          break;
        case 7:
          job.on_resource_failed("server died");
          break;
        case 0:
          job.start();
          break;
        case 1:
          job.request_stop({.force = rng() % 2 == 0});
          break;
        case 2:
          if (job.main_alive) job.on_main_exited(CLD_EXITED, static_cast<int>(rng() % 3));
          break;
        case 3:
          if (!job.main_alive) job.on_tree_empty();
          break;
        case 4:
          job.on_timer();
          break;
        case 5:
          job.on_main_exited(CLD_KILLED, SIGKILL);
          break;
      }
      if (was_terminal) {
        ASSERT_EQ(job.state(), terminal_seen) << "terminal state changed, run " << run;
      }
      if (is_terminal(job.state())) {
        was_terminal = true;
        terminal_seen = job.state();
        ASSERT_EQ(job.sub_state(), SubState::Dead);
        ASSERT_FALSE(job.main_alive);
      }
      if (job.state() == JobState::Running) {
        ASSERT_TRUE(job.main_alive);
      }
      if (job.state() == JobState::Cancelled) {
        ASSERT_TRUE(job.stop_requested);
      }
      if (job.state() == JobState::Completed) {
        ASSERT_EQ(job.exit_code, 0);
        ASSERT_TRUE(job.fail_reason.empty());
      }
      if (job.state() == JobState::Starting) {
        ASSERT_FALSE(job.main_alive);
        ASSERT_EQ(job.main_pid, 0);
      }
      ASSERT_LE(d.finished_count, 1);
      ASSERT_EQ(d.finished_count, was_terminal ? 1 : 0);
      // The result is sticky: the first failure is never replaced.
      if (failure_seen != JobResult::None) {
        ASSERT_EQ(job.result(), failure_seen) << "run " << run;
      } else if (job.result() != JobResult::None && job.result() != JobResult::Success) {
        failure_seen = job.result();
      }
      if (is_terminal(job.state())) {
        ASSERT_NE(job.result(), JobResult::None);
        ASSERT_EQ(job.state() == JobState::Completed, job.result() == JobResult::Success && !job.stop_requested);
      }
      if (job.stop_requested) {
        ASSERT_NE(job.result(), JobResult::None);
        ASSERT_NE(job.result(), JobResult::Success);
      }
    }
  }
}

// Taken over after a restart on a kernel that cannot tell the exit status: the job's own
// EXIT_STATUS= decides, and its status text is never replaced.
TEST_F(Fixture, AGoneMainProcessEndsAsItsReportedExitStatusSays) {
  running();
  job->set_status_text("copied 4 GiB");
  job->set_reported_exit_status(0);
  job->on_main_gone();
  job->on_tree_empty();
  EXPECT_EQ(job->state(), JobState::Completed);
  EXPECT_TRUE(job->exit_unknown);
  EXPECT_EQ(job->exit_code, 0);
  EXPECT_EQ(job->status_text, "copied 4 GiB");
}

TEST_F(Fixture, AGoneMainProcessThatSaidNothingFailsKeepingItsStatusText) {
  running();
  job->set_status_text("copying");
  job->on_main_gone();
  job->on_tree_empty();
  EXPECT_EQ(job->state(), JobState::Failed);
  EXPECT_EQ(job->status_text, "copying");
  EXPECT_EQ(job->fail_reason, "exit status unknown");
}

// The daemon died while the job's resources were being set up: the record says so, and does
// not describe a command that never ran as if it had.
TEST_F(ResourceFixture, ARestartDuringSetupIsToldAsACommandThatNeverRan) {
  d.setup_sync = false;
  job->start();
  ASSERT_EQ(job->state(), JobState::Starting);
  job->finish_interrupted();
  EXPECT_EQ(job->state(), JobState::Failed);
  EXPECT_EQ(job->fail_reason, "interrupted: the daemon stopped during the job's setup; its command never ran");
  EXPECT_FALSE(job->exit_unknown);
  EXPECT_EQ(job->started_usec, 0u);
}

// A timeout near USEC_INFINITY must not wrap the deadline into an immediate SIGKILL.
TEST_F(Fixture, AHugeStopTimeoutNeverWrapsIntoAnImmediateKill) {
  running();
  job->request_stop({.timeout = USEC_INFINITY - 5});
  EXPECT_EQ(job->sub_state(), SubState::StopSigterm);
  EXPECT_EQ(job->stop_deadline_usec, USEC_INFINITY - 1);
  EXPECT_GT(d.timer, USEC_INFINITY / 2);
  EXPECT_FALSE(d.called("kill_tree"));
}

TEST_F(Fixture, AReportedNonZeroExitStatusIsTheFailureReason) {
  running();
  job->set_reported_exit_status(3);
  job->on_main_gone();
  job->on_tree_empty();
  EXPECT_EQ(job->state(), JobState::Failed);
  EXPECT_EQ(job->exit_code, 3);
  EXPECT_EQ(job->fail_reason, "exited with status 3 (as the job reported it)");
}

// The result says why the job ended; the first reason wins, whatever happens after it.
TEST_F(Fixture, ResultOfACleanExitIsSuccess) {
  running();
  EXPECT_EQ(job->result(), JobResult::None);
  job->on_main_exited(CLD_EXITED, 0);
  job->on_tree_empty();
  EXPECT_EQ(job->result(), JobResult::Success);
  EXPECT_STREQ(to_string(job->result()), "success");
}

TEST_F(Fixture, ResultOfAFailedExitIsExitCodeOrSignal) {
  running();
  job->on_main_exited(CLD_EXITED, 2);
  job->on_tree_empty();
  EXPECT_EQ(job->result(), JobResult::ExitCode);

  RecordingDriver d2;
  Job killed(d2, "1123456789abcdef0123456789abcdef", spec(), kFinalKill);
  killed.start();
  killed.on_main_exited(CLD_KILLED, SIGSEGV);
  killed.on_tree_empty();
  EXPECT_EQ(killed.state(), JobState::Failed);
  EXPECT_EQ(killed.result(), JobResult::Signal);
}

TEST_F(Fixture, ResultOfAStartFailureIsStartFailed) {
  d.spawn_result = -ENOENT;
  job->start();
  EXPECT_EQ(job->state(), JobState::Failed);
  EXPECT_EQ(job->result(), JobResult::StartFailed);
}

TEST_F(Fixture, AStopIsCancelledAndTheSigtermExitDoesNotReplaceIt) {
  running();
  job->request_stop({});
  EXPECT_EQ(job->result(), JobResult::Cancelled);
  job->on_main_exited(CLD_KILLED, SIGTERM);
  job->on_tree_empty();
  EXPECT_EQ(job->state(), JobState::Cancelled);
  EXPECT_EQ(job->result(), JobResult::Cancelled);
}

TEST_F(ResourceFixture, AResourceFailureStaysTheResultThroughALaterStop) {
  job->start();
  job->on_resource_failed("nbd-server 'src' exited");
  EXPECT_EQ(job->result(), JobResult::Resources);
  job->request_stop({.force = true});
  job->on_main_exited(CLD_KILLED, SIGKILL);
  job->on_tree_empty();
  EXPECT_TRUE(is_terminal(job->state()));
  EXPECT_EQ(job->result(), JobResult::Resources);
}

TEST_F(ResourceFixture, AFailedSetupIsResources) {
  d.setup_sync = false;
  job->start();
  job->on_setup_done(false, "no such volume");
  EXPECT_EQ(job->state(), JobState::Failed);
  EXPECT_EQ(job->result(), JobResult::Resources);
}

// Taken over after a restart, its status unreadable and nothing said: the record says unknown,
// never a made-up failure reason.
TEST_F(Fixture, AGoneMainProcessThatSaidNothingIsUnknown) {
  running();
  job->on_main_gone();
  job->on_tree_empty();
  EXPECT_EQ(job->result(), JobResult::Unknown);
  EXPECT_STREQ(to_string(job->result()), "unknown");
}

TEST_F(Fixture, AGoneMainProcessThatReportedSuccessIsSuccess) {
  running();
  job->set_reported_exit_status(0);
  job->on_main_gone();
  job->on_tree_empty();
  EXPECT_EQ(job->state(), JobState::Completed);
  EXPECT_EQ(job->result(), JobResult::Success);
}

// Its processes were gone when the daemon came back: what it reported before decides; without
// a report the result names the restart.
TEST_F(Fixture, InterruptedJobsEndAsTheyReportedOrAsDaemonRestart) {
  running();
  job->set_reported_exit_status(0);
  job->finish_interrupted();
  EXPECT_EQ(job->state(), JobState::Completed);
  EXPECT_EQ(job->result(), JobResult::Success);

  RecordingDriver d2;
  Job silent(d2, "1123456789abcdef0123456789abcdef", spec(), kFinalKill);
  silent.start();
  silent.set_status_text("copied 3 GiB");
  silent.finish_interrupted();
  EXPECT_EQ(silent.state(), JobState::Failed);
  EXPECT_EQ(silent.result(), JobResult::DaemonRestart);
  EXPECT_EQ(silent.status_text, "copied 3 GiB");
}

TEST_F(ResourceFixture, AResumeStartsANewResult) {
  job->start();
  job->on_main_exited(CLD_EXITED, 1);
  job->on_tree_empty();
  ASSERT_EQ(job->result(), JobResult::ExitCode);
  job->reset_for_resume();
  EXPECT_EQ(job->result(), JobResult::None);
  job->start();
  job->on_main_exited(CLD_EXITED, 0);
  job->on_tree_empty();
  EXPECT_EQ(job->result(), JobResult::Success);
}
