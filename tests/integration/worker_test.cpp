// repvisor-copy under repvisord: real nbdkit sources, real files, real stops.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "harness.hpp"

using namespace repvisor::test;
namespace fs = std::filesystem;

namespace {

// The pid nbdkit writes to `dir`/`file`. Its background process writes it, a moment after the
// foreground one has exited: waited for with inotify (a pid read too early was a server never
// stopped, left running after the test).
pid_t wait_pidfile(const std::string& dir, const std::string& file) {
  const int in = inotify_init1(IN_CLOEXEC);
  inotify_add_watch(in, dir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO);  // before the first look
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(kDeadlineUsec);
  pid_t pid = -1;
  for (;;) {
    std::ifstream(dir + "/" + file) >> pid;
    if (pid > 0) break;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    pollfd p{in, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) break;
    char buf[4096];
    if (::read(in, buf, sizeof buf) < 0) break;
  }
  close(in);
  if (pid <= 0) throw std::runtime_error("nbdkit wrote no pid to " + dir + "/" + file);
  return pid;
}

// An nbdkit server on a Unix socket. nbdkit binds it before going to the background, so the
// server accepts connections once the constructor returns.
class Nbdkit {
 public:
  Nbdkit(const std::string& dir, const std::string& name, const std::string& args) {
    socket_ = dir + "/" + name + ".sock";
    pidfile_ = dir + "/" + name + ".pid";
    std::string out;
    const std::string cmd = "nbdkit -U " + socket_ + " -P " + pidfile_ + " -r " + args;
    if (run_command(cmd, &out) != 0) throw std::runtime_error(cmd + ": " + out);
    pid_ = wait_pidfile(dir, name + ".pid");
  }
  ~Nbdkit() { stop(); }
  std::string uri() const { return "nbd+unix:///?socket=" + socket_; }
  // Stops it and waits until it is gone (its log and stats are complete then).
  void stop() {
    if (pid_ <= 0) return;
    int fd = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    kill(pid_, SIGTERM);
    if (fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(kDeadlineUsec / 1000)) <= 0) kill(pid_, SIGKILL);  // never left behind
      close(fd);
    }
    pid_ = -1;
  }

 private:
  std::string socket_, pidfile_;
  pid_t pid_ = -1;
};

// nbdkit's pattern plugin: every 8-byte big-endian word holds its own offset.
uint8_t pattern_byte(uint64_t off) {
  const uint64_t word = off & ~uint64_t{7};
  return static_cast<uint8_t>(word >> (56 - 8 * (off & 7)));
}

// The first offset in [0, len) where the file differs from the pattern, or -1.
int64_t pattern_mismatch(const std::string& path, uint64_t len) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buf(1 << 20);
  for (uint64_t off = 0; off < len;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), len - off));
    if (!in.read(buf.data(), static_cast<std::streamsize>(n))) return static_cast<int64_t>(off);
    for (size_t i = 0; i < n; ++i)
      if (static_cast<uint8_t>(buf[i]) != pattern_byte(off + i)) return static_cast<int64_t>(off + i);
    off += n;
  }
  return -1;
}

uint64_t bytes_read_in_log(const std::string& logfile) {
  std::ifstream in(logfile);
  std::string line;
  uint64_t total = 0;
  std::regex re(R"( Read id=\d+ offset=0x[0-9a-f]+ count=(0x[0-9a-f]+))");
  std::smatch m;
  while (std::getline(in, line))
    if (std::regex_search(line, m, re)) total += std::stoull(m[1].str(), nullptr, 16);
  return total;
}

uint64_t checkpoint_done(const std::string& cp) {
  std::smatch m;
  std::regex re(R"(done=(\d+))");
  return std::regex_search(cp, m, re) ? std::stoull(m[1].str()) : 0;
}

constexpr uint64_t MiB = 1 << 20;

struct WorkerTest : ::testing::Test {
  Daemon daemon{"max_stop_extension = \"1s\""};
  Bus bus{daemon.address()};
  std::string target = daemon.dir + "/target.img";

  std::string copy_job(const Nbdkit& src, std::vector<std::string> extra = {}) {
    std::vector<std::string> argv{REPVISOR_COPY_PATH,      src.uri(), target, "--chunk-size", "1M",
                                  "--checkpoint-interval", "50"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return bus.submit_ok(argv);
  }
};

}  // namespace

