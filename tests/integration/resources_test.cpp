// Job resources against the real thing: qemu-nbd and nbdkit started by the daemon, nbdcopy
// reading from them, image files and loop devices, stops in the middle of a copy, a server that
// dies, a daemon that crashes during cleanup, and paths that must be refused.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

#include "harness.hpp"

using namespace repvisor::test;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t MiB = 1 << 20;

std::string ctl(const Daemon& d, const std::string& args) {
  return std::string(REPVISORCTL_PATH) + " --runtime-dir " + d.runtime_dir + " " + args;
}

// Random bytes in the first `data` bytes of a `size`-byte file: a source disk with content.
void make_source(const std::string& path, uint64_t size, uint64_t data) {
  std::mt19937_64 rng(42);
  std::ofstream out(path, std::ios::binary);
  std::vector<uint64_t> buf(MiB / 8);
  for (uint64_t off = 0; off < data; off += MiB) {
    for (auto& w : buf) w = rng();
    out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(MiB));
  }
  out.close();
  fs::resize_file(path, size);
}

std::string read_bytes(const std::string& path, uint64_t len) {
  std::ifstream in(path, std::ios::binary);
  std::string s(len, '\0');
  in.read(s.data(), static_cast<std::streamsize>(len));
  s.resize(static_cast<size_t>(in.gcount()));
  return s;
}

// The loop devices bound to `file`, from sysfs.
std::vector<std::string> loops_of(const std::string& file) {
  std::vector<std::string> out;
  for (const auto& d : fs::directory_iterator("/sys/block")) {
    const std::string name = d.path().filename();
    if (name.rfind("loop", 0) != 0) continue;
    std::ifstream in(d.path() / "loop" / "backing_file");
    std::string backing;
    if (std::getline(in, backing) && backing == file) out.push_back("/dev/" + name);
  }
  return out;
}

struct ResourcesTest : ::testing::Test {
  Daemon daemon{"stop_timeout = \"20s\""};
  Bus bus{daemon.address()};
  std::string vol = daemon.dir + "/volumes";
  std::string src = vol + "/src.img", dst = vol + "/dst.img";
  ReadyFifo fifo{daemon.dir};

  void SetUp() override { make_source(src, 16 * MiB, 16 * MiB); }

  // Submits a job file; returns the job id. repvisorctl exits 1 for a job that could not start
  // (its resources refused before the command ran): `expect` says which is meant; -1, either,
  // for a setup that fails on an event that may come before or after Submit's reply.
  std::string submit_file(const std::string& toml, int expect = 0) {
    const std::string file = daemon.dir + "/job-" + std::to_string(++files_) + ".toml";
    std::ofstream(file) << toml;
    std::string out;
    const int rc = run_command(ctl(daemon, "--json submit -F " + file), &out);
    if (expect < 0)
      EXPECT_TRUE(rc == 0 || rc == 1) << rc << ": " << out;
    else
      EXPECT_EQ(rc, expect) << out;
    const auto at = out.find("\"id\":\"");
    if (at == std::string::npos) return "";
    return out.substr(at + 6, 32);
  }

  // A copy that stops half-way with its NBD connection open: nbdcopy streams the source into
  // a pipe whose reader writes the first 4 MiB to the target, says so, and then reads no more.
  std::string mid_copy_job(const std::string& on_stop, const std::string& server = "qemu-nbd") {
    return submit_file(mid_copy_toml(on_stop, server));
  }
  std::string mid_copy_toml(const std::string& on_stop, const std::string& server = "qemu-nbd") {
    return std::string(
        "argv = [\"/bin/sh\", \"-c\", \"nbdcopy {nbd.src} - | { head -c 4194304 > {volume.dst} && sync && echo "
        "\\\"$REPVISOR_CHECKPOINT\\\" > " +
        fifo.path() +
        " && exec sleep 1000; }\"]\n"
        "kill_mode = \"control-group\"\n"
        "[[resources]]\nkind = \"nbd-server\"\nname = \"src\"\npath = \"" +
        src + "\"\nserver = \"" + server +
        "\"\n"
        "[[resources]]\nkind = \"loop\"\nname = \"dst\"\npath = \"" +
        dst + "\"\nsize = \"16M\"\non_stop = \"" + on_stop + "\"\n");
  }

  // On a connection of its own: the fixture's dies with a daemon restarted by a test.
  std::map<std::string, std::string> res(const std::string& id, const std::string& name) {
    Bus b(daemon.address());
    for (auto& d : b.resource_details(id))
      if (d["name"] == name) return d;
    return {};
  }

  // Adds a line after a table's header in the daemon's config (for the next start).
  void add_config(const std::string& table, const std::string& line) {
    std::stringstream conf;
    conf << std::ifstream(daemon.config_path).rdbuf();
    std::string text = conf.str();
    const std::string header = "[" + table + "]\n";
    text.insert(text.find(header) + header.size(), line + "\n");
    std::ofstream(daemon.config_path) << text;
  }

  int files_ = 0;
};

