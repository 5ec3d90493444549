// The durable record: jobs and the audit trail survive restarts and crashes of the daemon, and
// a crash at any point of a stop or a forced delete ends in a consistent state.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include "store/store.hpp"
#include "sys/cgroup.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness.hpp"

using namespace repvisor::test;
namespace fs = std::filesystem;

namespace {

// Events recorded for a job, in order: (type, message).
std::vector<std::pair<std::string, std::string>> job_events(Bus& bus, const std::string& id) {
  std::vector<std::pair<std::string, std::string>> types;
  sd_bus_message *m = nullptr, *reply = nullptr;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  sd_bus_message_new_method_call(bus.get(), &m, "org.repvisor1", "/org/repvisor1", "org.repvisor1.Manager",
                                 "ListEvents");
  sd_bus_message_append(m, "a{sv}", 1, "job", "s", id.c_str());
  if (sd_bus_call(bus.get(), m, 0, &err, &reply) < 0) {
    ADD_FAILURE() << "ListEvents: " << (err.message ? err.message : "");
    sd_bus_error_free(&err);
    sd_bus_message_unref(m);
    return types;
  }
  sd_bus_message_unref(m);
  sd_bus_message_enter_container(reply, 'a', "(tsssa{sv})");
  while (sd_bus_message_enter_container(reply, 'r', "tsssa{sv}") > 0) {
    uint64_t ts;
    const char *job, *type, *msg;
    sd_bus_message_read(reply, "tsss", &ts, &job, &type, &msg);
    types.emplace_back(type, msg);
    sd_bus_message_skip(reply, "a{sv}");
    sd_bus_message_exit_container(reply);
  }
  sd_bus_message_unref(reply);
  return types;
}

// Event types recorded for a job, in order.
std::vector<std::string> event_types(Bus& bus, const std::string& id) {
  std::vector<std::string> types;
  for (auto& [type, message] : job_events(bus, id)) types.push_back(type);
  return types;
}

bool has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// Waits until the store holds `value` in the job's `column`: woken by each write to the WAL.
bool wait_saved(const Daemon& d, const std::string& id, const std::string& column, const std::string& value) {
  const std::string db = d.state_dir + "/repvisor.db";
  const int in = inotify_init1(IN_CLOEXEC);
  inotify_add_watch(in, d.state_dir.c_str(), IN_MODIFY);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(kDeadlineUsec);
  bool found = false;
  while (!found && std::chrono::steady_clock::now() < deadline) {
    std::string out;
    run_command("sqlite3 -readonly " + db + " \"SELECT " + column + " FROM jobs WHERE id = '" + id + "'\"", &out);
    found = out == value + "\n";
    pollfd p{in, POLLIN, 0};
    if (!found && poll(&p, 1, 1000) > 0) {
      char buf[4096];
      [[maybe_unused]] ssize_t n = read(in, buf, sizeof buf);
    }
  }
  close(in);
  return found;
}

void crash(Daemon& d) {
  kill(d.pid, SIGKILL);
  EXPECT_EQ(d.wait_exit(), 128 + SIGKILL);
}

}  // namespace

// Every event of the audit trail reaches the daemon's log the same way, from its submission to
// its deletion: as the line "job ID NAME: TYPE: message" here, where stderr is no journal, and
// under journald as an entry with REPVISOR_JOB_ID= and REPVISOR_EVENT= (util/log.cpp; the
// journal's side is tests/system/test_jobs.py's). The submission and the deletion were once
// logged apart, as lines of their own, and reached the journal without the fields.
TEST(Store, EveryAuditEventReachesTheLogAsTheOthersDo) {
  Daemon daemon;
  Bus bus(daemon.address());
  const std::string id = bus.submit_ok({"sleep", "1000"}, {{"name", std::string("logged")}});
  bus.wait_state(id, "running");
  ASSERT_TRUE(bus.stop(id, {{"wait", true}}).ok);
  ASSERT_TRUE(bus.remove(id, {}).ok);
  const auto events = job_events(bus, id);
  std::vector<std::string> types;
  for (const auto& [type, message] : events) types.push_back(type);
  ASSERT_TRUE(has(types, "submitted") && has(types, "deleted")) << ::testing::PrintToString(types);
  const std::string log = daemon.log();
  for (const auto& [type, message] : events)
    EXPECT_NE(log.find("repvisord: job " + id + " logged: " + type + ": " + message + "\n"), std::string::npos)
        << type << ": " << message << "\n"
        << log;
}

