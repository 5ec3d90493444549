// Job logs stay bounded ([logs]): the real daemon, real jobs flooding their stdout. Every wait is
// on an event (PropertiesChanged of LogBytesCut or State, a FIFO), never a sleep.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/log_index.hpp"
#include "harness.hpp"

using namespace repvisor::test;

namespace {

constexpr uint64_t MiB = uint64_t{1024} * 1024;

uint64_t file_size(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ctl(const Daemon& d, const std::string& args, int* status = nullptr) {
  std::string out;
  const int r = run_command(std::string(REPVISORCTL_PATH) + " --runtime-dir " + d.runtime_dir + " " + args, &out);
  if (status) *status = r;
  return out;
}

std::string logs_config(const std::string& logs, const std::string& daemon_keys = "") {
  return daemon_keys + "\n[logs]\n" + logs;
}

}  // namespace

TEST(Logs, AFloodingJobsLogStaysBoundedAndStatusSaysWhatWasCut) {
  Daemon daemon(logs_config("max_size = \"1MiB\"\nkeep = \"both\""));
  Bus bus(daemon.address());
  const std::string id = bus.submit_ok({"sh", "-c", "echo first line; exec yes AAAAAAAAAAAAAAAA"});
  const std::string log = bus.prop_s(id, "LogPath");
  // 256 MiB written past the limit: a log without a bound would hold them all. While the job
  // runs the log may be over max_size by the slack (what it writes between two looks: tens of
  // MB at page-cache speed, more on a loaded host), not by what was cut.
  bus.wait_until(id, [&](Bus& b) { return b.prop_t(id, "LogBytesCut") >= 256 * MiB; });
  EXPECT_EQ(bus.prop_s(id, "State"), "running");
  EXPECT_LT(file_size(log), 128 * MiB) << "not bounded: half of what was cut is still there";
  EXPECT_EQ(bus.prop_s(id, "LogKeep"), "both");
  ASSERT_TRUE(bus.stop(id, {{"wait", true}}).ok);
  // Once the job has ended, its last look cuts it to max_size (whole blocks: at most one over).
  bus.wait_until(id, [&](Bus&) { return file_size(log) <= MiB + 4096; });
  const std::string all = read_all(log);
  EXPECT_EQ(all.rfind("first line\n", 0), 0u) << "the head is kept";
  const size_t marker = all.find("\n[repvisor: ");
  ASSERT_NE(marker, std::string::npos) << "no marker";
  EXPECT_LT(marker, MiB / 2 + 4096);
  EXPECT_NE(all.find(" bytes of this log were cut here]", marker), std::string::npos);
  const std::string status = ctl(daemon, "status " + id);
  EXPECT_NE(status.find("Log: " + log + " (cut: "), std::string::npos) << status;
  EXPECT_NE(status.find(" dropped, the first and last 512 KiB kept)"), std::string::npos) << status;
}

TEST(Logs, TailKeepsExactlyTheLastBytesTheJobWrote) {
  Daemon daemon(logs_config("max_size = \"1MiB\"\nkeep = \"tail\""));
  Bus bus(daemon.address());
  constexpr uint64_t kTotal = 100'000'000;
  const std::string id = bus.submit_ok({"sh", "-c", "yes 0123456789abcdef | head -c " + std::to_string(kTotal)});
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "completed");
  // The final look cuts the log to max_size once the job has ended, and its report follows:
  // wait for both, not for time. The sum holds whenever the report is the latest.
  bus.wait_until(id, [&](Bus& b) {
    const uint64_t size = file_size(b.prop_s(id, "LogPath"));
    return size <= MiB + 4096 && b.prop_t(id, "LogBytesCut") + size == kTotal;
  });
  const uint64_t cut = bus.prop_t(id, "LogBytesCut");
  const std::string all = read_all(bus.prop_s(id, "LogPath"));
  EXPECT_GE(all.size(), MiB);
  EXPECT_LE(all.size(), MiB + 4096);
  EXPECT_EQ(cut + all.size(), kTotal);
  EXPECT_EQ(bus.prop_s(id, "LogKeep"), "tail");
  // Every byte is the one the job wrote at that place: byte k of its output is line[k % 17].
  const std::string line = "0123456789abcdef\n";
  size_t wrong = 0;
  for (size_t i = 0; i < all.size(); ++i) wrong += all[i] != line[(cut + i) % line.size()];
  EXPECT_EQ(wrong, 0u);
  EXPECT_NE(ctl(daemon, "status " + id).find("the last 1 MiB kept)"), std::string::npos);
}