TEST_F(ResourcesTest, StopMidCopyLeavesNoServerSocketOrLoopAndKeepsThePartialImage) {
  const std::string id = mid_copy_job("keep");
  ASSERT_FALSE(id.empty());
  fifo.wait_line();
  auto server = res(id, "src");
  auto loop = res(id, "dst");
  ASSERT_EQ(server["state"], "ready");
  ASSERT_EQ(loop["state"], "ready");
  const pid_t server_pid = std::stoi(server["server_pid"]);
  const std::string socket = server["endpoint"].substr(server["endpoint"].find("socket=") + 7);
  const std::string device = loop["device"];
  ASSERT_GT(server_pid, 0);
  ASSERT_TRUE(pid_alive(server_pid));
  ASSERT_TRUE(fs::exists(socket));
  ASSERT_EQ(loops_of(dst), std::vector<std::string>{device});
  const int server_fd = pidfd_of(server_pid);

  auto r = bus.stop(id, {{"wait", true}, {"reason", "maintenance"}});
  ASSERT_TRUE(r.ok) << r.error_message;
  EXPECT_EQ(bus.prop_s(id, "State"), "cancelled");
  EXPECT_EQ(bus.prop_s(id, "CleanupState"), "done");
  EXPECT_TRUE(wait_gone(server_fd)) << "the NBD server outlived the job";
  close(server_fd);
  EXPECT_FALSE(pid_alive(server_pid));
  EXPECT_FALSE(fs::exists(socket)) << "socket left behind";
  EXPECT_TRUE(loops_of(dst).empty()) << "a loop device still holds the target";
  EXPECT_TRUE(zombie_children(daemon.pid).empty());
  EXPECT_TRUE(child_cgroups(daemon.cgroup_dir()).empty());
  // The partial image stays, its size as declared, the part copied identical to the source.
  EXPECT_EQ(res(id, "dst")["state"], "kept");
  EXPECT_EQ(res(id, "src")["state"], "released");
  ASSERT_TRUE(fs::exists(dst));
  EXPECT_EQ(fs::file_size(dst), 16 * MiB);
  EXPECT_EQ(read_bytes(dst, 4 * MiB), read_bytes(src, 4 * MiB));
  // Each step is in the audit trail, in the safe order.
  std::string out;
  ASSERT_EQ(run_command(ctl(daemon, "events " + id), &out), 0) << out;
  const auto synced = out.find("resource-synced"), stopped = out.find("resource-stopped"),
             detached = out.find("resource-detached");
  ASSERT_NE(synced, std::string::npos) << out;
  ASSERT_NE(stopped, std::string::npos) << out;
  ASSERT_NE(detached, std::string::npos) << out;
  EXPECT_LT(synced, stopped);
  EXPECT_LT(stopped, detached);
}

TEST_F(ResourcesTest, DiscardPolicyRemovesTheImageItCreated) {
  const std::string id = mid_copy_job("discard", "nbdkit");
  fifo.wait_line();
  ASSERT_TRUE(fs::exists(dst));
  ASSERT_TRUE(bus.stop(id, {{"wait", true}, {"force", true}}).ok);
  EXPECT_EQ(bus.prop_s(id, "CleanupState"), "done");
  EXPECT_EQ(res(id, "dst")["state"], "discarded");
  EXPECT_FALSE(fs::exists(dst));
  EXPECT_TRUE(loops_of(dst).empty());
  // Nothing to resume from.
  std::string out;
  EXPECT_EQ(run_command(ctl(daemon, "resume " + id), &out), 8) << out;
  EXPECT_NE(out.find("was discarded"), std::string::npos) << out;
}

TEST_F(ResourcesTest, AGivenFileIsNeverDiscarded) {
  make_source(dst, 16 * MiB, 0);  // exists before the job: given, not created
  const std::string id = mid_copy_job("discard");
  fifo.wait_line();
  EXPECT_EQ(res(id, "dst")["created"], "false");
  ASSERT_TRUE(bus.stop(id, {{"wait", true}}).ok);
  EXPECT_EQ(res(id, "dst")["state"], "kept");
  EXPECT_TRUE(fs::exists(dst));
  ASSERT_TRUE(bus.remove(id, {}).ok);
  EXPECT_TRUE(fs::exists(dst)) << "delete removed a file the job was only given";
}

TEST_F(ResourcesTest, DeleteRemovesCreatedVolumesUnlessKeepData) {
  const std::string a = mid_copy_job("keep");
  fifo.wait_line();
  ASSERT_TRUE(bus.stop(a, {{"wait", true}}).ok);
  ASSERT_TRUE(fs::exists(dst));
  ASSERT_TRUE(bus.remove(a, {{"keep_data", true}}).ok);
  EXPECT_TRUE(fs::exists(dst)) << "keep_data";
  fs::remove(dst);

  const std::string b = mid_copy_job("keep");
  fifo.wait_line();
  ASSERT_TRUE(bus.stop(b, {{"wait", true}}).ok);
  ASSERT_TRUE(fs::exists(dst));
  std::string out;
  ASSERT_EQ(run_command(ctl(daemon, "delete -y " + b), &out), 0) << out;
  EXPECT_FALSE(fs::exists(dst));
  ASSERT_EQ(run_command(ctl(daemon, "events " + b), &out), 0) << out;
  EXPECT_NE(out.find("resource-discarded"), std::string::npos) << out;
}

TEST_F(ResourcesTest, ForcedDeleteOfARunningJobStopsItThenRemovesEverything) {
  const std::string id = mid_copy_job("keep");
  fifo.wait_line();
  const pid_t server_pid = std::stoi(res(id, "src")["server_pid"]);
  const int fd = pidfd_of(server_pid);
  auto r = bus.remove(id, {{"force", true}});
  ASSERT_TRUE(r.ok) << r.error_message;
  EXPECT_FALSE(bus.job_exists(id));
  EXPECT_TRUE(wait_gone(fd));
  close(fd);
  EXPECT_FALSE(fs::exists(dst));
  EXPECT_TRUE(loops_of(dst).empty());
}