TEST(Store, JobsKeepEveryPropertyAcrossARestart) {
  Daemon daemon;
  std::string done, stopped, failed;
  uint64_t created = 0;
  {
    Bus bus(daemon.address());
    done = bus.submit_ok({"sh", "-c", "echo hi"}, {{"name", std::string("done")}});
    failed = bus.submit_ok({"sh", "-c", "exit 4"});
    ReadyFifo ready(daemon.dir);
    stopped = bus.submit_ok(polite(ready), {{"name", std::string("stopped")}});
    ready.wait_line();
    bus.stop(stopped, {{"wait", true}, {"reason", std::string("maintenance")}, {"notes", std::string("n\u00e9e")}});
    bus.wait_terminal(done);
    bus.wait_terminal(failed);
    created = bus.prop_t(stopped, "CreatedUSec");
  }
  ASSERT_EQ(daemon.terminate(), 0);
  daemon.start();
  Bus bus(daemon.address());
  EXPECT_EQ(bus.list().size(), 3u);
  EXPECT_EQ(bus.get_job("stopped").s1, "/org/repvisor1/job/" + stopped);
  EXPECT_EQ(bus.prop_s(stopped, "State"), "cancelled");
  EXPECT_EQ(bus.prop_s(stopped, "CancelReason"), "maintenance");
  EXPECT_EQ(bus.prop_s(stopped, "CancelNotes"), "n\u00e9e");
  EXPECT_EQ(bus.prop_s(stopped, "StopMode"), "graceful");
  EXPECT_EQ(bus.prop_i(stopped, "ExitSignal"), SIGTERM);
  EXPECT_EQ(bus.prop_t(stopped, "CreatedUSec"), created);
  EXPECT_GT(bus.prop_t(stopped, "CancelledUSec"), 0u);
  EXPECT_EQ(bus.prop_s(done, "State"), "completed");
  EXPECT_EQ(bus.prop_s(failed, "State"), "failed");
  EXPECT_EQ(bus.prop_i(failed, "ExitCode"), 4);
  auto types = event_types(bus, stopped);
  for (const char* t : {"submitted", "started", "stop-requested", "signal", "exited", "cancelled"})
    EXPECT_TRUE(has(types, t)) << t;
}

TEST(Store, DeletedJobsLeaveAnAuditEntry) {
  Daemon daemon;
  Bus bus(daemon.address());
  auto id = bus.submit_ok({"true"});
  bus.wait_terminal(id);
  ASSERT_TRUE(bus.remove(id, {{"keep_data", true}}).ok);
  ASSERT_EQ(daemon.terminate(), 0);
  daemon.start();
  Bus again(daemon.address());
  EXPECT_FALSE(again.job_exists(id));
  auto types = event_types(again, id);
  ASSERT_FALSE(types.empty());
  EXPECT_EQ(types.back(), "deleted");
  std::string out;
  ASSERT_EQ(run_command(std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " events " + id, &out),
            0);
  EXPECT_NE(out.find("data kept"), std::string::npos) << out;
}

TEST(Store, SecondDaemonOnTheSameStateDirIsRefused) {
  Daemon daemon;
  std::string out;
  EXPECT_EQ(daemon.start_expecting_failure(&out), 1);
  EXPECT_NE(out.find("another repvisord (pid " + std::to_string(daemon.pid) + ") is using the state directory"),
            std::string::npos)
      << out;
  Bus bus(daemon.address());  // the first one is unharmed
  EXPECT_TRUE(bus.list().empty());
}

TEST(Store, NewerSchemaCorruptAndUnwritableDatabasesAreRefusedClearly) {
  Daemon daemon;
  ASSERT_EQ(daemon.terminate(), 0);
  const std::string db = daemon.state_dir + "/repvisor.db";
  std::string out;
  ASSERT_EQ(run_command("sqlite3 " + db + " 'PRAGMA user_version = 99'", &out), 0) << out;
  EXPECT_EQ(daemon.start_expecting_failure(&out), 1);
  EXPECT_NE(out.find("schema version 99 is newer than this repvisord knows (" +
                     std::to_string(repvisor::store::kSchemaVersion) + ")"),
            std::string::npos)
      << out;

  fs::remove(db + "-wal");
  fs::remove(db + "-shm");
  std::ofstream(db, std::ios::trunc) << std::string(8192, 'x');
  EXPECT_EQ(daemon.start_expecting_failure(&out), 1);
  EXPECT_NE(out.find("repvisor.db"), std::string::npos) << out;
  EXPECT_NE(out.find("not a database"), std::string::npos) << out;

  // Root ignores file modes: a read-only mount is what makes a database unwritable for it.
  fs::remove(db);
  ASSERT_EQ(mount("tmpfs", daemon.state_dir.c_str(), "tmpfs", 0, "size=1m"), 0) << strerror(errno);
  ASSERT_EQ(mount(nullptr, daemon.state_dir.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr), 0) << strerror(errno);
  EXPECT_EQ(daemon.start_expecting_failure(&out), 1);
  EXPECT_NE(out.find(daemon.state_dir), std::string::npos) << out;
  EXPECT_NE(out.find("Read-only file system"), std::string::npos) << out;
  umount(daemon.state_dir.c_str());
  daemon.start();  // and it comes back once the state dir is usable
}