TEST_F(WorkerTest, CopyCompletesAndVerifies) {
  Nbdkit src(daemon.dir, "src", "pattern size=32M");
  auto id = copy_job(src, {"--verify"});
  bus.wait_terminal(id);
  ASSERT_EQ(bus.prop_s(id, "State"), "completed") << bus.prop_s(id, "StatusText");
  EXPECT_EQ(bus.prop_t(id, "BytesTotal"), 32 * MiB);
  EXPECT_EQ(bus.prop_t(id, "BytesDone"), 32 * MiB);
  EXPECT_EQ(bus.prop_s(id, "Checkpoint"), "repvisor-copy/1 done=33554432 size=33554432");
  EXPECT_NE(bus.prop_s(id, "StatusText").find("verified"), std::string::npos);
  EXPECT_EQ(pattern_mismatch(target, 32 * MiB), -1);
}

TEST_F(WorkerTest, HolesAreSkippedAndTheCopyStillMatches) {
  // Random data with holes that block status reports; --verify reads both sides back.
  Nbdkit src(daemon.dir, "src", "sparse-random size=64M percent=10 seed=7");
  auto id = copy_job(src, {"--verify"});
  bus.wait_terminal(id);
  ASSERT_EQ(bus.prop_s(id, "State"), "completed") << bus.prop_s(id, "StatusText");
  struct stat st {};
  ASSERT_EQ(stat(target.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 64 * MiB);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 32 * MiB) << "holes were written out";
}

TEST_F(WorkerTest, GracefulStopThenResumeCopiesOnlyWhatWasMissing) {
  const uint64_t size = 64 * MiB;
  uint64_t done = 0;
  std::string checkpoint;
  {
    Nbdkit slow(daemon.dir, "slow", "--filter=delay pattern size=64M delay-read=20ms");
    auto id = copy_job(slow);
    bus.wait_until(id, [&](Bus& b) { return !b.prop_s(id, "Checkpoint").empty(); });
    auto r = bus.stop(id, {{"wait", true}});
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(std::get<std::string>(r.dict["state"]), "cancelled");
    EXPECT_EQ(bus.prop_i(id, "ExitCode"), 75) << "repvisor-copy's documented 'stopped cleanly' status";
    EXPECT_NE(daemon.log().find("stopping: finishing the chunks in flight"), std::string::npos)
        << "the worker's STOPPING=1 status was not seen";
    checkpoint = bus.prop_s(id, "Checkpoint");
    done = checkpoint_done(checkpoint);
    ASSERT_GT(done, 0u);
    ASSERT_LT(done, size) << "the copy finished before it could be stopped";
    EXPECT_EQ(pattern_mismatch(target, done), -1) << "the checkpoint claims bytes that are not there";
  }
  Nbdkit counted(daemon.dir, "counted", "--filter=log pattern size=64M logfile=" + daemon.dir + "/reads.log");
  auto id = copy_job(counted, {"--resume-from", checkpoint});
  bus.wait_terminal(id);
  ASSERT_EQ(bus.prop_s(id, "State"), "completed") << bus.prop_s(id, "StatusText");
  counted.stop();
  EXPECT_EQ(bytes_read_in_log(daemon.dir + "/reads.log"), size - done) << "resume must read only what was missing";
  EXPECT_EQ(pattern_mismatch(target, size), -1);
}

TEST_F(WorkerTest, ForceStopThenResumeEndsByteIdentical) {
  const uint64_t size = 64 * MiB;
  std::string checkpoint;
  {
    Nbdkit slow(daemon.dir, "slow", "--filter=delay pattern size=64M delay-read=20ms");
    auto id = copy_job(slow);
    bus.wait_until(id, [&](Bus& b) { return !b.prop_s(id, "Checkpoint").empty(); });
    ASSERT_TRUE(bus.stop(id, {{"force", true}, {"wait", true}}).ok);
    EXPECT_EQ(bus.prop_i(id, "ExitSignal"), SIGKILL);
    checkpoint = bus.prop_s(id, "Checkpoint");
    EXPECT_EQ(pattern_mismatch(target, checkpoint_done(checkpoint)), -1);
  }
  Nbdkit fast(daemon.dir, "fast", "pattern size=64M");
  auto id = copy_job(fast, {"--resume-from", checkpoint, "--verify"});
  bus.wait_terminal(id);
  ASSERT_EQ(bus.prop_s(id, "State"), "completed") << bus.prop_s(id, "StatusText");
  EXPECT_EQ(pattern_mismatch(target, size), -1);
}

TEST_F(WorkerTest, ResumeOfADifferentSourceIsRefused) {
  Nbdkit src(daemon.dir, "src", "pattern size=8M");
  auto id = copy_job(src, {"--resume-from", "repvisor-copy/1 done=1048576 size=4194304"});
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "failed");
  EXPECT_NE(bus.prop_s(id, "StatusText").find("checkpoint is for a source of 4194304 bytes"), std::string::npos)
      << bus.prop_s(id, "StatusText");
}