// The forced stop of a delete runs the teardown, whose policy says discard; the delete said keep,
// and an explicit request wins over the policy.
TEST_F(ResourcesTest, ForcedDeleteWithKeepDataKeepsAVolumeWhosePolicyIsDiscard) {
  const std::string id = mid_copy_job("discard");
  fifo.wait_line();
  const std::string copied = read_bytes(dst, 4 * MiB);
  auto r = bus.remove(id, {{"force", true}, {"keep_data", true}});
  ASSERT_TRUE(r.ok) << r.error_message;
  EXPECT_FALSE(bus.job_exists(id));
  ASSERT_TRUE(fs::exists(dst)) << "delete --force --keep-data discarded the volume";
  EXPECT_EQ(read_bytes(dst, 4 * MiB), copied);
  EXPECT_TRUE(loops_of(dst).empty());
  std::string out;
  ASSERT_EQ(run_command(ctl(daemon, "events " + id), &out), 0) << out;
  EXPECT_NE(out.find("the delete asked to keep data"), std::string::npos) << out;
  EXPECT_EQ(out.find("resource-discarded"), std::string::npos) << out;
}

TEST_F(ResourcesTest, ServerDyingMidJobFailsTheJobWithTheReason) {
  const std::string id = mid_copy_job("keep");
  fifo.wait_line();
  const pid_t server_pid = std::stoi(res(id, "src")["server_pid"]);
  ASSERT_EQ(kill(server_pid, SIGKILL), 0);
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "failed");
  const std::string status = bus.prop_s(id, "StatusText");
  EXPECT_NE(status.find("nbd-server 'src'"), std::string::npos) << status;
  EXPECT_NE(status.find("SIGKILL"), std::string::npos) << status;
  EXPECT_NE(status.find("while the job ran"), std::string::npos) << status;
  EXPECT_EQ(res(id, "src")["state"], "failed");
  EXPECT_EQ(bus.prop_s(id, "CleanupState"), "done");
  EXPECT_TRUE(loops_of(dst).empty());
  EXPECT_EQ(res(id, "dst")["state"], "kept");
  EXPECT_TRUE(child_cgroups(daemon.cgroup_dir()).empty());
}

TEST_F(ResourcesTest, ResumeRunsTheSameJobWithItsCheckpoint) {
  // The job reports a checkpoint, is stopped, and resumed: same id, second run, checkpoint in
  // its environment, and this time it completes.
  const std::string id = submit_file(
      "argv = [\"/bin/sh\", \"-c\", \"echo \\\"run:$REPVISOR_CHECKPOINT:$REPVISOR_VOLUME_DST\\\" > " + fifo.path() +
      "; if [ -z \\\"$REPVISOR_CHECKPOINT\\\" ]; then systemd-notify CHECKPOINT=half; exec sleep 1000; fi\"]\n"
      "[[resources]]\nkind = \"file\"\nname = \"dst\"\npath = \"" +
      dst + "\"\nsize = 1048576\n");
  EXPECT_EQ(fifo.wait_line(), "run::" + dst);
  bus.wait_until(id, [&](Bus& b) { return b.prop_s(id, "Checkpoint") == "half"; });
  ASSERT_TRUE(bus.stop(id, {{"wait", true}}).ok);
  std::string out;
  ASSERT_EQ(run_command(ctl(daemon, "resume " + id), &out), 0) << out;
  EXPECT_NE(out.find("run 2"), std::string::npos) << out;
  EXPECT_EQ(fifo.wait_line(), "run:half:" + dst);
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "completed");
  EXPECT_EQ(bus.prop_i(id, "Runs"), 2);
  EXPECT_EQ(bus.prop_s(id, "CancelReason"), "") << "the second run's record is its own";
  ASSERT_EQ(run_command(ctl(daemon, "events " + id), &out), 0) << out;
  EXPECT_NE(out.find("cancelled"), std::string::npos) << "the first run stays in the audit trail";
  EXPECT_NE(out.find("resumed"), std::string::npos) << out;
  // A completed job has nothing left to resume; an active one is refused as active.
  EXPECT_EQ(run_command(ctl(daemon, "resume " + id), &out), 8) << out;
}

TEST_F(ResourcesTest, NbdcopyProgressReachesTheJobAndTheCopyIsExact) {
  const std::string id = submit_file(
      "argv = [\"nbdcopy\", \"--flush\", \"{nbd.src}\", \"{volume.dst}\"]\n"
      "progress = \"nbdcopy\"\n"
      "[[resources]]\nkind = \"nbd-server\"\nname = \"src\"\npath = \"" +
      src +
      "\"\n"
      "[[resources]]\nkind = \"loop\"\nname = \"dst\"\npath = \"" +
      dst + "\"\nsize = \"16M\"\n");
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "completed") << bus.prop_s(id, "StatusText");
  double progress = 0;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  sd_bus_get_property_trivial(bus.get(), "org.repvisor1", ("/org/repvisor1/job/" + id).c_str(), "org.repvisor1.Job",
                              "Progress", &err, 'd', &progress);
  sd_bus_error_free(&err);
  EXPECT_EQ(progress, 100.0);
  EXPECT_EQ(read_bytes(dst, 16 * MiB), read_bytes(src, 16 * MiB));
  EXPECT_TRUE(loops_of(dst).empty());
}

TEST_F(ResourcesTest, HeldLoopDeviceFailsCleanupThenRetrySucceeds) {
  daemon.terminate();
  add_config("volumes", "detach_timeout = \"300ms\"");
  daemon.start();
  Bus b2(daemon.address());
  const std::string id = mid_copy_job("keep");
  fifo.wait_line();
  const std::string device = res(id, "dst")["device"];
  // Someone else holds the device open: the detach can only be deferred.
  const int holder = open(device.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(holder, 0);
  ASSERT_TRUE(b2.stop(id, {{"wait", true}}).ok);
  EXPECT_EQ(b2.prop_s(id, "CleanupState"), "failed");
  EXPECT_NE(b2.prop_s(id, "CleanupError").find("still attached"), std::string::npos) << b2.prop_s(id, "CleanupError");
  // Not deleted while something of it is left; not resumable either.
  auto r = b2.remove(id, {});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error_name, "org.repvisor1.Error.CleanupFailed") << r.error_message;
  std::string out;
  EXPECT_EQ(run_command(ctl(daemon, "resume " + id), &out), 8) << out;
  close(holder);  // with autoclear the device goes with its last holder
  ASSERT_EQ(run_command(ctl(daemon, "cleanup " + id), &out), 0) << out;
  EXPECT_EQ(b2.prop_s(id, "CleanupState"), "done");
  // By the file, not the device path: parallel tests may take /dev/loopN as soon as it is free.
  EXPECT_TRUE(loops_of(dst).empty());
  EXPECT_EQ(res(id, "dst")["state"], "kept");
  EXPECT_TRUE(b2.remove(id, {}).ok);
}