TEST(Store, AFullDiskRefusesNewWorkAndKeepsEarlierState) {
  Daemon daemon("", [](Daemon& d) {
    fs::create_directories(d.state_dir);
    ASSERT_EQ(mount("tmpfs", d.state_dir.c_str(), "tmpfs", 0, "size=2m"), 0) << strerror(errno);
  });
  std::string earlier;
  {
    Bus bus(daemon.address());
    earlier = bus.submit_ok({"sh", "-c", "exit 0"}, {{"name", std::string("earlier")}});
    bus.wait_terminal(earlier);
    // Fill the file system.
    std::string out;
    run_command("dd if=/dev/zero of=" + daemon.state_dir + "/filler bs=4k", &out);
    auto r = bus.submit({{"argv", std::vector<std::string>{"true"}}, {"name", std::string("later")}});
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error_name, "org.freedesktop.DBus.Error.Failed");
    EXPECT_NE(r.error_message.find("nothing was done"), std::string::npos) << r.error_message;
    EXPECT_EQ(bus.get_job("later").error_name, "org.repvisor1.Error.NoSuchJob") << "an unrecorded job must not exist";
    EXPECT_EQ(bus.prop_s(earlier, "State"), "completed");
  }
  fs::remove(daemon.state_dir + "/filler");
  ASSERT_EQ(daemon.terminate(), 0);
  daemon.start();
  Bus bus(daemon.address());
  EXPECT_EQ(bus.prop_s(earlier, "State"), "completed");
  EXPECT_EQ(bus.list().size(), 1u);
  ASSERT_EQ(daemon.terminate(), 0);
  umount(daemon.state_dir.c_str());
}

TEST(Recovery, LiveJobIsStoppedAfterACrashByDefault) {
  Daemon daemon;
  std::string id;
  int fd = -1;
  {
    Bus bus(daemon.address());
    ReadyFifo ready(daemon.dir);
    id = bus.submit_ok(polite(ready));
    ready.wait_line();
    fd = pidfd_of(static_cast<pid_t>(bus.prop_i(id, "MainPID")));
  }
  crash(daemon);
  pollfd p{fd, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0) << "the job died with the daemon";
  daemon.start();
  Bus bus(daemon.address());
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "cancelled");
  EXPECT_EQ(bus.prop_s(id, "CancelReason"), "daemon_restart");
  EXPECT_TRUE(wait_gone(fd));
  close(fd);
  EXPECT_TRUE(has(event_types(bus, id), "recovered"));
  // The daemon's own decision, not a stop by root.
  EXPECT_EQ(bus.prop_i(id, "RequestedByUID"), int64_t{4294967295});
  std::string out;
  ASSERT_EQ(run_command(std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " status " + id, &out),
            0);
  EXPECT_NE(out.find("(graceful by repvisord)"), std::string::npos) << out;
  ASSERT_EQ(run_command(std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " events " + id, &out),
            0);
  EXPECT_NE(out.find("graceful stop by repvisord, reason daemon_restart"), std::string::npos) << out;
}

// A stop in flight when the daemon crashed is carried through as it was asked: its time, who
// asked, and its timeout counted from the request, not from the restart.
TEST(Recovery, AStopInFlightKeepsItsTimeAndRequester) {
  Daemon daemon;
  std::string id;
  uint64_t asked = 0;
  {
    Bus bus(daemon.address());
    ReadyFifo ready(daemon.dir);
    id = bus.submit_ok(stubborn(ready));
    ready.wait_line();
    ASSERT_TRUE(bus.stop(id, {{"timeout_usec", uint64_t{60'000'000}}, {"reason", std::string("window")}}).ok);
    asked = bus.prop_t(id, "StopRequestedUSec");
    ASSERT_GT(asked, 0u);
  }
  crash(daemon);
  daemon.start();
  Bus bus(daemon.address());
  EXPECT_EQ(bus.prop_s(id, "State"), "stopping");
  EXPECT_EQ(bus.prop_t(id, "StopRequestedUSec"), asked);
  EXPECT_EQ(bus.prop_i(id, "RequestedByUID"), 0);
  EXPECT_EQ(bus.prop_s(id, "CancelReason"), "window");
  ASSERT_TRUE(bus.stop(id, {{"force", true}, {"wait", true}}).ok);
  EXPECT_EQ(bus.prop_t(id, "StopRequestedUSec"), asked);
}

