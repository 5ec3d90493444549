#include "sys/proc.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "util/fd.hpp"

namespace repvisor::sys {

namespace {
// Fields of /proc/PID/stat after the command name, which may itself hold blanks and parentheses.
bool read_stat(pid_t pid, char* state, pid_t* sid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = s.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(s.substr(close + 2));
  pid_t ppid, pgrp, session;
  char st;
  if (!(rest >> st >> ppid >> pgrp >> session)) return false;
  if (state) *state = st;
  if (sid) *sid = session;
  return true;
}
}  // namespace

std::vector<pid_t> own_children() {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc/self/task");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    // One read and a hand parse: called per job end, over a list as long as the job count.
    Fd fd(::open((std::string("/proc/self/task/") + e->d_name + "/children").c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) continue;
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
  }
  closedir(d);
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
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string st((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = st.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(st.substr(close + 2));
  std::string field;
  // After the command: state is field 3, starttime is field 22.
  for (int i = 3; i <= 22; ++i)
    if (!(rest >> field)) return 0;
  return std::stoull(field);
}

pid_t process_session(pid_t pid) {
  pid_t sid = -1;
  return read_stat(pid, nullptr, &sid) ? sid : -1;
}

std::string process_cgroup(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  return {};
}

}  // namespace repvisor::sys
