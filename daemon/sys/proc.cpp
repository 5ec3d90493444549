#include "sys/proc.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

#include "util/fd.hpp"

namespace repvisor::sys {

namespace {
// The fields of /proc/PID/stat after the command name (which may itself hold blanks and
// parentheses), from one read, state (field 3) first; empty when the process is gone. Read per
// job start and per session scan: no stream objects.
std::string stat_tail(pid_t pid) {
  char path[32];
  snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  Fd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  char buf[4096];
  const ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n <= 0) return {};
  const std::string_view all(buf, static_cast<size_t>(n));
  const size_t close = all.rfind(')');
  if (close == std::string_view::npos || close + 2 >= all.size()) return {};
  return std::string(all.substr(close + 2));
}

// Field `n` of /proc/PID/stat (1-based, as proc(5) counts) out of stat_tail().
std::string_view stat_field(std::string_view tail, int n) {
  for (int i = 3; i < n; ++i) {
    const size_t blank = tail.find(' ');
    if (blank == std::string_view::npos) return {};
    tail.remove_prefix(blank + 1);
  }
  return tail.substr(0, tail.find(' '));
}

bool read_stat(pid_t pid, char* state, pid_t* sid) {
  const std::string tail = stat_tail(pid);
  const std::string_view st = stat_field(tail, 3), session = stat_field(tail, 6);
  pid_t s = 0;
  if (st.empty() || std::from_chars(session.data(), session.data() + session.size(), s).ec != std::errc()) return false;
  if (state) *state = st.front();
  if (sid) *sid = s;
  return true;
}
}  // namespace

bool thread_has_children() {
  // WNOWAIT: a zombie is only looked at, left for whoever reaps it. ECHILD is the one answer
  // that says "none"; any other (a child still running, a zombie, an error) says look.
  siginfo_t si{};
  return ::waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT | __WALL | __WNOTHREAD) == 0 || errno != ECHILD;
}

std::vector<pid_t> thread_children() {
  std::vector<pid_t> out;
  // One read and a hand parse: called per job end.
  Fd fd(::open("/proc/thread-self/children", O_RDONLY | O_CLOEXEC));
  if (!fd) return out;
  std::string text;
  char buf[16384];
  ssize_t n;
  while ((n = ::read(fd.get(), buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    pid_t pid = 0;
    auto [next, ec] = std::from_chars(p, end, pid);
    if (ec == std::errc()) out.push_back(pid);
    p = next + 1;  // past the separating space
  }
  return out;
}

std::vector<pid_t> session_members(pid_t sid, bool with_zombies) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    char* end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 0) continue;
    char st;
    pid_t s;
    if (read_stat(static_cast<pid_t>(pid), &st, &s) && s == sid && (with_zombies || st != 'Z'))
      out.push_back(static_cast<pid_t>(pid));
  }
  closedir(d);
  return out;
}

}  // namespace repvisor::sys

namespace repvisor::sys {

uint64_t process_start_time(pid_t pid) {
  const std::string tail = stat_tail(pid);
  const std::string_view start = stat_field(tail, 22);
  uint64_t v = 0;
  if (std::from_chars(start.data(), start.data() + start.size(), v).ec != std::errc()) return 0;
  return v;
}

pid_t process_session(pid_t pid) {
  pid_t sid = -1;
  return read_stat(pid, nullptr, &sid) ? sid : -1;
}

std::string process_cgroup(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) {
      // A zombie, or a process between leaving its cgroup and becoming one, still names the
      // cgroup it was in; once that cgroup is removed the kernel adds " (deleted)"
      // (proc_cgroup_show). It was still that cgroup's: the job's exiting orphans are found by it.
      constexpr std::string_view kDeleted = " (deleted)";
      if (line.ends_with(kDeleted)) line.resize(line.size() - kDeleted.size());
      return line.substr(3);
    }
  return {};
}

}  // namespace repvisor::sys