TEST(Logs, TheTotalCapCutsTheOldestFinishedLogFirst) {
  Daemon daemon(logs_config("max_size = \"1MiB\"\nkeep = \"tail\"\nmax_total = \"2MiB\""));
  Bus bus(daemon.address());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {  // 900 KiB each: each under max_size, all three over max_total
    ids.push_back(bus.submit_ok({"sh", "-c", "yes job" + std::to_string(i) + " | head -c 921600"}));
    bus.wait_terminal(ids.back());
  }
  // The oldest is cut (each time the total is over, after a round of looks) until all three fit,
  // but for less than a block: a cut removes whole blocks. Its report comes after each cut.
  auto total = [&] {
    uint64_t t = 0;
    for (const auto& id : ids) t += file_size(bus.prop_s(id, "LogPath"));
    return t;
  };
  const std::string first_log = bus.prop_s(ids[0], "LogPath");
  bus.wait_until(ids[0], [&](Bus& b) {
    const uint64_t cut = b.prop_t(ids[0], "LogBytesCut");
    return cut > 0 && total() < 2 * MiB + 4096 && cut + file_size(first_log) == 921600;
  });
  EXPECT_EQ(bus.prop_t(ids[1], "LogBytesCut"), 0u) << "a newer log was cut before the oldest";
  EXPECT_EQ(bus.prop_t(ids[2], "LogBytesCut"), 0u);
  const std::string first = read_all(first_log);
  EXPECT_EQ(first.substr(first.size() - 5), "job0\n") << "its last bytes are kept";
}

TEST(Logs, AnAdoptedJobsLogStaysBoundedAfterADaemonRestart) {
  Daemon daemon(logs_config("max_size = \"1MiB\"\nkeep = \"tail\"", "recovery = \"adopt\""));
  const std::string go = daemon.dir + "/go";
  ASSERT_EQ(mkfifo(go.c_str(), 0600), 0);
  std::string id;
  {
    Bus bus(daemon.address());
    ReadyFifo ready(daemon.dir);
    id = bus.submit_ok({"sh", "-c", "echo ready > " + ready.path() + "; read x < " + go + "; exec yes AAAAAAAA"});
    ready.wait_line();
    // A call read after the start: it was recorded in the iteration that started it (Submit
    // answers before that, once the job is recorded pending).
    ASSERT_EQ(bus.prop_s(id, "State"), "running");
  }
  kill(daemon.pid, SIGKILL);
  ASSERT_EQ(daemon.wait_exit(), 128 + SIGKILL);
  daemon.start();
  Bus bus(daemon.address());
  ASSERT_EQ(bus.prop_s(id, "State"), "running");
  std::ofstream(go) << "go\n";  // it floods only now, under the new daemon
  bus.wait_until(id, [&](Bus& b) { return b.prop_t(id, "LogBytesCut") >= 256 * MiB; });
  EXPECT_LT(file_size(bus.prop_s(id, "LogPath")), 128 * MiB);
  ASSERT_TRUE(bus.stop(id, {{"wait", true}}).ok);
}