TEST(Recovery, AdoptedJobIsSupervisedOnAndStillTalks) {
  Daemon daemon("recovery = \"adopt\"");
  const std::string go = daemon.dir + "/go";
  ASSERT_EQ(mkfifo(go.c_str(), 0600), 0);
  std::string id;
  pid_t main_pid = 0;
  {
    Bus bus(daemon.address());
    ReadyFifo ready(daemon.dir);
    id = bus.submit_ok({"sh", "-c",
                        "echo ready > " + ready.path() + "; read x < " + go +
                            "; systemd-notify PROGRESS=77 PHASE=after-restart; exec sleep 1000"});
    ready.wait_line();
    main_pid = static_cast<pid_t>(bus.prop_i(id, "MainPID"));
  }
  crash(daemon);
  daemon.start();
  Bus bus(daemon.address());
  EXPECT_EQ(bus.prop_s(id, "State"), "running");
  EXPECT_EQ(bus.prop_i(id, "MainPID"), main_pid);
  std::ofstream(go) << "go\n";
  bus.wait_until(id, [&](Bus& b) { return b.prop_s(id, "Phase") == "after-restart"; });
  auto r = bus.stop(id, {{"wait", true}});
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(std::get<std::string>(r.dict["state"]), "cancelled");
  EXPECT_TRUE(has(event_types(bus, id), "adopted"));
}

// The daemon died after it started a job but before it recorded the start: Submit had answered
// (the job recorded pending), so the job is not lost, and its processes are not left to run
// unsupervised: which one is its main process is not known, so even "adopt" stops them.
TEST(Recovery, AJobStartedButNotRecordedIsStoppedAndSaysWhy) {
  Daemon daemon("recovery = \"adopt\"");
  ASSERT_EQ(daemon.terminate(), 0);
  daemon.start("job-spawned");
  std::string id;
  {
    Bus bus(daemon.address());
    id = bus.submit_ok({"sleep", "1000"});
  }
  ASSERT_EQ(daemon.wait_exit(), 128 + SIGKILL);
  daemon.start();
  Bus bus(daemon.address());
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "cancelled");
  EXPECT_EQ(bus.prop_s(id, "CancelReason"), "daemon_restart");
  EXPECT_FALSE(std::filesystem::exists(daemon.cgroup_dir() + "/job-" + id)) << "its processes were left";
  EXPECT_TRUE(has(event_types(bus, id), "recovered"));
  EXPECT_NE(daemon.log().find("job " + id + ": recovered: started just before the daemon stopped"), std::string::npos)
      << daemon.log();
}

// An adopted job is not the new daemon's child, but the kernel tells a pidfd's holder how it
// ended once its parent has reaped it: a job that succeeds after the restart is completed,
// one that fails is failed with its real status, and neither's own status text is replaced.
TEST(Recovery, AnAdoptedJobEndsWithItsRealExitStatus) {
  Daemon daemon("recovery = \"adopt\"");
  const std::string go = daemon.dir + "/go";
  ASSERT_EQ(mkfifo(go.c_str(), 0600), 0);
  std::string ok, bad;
  {
    Bus bus(daemon.address());
    ReadyFifo ready(daemon.dir);
    ok = bus.submit_ok(
        {"sh", "-c",
         "systemd-notify --status='copied 4 GiB'; echo ready > " + ready.path() + "; read x < " + go + "; exit 0"});
    ready.wait_line();
    bad = bus.submit_ok({"sh", "-c", "echo ready > " + ready.path() + "; read x < " + go + "; exit 3"});
    ready.wait_line();
    // Saved within a second, though not at once: a status may change many times a second.
    ASSERT_TRUE(wait_saved(daemon, ok, "status_text", "copied 4 GiB"));
  }
  crash(daemon);
  daemon.start();
  Bus bus(daemon.address());
  EXPECT_EQ(bus.prop_s(ok, "State"), "running");
  {
    std::ofstream release(go);
    release << "go\ngo\n";
  }
  bus.wait_terminal(ok);
  bus.wait_terminal(bad);
  EXPECT_EQ(bus.prop_s(ok, "State"), "completed") << bus.prop_s(ok, "StatusText");
  EXPECT_EQ(bus.prop_i(ok, "ExitCode"), 0);
  EXPECT_EQ(bus.prop_s(ok, "StatusText"), "copied 4 GiB");
  EXPECT_EQ(bus.prop_s(bad, "State"), "failed");
  EXPECT_EQ(bus.prop_i(bad, "ExitCode"), 3);
  std::string out;
  EXPECT_EQ(run_command(std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " wait " + ok, &out),
            0)
      << out;
}

