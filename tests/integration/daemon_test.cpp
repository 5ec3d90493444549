// The daemon with real processes and cgroups, driven over its private socket.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "harness.hpp"
#include "sys/cgroup.hpp"
#include "sys/proc.hpp"

using namespace repvisor::test;
namespace fs = std::filesystem;

namespace {

struct DaemonTest : ::testing::Test {
  Daemon daemon;
  Bus bus{daemon.address()};

  void expect_clean(const std::string& id) {
    EXPECT_FALSE(fs::exists(daemon.cgroup_dir() + "/job-" + id)) << "job cgroup left behind";
    EXPECT_TRUE(zombie_children(daemon.pid).empty()) << "zombie left behind";
  }
};

}  // namespace

TEST_F(DaemonTest, JobRunsToCompletionAndLeavesNothing) {
  auto id = bus.submit_ok({"sh", "-c", "echo out; echo err >&2"}, {{"name", std::string("hello")}});
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "completed");
  EXPECT_EQ(bus.prop_s(id, "SubState"), "dead");
  EXPECT_EQ(bus.prop_i(id, "ExitCode"), 0);
  EXPECT_EQ(bus.prop_s(id, "Name"), "hello");
  EXPECT_GT(bus.prop_t(id, "FinishedUSec"), 0u);
  EXPECT_EQ(bus.prop_t(id, "CancelledUSec"), 0u);
  std::ifstream log(bus.prop_s(id, "LogPath"));
  std::string all((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all, "out\nerr\n");
  expect_clean(id);
}

TEST_F(DaemonTest, FailuresAreRecorded) {
  auto a = bus.submit_ok({"sh", "-c", "exit 3"});
  auto b = bus.submit_ok({"/nonexistent/command"});
  auto c = bus.submit_ok({"sh", "-c", "kill -SEGV $$"});
  bus.wait_terminal(a);
  bus.wait_terminal(b);
  bus.wait_terminal(c);
  EXPECT_EQ(bus.prop_s(a, "State"), "failed");
  EXPECT_EQ(bus.prop_i(a, "ExitCode"), 3);
  EXPECT_EQ(bus.prop_s(b, "State"), "failed");
  EXPECT_NE(bus.prop_s(b, "StatusText").find("No such file"), std::string::npos) << bus.prop_s(b, "StatusText");
  EXPECT_EQ(bus.prop_s(c, "State"), "failed");
  EXPECT_EQ(bus.prop_i(c, "ExitSignal"), SIGSEGV);
  expect_clean(a);
  expect_clean(b);
}