TEST(Logs, FollowingALogGoesOnAfterItIsCut) {
  Daemon daemon(logs_config("max_size = \"256KiB\"\nkeep = \"tail\""));
  Bus bus(daemon.address());
  const std::string go = daemon.dir + "/go";
  ASSERT_EQ(mkfifo(go.c_str(), 0600), 0);
  // Numbered lines, ~2.5 MB: cut many times while `logs -f` reads it.
  const std::string id = bus.submit_ok(
      {"sh", "-c",
       "read x < " + go + "; exec awk 'BEGIN { for (i = 1; i <= 300000; i++) { print \"line-\" i; fflush() } }'"});
  const std::string out = daemon.dir + "/follow.out", err = daemon.dir + "/follow.err";
  const pid_t follower = fork();
  if (follower == 0) {
    freopen(out.c_str(), "w", stdout);
    freopen(err.c_str(), "w", stderr);
    execl(REPVISORCTL_PATH, "repvisorctl", "--runtime-dir", daemon.runtime_dir.c_str(), "logs", "-f", id.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  std::ofstream(go) << "go\n";
  int status = 0;
  ASSERT_EQ(waitpid(follower, &status, 0), follower);  // it ends with the job
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_all(err);
  // ~2.3 MB through a 256 KiB log: cut, at the latest by its last look after the job ended.
  bus.wait_until(id, [&](Bus& b) { return b.prop_t(id, "LogBytesCut") > 0; });
  // Whole lines in order, none garbled, up to the last one: a cut may skip lines the reader had
  // not reached, never repeat or splice them. The first may be partial: a log cut before the
  // reader started begins where the cut fell.
  std::istringstream lines(read_all(out));
  std::string l;
  long last = 0, count = 0, bad = 0, backwards = 0;
  std::string seen_bad;
  while (std::getline(lines, l)) {
    if (++count == 1) continue;
    if (l.rfind("line-", 0) != 0 || l.size() < 6 || l.find_first_not_of("0123456789", 5) != std::string::npos) {
      if (++bad < 5) seen_bad += " '" + l + "' after line-" + std::to_string(last) + ";";
      continue;
    }
    const long n = std::stol(l.substr(5));
    if (n <= last && ++backwards < 5)
      seen_bad += " line-" + std::to_string(n) + " after line-" + std::to_string(last) + ";";
    last = n;
  }
  EXPECT_EQ(bad, 0) << "garbled lines:" << seen_bad;
  EXPECT_EQ(backwards, 0) << "lines repeated or out of order:" << seen_bad;
  EXPECT_EQ(last, 300000);
  EXPECT_GT(count, 1000);
}

TEST(Logs, OnTmpfsTheHeadIsKeptWithTheMarkerAtItsEnd) {
  // tmpfs cannot remove a file's first blocks: keep = "tail" falls back to the head, and the
  // daemon says so once.
  std::string mounted;
  struct Unmount {
    std::string& path;
    ~Unmount() {
      if (!path.empty()) umount2(path.c_str(), MNT_DETACH);
    }
  } unmount{mounted};  // after the daemon below has gone
  Daemon daemon(logs_config("max_size = \"1MiB\"\nkeep = \"tail\""), [&](Daemon& d) {
    std::filesystem::create_directories(d.state_dir);
    ASSERT_EQ(mount("tmpfs", d.state_dir.c_str(), "tmpfs", 0, "size=64m"), 0) << strerror(errno);
    mounted = d.state_dir;
  });
  Bus bus(daemon.address());
  const std::string id = bus.submit_ok({"sh", "-c", "echo first line; yes BBBBBBBB | head -c 5000000"});
  const std::string log = bus.prop_s(id, "LogPath");
  bus.wait_terminal(id);
  // Sealed by the last look once the job has ended: exactly max_size, the marker last (while
  // it ran, the log was truncated to max_size without one).
  bus.wait_until(id, [&](Bus&) { return read_all(log).rfind("\n[repvisor: ") == MiB - 96; });
  const std::string all = read_all(log);
  EXPECT_EQ(all.size(), MiB);
  EXPECT_EQ(bus.prop_s(id, "LogKeep"), "head");
  EXPECT_EQ(all.rfind("first line\nBBBBBBBB\n", 0), 0u);
  bus.wait_until(id, [&](Bus& b) {
    return all.find("[repvisor: " + std::to_string(b.prop_t(id, "LogBytesCut")) + " bytes", MiB - 96) !=
           std::string::npos;
  });
  // Head counts may miss what the job appended between a look and its truncation, never more.
  EXPECT_LE(bus.prop_t(id, "LogBytesCut"), 5'000'011u - (MiB - 96));
  EXPECT_NE(daemon.log().find("cannot remove a file's first blocks"), std::string::npos);
  EXPECT_NE(ctl(daemon, "status " + id).find("the first 1 MiB kept)"), std::string::npos);
}

TEST(Logs, ADeletedFloodingJobsLogIsReusedEmpty) {
  // A deleted job's log goes back to the pool (sys/file_pool.hpp) and becomes the next job's:
  // no cut of the old job's may land in it.
  Daemon daemon(logs_config("max_size = \"1MiB\"\nkeep = \"both\""));
  Bus bus(daemon.address());
  const std::string flood = bus.submit_ok({"sh", "-c", "exec yes AAAAAAAAAAAAAAAA"});
  bus.wait_until(flood, [&](Bus& b) { return b.prop_t(flood, "LogBytesCut") > 0; });
  const auto r = bus.remove(flood, {{"force", true}});
  ASSERT_TRUE(r.ok) << r.error_message;
  const std::string id = bus.submit_ok({"sh", "-c", "echo hello"});
  bus.wait_terminal(id);
  EXPECT_EQ(read_all(bus.prop_s(id, "LogPath")), "hello\n");
  EXPECT_EQ(bus.prop_t(id, "LogBytesCut"), 0u);
}

TEST(Logs, TheCutsOfAFinishedJobAreKeptAcrossARestart) {
  Daemon daemon(logs_config("max_size = \"1MiB\"\nkeep = \"tail\""));
  std::string id;
  uint64_t cut = 0;
  {
    Bus bus(daemon.address());
    id = bus.submit_ok({"sh", "-c", "yes | head -c 5000000"});
    bus.wait_terminal(id);
    bus.wait_until(id, [&](Bus& b) {
      return b.prop_t(id, "LogBytesCut") + file_size(b.prop_s(id, "LogPath")) == 5'000'000 &&
             file_size(b.prop_s(id, "LogPath")) <= MiB + 4096;
    });
    cut = bus.prop_t(id, "LogBytesCut");
  }
  ASSERT_EQ(daemon.terminate(), 0);
  daemon.start();
  Bus bus(daemon.address());
  EXPECT_EQ(bus.prop_t(id, "LogBytesCut"), cut);
  EXPECT_EQ(bus.prop_s(id, "LogKeep"), "tail");
  EXPECT_EQ(bus.prop_t(id, "LogLimit"), MiB);
}

TEST(Logs, AReloadedMaxSizeBoundsARunningJobsLog) {
  Daemon daemon(logs_config("max_size = \"1TiB\"\nmax_total = \"2TiB\""));
  Bus bus(daemon.address());
  const std::string id = bus.submit_ok({"sh", "-c", "exec yes AAAAAAAAAAAAAAAA"});
  std::filesystem::create_directories(daemon.config_path + ".d");
  std::ofstream(daemon.config_path + ".d/50-logs.toml") << "[logs]\nmax_size = \"1MiB\"\nmax_total = \"1GiB\"\n";
  kill(daemon.pid, SIGHUP);
  bus.wait_until(id, [&](Bus& b) { return b.prop_t(id, "LogLimit") == MiB && b.prop_t(id, "LogBytesCut") > 0; });
  ASSERT_TRUE(bus.stop(id, {{"wait", true}}).ok);
  bus.wait_until(id, [&](Bus&) { return file_size(bus.prop_s(id, "LogPath")) <= MiB + 4096; });
}

namespace {
// Waits, on inotify events of its directory, until `pred` holds for the file; false after 30 s.
bool wait_for_file(const std::string& path, const std::function<bool()>& pred) {
  const std::string dir = std::filesystem::path(path).parent_path();
  const int in = inotify_init1(IN_CLOEXEC);
  if (in < 0 || inotify_add_watch(in, dir.c_str(), IN_CREATE | IN_MODIFY | IN_MOVED_TO) < 0) return false;
  bool ok = pred();
  for (int i = 0; !ok && i < 3000; ++i) {
    pollfd p{in, POLLIN, 0};
    if (poll(&p, 1, 10) > 0) {
      char buf[4096];
      ssize_t ignored = read(in, buf, sizeof buf);
      (void)ignored;
    }
    ok = pred();
  }
  close(in);
  return ok;
}

std::vector<repvisor::core::LogStamp> stamps_of(const std::string& log) {
  return repvisor::core::decode_log_index(read_all(repvisor::core::log_index_path(log)));
}

repvisor::usec_t realtime_usec() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<repvisor::usec_t>(ts.tv_sec) * 1'000'000 + static_cast<repvisor::usec_t>(ts.tv_nsec) / 1000;
}
}  // namespace

// The daemon stamps when it saw the log grow: each part of the job's output gets a stamp no
// earlier than the moment the test let the job write it, and the index goes with the log.
TEST(Logs, TheIndexStampsWhenEachPartWasWrittenAndGoesWithTheLog) {
  Daemon daemon(logs_config("max_size = \"1MiB\""));
  Bus bus(daemon.address());
  const std::string go = daemon.dir + "/go";
  ASSERT_EQ(mkfifo(go.c_str(), 0600), 0);
  const repvisor::usec_t before = realtime_usec();
  const std::string id = bus.submit_ok({"sh", "-c", "echo one; read x < " + go + "; echo three; read x < " + go});
  const std::string log = bus.prop_s(id, "LogPath");
  ASSERT_TRUE(wait_for_file(repvisor::core::log_index_path(log), [&] {
    const auto s = stamps_of(log);
    return !s.empty() && s.back().written == 4;
  })) << "no stamp for the first part";
  const repvisor::usec_t first = stamps_of(log).back().usec;
  EXPECT_GE(first, before);
  const repvisor::usec_t middle = realtime_usec();
  EXPECT_LE(first, middle);
  std::ofstream(go) << "\n";
  ASSERT_TRUE(wait_for_file(repvisor::core::log_index_path(log), [&] {
    const auto s = stamps_of(log);
    return !s.empty() && s.back().written == 10;
  })) << "no stamp for the second part";
  const auto stamps = stamps_of(log);
  EXPECT_GE(stamps.back().usec, middle) << "the second part stamped before it could be written";
  for (size_t i = 1; i < stamps.size(); ++i) {
    EXPECT_LT(stamps[i - 1].written, stamps[i].written);
    EXPECT_LE(stamps[i - 1].usec, stamps[i].usec);
  }
  EXPECT_EQ(repvisor::core::written_by(stamps, 0), first) << "'one' was seen by the first stamp";
  EXPECT_EQ(repvisor::core::first_written_since(stamps, middle), 4u) << "only 'three' was written after";
  // repvisorctl: what was written since a time, and each line with the time it was seen by.
  const std::string at = fmt::format("@{}.{:06}", middle / 1'000'000, middle % 1'000'000);
  EXPECT_EQ(ctl(daemon, "logs --since " + at + " " + id), "three\n");
  EXPECT_EQ(ctl(daemon, "logs --since '1h ago' " + id), "one\nthree\n");
  const std::string stamped = ctl(daemon, "logs -t " + id);
  EXPECT_TRUE(stamped.starts_with(" 20")) << stamped;
  EXPECT_NE(stamped.find(" one\n "), std::string::npos) << stamped;
  EXPECT_TRUE(stamped.ends_with(" three\n")) << stamped;
  int status = 0;
  EXPECT_NE(ctl(daemon, "logs --since yesterdayish " + id, &status).find("--since: 'yesterdayish' is not a time"),
            std::string::npos);
  EXPECT_EQ(status, 2);
  std::ofstream(go) << "\n";
  bus.wait_terminal(id);
  ASSERT_TRUE(bus.remove(id, {}).ok);
  EXPECT_FALSE(std::filesystem::exists(repvisor::core::log_index_path(log)));
}