// A crash just after an NBD server was started, before the daemon recorded it: nothing on
// record names the server or its cgroup, yet neither may outlive the job. The source is gone
// when the daemon comes back, so the setup it runs again fails before any server of its own.
TEST_F(ResourcesTest, AServerStartedButNotRecordedBeforeACrashGoesWithTheJob) {
  ASSERT_EQ(daemon.terminate(), 0);
  daemon.start("server-spawned");
  // Unanswered: the daemon dies before its reply (which waits for the start). The submit was
  // committed, so the job comes back with the daemon.
  const std::string file = daemon.dir + "/crash.toml";
  std::ofstream(file) << mid_copy_toml("keep");
  std::string out;
  run_command(ctl(daemon, "submit -F " + file), &out);
  EXPECT_EQ(daemon.wait_exit(), 128 + SIGKILL) << "the crash point server-spawned was not reached: " << out;
  std::vector<int> servers;  // the unrecorded server, running on in its cgroup
  for (const auto& cg : child_cgroups(daemon.cgroup_dir()))
    for (pid_t pid : cgroup_pids(daemon.cgroup_dir() + "/" + cg)) servers.push_back(pidfd_of(pid));
  ASSERT_FALSE(servers.empty()) << "no server was left running by the crash";
  ASSERT_TRUE(fs::remove(src));  // the server has it open: it serves on

  daemon.start();
  Bus b(daemon.address());
  const auto jobs = b.list();
  ASSERT_EQ(jobs.size(), 1u);
  const std::string id = jobs[0][0];
  b.wait_until(id, [&](Bus& x) { return x.prop_s(id, "CleanupState") == "done"; });
  EXPECT_EQ(b.prop_s(id, "State"), "failed");
  for (int fd : servers) {
    EXPECT_TRUE(wait_gone(fd)) << "the unrecorded NBD server outlived its job";
    close(fd);
  }
  EXPECT_TRUE(wait_no_child_cgroups(daemon.cgroup_dir()));
  for (const auto& cg : child_cgroups(daemon.cgroup_dir())) ADD_FAILURE() << "cgroup left: " << cg;
  EXPECT_TRUE(loops_of(dst).empty());
  EXPECT_TRUE(b.remove(id, {}).ok);
}

// A crash at the start of teardown, and between the volume flush and the server stop: the
// restarted daemon finishes the job's cleanup from its record.
class CrashDuringResourceCleanup : public ResourcesTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(CrashDuringResourceCleanup, RecoveryFinishesIt) {
  const bool discarding = std::string(GetParam()) == "resource-discarded";
  ASSERT_EQ(daemon.terminate(), 0);
  daemon.start(GetParam());
  std::string id, socket;
  int server_fd = -1;
  {
    Bus b(daemon.address());
    id = mid_copy_job(discarding ? "discard" : "keep");
    fifo.wait_line();
    auto server = res(id, "src");
    server_fd = pidfd_of(std::stoi(server["server_pid"]));
    socket = server["endpoint"].substr(server["endpoint"].find("socket=") + 7);
    b.stop(id, {{"force", true}, {"wait", true}});
  }
  EXPECT_EQ(daemon.wait_exit(), 128 + SIGKILL) << "the crash point " << GetParam() << " was not reached";
  daemon.start();
  Bus b(daemon.address());
  b.wait_until(id, [&](Bus& x) { return x.prop_s(id, "CleanupState") == "done"; });
  EXPECT_EQ(b.prop_s(id, "State"), "cancelled");
  EXPECT_TRUE(wait_gone(server_fd)) << "the NBD server survived the crash and the recovery";
  close(server_fd);
  EXPECT_FALSE(fs::exists(socket));
  EXPECT_TRUE(loops_of(dst).empty());
  EXPECT_TRUE(child_cgroups(daemon.cgroup_dir()).empty());
  if (discarding) {
    // Removed before the crash, recorded after it: the rerun finds it gone and says so.
    EXPECT_EQ(res(id, "dst")["state"], "discarded");
    EXPECT_FALSE(fs::exists(dst));
    EXPECT_TRUE(b.remove(id, {}).ok);
    return;
  }
  EXPECT_EQ(res(id, "dst")["state"], "kept");
  EXPECT_EQ(fs::file_size(dst), 16 * MiB);
  EXPECT_EQ(read_bytes(dst, 4 * MiB), read_bytes(src, 4 * MiB));
}