// An adopted main process that ends becomes a zombie of whoever inherited it when the old daemon
// died, never of the new daemon (processes.cpp, on_pidfd, says why), and its status is known only
// once that parent reaps it. Here the test process is that parent (a child subreaper above the
// daemon), and it does not reap: the job must not run for ever. It ends without the status.
TEST(Recovery, AnAdoptedMainProcessThatNobodyReapsEndsTheJobWithoutItsStatus) {
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  struct Restore {
    ~Restore() { prctl(PR_SET_CHILD_SUBREAPER, 0); }
  } restore;
  Daemon daemon("recovery = \"adopt\"");
  const std::string go = daemon.dir + "/go";
  ASSERT_EQ(mkfifo(go.c_str(), 0600), 0);
  std::string id;
  pid_t main_pid = 0;
  {
    Bus bus(daemon.address());
    ReadyFifo ready(daemon.dir);
    id = bus.submit_ok({"sh", "-c", "echo ready > " + ready.path() + "; read x < " + go + "; exit 3"});
    ready.wait_line();
    main_pid = static_cast<pid_t>(bus.prop_i(id, "MainPID"));
  }
  crash(daemon);
  // The job's processes are ours now.
  std::string ppid;
  {
    std::ifstream stat("/proc/" + std::to_string(main_pid) + "/stat");
    std::string field;
    for (int i = 0; i < 4 && stat >> field; ++i) ppid = field;  // "pid (comm) state ppid": no space in "sh"
  }
  ASSERT_EQ(ppid, std::to_string(getpid()));
  daemon.start();
  Bus bus(daemon.address());
  EXPECT_EQ(bus.prop_s(id, "State"), "running");
  std::ofstream(go) << "go\n";
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "failed");
  EXPECT_EQ(bus.prop_s(id, "Result"), "unknown");
  EXPECT_EQ(bus.prop_s(id, "FailReason"), "exit status unknown");
  EXPECT_TRUE(has(event_types(bus, id), "unreaped"));
  // It was a zombie all along, with the status nobody could read.
  siginfo_t si{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(main_pid), &si, WEXITED | WNOHANG), 0);
  EXPECT_EQ(si.si_pid, main_pid);
  EXPECT_EQ(si.si_status, 3);
}

TEST(Recovery, AJobFromADaemonWithPerJobNotifySocketsIsStillHeard) {
  // Daemons before the shared notify socket gave each job a socket of its own, at
  // RUNTIME/jobs/ID/notify, and left it behind when they went down. A job of theirs, adopted,
  // still sends there: the socket is bound again, and removed with the job.
  Daemon daemon("recovery = \"adopt\"");
  const std::string go = daemon.dir + "/go";
  ASSERT_EQ(mkfifo(go.c_str(), 0600), 0);
  std::string id;
  {
    Bus bus(daemon.address());
    ReadyFifo ready(daemon.dir);
    id = bus.submit_ok({"sh", "-c",
                        "echo ready > " + ready.path() + "; read x < " + go + "; NOTIFY_SOCKET=" + daemon.runtime_dir +
                            "/jobs/$REPVISOR_JOB_ID/notify systemd-notify PHASE=own-socket; exec sleep 1000"});
    ready.wait_line();
    ASSERT_EQ(bus.prop_s(id, "State"), "running");  // read after the start, so recorded with it
  }
  crash(daemon);
  // What the older daemon left: the job's directory and its socket's file.
  const std::string job_dir = daemon.runtime_dir + "/jobs/" + id;
  std::filesystem::create_directories(job_dir);
  close(bind_notify_socket(job_dir + "/notify"));
  daemon.start();
  Bus bus(daemon.address());
  EXPECT_EQ(bus.prop_s(id, "State"), "running");
  std::ofstream(go) << "go\n";
  bus.wait_until(id, [&](Bus& b) { return b.prop_s(id, "Phase") == "own-socket"; });
  auto r = bus.stop(id, {{"wait", true}});
  ASSERT_TRUE(r.ok);
  EXPECT_FALSE(std::filesystem::exists(job_dir)) << "the job's own socket and directory are removed with it";
}