TEST_F(WorkerTest, ExtendTimeoutIsHonouredAndBounded) {
  ReadyFifo ready(daemon.dir);
  // On SIGTERM it keeps asking for more time and never ends by itself.
  auto id = bus.submit_ok({"sh", "-c",
                           "trap 'while :; do systemd-notify EXTEND_TIMEOUT_USEC=500000 STATUS=flushing; sleep 0.1; "
                           "done' TERM; echo ready > " +
                               ready.path() + "; while :; do sleep 0.05; done"},
                          {{"stop_timeout_usec", uint64_t{200'000}}});
  ready.wait_line();
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(bus.stop(id, {{"wait", true}}).ok);
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(bus.prop_i(id, "ExitSignal"), SIGKILL) << "it must end by SIGKILL once the extension is used up";
  // 200 ms of stop timeout plus the 1 s maximum extension.
  EXPECT_GE(elapsed, std::chrono::milliseconds(1150)) << "the extension was not honoured";
  EXPECT_NE(daemon.log().find("stop-extended"), std::string::npos);
  EXPECT_NE(daemon.log().find("capped at the configured maximum"), std::string::npos);
}

TEST_F(WorkerTest, MalformedAndOversizedNotifyMessagesAreDropped) {
  ReadyFifo ready(daemon.dir);
  auto id = bus.submit_ok(
      {"sh", "-c",
       "systemd-notify PROGRESS=lots; systemd-notify \"CHECKPOINT=$(head -c 5000 /dev/zero | tr '\\0' c)\"; "
       "systemd-notify \"STATUS=$(head -c 9000 /dev/zero | tr '\\0' s)\"; systemd-notify STATUS=fine; echo ready > " +
           ready.path() + "; exec sleep 1000"});
  ready.wait_line();
  bus.wait_until(id, [&](Bus& b) { return b.prop_s(id, "StatusText") == "fine"; });
  EXPECT_EQ(bus.prop_s(id, "Checkpoint"), "");
  const std::string log = daemon.log();
  EXPECT_NE(log.find("malformed notify message"), std::string::npos) << log;
  EXPECT_NE(log.find("CHECKPOINT longer than 4096 bytes"), std::string::npos) << log;
  EXPECT_NE(log.find("too large"), std::string::npos) << log;
  bus.stop(id, {{"force", true}, {"wait", true}});
}

TEST(Worker, SecondSigtermEndsItAtOnce) {
  const std::string dir = temp_dir();
  {
    // Reads that take 10 s: after the first SIGTERM the worker waits for them, the second ends it.
    const std::string log = dir + "/reads.log";
    Nbdkit slow(dir, "slow", "--filter=log --filter=delay pattern size=64M delay-read=10 logfile=" + log);
    const std::string sock = dir + "/notify";
    const int nfd = bind_notify_socket(sock);
    pid_t pid = fork();
    if (pid == 0) {
      setenv("NOTIFY_SOCKET", sock.c_str(), 1);
      execl(REPVISOR_COPY_PATH, "repvisor-copy", slow.uri().c_str(), (dir + "/t.img").c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    auto wait_for = [&](const char* what) {
      for (;;) {
        pollfd p{nfd, POLLIN, 0};
        ASSERT_EQ(poll(&p, 1, static_cast<int>(kDeadlineUsec / 1000)), 1) << "no " << what;
        char buf[4096];
        ssize_t n = recv(nfd, buf, sizeof buf, 0);
        if (n > 0 && std::string(buf, static_cast<size_t>(n)).find(what) != std::string::npos) return;
      }
    };
    wait_for("READY=1");
    // Reads in flight: nbdkit has logged one (watched with inotify, no polling).
    int in = inotify_init1(IN_CLOEXEC);
    inotify_add_watch(in, log.c_str(), IN_MODIFY);
    for (;;) {
      std::ifstream f(log);
      std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      if (all.find(" Read ") != std::string::npos) break;
      pollfd p{in, POLLIN, 0};
      ASSERT_EQ(poll(&p, 1, static_cast<int>(kDeadlineUsec / 1000)), 1);
      char ev[4096];
      ASSERT_GT(read(in, ev, sizeof ev), 0);
    }
    close(in);
    kill(pid, SIGTERM);
    wait_for("STOPPING=1");  // the first one was taken: it is finishing its reads now
    kill(pid, SIGTERM);
    close(nfd);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
  }
  fs::remove_all(dir);
}