INSTANTIATE_TEST_SUITE_P(Points, CrashDuringResourceCleanup,
                         ::testing::Values("cleanup", "resource-stop", "resource-discarded"), [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// recovery = "adopt": after a daemon crash the job runs on, its resources held and watched again.
TEST_F(ResourcesTest, AdoptedJobKeepsItsServerWatchedAndItsLoopDevice) {
  ASSERT_EQ(daemon.terminate(), 0);
  add_config("daemon", "recovery = \"adopt\"");
  daemon.start();
  // The job itself holds the loop device open (descriptor 3), as a writer would.
  const std::string id = submit_file(
      "argv = [\"/bin/sh\", \"-c\", \"exec 3<>{volume.dst}; nbdcopy {nbd.src} - | { head -c 1048576 >&3 && echo "
      "ok > " +
      fifo.path() +
      " && exec sleep 1000; }\"]\n"
      "kill_mode = \"control-group\"\n"
      "[[resources]]\nkind = \"nbd-server\"\nname = \"src\"\npath = \"" +
      src +
      "\"\n"
      "[[resources]]\nkind = \"loop\"\nname = \"dst\"\npath = \"" +
      dst + "\"\nsize = \"16M\"\n");
  fifo.wait_line();
  const std::string device = res(id, "dst")["device"];
  const pid_t server_pid = std::stoi(res(id, "src")["server_pid"]);
  kill(daemon.pid, SIGKILL);
  ASSERT_EQ(daemon.wait_exit(), 128 + SIGKILL);
  daemon.start();
  Bus b(daemon.address());
  EXPECT_EQ(b.prop_s(id, "State"), "running");
  EXPECT_EQ(loops_of(dst), std::vector<std::string>{device}) << "held by the job, the device survived the crash";
  EXPECT_EQ(res(id, "dst")["state"], "ready");
  // The server is watched again: its death fails the job, as before the crash.
  ASSERT_EQ(kill(server_pid, SIGKILL), 0);
  b.wait_terminal(id);
  EXPECT_EQ(b.prop_s(id, "State"), "failed");
  EXPECT_NE(b.prop_s(id, "StatusText").find("nbd-server 'src'"), std::string::npos) << b.prop_s(id, "StatusText");
  EXPECT_EQ(b.prop_s(id, "CleanupState"), "done");
  EXPECT_TRUE(loops_of(dst).empty());
  EXPECT_TRUE(fs::exists(dst));
}

// nbdkit, as the daemon starts it, outlives a daemon crash (and so an upgrade, which kills the
// daemon alone): with recovery = "adopt" the copy reading from it goes on after the restart, on
// the same connection, and completes. nbdkit 1.32 asks for SIGTERM when its parent dies, in the
// foreground whatever its options: the daemon starts it in the background (nbd_server.cpp).
TEST_F(ResourcesTest, AnNbdkitServerAndTheCopyFromItSurviveADaemonCrashWithRecoveryAdopt) {
  ASSERT_EQ(daemon.terminate(), 0);
  add_config("daemon", "recovery = \"adopt\"");
  daemon.start();
  const std::string go = daemon.dir + "/go";
  ASSERT_EQ(mkfifo(go.c_str(), 0600), 0);
  // The first MiB copied (dd takes exactly that much of the stream), then, once the test says
  // go, the rest of the same stream: nbdcopy's connection stays open across the crash. The job
  // holds the loop device open (descriptor 3), so it survives the crash too.
  const std::string id = submit_file(
      "argv = [\"/bin/bash\", \"-c\", \"set -o pipefail; exec 3<>{volume.dst}; nbdcopy {nbd.src} - | { dd bs=1M "
      "count=1 iflag=fullblock status=none >&3 && echo copying > " +
      fifo.path() + " && read x < " + go +
      " && cat >&3; }\"]\n"
      "[[resources]]\nkind = \"nbd-server\"\nname = \"src\"\nserver = \"nbdkit\"\npath = \"" +
      src +
      "\"\n"
      "[[resources]]\nkind = \"loop\"\nname = \"dst\"\npath = \"" +
      dst + "\"\nsize = \"16M\"\n");
  ASSERT_EQ(fifo.wait_line(), "copying");
  const pid_t server_pid = std::stoi(res(id, "src")["server_pid"]);
  std::string comm;
  std::getline(std::ifstream("/proc/" + std::to_string(server_pid) + "/comm"), comm);
  ASSERT_EQ(comm, "nbdkit") << "the recorded server is the process that serves";
  const int server = pidfd_of(server_pid);
  ASSERT_GE(server, 0);

  kill(daemon.pid, SIGKILL);
  ASSERT_EQ(daemon.wait_exit(), 128 + SIGKILL);
  daemon.start();
  Bus b(daemon.address());
  EXPECT_EQ(b.prop_s(id, "State"), "running") << b.prop_s(id, "StatusText");
  EXPECT_EQ(res(id, "src")["state"], "ready");
  EXPECT_EQ(std::stoi(res(id, "src")["server_pid"]), server_pid);
  pollfd p{server, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0) << "nbdkit died with the daemon";

  std::ofstream(go) << "go\n";
  b.wait_terminal(id);
  EXPECT_EQ(b.prop_s(id, "State"), "completed") << b.prop_s(id, "StatusText");
  EXPECT_EQ(b.prop_s(id, "CleanupState"), "done");
  EXPECT_TRUE(wait_gone(server)) << "the cleanup stops the adopted server";
  close(server);
  EXPECT_TRUE(loops_of(dst).empty());
  EXPECT_TRUE(read_bytes(dst, 16 * MiB) == read_bytes(src, 16 * MiB)) << "the copy is not exact";
}

// A job that does not hold its loop device open loses it when the daemon's hold ends with the
// daemon (autoclear): after the restart the job is told why, in the kernel's terms.
TEST_F(ResourcesTest, AnAdoptedJobWhoseLoopDeviceWasDetachedIsToldWhy) {
  ASSERT_EQ(daemon.terminate(), 0);
  add_config("daemon", "recovery = \"adopt\"");
  daemon.start();
  const std::string id = mid_copy_job("keep");
  fifo.wait_line();
  const std::string device = res(id, "dst")["device"];
  ASSERT_FALSE(device.empty());
  kill(daemon.pid, SIGKILL);
  ASSERT_EQ(daemon.wait_exit(), 128 + SIGKILL);
  const bool detached = loops_of(dst).empty();
  daemon.start();
  Bus b(daemon.address());
  if (!detached) {
    // Still bound (something else held it): the job runs on with its device.
    EXPECT_EQ(b.prop_s(id, "State"), "running");
    ASSERT_TRUE(b.stop(id, {{"force", true}, {"wait", true}}).ok);
    return;
  }
  b.wait_terminal(id);
  EXPECT_EQ(b.prop_s(id, "State"), "failed");
  // Unbound, or, when another test's loop device took the number meanwhile, reused.
  const std::string why = b.prop_s(id, "FailReason");
  EXPECT_TRUE(why.find("loop device " + device +
                       " of volume 'dst' was detached while the daemon was down (nothing "
                       "held it open)") != std::string::npos ||
              why.find("loop device " + device + " of volume 'dst' now backs another file") != std::string::npos)
      << why;
  EXPECT_TRUE(fs::exists(dst));
}

// The job templates shipped in config/jobs run as they are, paths aside.
TEST_F(ResourcesTest, ShippedJobTemplatesRun) {
  fs::create_directories(vol + "/source");
  std::string out;
  ASSERT_EQ(run_command("qemu-img create -q -f qcow2 " + vol + "/source/disk0.qcow2 64M", &out), 0) << out;
  make_source(vol + "/source/disk1.img", 8 * MiB, 8 * MiB);
  for (const char* name : {"nbdcopy", "repvisor-copy"}) {
    std::ifstream in(std::string(SOURCE_DIR) + "/config/jobs/" + name + ".toml");
    std::stringstream text;
    text << in.rdbuf();
    std::string t = text.str();
    for (size_t at; (at = t.find("/var/lib/repvisor/volumes")) != std::string::npos;)
      t.replace(at, strlen("/var/lib/repvisor/volumes"), vol);
    if (std::string(name) == "repvisor-copy") t.replace(t.find("\"repvisor-copy\""), 15, "\"" REPVISOR_COPY_PATH "\"");
    const std::string id = submit_file(t);
    ASSERT_FALSE(id.empty()) << name;
    bus.wait_terminal(id);
    EXPECT_EQ(bus.prop_s(id, "State"), "completed") << name << ": " << bus.prop_s(id, "StatusText");
    EXPECT_EQ(bus.prop_s(id, "CleanupState"), "done") << name;
  }
  EXPECT_EQ(read_bytes(vol + "/disk1.img", 8 * MiB), read_bytes(vol + "/source/disk1.img", 8 * MiB));
}

// Bad resources are refused at submission, naming the resource and key, and nothing is made.
TEST_F(ResourcesTest, BadPathsAndKeysAreRefusedClearly) {
  const std::string outside = daemon.dir + "/outside";
  fs::create_directories(outside);
  fs::create_symlink(outside, vol + "/escape");
  struct Case {
    std::string resource, expect;
  };
  const std::vector<Case> cases = {
      {"kind = \"loop\"\nname = \"d\"\npath = \"" + outside + "/x.img\"\nsize = 1048576",
       "resources[0].path: '" + outside + "/x.img' is outside the volume roots"},
      {"kind = \"loop\"\nname = \"d\"\npath = \"" + vol + "/../outside/x.img\"\nsize = 1048576",
       "has a '.' or '..' component"},
      {"kind = \"file\"\nname = \"d\"\npath = \"" + vol + "/escape/x.img\"\nsize = 1048576",
       "leads out of the volume root"},
      {"kind = \"file\"\nname = \"d\"\npath = \"/dev/loop0\"", "is outside the volume roots"},
      {"kind = \"file\"\nname = \"d\"\npath = \"" + vol + "/missing.img\"", "does not exist (give a size"},
      {"kind = \"nbd-server\"\nname = \"s\"\npath = \"" + src + "\"\nsize = 4096",
       "resources[0].size: only file and loop volumes"},
      {"kind = \"nbd-server\"\nname = \"s\"\npath = \"" + src + "\"\nserver = \"nbdkit\"\nformat = \"qcow2\"",
       "nbdkit here cannot read qcow2"},
      {"kind = \"loop\"\nname = \"d\"\npath = \"" + vol + "/a.img\"\nsize = 1000", "not a multiple of 512"},
      {"kind = \"tape\"\nname = \"d\"\npath = \"" + vol + "/a.img\"", "'tape' is not one of"},
      {"kind = \"file\"\nname = \"bad name\"\npath = \"" + vol + "/a.img\"\nsize = 4096", "may hold only letters"},
      {"kind = \"file\"\nname = \"d\"\npath = \"" + vol + "/a.img\"\nsize = 4096\ncolour = \"red\"",
       "resources[0].colour: unknown key"},
      {"kind = \"nbd-device\"\nname = \"n\"\nexport = \"nope\"", "'nope' is not an nbd-server resource"},
  };
  for (const auto& c : cases) {
    const std::string file = daemon.dir + "/bad.toml";
    std::ofstream(file) << "argv = [\"/bin/true\"]\n[[resources]]\n" << c.resource << "\n";
    std::string out;
    const int rc = run_command(ctl(daemon, "submit -F " + file), &out);
    EXPECT_TRUE(rc == 7 || rc == 2) << c.resource << "\n" << out;
    EXPECT_NE(out.find(c.expect), std::string::npos) << c.resource << "\n" << out;
  }
  EXPECT_TRUE(bus.list().empty()) << "a refused submission left a job";
  EXPECT_FALSE(fs::exists(outside + "/x.img"));
  EXPECT_FALSE(fs::exists(vol + "/a.img"));
  // A placeholder naming no resource of the job.
  std::string out;
  const std::string file = daemon.dir + "/bad2.toml";
  std::ofstream(file) << "argv = [\"cat\", \"{volume.nope}\"]\n";
  EXPECT_EQ(run_command(ctl(daemon, "submit -F " + file), &out), 7) << out;
  EXPECT_NE(out.find("{volume.nope}"), std::string::npos) << out;
}

TEST_F(ResourcesTest, NbdDeviceWithoutTheKernelModuleFailsTheStartClearly) {
  if (fs::exists("/sys/module/nbd")) GTEST_SKIP() << "the nbd module is loaded here: this test is for hosts without";
  const std::string id = submit_file(
      "argv = [\"/bin/true\"]\n"
      "[[resources]]\nkind = \"nbd-server\"\nname = \"src\"\npath = \"" +
          src +
          "\"\n"
          "[[resources]]\nkind = \"nbd-device\"\nname = \"dev\"\nexport = \"src\"\n",
      -1);
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "failed");
  EXPECT_NE(bus.prop_s(id, "StatusText").find("kernel NBD client is not available"), std::string::npos)
      << bus.prop_s(id, "StatusText");
  EXPECT_EQ(res(id, "dev")["state"], "unavailable");
  EXPECT_EQ(res(id, "src")["state"], "released") << "the server started for it is stopped again";
  EXPECT_EQ(bus.prop_s(id, "CleanupState"), "done");
  EXPECT_EQ(bus.prop_i(id, "MainPID"), 0);
}

TEST_F(ResourcesTest, Qcow2BackingFilesMustStayInsideTheVolumeRoots) {
  const std::string outside = daemon.dir + "/outside";
  fs::create_directories(outside);
  std::string out;
  ASSERT_EQ(run_command("qemu-img create -q -f raw " + outside + "/base.img 1M", &out), 0) << out;
  make_source(vol + "/base.img", MiB, MiB);  // content, to see it read through the overlay
  // An overlay inside the root whose backing file is outside it: refused, nothing run.
  ASSERT_EQ(run_command("qemu-img create -q -f qcow2 -F raw -b " + outside + "/base.img " + vol + "/evil.qcow2", &out),
            0)
      << out;
  // One whose backing file is inside (by a relative name): served.
  ASSERT_EQ(run_command("cd " + vol + " && qemu-img create -q -f qcow2 -F raw -b base.img good.qcow2", &out), 0) << out;
  auto job = [&](const std::string& image) {
    return submit_file(
        "argv = [\"nbdinfo\", \"{nbd.src}\"]\n[[resources]]\nkind = \"nbd-server\"\nname = \"src\"\n"
        "format = \"qcow2\"\npath = \"" +
            image + "\"\n",
        1);
  };
  const std::string evil = job(vol + "/evil.qcow2");
  bus.wait_terminal(evil);
  EXPECT_EQ(bus.prop_s(evil, "State"), "failed");
  const std::string status = bus.prop_s(evil, "StatusText");
  EXPECT_NE(status.find("has the backing file '" + outside + "/base.img', refused"), std::string::npos) << status;
  EXPECT_EQ(bus.prop_t(evil, "StartedUSec"), 0u);
  const std::string good = submit_file(
      "argv = [\"nbdcopy\", \"{nbd.src}\", \"{volume.dst}\"]\n[[resources]]\nkind = \"nbd-server\"\nname = "
      "\"src\"\nformat = \"qcow2\"\npath = \"" +
      vol + "/good.qcow2\"\n[[resources]]\nkind = \"file\"\nname = \"dst\"\npath = \"" + vol +
      "/copy.img\"\nsize = 1048576\n");
  bus.wait_terminal(good);
  EXPECT_EQ(bus.prop_s(good, "State"), "completed") << bus.prop_s(good, "StatusText");
  EXPECT_EQ(read_bytes(vol + "/copy.img", MiB), read_bytes(vol + "/base.img", MiB)) << "read through the backing file";
}

// qemu opens a qcow2 image's external data file by the name in the image's header: the daemon
// checks it like a backing file (the image's own and each backing image's), and an image it
// cannot read completely (an incompatible feature it does not know) is refused. A refused job
// runs nothing, so what lies outside the roots never reaches its log.
TEST_F(ResourcesTest, Qcow2ExternalDataFilesMustStayInsideTheVolumeRoots) {
  const std::string outside = daemon.dir + "/outside";
  fs::create_directories(outside);
  const std::string secret = "a secret outside the volume roots";
  auto make = [&](const std::string& cmd) {
    std::string out;
    ASSERT_EQ(run_command("cd " + vol + " && qemu-img create -q -f qcow2 " + cmd, &out), 0) << out;
  };
  auto put_secret = [&](const std::string& file) {
    std::fstream(file, std::ios::in | std::ios::out | std::ios::binary) << secret;
  };
  make("-o data_file=" + outside + "/a.raw,data_file_raw=on evil.qcow2 16M");
  put_secret(outside + "/a.raw");
  // A plain overlay inside the root over a backing image inside it whose data file is outside.
  make("-o data_file=" + outside + "/b.raw,data_file_raw=on base.qcow2 16M");
  put_secret(outside + "/b.raw");
  make("-F qcow2 -b base.qcow2 overlay.qcow2");
  // A relative name: qemu would resolve it against its own working directory.
  make("-o data_file=rel.raw,data_file_raw=on rel.qcow2 16M");
  put_secret(vol + "/rel.raw");
  // A protocol: "file:" + a path of the same length as the name qemu-img wrote, put in its place.
  const std::string plain = outside + "/12345p.raw", proto = "file:" + outside + "/p.raw";
  make("-o data_file=" + plain + ",data_file_raw=on proto.qcow2 16M");
  {
    std::fstream f(vol + "/proto.qcow2", std::ios::in | std::ios::out | std::ios::binary);
    std::string head(65536, '\0');
    f.read(head.data(), static_cast<std::streamsize>(head.size()));
    const auto at = head.find(plain);
    ASSERT_NE(at, std::string::npos);
    f.clear();
    f.seekp(static_cast<std::streamoff>(at));
    f << proto;
  }
  fs::copy_file(outside + "/a.raw", outside + "/p.raw");
  // An incompatible feature bit that no qcow2 implementation knows (bit 5 of the u64 at 72).
  make("unknown.qcow2 16M");
  {
    std::fstream f(vol + "/unknown.qcow2", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(79);
    f.put('\x20');
  }
  struct Case {
    std::string image, expect;
  };
  const std::vector<Case> cases = {
      {vol + "/evil.qcow2", vol + "/evil.qcow2 has the external data file '" + outside + "/a.raw', refused: '" +
                                outside + "/a.raw' is outside the volume roots"},
      {vol + "/overlay.qcow2", vol + "/base.qcow2 has the external data file '" + outside + "/b.raw', refused"},
      {vol + "/rel.qcow2", vol + "/rel.qcow2 names its external data file 'rel.raw' by a relative path"},
      {vol + "/proto.qcow2",
       vol + "/proto.qcow2 has the external data file '" + proto + "': only plain paths are allowed"},
      {vol + "/unknown.qcow2", vol + "/unknown.qcow2: incompatible feature bit 5 is set"},
  };
  for (const auto& c : cases) {
    const std::string id = submit_file(
        "argv = [\"/bin/sh\", \"-c\", \"nbdcopy {nbd.src} - | head -c 40\"]\n[[resources]]\nkind = "
        "\"nbd-server\"\nname = \"src\"\nformat = \"qcow2\"\npath = \"" +
            c.image + "\"\n",
        1);
    ASSERT_FALSE(id.empty()) << c.image;
    bus.wait_terminal(id);
    EXPECT_EQ(bus.prop_s(id, "State"), "failed") << c.image;
    const std::string status = bus.prop_s(id, "StatusText");
    EXPECT_NE(status.find("nbd-server 'src': " + c.expect), std::string::npos) << status;
    EXPECT_EQ(bus.prop_t(id, "StartedUSec"), 0u) << c.image << ": the command ran";
    EXPECT_EQ(res(id, "src")["state"], "failed") << c.image;
    std::ifstream log(bus.prop_s(id, "LogPath"));
    const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text.find(secret), std::string::npos) << c.image << ": " << text;
  }
  EXPECT_TRUE(child_cgroups(daemon.cgroup_dir()).empty());
}

// A data file inside the roots is checked, opened by the daemon and handed to qemu-nbd as a
// descriptor, for the image and for a backing image: the job reads the data through it, and the
// server was given no name to open.
TEST_F(ResourcesTest, Qcow2ExternalDataFilesInsideTheRootsAreServedAsDescriptors) {
  auto make = [&](const std::string& cmd) {
    std::string out;
    ASSERT_EQ(run_command("cd " + vol + " && qemu-img create -q -f qcow2 " + cmd, &out), 0) << out;
  };
  make("-o data_file=" + vol + "/data.raw,data_file_raw=on image.qcow2 1M");
  make_source(vol + "/data.raw", MiB, MiB);
  make("-F qcow2 -b image.qcow2 overlay.qcow2");
  struct Case {
    std::string image, option;
  };
  // The image is descriptor 4; the files it names follow in the order they are found.
  const std::vector<Case> cases = {
      {"image.qcow2", ",data-file.driver=file,data-file.filename=/dev/fd/5"},
      {"overlay.qcow2", ",backing.data-file.driver=file,backing.data-file.filename=/dev/fd/6"}};
  for (const auto& c : cases) {
    fs::remove(vol + "/copy.img");
    const std::string id =
        submit_file("argv = [\"/bin/sh\", \"-c\", \"nbdcopy {nbd.src} {volume.dst} && echo copied > " + fifo.path() +
                    " && exec sleep 1000\"]\n[[resources]]\nkind = \"nbd-server\"\nname = "
                    "\"src\"\nformat = \"qcow2\"\npath = \"" +
                    vol + "/" + c.image + "\"\n[[resources]]\nkind = \"file\"\nname = \"dst\"\npath = \"" + vol +
                    "/copy.img\"\nsize = 1048576\n");
    ASSERT_FALSE(id.empty()) << c.image;
    EXPECT_EQ(fifo.wait_line(), "copied");
    std::ifstream cmdline("/proc/" + res(id, "src")["server_pid"] + "/cmdline");
    const std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
    EXPECT_NE(args.find(c.option), std::string::npos) << c.image << ": " << args;
    EXPECT_EQ(args.find("data.raw"), std::string::npos) << c.image << ": " << args;
    auto r = bus.stop(id, {{"wait", true}});
    ASSERT_TRUE(r.ok) << r.error_message;
    EXPECT_EQ(bus.prop_s(id, "CleanupState"), "done") << c.image;
    EXPECT_EQ(read_bytes(vol + "/copy.img", MiB), read_bytes(vol + "/data.raw", MiB)) << c.image;
  }
}

TEST_F(ResourcesTest, ABadImageFailsTheStartWithoutRunningTheCommand) {
  std::ofstream(vol + "/bad.qcow2") << "not a qcow2 image";
  const std::string id = submit_file("argv = [\"/bin/sh\", \"-c\", \"echo ran > " + fifo.path() +
                                         "\"]\n"
                                         "[[resources]]\nkind = \"nbd-server\"\nname = \"src\"\npath = \"" +
                                         vol + "/bad.qcow2\"\nformat = \"qcow2\"\n",
                                     1);
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "failed");
  const std::string status = bus.prop_s(id, "StatusText");
  EXPECT_NE(status.find("nbd-server 'src'"), std::string::npos) << status;
  EXPECT_EQ(bus.prop_t(id, "StartedUSec"), 0u) << "the command ran";
  EXPECT_TRUE(child_cgroups(daemon.cgroup_dir()).empty());
}

}  // namespace