TEST(Recovery, JobThatEndedWhileTheDaemonWasDownIsInterrupted) {
  Daemon daemon;
  const std::string go = daemon.dir + "/go";
  ASSERT_EQ(mkfifo(go.c_str(), 0600), 0);
  std::string id;
  int fd = -1;
  {
    Bus bus(daemon.address());
    id = bus.submit_ok({"sh", "-c", "read x < " + go});
    bus.wait_state(id, "running");
    fd = pidfd_of(static_cast<pid_t>(bus.prop_i(id, "MainPID")));
  }
  crash(daemon);
  std::ofstream(go) << "go\n";
  ASSERT_TRUE(wait_gone(fd));
  close(fd);
  daemon.start();
  Bus bus(daemon.address());
  EXPECT_EQ(bus.prop_s(id, "State"), "failed");
  EXPECT_EQ(bus.prop_s(id, "CancelReason"), "interrupted");
  EXPECT_NE(bus.prop_s(id, "StatusText").find("exit status unknown"), std::string::npos);
}

TEST(Recovery, PendingJobsStayQueuedAndStartAfterARestart) {
  Daemon daemon("max_concurrent_jobs = 1");
  std::string first, second;
  {
    Bus bus(daemon.address());
    ReadyFifo ready(daemon.dir);
    first = bus.submit_ok(polite(ready));
    second = bus.submit_ok({"true"});
    ready.wait_line();
    EXPECT_EQ(bus.prop_s(second, "State"), "pending");
  }
  crash(daemon);
  daemon.start();
  Bus bus(daemon.address());
  bus.wait_terminal(first);
  EXPECT_EQ(bus.prop_s(first, "CancelReason"), "daemon_restart");
  bus.wait_terminal(second);
  EXPECT_EQ(bus.prop_s(second, "State"), "completed");
}

// A crash at each point of a stop: the restarted daemon ends the job consistently.
class CrashDuringStop : public ::testing::TestWithParam<const char*> {};