TEST_F(DaemonTest, GracefulStopEscalatesToSigkillAfterTimeout) {
  ReadyFifo ready(daemon.dir);
  auto id = bus.submit_ok(stubborn(ready));
  ready.wait_line();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = bus.stop(id, {{"timeout_usec", uint64_t{300'000}},
                         {"wait", true},
                         {"reason", std::string("maintenance")},
                         {"notes", std::string("window 3")}});
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(r.ok) << r.error_message;
  EXPECT_EQ(std::get<std::string>(r.dict["state"]), "cancelled");
  EXPECT_EQ(std::get<std::string>(r.dict["reason"]), "maintenance");
  EXPECT_EQ(std::get<std::string>(r.dict["notes"]), "window 3");
  EXPECT_FALSE(std::get<bool>(r.dict["already"]));
  EXPECT_GT(std::get<uint64_t>(r.dict["cancelled_usec"]), 0u);
  EXPECT_GE(elapsed, std::chrono::milliseconds(300)) << "SIGKILL came before the stop timeout";
  EXPECT_EQ(bus.prop_i(id, "ExitSignal"), SIGKILL) << "the SIGTERM-ignoring child must be SIGKILLed";
  EXPECT_EQ(bus.prop_s(id, "StopMode"), "graceful");
  EXPECT_EQ(bus.prop_s(id, "CancelReason"), "maintenance");
  EXPECT_EQ(bus.prop_i(id, "RequestedByUID"), 0);
  // The audit trail keeps the request whole: mode, who, reason and notes.
  std::string out;
  ASSERT_EQ(run_command(std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " events " + id, &out),
            0);
  EXPECT_NE(out.find("graceful stop by uid 0, reason maintenance, notes 'window 3'"), std::string::npos) << out;
  expect_clean(id);
}

TEST_F(DaemonTest, GracefulStopOfPoliteJobIsQuick) {
  ReadyFifo ready(daemon.dir);
  auto id = bus.submit_ok(polite(ready));
  ready.wait_line();
  auto r = bus.stop(id, {{"wait", true}});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(std::get<std::string>(r.dict["state"]), "cancelled");
  EXPECT_EQ(bus.prop_i(id, "ExitSignal"), SIGTERM);
  expect_clean(id);
}

// A stopped process cannot act on SIGTERM until it runs again: the stop sends SIGCONT after it,
// or a SIGSTOPped job would always run into the SIGKILL.
TEST_F(DaemonTest, AGracefulStopWakesAStoppedJobToActOnItsStopSignal) {
  ReadyFifo ready(daemon.dir);
  auto id = bus.submit_ok(polite(ready));
  ready.wait_line();
  const pid_t pid = static_cast<pid_t>(bus.prop_i(id, "MainPID"));
  ASSERT_EQ(kill(pid, SIGSTOP), 0);
  // No event tells that a process other than our child has stopped: look at its state.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  auto stopped = [&] {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    const auto close = line.rfind(')');
    return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'T';
  };
  while (!stopped() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_TRUE(stopped());
  auto r = bus.stop(id, {{"wait", true}, {"timeout_usec", uint64_t{30'000'000}}});
  ASSERT_TRUE(r.ok) << r.error_message;
  EXPECT_EQ(std::get<std::string>(r.dict["state"]), "cancelled");
  EXPECT_EQ(bus.prop_i(id, "ExitSignal"), SIGTERM) << "the stopped job was not woken to act on SIGTERM";
  expect_clean(id);
}

TEST_F(DaemonTest, SetsidDoubleForkedGrandchildIsKilled) {
  ReadyFifo ready(daemon.dir);
  // The grandchild leaves the session and the process group, and is orphaned.
  auto id = bus.submit_ok(
      {"sh", "-c", "(setsid sh -c 'echo $$ > " + ready.path() + "; exec sleep 1000' &); exec sleep 1000"});
  const pid_t grandchild = std::stoi(ready.wait_line());
  int fd = pidfd_of(grandchild);
  ASSERT_GE(fd, 0);
  auto r = bus.stop(id, {{"wait", true}});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(std::get<std::string>(r.dict["state"]), "cancelled");
  EXPECT_TRUE(wait_gone(fd)) << "setsid grandchild survived the stop";
  close(fd);
  expect_clean(id);
}

TEST_F(DaemonTest, LeftoversOfAnExitedMainProcessAreKilled) {
  ReadyFifo ready(daemon.dir);
  auto id = bus.submit_ok({"sh", "-c", "sleep 1000 & echo $! > " + ready.path() + "; exit 0"});
  const pid_t child = std::stoi(ready.wait_line());
  int fd = pidfd_of(child);
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "completed");
  if (fd >= 0) {
    EXPECT_TRUE(wait_gone(fd));
  }
  close(fd);
  expect_clean(id);
}

TEST_F(DaemonTest, ForceStopDuringGracefulEscalatesAtOnce) {
  ReadyFifo ready(daemon.dir);
  auto id = bus.submit_ok(stubborn(ready));
  ready.wait_line();
  auto first = bus.stop(id, {{"timeout_usec", uint64_t{600'000'000}}});
  ASSERT_TRUE(first.ok);
  EXPECT_EQ(std::get<std::string>(first.dict["state"]), "stopping");
  EXPECT_EQ(bus.prop_s(id, "SubState"), "stop-sigterm");
  // A second graceful stop changes nothing.
  auto again = bus.stop(id, {{"reason", std::string("other")}});
  ASSERT_TRUE(again.ok);
  EXPECT_TRUE(std::get<bool>(again.dict["already"]));
  EXPECT_EQ(bus.prop_s(id, "SubState"), "stop-sigterm");
  auto force = bus.stop(id, {{"force", true}, {"wait", true}});
  ASSERT_TRUE(force.ok);
  EXPECT_EQ(std::get<std::string>(force.dict["state"]), "cancelled");
  EXPECT_EQ(bus.prop_s(id, "StopMode"), "force");
  EXPECT_EQ(bus.prop_s(id, "CancelReason"), "user_request");
  expect_clean(id);
}

TEST_F(DaemonTest, ForceStopKillsWholeTree) {
  ReadyFifo ready(daemon.dir);
  auto id =
      bus.submit_ok({"sh", "-c", "trap '' TERM; sleep 1000 & sleep 1000 & echo ready > " + ready.path() + "; wait"});
  ready.wait_line();
  auto r = bus.stop(id, {{"force", true}, {"wait", true}});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(std::get<std::string>(r.dict["state"]), "cancelled");
  EXPECT_EQ(bus.prop_i(id, "ExitSignal"), SIGKILL);
  expect_clean(id);
}

TEST_F(DaemonTest, ControlGroupKillModeSignalsEveryProcess) {
  ReadyFifo ready(daemon.dir);
  // The main shell ignores SIGTERM; only its child reacting to SIGTERM ends the job in time.
  // The child says it is ready only once its own trap is reset.
  auto id = bus.submit_ok(
      {"sh", "-c", "trap '' TERM; (trap - TERM; echo ready > " + ready.path() + "; exec sleep 1000) & wait; exit 7"},
      {{"kill_mode", std::string("control-group")}});
  ready.wait_line();
  auto r = bus.stop(id, {{"wait", true}, {"timeout_usec", uint64_t{600'000'000}}});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(bus.prop_i(id, "ExitCode"), 7) << "the main process should have exited on its own, not been SIGKILLed";
  expect_clean(id);
}

TEST_F(DaemonTest, StopIsIdempotentAndErrorsChangeNothing) {
  auto id = bus.submit_ok({"true"});
  bus.wait_terminal(id);
  const auto finished = bus.prop_t(id, "FinishedUSec");
  auto r = bus.stop(id, {{"force", true}, {"reason", std::string("late")}});
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(std::get<bool>(r.dict["already"]));
  EXPECT_EQ(std::get<std::string>(r.dict["state"]), "completed");
  EXPECT_EQ(bus.prop_s(id, "CancelReason"), "");
  EXPECT_EQ(bus.prop_t(id, "FinishedUSec"), finished);

  auto missing = bus.stop("00000000000000000000000000000000", {});
  EXPECT_EQ(missing.error_name, "org.repvisor1.Error.NoSuchJob");

  ReadyFifo ready(daemon.dir);
  auto live = bus.submit_ok(polite(ready));
  ready.wait_line();
  auto bad = bus.stop(live, {{"forse", true}});
  EXPECT_EQ(bad.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_NE(bad.error_message.find("forse"), std::string::npos);
  auto badtype = bus.stop(live, {{"force", std::string("yes")}});
  EXPECT_EQ(badtype.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_NE(badtype.error_message.find("force"), std::string::npos);
  auto long_notes = bus.stop(live, {{"notes", std::string(501, 'x')}});
  EXPECT_EQ(long_notes.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_NE(long_notes.error_message.find("500"), std::string::npos);
  EXPECT_EQ(bus.prop_s(live, "State"), "running") << "a refused stop must change nothing";
  EXPECT_EQ(bus.prop_t(live, "StopRequestedUSec"), 0u);
  bus.stop(live, {{"wait", true}});
}

TEST_F(DaemonTest, DeleteOfActiveJobIsRefusedThenForced) {
  ReadyFifo ready(daemon.dir);
  auto id = bus.submit_ok(stubborn(ready));
  ready.wait_line();
  const pid_t main_pid = static_cast<pid_t>(bus.prop_i(id, "MainPID"));
  const std::string log = bus.prop_s(id, "LogPath");
  int fd = pidfd_of(main_pid);

  auto refused = bus.remove(id, {});
  EXPECT_EQ(refused.error_name, "org.repvisor1.Error.JobActive");
  EXPECT_EQ(bus.prop_s(id, "State"), "running");
  EXPECT_TRUE(pid_alive(main_pid));

  auto forced = bus.remove(id, {{"force", true}});
  ASSERT_TRUE(forced.ok) << forced.error_message;
  EXPECT_EQ(std::get<std::string>(forced.dict["status"]), "deleted");
  EXPECT_EQ(std::get<std::string>(forced.dict["id"]), id);
  EXPECT_TRUE(wait_gone(fd));
  close(fd);
  EXPECT_EQ(bus.get_job(id).error_name, "org.repvisor1.Error.NoSuchJob");
  EXPECT_FALSE(fs::exists(log));
  expect_clean(id);

  auto again = bus.remove(id, {});
  EXPECT_EQ(again.error_name, "org.repvisor1.Error.NoSuchJob");
}

TEST_F(DaemonTest, DeleteKeepsDataOnRequest) {
  auto id = bus.submit_ok({"sh", "-c", "echo data"});
  bus.wait_terminal(id);
  const std::string log = bus.prop_s(id, "LogPath");
  auto bad = bus.remove(id, {{"keep-data", true}});
  EXPECT_EQ(bad.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_TRUE(bus.job_exists(id));
  auto r = bus.remove(id, {{"keep_data", true}});
  ASSERT_TRUE(r.ok);
  EXPECT_FALSE(bus.job_exists(id));
  EXPECT_TRUE(fs::exists(log));
}

// A deleted job's log is emptied and becomes a later job's log (sys/file_pool.hpp): the same
// inode, none of the old output, and nothing left under the old name. A daemon restarted on the
// state directory takes over what was kept.
TEST_F(DaemonTest, ADeletedJobsLogIsEmptiedAndReusedForTheNextJob) {
  auto old_id = bus.submit_ok({"sh", "-c", "echo secret output of the old job"});
  bus.wait_terminal(old_id);
  const std::string old_log = bus.prop_s(old_id, "LogPath");
  struct stat st {};
  ASSERT_EQ(stat(old_log.c_str(), &st), 0);
  ASSERT_GT(st.st_size, 0);
  const ino_t ino = st.st_ino;
  ASSERT_TRUE(bus.remove(old_id, {}).ok);
  EXPECT_FALSE(fs::exists(old_log));
  // Kept, emptied, in the pool. (Checked here: this ext4 reuses an inode freed within the same
  // second anyway, so the inode of the next log alone would not tell.)
  const std::string kept = fs::path(old_log).parent_path() / ".pool" / fs::path(old_log).filename();
  ASSERT_EQ(stat(kept.c_str(), &st), 0) << kept;
  EXPECT_EQ(st.st_ino, ino);
  EXPECT_EQ(st.st_size, 0);

  ASSERT_EQ(daemon.terminate(), 0);
  daemon.start();
  Bus again(daemon.address());
  auto id = again.submit_ok({"sh", "-c", "echo new"});
  again.wait_terminal(id);
  const std::string log = again.prop_s(id, "LogPath");
  ASSERT_EQ(stat(log.c_str(), &st), 0);
  EXPECT_EQ(st.st_ino, ino) << "the new log is a new file";
  std::ifstream in(log);
  std::stringstream content;
  content << in.rdbuf();
  EXPECT_EQ(content.str(), "new\n");
  EXPECT_FALSE(fs::exists(kept));
}

TEST_F(DaemonTest, LookupByNameAndPrefix) {
  auto id = bus.submit_ok({"true"}, {{"name", std::string("disk0")}});
  bus.wait_terminal(id);
  EXPECT_EQ(bus.get_job("disk0").s1, "/org/repvisor1/job/" + id);
  EXPECT_EQ(bus.get_job(id.substr(0, 8)).s1, "/org/repvisor1/job/" + id);
  EXPECT_EQ(bus.get_job("nosuch").error_name, "org.repvisor1.Error.NoSuchJob");
  auto dup = bus.submit({{"argv", std::vector<std::string>{"true"}}, {"name", std::string("disk0")}});
  EXPECT_EQ(dup.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_NE(dup.error_message.find("disk0"), std::string::npos);
}

TEST_F(DaemonTest, BadSpecsAreRefusedAndCreateNothing) {
  const auto before = bus.list().size();
  struct Case {
    Dict spec;
    std::string must_mention;
  } cases[] = {
      {{}, "argv"},
      {{{"argv", std::vector<std::string>{}}}, "argv"},
      {{{"argv", std::string("true")}}, "argv"},
      {{{"argv", std::vector<std::string>{"true"}}, {"colour", std::string("red")}}, "colour"},
      {{{"argv", std::vector<std::string>{"true"}}, {"kill_mode", std::string("all")}}, "kill_mode"},
      {{{"argv", std::vector<std::string>{"true"}}, {"working_directory", std::string("tmp")}}, "working_directory"},
      {{{"argv", std::vector<std::string>{"true"}}, {"working_directory", std::string("/nonexistent")}},
       "working_directory"},
      {{{"argv", std::vector<std::string>{"true"}}, {"stop_signal", int32_t{0}}}, "stop_signal"},
      {{{"argv", std::vector<std::string>{"true"}}, {"stop_timeout_usec", uint64_t{0}}}, "stop_timeout_usec"},
      {{{"argv", std::vector<std::string>{"true"}}, {"name", std::string("a/b")}}, "name"},
      {{{"argv", std::vector<std::string>{"bin/tool"}}}, "relative path"},
  };
  for (const auto& c : cases) {
    auto r = bus.submit(c.spec);
    EXPECT_EQ(r.error_name, "org.freedesktop.DBus.Error.InvalidArgs") << c.must_mention;
    EXPECT_NE(r.error_message.find(c.must_mention), std::string::npos) << r.error_message;
  }
  EXPECT_EQ(bus.list().size(), before);
}

TEST(DaemonQueue, PendingJobsWaitForASlotAndCancelWithoutStarting) {
  Daemon daemon("max_concurrent_jobs = 1");
  Bus bus(daemon.address());
  ReadyFifo ready(daemon.dir);
  auto first = bus.submit_ok(polite(ready));
  auto second = bus.submit_ok({"true"});
  auto third = bus.submit_ok({"true"});
  ready.wait_line();
  EXPECT_EQ(bus.prop_s(second, "State"), "pending");
  EXPECT_EQ(bus.prop_s(second, "SubState"), "queued");
  auto r = bus.stop(second, {{"wait", true}});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(std::get<std::string>(r.dict["state"]), "cancelled");
  EXPECT_EQ(bus.prop_t(second, "StartedUSec"), 0u);
  EXPECT_EQ(bus.prop_i(second, "MainPID"), 0);
  EXPECT_EQ(bus.prop_s(third, "State"), "pending");
  bus.stop(first, {{"wait", true}});
  bus.wait_terminal(third);
  EXPECT_EQ(bus.prop_s(third, "State"), "completed");
  EXPECT_EQ(bus.list({"cancelled"}).size(), 2u);
}

// Queued jobs that get their slots together are spawned ahead, several at a time
// (Supervisor::start_queued): each must still get its own process, in its own cgroup, or its
// own error — one found before the clone, one in the child — and a failed one leaves nothing.
TEST(DaemonQueue, JobsStartedTogetherEachGetTheirOwnProcessOrError) {
  Daemon daemon("max_concurrent_jobs = 1");
  Bus bus(daemon.address());
  ReadyFifo ready(daemon.dir);
  auto blocker = bus.submit_ok({"sh", "-c", "echo ready > " + ready.path() + "; exec sleep 1000"});
  ready.wait_line();
  const std::string gone = daemon.dir + "/gone";
  fs::create_directories(gone);
  std::vector<std::string> good;
  for (int i = 0; i < 3; ++i) good.push_back(bus.submit_ok({"sleep", "1000"}));
  auto no_program = bus.submit_ok({"/nonexistent/program"});
  good.push_back(bus.submit_ok({"sleep", "1000"}));
  auto no_dir = bus.submit_ok({"sleep", "1000"}, {{"working_directory", gone}});
  for (int i = 0; i < 4; ++i) good.push_back(bus.submit_ok({"sleep", "1000"}));
  ASSERT_EQ(bus.prop_s(no_dir, "State"), "pending");
  fs::remove(gone);  // after its Submit checked it: the child's chdir fails
  fs::create_directories(daemon.config_path + ".d");
  std::ofstream(daemon.config_path + ".d/50-more.toml") << "[daemon]\nmax_concurrent_jobs = 20\n";
  kill(daemon.pid, SIGHUP);  // every queued job gets a slot in one go

  for (const auto& id : good) {
    bus.wait_state(id, "running");
    const auto pid = static_cast<pid_t>(bus.prop_i(id, "MainPID"));
    std::ifstream in("/proc/" + std::to_string(pid) + "/environ");
    std::string environ((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NE(environ.find(std::string("REPVISOR_JOB_ID=") + id + '\0'), std::string::npos) << id;
    EXPECT_NE(repvisor::sys::process_cgroup(pid).find("/job-" + id), std::string::npos) << id;
  }
  bus.wait_terminal(no_program);
  EXPECT_EQ(bus.prop_s(no_program, "State"), "failed");
  EXPECT_EQ(bus.prop_s(no_program, "StatusText"), "could not start /nonexistent/program: No such file or directory");
  bus.wait_terminal(no_dir);
  EXPECT_EQ(bus.prop_s(no_dir, "State"), "failed");
  EXPECT_EQ(bus.prop_s(no_dir, "StatusText"), "could not start sleep: No such file or directory");
  EXPECT_FALSE(fs::exists(daemon.cgroup_dir() + "/job-" + no_dir)) << "a failed start's cgroup left behind";
  EXPECT_EQ(bus.prop_i(no_dir, "MainPID"), 0);
  good.push_back(blocker);
  for (const auto& id : good) bus.stop(id, {{"force", true}, {"wait", true}});
  EXPECT_TRUE(zombie_children(daemon.pid).empty());
}

// Jobs whose processes end in one loop iteration: their cgroups are handed to the remover's
// thread (sys/remover.hpp; all 12 are, checked with a trace). Each is removed, and each job
// reported ended with its cleanup done. (A report made before the thread's rmdir had finished
// would rarely show here: the rmdir takes ~30 µs. The order is kept by end_cgroups' take().)
TEST_F(DaemonTest, JobsEndingTogetherAreReportedEndedOnlyOnceTheirCgroupsAreGone) {
  constexpr int kJobs = 12;
  std::vector<std::string> ids;
  for (int i = 0; i < kJobs; ++i) ids.push_back(bus.submit_ok({"sleep", "1000"}));
  std::vector<int> pidfds;
  for (const auto& id : ids) {
    bus.wait_state(id, "running");
    pidfds.push_back(pidfd_of(static_cast<pid_t>(bus.prop_i(id, "MainPID"))));
  }
  // Every job ends while the daemon is stopped: it then sees all of them end at once.
  ASSERT_EQ(kill(daemon.pid, SIGSTOP), 0);
  for (int fd : pidfds) {
    ASSERT_EQ(syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0), 0) << strerror(errno);
    EXPECT_TRUE(wait_gone(fd));
    close(fd);
  }
  ASSERT_EQ(kill(daemon.pid, SIGCONT), 0);
  for (const auto& id : ids) {
    bus.wait_terminal(id);
    EXPECT_FALSE(fs::exists(daemon.cgroup_dir() + "/job-" + id)) << "reported ended before its cgroup was removed";
    EXPECT_EQ(bus.prop_s(id, "State"), "failed");
    EXPECT_EQ(bus.prop_s(id, "CleanupState"), "done") << bus.prop_s(id, "CleanupError");
  }
  EXPECT_TRUE(zombie_children(daemon.pid).empty());
}

TEST(DaemonShutdown, SigtermStopsEveryJobAndExitsZero) {
  Daemon daemon;
  Bus bus(daemon.address());
  ReadyFifo r1(daemon.dir), r2(daemon.dir);
  auto a = bus.submit_ok(polite(r1));
  auto b = bus.submit_ok(stubborn(r2), {{"stop_timeout_usec", uint64_t{200'000}}});
  r1.wait_line();
  r2.wait_line();
  int fa = pidfd_of(static_cast<pid_t>(bus.prop_i(a, "MainPID")));
  int fb = pidfd_of(static_cast<pid_t>(bus.prop_i(b, "MainPID")));
  EXPECT_EQ(daemon.terminate(), 0);
  EXPECT_TRUE(wait_gone(fa));
  EXPECT_TRUE(wait_gone(fb));
  close(fa);
  close(fb);
}

TEST_F(DaemonTest, NotifyProtocolReportsProgressAndDropsForeignMessages) {
  ReadyFifo ready(daemon.dir);
  const std::string go = daemon.dir + "/go";
  ASSERT_EQ(mkfifo(go.c_str(), 0600), 0);
  // systemd-notify is an sd_notify client that the job did not write: it must work unchanged.
  auto id = bus.submit_ok({"sh", "-c",
                           "echo $NOTIFY_SOCKET > " + ready.path() + "; read x < " + go +
                               "; systemd-notify PHASE=copy PROGRESS=42.5 'STATUS=copying disk0'; exec sleep 1000"});
  const std::string socket_path = ready.wait_line();
  ASSERT_FALSE(socket_path.empty());

  // A process outside any job writes to the socket first: it must be ignored.
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  strcpy(sa.sun_path, socket_path.c_str());
  const std::string forged = "STATUS=forged\nPROGRESS=99";
  ASSERT_EQ(sendto(s, forged.data(), forged.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa),
            static_cast<ssize_t>(forged.size()));
  close(s);
  { std::ofstream(go) << "go\n"; }
  bus.wait_until(id, [&](Bus& b) { return b.prop_s(id, "Phase") == "copy"; });
  EXPECT_EQ(bus.prop_s(id, "StatusText"), "copying disk0");
  double progress = -1;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  sd_bus_get_property_trivial(bus.get(), "org.repvisor1", ("/org/repvisor1/job/" + id).c_str(), "org.repvisor1.Job",
                              "Progress", &err, 'd', &progress);
  sd_bus_error_free(&err);
  EXPECT_EQ(progress, 42.5);
  bus.stop(id, {{"force", true}, {"wait", true}});
  std::ifstream log(daemon.dir + "/daemon.log");
  std::string all((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(all.find("a process of no job, dropped"), std::string::npos) << all;
}

// Two jobs, each with a process other than its main one that reports (systemd-notify sends with
// its parent's PID: here a nested shell), and its main process: one socket serves both jobs, and
// each message goes to the job of its sender. `extra` selects cgroups or sessions.
void notify_told_apart(const std::string& extra) {
  Daemon daemon(extra);
  Bus bus(daemon.address());
  ReadyFifo ready(daemon.dir);
  std::vector<std::string> ids;
  for (const std::string name : {"a", "b"}) {
    ids.push_back(bus.submit_ok({"sh", "-c",
                                 "sh -c 'systemd-notify STATUS=" + name + "-nested PHASE=" + name +
                                     "'; systemd-notify PROGRESS=" + (name == "a" ? "10" : "20") +
                                     "; echo $NOTIFY_SOCKET > " + ready.path() + "; exec sleep 1000"}));
    EXPECT_EQ(ready.wait_line(), daemon.runtime_dir + "/notify");
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string name = i == 0 ? "a" : "b";
    bus.wait_until(ids[i], [&](Bus& b) { return b.prop_s(ids[i], "Phase") == name; });
    EXPECT_EQ(bus.prop_s(ids[i], "StatusText"), name + "-nested");
    double progress = -1;
    sd_bus_error err = SD_BUS_ERROR_NULL;
    sd_bus_get_property_trivial(bus.get(), "org.repvisor1", ("/org/repvisor1/job/" + ids[i]).c_str(),
                                "org.repvisor1.Job", "Progress", &err, 'd', &progress);
    sd_bus_error_free(&err);
    EXPECT_EQ(progress, i == 0 ? 10 : 20);
    // No socket, and so no directory, of its own: the job has no resources either.
    EXPECT_FALSE(std::filesystem::exists(daemon.runtime_dir + "/jobs/" + ids[i]));
  }
  for (const auto& id : ids) bus.stop(id, {{"force", true}, {"wait", true}});
  std::ifstream log(daemon.dir + "/daemon.log");
  std::string all((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all.find("dropped"), std::string::npos) << all;
}

TEST(DaemonNotify, OneSocketServesEveryJobAndTellsThemApartByCgroup) { notify_told_apart(""); }

TEST(DaemonWithoutCgroups, OneNotifySocketTellsJobsApartBySession) { notify_told_apart("cgroup_root = \"none\""); }

TEST_F(DaemonTest, WhatTheMainProcessSaidJustBeforeItEndedCounts) {
  // Read before its PID is released: the main process (systemd-notify sends with its parent's
  // PID, the main shell's) reports, then ends at once.
  auto id = bus.submit_ok({"sh", "-c", "systemd-notify --no-block STATUS=last-words"});
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "StatusText"), "last-words");
}

TEST(DaemonWithoutCgroups, SessionFallbackStillKillsTheTree) {
  Daemon daemon("cgroup_root = \"none\"");
  Bus bus(daemon.address());
  ReadyFifo ready(daemon.dir);
  auto id = bus.submit_ok({"sh", "-c", "trap '' TERM; sleep 1000 & echo $! > " + ready.path() + "; wait"});
  const pid_t child = std::stoi(ready.wait_line());
  int fd = pidfd_of(child);
  ASSERT_GE(fd, 0);
  auto r = bus.stop(id, {{"timeout_usec", uint64_t{200'000}}, {"wait", true}});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(std::get<std::string>(r.dict["state"]), "cancelled");
  EXPECT_TRUE(wait_gone(fd));
  close(fd);
  EXPECT_TRUE(zombie_children(daemon.pid).empty());
  std::ifstream log(daemon.dir + "/daemon.log");
  std::string all((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(all.find("escapes supervision"), std::string::npos) << "the fallback must say so in the log";
}

TEST(DaemonWithoutCgroups, WhatTheMainProcessLeftIsKilledAndReapedAsItsOrphansEnd) {
  // Without a cgroup, the end of a job's processes is seen only through the SIGCHLDs of its
  // orphans (ours as child subreaper): the job must not end before they are reaped, nor hang.
  Daemon daemon("cgroup_root = \"none\"");
  Bus bus(daemon.address());
  ReadyFifo ready(daemon.dir);
  // The main process ends only once the test holds a pidfd of what it leaves behind: ended
  // at once, the leftover could be killed and reaped before the test could open one.
  const std::string go = daemon.dir + "/go";
  ASSERT_EQ(mkfifo(go.c_str(), 0600), 0);
  auto id = bus.submit_ok({"sh", "-c", "sleep 1000 & echo $! > " + ready.path() + "; read x < " + go});
  const pid_t left = std::stoi(ready.wait_line());
  int fd = pidfd_of(left);
  ASSERT_GE(fd, 0);
  std::ofstream(go) << "go\n";
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "completed");
  EXPECT_TRUE(wait_gone(fd));
  close(fd);
  EXPECT_TRUE(zombie_children(daemon.pid).empty());
  EXPECT_EQ(kill(left, 0), -1) << "reaped, not a zombie of ours";
}

TEST(DaemonAccess, OthersMayReadButNotChangeJobs) {
  Daemon daemon;
  Bus bus(daemon.address());
  auto id = bus.submit_ok({"true"});
  bus.wait_terminal(id);
  // The socket is root-only; open it up to reach the daemon's own check.
  ASSERT_EQ(chmod(daemon.dir.c_str(), 0755), 0);
  ASSERT_EQ(chmod(daemon.runtime_dir.c_str(), 0755), 0);
  ASSERT_EQ(chmod((daemon.runtime_dir + "/private").c_str(), 0666), 0);
  std::string out;
  const std::string as_nobody =
      "setpriv --reuid=65534 --regid=65534 --clear-groups busctl --address=" + daemon.address() +
      " -- call org.repvisor1 /org/repvisor1 org.repvisor1.Manager ";
  EXPECT_EQ(run_command(as_nobody + "List 'a{sv}' 0", &out), 0) << out;
  EXPECT_NE(out.find(id), std::string::npos);
  EXPECT_NE(run_command(as_nobody + "Submit 'a{sv}' 1 argv as 1 true", &out), 0);
  EXPECT_NE(out.find("Access denied"), std::string::npos) << out;
  // busctl prints its own text for a well-known error; gdbus shows the daemon's reason.
  const std::string gdbus_as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups gdbus call --address " +
                                      daemon.address() + " --dest org.repvisor1 --object-path /org/repvisor1 --method ";
  EXPECT_NE(run_command(gdbus_as_nobody + "org.repvisor1.Manager.DeleteJob " + id + " {}", &out), 0);
  EXPECT_NE(out.find("org.freedesktop.DBus.Error.AccessDenied: uid 65534 may not delete jobs"), std::string::npos)
      << out;
  EXPECT_TRUE(bus.job_exists(id));
}

TEST_F(DaemonTest, DaemonRaisesItsFdLimitButJobsGetTheOriginal) {
  std::ifstream limits("/proc/" + std::to_string(daemon.pid) + "/limits");
  std::string line, soft;
  while (std::getline(limits, line))
    if (line.rfind("Max open files", 0) == 0) soft = line.substr(26, 20);
  rlimit ours{};
  getrlimit(RLIMIT_NOFILE, &ours);
  if (ours.rlim_max > 1024) {
    EXPECT_EQ(std::stoull(soft), ours.rlim_max) << "daemon soft limit not raised";
  }
  auto id = bus.submit_ok({"sh", "-c", "ulimit -n"});
  bus.wait_terminal(id);
  std::ifstream log(bus.prop_s(id, "LogPath"));
  std::string all((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all, std::to_string(std::min<rlim_t>(1024, ours.rlim_max)) + "\n");
}

TEST_F(DaemonTest, ClientsConnectingWhileSignalsFlowAreServed) {
  // sd-bus clients fail with EIO if anything but the Hello reply comes first: a busy daemon must
  // not send signals to a connection that has not spoken yet.
  ReadyFifo ready(daemon.dir);
  auto id =
      bus.submit_ok({"sh", "-c",
                     "echo ready > " + ready.path() +
                         "; i=0; while :; do i=$(( (i + 1) % 100 )); systemd-notify --no-block PROGRESS=$i; done"});
  ready.wait_line();
  for (int i = 0; i < 100; ++i) {
    Bus client(daemon.address());
    ASSERT_EQ(client.list().size(), 1u) << "connection " << i;
  }
  bus.stop(id, {{"force", true}, {"wait", true}});
}

TEST(DaemonReload, SighupAppliesTheNewLimitAndRefusesABadFile) {
  Daemon daemon("max_concurrent_jobs = 1");
  Bus bus(daemon.address());
  ReadyFifo ready(daemon.dir);
  auto first = bus.submit_ok({"sh", "-c", "echo ready > " + ready.path() + "; exec sleep 1000"});
  auto second = bus.submit_ok({"sleep", "1000"});
  ready.wait_line();
  ASSERT_EQ(bus.prop_s(second, "State"), "pending");
  fs::create_directories(daemon.config_path + ".d");
  std::ofstream(daemon.config_path + ".d/50-more.toml") << "[daemon]\nmax_concurrent_jobs = 2\n";
  kill(daemon.pid, SIGHUP);
  bus.wait_state(second, "running");  // the raised limit started the queued job
  std::ofstream(daemon.config_path + ".d/60-bad.toml") << "[daemon]\nmax_concurrent_jobs = \"many\"\n";
  kill(daemon.pid, SIGHUP);
  // A reload is answered in order with calls: the next call sees its outcome.
  std::string out;
  ASSERT_EQ(run_command(std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " list", &out), 0);
  uint32_t limit = 0;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  sd_bus_get_property_trivial(bus.get(), "org.repvisor1", "/org/repvisor1", "org.repvisor1.Manager",
                              "MaxConcurrentJobs", &err, 'u', &limit);
  sd_bus_error_free(&err);
  EXPECT_EQ(limit, 2u);
  EXPECT_NE(daemon.log().find("reload refused"), std::string::npos);
  EXPECT_NE(daemon.log().find("60-bad.toml:2:23: daemon.max_concurrent_jobs"), std::string::npos) << daemon.log();
  bus.stop(first, {{"force", true}, {"wait", true}});
  bus.stop(second, {{"force", true}, {"wait", true}});
  std::ofstream(daemon.config_path + ".d/60-bad.toml") << "";
  std::ofstream(daemon.config_path + ".d/70-x.toml") << "[daemon]\nstop_timeout = \"1min\"\n";
  ASSERT_EQ(run_command(std::string(REPVISORD_PATH) + " --check-config --config " + daemon.config_path, &out), 0)
      << out;
  EXPECT_NE(out.find("max_concurrent_jobs = 2"), std::string::npos) << out;
  EXPECT_NE(out.find("stop_timeout = '1min'"), std::string::npos) << out;
  EXPECT_NE(out.find("70-x.toml"), std::string::npos) << out;
}

// A job cgroup that cannot be removed (the job made a child cgroup in it): the job still ends,
// with CleanupState "failed" naming the cgroup, rather than reporting a clean teardown.
TEST_F(DaemonTest, AnUnremovableJobCgroupFailsTheCleanupVisibly) {
  const std::string mount = repvisor::sys::find_cgroup2_mount();
  auto id = bus.submit_ok({"sh", "-c", "mkdir \"" + mount + "$(sed -n 's/^0:://p' /proc/self/cgroup)/pinned\""});
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "completed");
  EXPECT_EQ(bus.prop_s(id, "CleanupState"), "failed");
  EXPECT_NE(bus.prop_s(id, "CleanupError").find("cannot remove cgroup"), std::string::npos)
      << bus.prop_s(id, "CleanupError");
  const std::string cg = daemon.cgroup_dir() + "/job-" + id;
  ASSERT_EQ(rmdir((cg + "/pinned").c_str()), 0);
  ASSERT_EQ(rmdir(cg.c_str()), 0);
}
