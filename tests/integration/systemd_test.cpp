// What systemd sees of repvisord: the shipped unit passes systemd-analyze verify, tmpfiles and
// sysusers create what they say in a scratch root, and the daemon speaks sd_notify as the unit
// promises (READY=1, STATUS= with job counts, WATCHDOG=1 from its loop, STOPPING=1).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness.hpp"
#include "sys/cgroup.hpp"

using namespace repvisor::test;
namespace fs = std::filesystem;

namespace {
std::string read_text(const std::string& path) {
  std::stringstream s;
  s << std::ifstream(path).rdbuf();
  return s.str();
}
}  // namespace

TEST(Systemd, UnitPassesSystemdAnalyzeVerify) {
  const std::string dir = temp_dir();
  // The unit as installed, but pointing at the binary under test (verify checks it exists).
  std::string unit = read_text(SOURCE_DIR "/systemd/repvisord.service");
  unit.replace(unit.find("/usr/sbin/repvisord"), strlen("/usr/sbin/repvisord"), REPVISORD_PATH);
  std::ofstream(dir + "/repvisord.service") << unit;
  std::string out;
  EXPECT_EQ(
      run_command("cd " + dir + " && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no ./repvisord.service",
                  &out),
      0)
      << out;
  // Nothing but the deliberate KillMode=process notice may be reported.
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line.find("KillMode=process") == std::string::npos)
      ADD_FAILURE() << "systemd-analyze: " << line;
  // Consistent with the daemon's own defaults: the stop timeout covers its shutdown.
  EXPECT_NE(unit.find("TimeoutStopSec=120s"), std::string::npos);
  EXPECT_NE(unit.find("Delegate=yes"), std::string::npos);
  EXPECT_NE(unit.find("WatchdogSec="), std::string::npos);
  fs::remove_all(dir);
}

TEST(Systemd, TmpfilesAndSysusersCreateWhatTheySay) {
  const std::string root = temp_dir();
  std::string out;
  ASSERT_EQ(run_command("systemd-tmpfiles --create --root=" + root + " " SOURCE_DIR "/systemd/repvisor.tmpfiles", &out),
            0)
      << out;
  struct stat st {};
  ASSERT_EQ(stat((root + "/var/lib/repvisor/volumes").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(stat((root + "/var/lib/repvisor").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(stat((root + "/run/repvisor").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  fs::create_directories(root + "/etc");
  ASSERT_EQ(run_command("systemd-sysusers --root=" + root + " " SOURCE_DIR "/systemd/repvisor.sysusers", &out), 0)
      << out;
  EXPECT_NE(read_text(root + "/etc/group").find("repvisor:x:"), std::string::npos) << read_text(root + "/etc/group");
  fs::remove_all(root);
}

TEST(Systemd, NotifiesReadyStatusWatchdogAndStopping) {
  const std::string dir = temp_dir();
  const std::string sock = dir + "/notify";
  const int fd = bind_notify_socket(sock);
  const std::string cg = "/" + fs::path(dir).filename().string();
  std::ofstream(dir + "/repvisord.toml") << "[daemon]\ncgroup_root = \"" << cg << "\"\n[bus]\nsystem = \"no\"\n";
  const pid_t pid = fork();
  if (pid == 0) {
    setenv("NOTIFY_SOCKET", sock.c_str(), 1);
    setenv("WATCHDOG_USEC", "200000", 1);  // 200 ms: a ping at least every 100 ms
    execl(REPVISORD_PATH, "repvisord", "--config", (dir + "/repvisord.toml").c_str(), "--state-dir",
          (dir + "/state").c_str(), "--runtime-dir", (dir + "/run").c_str(), nullptr);
    _exit(127);
  }
  // Datagrams until READY=1, a STATUS with the job counts and two WATCHDOG=1.
  bool ready = false, status = false;
  int pings = 0;
  std::string seen;
  while (!(ready && status && pings >= 2)) {
    pollfd p{fd, POLLIN, 0};
    ASSERT_GT(poll(&p, 1, static_cast<int>(kDeadlineUsec / 1000)), 0) << "no notification; got: " << seen;
    char buf[4096];
    const ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    ASSERT_GT(n, 0);
    const std::string msg(buf, static_cast<size_t>(n));
    seen += msg + "|";
    ready |= msg.find("READY=1") != std::string::npos;
    status |= msg.find("STATUS=serving: 0 job(s) active, 0 recorded") != std::string::npos;
    if (msg.find("WATCHDOG=1") != std::string::npos) ++pings;
  }
  kill(pid, SIGTERM);
  bool stopping = false;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(kDeadlineUsec / 1000)) <= 0) break;
    char buf[4096];
    const ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) break;
    if (std::string(buf, static_cast<size_t>(n)).find("STOPPING=1") != std::string::npos) {
      stopping = true;
      break;
    }
  }
  EXPECT_TRUE(stopping);
  int st = 0;
  waitpid(pid, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  close(fd);
  rmdir((repvisor::sys::find_cgroup2_mount() + cg).c_str());
  fs::remove_all(dir);
}