TEST_P(CrashDuringStop, EndsConsistently) {
  const std::string point = GetParam();
  Daemon daemon;
  ASSERT_EQ(daemon.terminate(), 0);
  daemon.start(point);
  std::string id;
  int fd = -1;
  {
    Bus bus(daemon.address());
    ReadyFifo ready(daemon.dir);
    id = bus.submit_ok(point == "stop-escalate" ? stubborn(ready) : polite(ready));
    ready.wait_line();
    fd = pidfd_of(static_cast<pid_t>(bus.prop_i(id, "MainPID")));
    const bool force = point == "cleanup";
    auto r = bus.stop(id, {{"force", force},
                           {"timeout_usec", uint64_t{200'000}},
                           {"reason", std::string("maint")},
                           {"notes", std::string("window")},
                           {"wait", point == "cleanup"}});
    // Answered only when it was recorded and before the crash point, or not at all.
    if (r.ok) {
      EXPECT_EQ(std::get<std::string>(r.dict["reason"]), "maint");
    }
  }
  EXPECT_EQ(daemon.wait_exit(), 128 + SIGKILL) << "the crash point " << point << " was not reached";
  daemon.start();
  Bus bus(daemon.address());
  bus.wait_terminal(id);
  const std::string state = bus.prop_s(id, "State");
  const std::string reason = bus.prop_s(id, "CancelReason");
  if (point == "stop-before-signal") {
    EXPECT_EQ(state, "cancelled");
    EXPECT_EQ(reason, "daemon_restart");
  } else if (point == "stop-after-signal") {
    // The stop was never acknowledged: either the job was still there and was stopped, or it
    // had died of the signal meanwhile.
    EXPECT_TRUE((state == "cancelled" && reason == "daemon_restart") || (state == "failed" && reason == "interrupted"))
        << state << " " << reason;
  } else {
    // The stop was acknowledged (recorded): it is carried through as asked.
    EXPECT_EQ(state, "cancelled");
    EXPECT_EQ(reason, "maint");
    EXPECT_EQ(bus.prop_s(id, "CancelNotes"), "window");
  }
  EXPECT_TRUE(wait_gone(fd));
  close(fd);
  EXPECT_FALSE(fs::exists(daemon.cgroup_dir() + "/job-" + id));
  EXPECT_FALSE(fs::exists(daemon.runtime_dir + "/jobs/" + id));
}

INSTANTIATE_TEST_SUITE_P(Points, CrashDuringStop,
                         ::testing::Values("stop-before-signal", "stop-after-signal", "stop-escalate", "cleanup"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(Recovery, ForcedDeleteInterruptedByACrashFinishesDeleting) {
  Daemon daemon;
  ASSERT_EQ(daemon.terminate(), 0);
  daemon.start("delete-before-remove");
  std::string id, log;
  {
    Bus bus(daemon.address());
    ReadyFifo ready(daemon.dir);
    id = bus.submit_ok(stubborn(ready));
    ready.wait_line();
    log = bus.prop_s(id, "LogPath");
    auto r = bus.remove(id, {{"force", true}});
    EXPECT_FALSE(r.ok) << "the daemon should have died before answering";
  }
  EXPECT_EQ(daemon.wait_exit(), 128 + SIGKILL);
  daemon.start();
  Bus bus(daemon.address());
  EXPECT_FALSE(bus.job_exists(id));
  EXPECT_FALSE(fs::exists(log));
  auto types = event_types(bus, id);
  ASSERT_FALSE(types.empty());
  EXPECT_TRUE(has(types, "delete-requested"));
  EXPECT_EQ(types.back(), "deleted");
}

TEST(Recovery, StrayCgroupsAndRuntimeFilesAreCleaned) {
  Daemon daemon;
  ASSERT_EQ(daemon.terminate(), 0);
  // A cgroup of ours (marked with our state directory) that no job owns, with a process in it.
  const std::string stray = daemon.cgroup_dir() + "/job-0123456789abcdef0123456789abcdef";
  fs::create_directories(stray);
  ASSERT_EQ(setxattr(stray.c_str(), "trusted.repvisor.owner", daemon.state_dir.data(), daemon.state_dir.size(), 0), 0);
  // And two that are not ours: one made by hand, one another daemon made. Neither is touched.
  const std::string by_hand = daemon.cgroup_dir() + "/job-00000000000000000000000000000001";
  const std::string foreign = daemon.cgroup_dir() + "/job-00000000000000000000000000000002";
  fs::create_directories(by_hand);
  fs::create_directories(foreign);
  ASSERT_EQ(setxattr(foreign.c_str(), "trusted.repvisor.owner", "/elsewhere", 10, 0), 0);
  int ready[2];
  ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
  pid_t child = fork();
  if (child == 0) {
    std::ofstream(stray + "/cgroup.procs") << getpid() << std::endl;
    char c = 1;
    if (write(ready[1], &c, 1) != 1) _exit(126);
    execlp("sleep", "sleep", "1000", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(ready[1]);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);  // it is in the cgroup now
  close(ready[0]);
  fs::create_directories(daemon.runtime_dir + "/jobs/fedcba9876543210fedcba9876543210");
  daemon.start();
  int status = 0;
  waitpid(child, &status, 0);  // killed by the daemon's clean-up
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_FALSE(fs::exists(daemon.runtime_dir + "/jobs/fedcba9876543210fedcba9876543210"));
  // The daemon removes the cgroup once the kernel reports it empty: wait for that event.
  int in = inotify_init1(IN_CLOEXEC);
  inotify_add_watch(in, daemon.cgroup_dir().c_str(), IN_DELETE);
  if (fs::exists(stray)) {
    pollfd p{in, POLLIN, 0};
    EXPECT_EQ(poll(&p, 1, static_cast<int>(kDeadlineUsec / 1000)), 1) << "stray cgroup never removed";
  }
  close(in);
  EXPECT_FALSE(fs::exists(stray));
  EXPECT_NE(daemon.log().find("stray cgroup"), std::string::npos);
  EXPECT_TRUE(fs::exists(by_hand));
  EXPECT_TRUE(fs::exists(foreign));
  EXPECT_NE(daemon.log().find("was not created by this daemon: left alone"), std::string::npos);
  fs::remove(by_hand);
  fs::remove(foreign);
}

// Two daemons started from one cgroup with cgroup_root = "auto" each get a root of their own,
// and neither takes the other's jobs for strays.
TEST(Recovery, TwoDaemonsWithAutoCgroupRootsNeverKillEachOthersJobs) {
  unsetenv("INVOCATION_ID");  // outside systemd, as the bug needs
  std::string own = repvisor::sys::own_cgroup();
  if (own == "/") own.clear();
  const std::string base = repvisor::sys::find_cgroup2_mount() + own + "/";
  std::vector<std::string> roots;
  {
    Daemon first("cgroup_root = \"auto\"");
    roots.push_back(base + repvisor::sys::auto_root_name(first.state_dir));
    Bus a(first.address());
    ReadyFifo ready(first.dir);
    const std::string id = a.submit_ok(polite(ready));
    ready.wait_line();
    const pid_t pid = static_cast<pid_t>(a.prop_i(id, "MainPID"));
    {
      Daemon second("cgroup_root = \"auto\"");
      roots.push_back(base + repvisor::sys::auto_root_name(second.state_dir));
      EXPECT_NE(roots[0], roots[1]);
      Bus b(second.address());
      const std::string other = b.submit_ok({"true"});
      b.wait_terminal(other);
      EXPECT_EQ(b.prop_s(other, "State"), "completed");
      EXPECT_EQ(second.log().find("stray cgroup"), std::string::npos) << second.log();
    }
    EXPECT_TRUE(pid_alive(pid)) << "the second daemon killed the first's job";
    EXPECT_EQ(a.prop_s(id, "State"), "running");
    ASSERT_TRUE(a.stop(id, {{"wait", true}}).ok);
  }
  for (const auto& r : roots) EXPECT_EQ(rmdir(r.c_str()), 0) << r << ": " << strerror(errno);
}

// Two daemons given the same cgroup root: the second is refused, and the first's jobs live on.
TEST(Recovery, ASecondDaemonOnTheSameCgroupRootIsRefused) {
  Daemon first;
  Bus a(first.address());
  ReadyFifo ready(first.dir);
  const std::string id = a.submit_ok(polite(ready));
  ready.wait_line();
  Daemon second;
  ASSERT_EQ(second.terminate(), 0);
  // The second daemon's configuration names the first's cgroup root.
  const std::string root = first.cgroup_dir().substr(repvisor::sys::find_cgroup2_mount().size());
  std::ifstream in(second.config_path);
  std::stringstream conf;
  for (std::string line; std::getline(in, line);)
    conf << (line.rfind("cgroup_root", 0) == 0 ? "cgroup_root = \"" + root + "\"" : line) << "\n";
  in.close();
  std::ofstream(second.config_path) << conf.str();
  std::string output;
  EXPECT_NE(second.start_expecting_failure(&output), 0);
  EXPECT_NE(output.find("is in use by another repvisord (state directory " + first.state_dir + ")"), std::string::npos)
      << output;
  EXPECT_EQ(a.prop_s(id, "State"), "running");
  ASSERT_TRUE(a.stop(id, {{"wait", true}}).ok);
}

// A daemon from before the per-state-directory root name kept its jobs in "<own>/repvisor":
// while job cgroups are left there, "auto" keeps that root, so that they are found again.
TEST(Recovery, AnAutoRootKeepsTheOldNameWhileJobCgroupsAreLeftThere) {
  unsetenv("INVOCATION_ID");
  const std::string mount = repvisor::sys::find_cgroup2_mount();
  const std::string before = repvisor::sys::own_cgroup();
  // In a cgroup of its own, so that no other test's "auto" daemon shares "<own>/repvisor".
  const std::string own = mount + (before == "/" ? "" : before) + "/repvisor-test-legacy-" + std::to_string(getpid());
  ASSERT_EQ(mkdir(own.c_str(), 0755), 0) << strerror(errno);
  std::ofstream(own + "/cgroup.procs") << getpid() << std::endl;
  ASSERT_EQ(repvisor::sys::own_cgroup(), own.substr(mount.size()));
  const std::string legacy = own + "/repvisor", left = legacy + "/job-0123456789abcdef0123456789abcdef";
  ASSERT_EQ(mkdir(legacy.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(left.c_str(), 0755), 0);
  {
    Daemon daemon("cgroup_root = \"auto\"");
    EXPECT_NE(daemon.log().find("job cgroups under " + legacy + "\n"), std::string::npos) << daemon.log();
    EXPECT_TRUE(fs::exists(left)) << "an unmarked cgroup is not this daemon's to remove";
  }
  EXPECT_EQ(rmdir(left.c_str()), 0);
  EXPECT_EQ(rmdir(legacy.c_str()), 0);
  std::ofstream(mount + (before == "/" ? "" : before) + "/cgroup.procs") << getpid() << std::endl;
  EXPECT_EQ(rmdir(own.c_str()), 0) << strerror(errno);
}
