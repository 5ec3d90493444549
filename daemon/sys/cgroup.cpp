#include "sys/cgroup.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include "sys/pidfd.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string_view>

namespace repvisor::sys {

namespace {

int write_file(const std::string& path, std::string_view data) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return -errno;
  if (::write(fd.get(), data.data(), data.size()) < 0) return -errno;
  return 0;
}

// mountinfo escapes blanks in paths as octal ("\040").
std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::string find_cgroup2_mount() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // "36 35 0:30 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw"
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype;
    tail >> fstype;
    if (fstype != "cgroup2") continue;
    std::istringstream head(line.substr(0, dash));
    std::string id, parent, devno, root, mountpoint;
    head >> id >> parent >> devno >> root >> mountpoint;
    return unescape_mountinfo(mountpoint);
  }
  return {};
}

std::string own_cgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  return {};
}

namespace {
constexpr const char* kOwnerXattr = "trusted.repvisor.owner";
}  // namespace

std::string auto_root_name(std::string_view state_dir) {
  // FNV-1a: stable across builds and machines, unlike std::hash.
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : state_dir) h = (h ^ c) * 0x100000001b3ULL;
  char buf[32];
  snprintf(buf, sizeof buf, "repvisor-%08x", static_cast<unsigned>(h ^ (h >> 32)));
  return buf;
}

std::optional<CgroupTree> CgroupTree::open(const std::string& setting, const std::string& owner, std::string* why) {
  const std::string mount = find_cgroup2_mount();
  if (mount.empty()) {
    *why = "no cgroup2 file system is mounted";
    return std::nullopt;
  }
  std::string root;
  if (setting == "auto") {
    std::string own = own_cgroup();
    if (own.empty()) {
      *why = "cannot tell this process's cgroup from /proc/self/cgroup";
      return std::nullopt;
    }
    if (own == "/") own.clear();
    // Under systemd with Delegate=yes our own cgroup is ours to divide; elsewhere we make a
    // subtree of our own so that we never mix with a foreign manager's cgroups.
    root = mount + own + (getenv("INVOCATION_ID") ? "" : "/" + auto_root_name(owner));
    // A daemon from before the per-state-directory name kept its jobs in "repvisor": while any
    // job cgroup is left there, that stays the root, so that those jobs are found again.
    if (!getenv("INVOCATION_ID")) {
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(mount + own + "/repvisor", ec)) {
        const std::string name = e.path().filename();
        if (e.is_directory() && (name.rfind("job-", 0) == 0 || name.rfind("srv-", 0) == 0)) {
          root = mount + own + "/repvisor";
          break;
        }
      }
    }
  } else if (setting.rfind(mount + "/", 0) == 0) {
    root = setting;
  } else {
    root = mount + setting;
  }
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec) {
    *why = "cannot create " + root + ": " + ec.message();
    return std::nullopt;
  }
  if (access((root + "/cgroup.procs").c_str(), W_OK) != 0) {
    *why = root + " is not a writable cgroup v2 directory";
    return std::nullopt;
  }
  Fd lock(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!lock) {
    *why = "cannot open " + root + ": " + strerror(errno);
    return std::nullopt;
  }
  if (flock(lock.get(), LOCK_EX | LOCK_NB) < 0) {
    std::string holder;
    char buf[4096];
    if (const ssize_t n = fgetxattr(lock.get(), kOwnerXattr, buf, sizeof buf); n > 0)
      holder = " (state directory " + std::string(buf, static_cast<size_t>(n)) + ")";
    throw std::runtime_error("the cgroup root " + root + " is in use by another repvisord" + holder +
                             ": give each daemon a cgroup_root of its own");
  }
  CgroupTree tree(mount, root, owner, std::move(lock));
  // The pids controller for the jobs' cgroups: it must reach the root from above (a hybrid
  // layout keeps it on cgroup v1), and the root must hold no process of its own to pass it on.
  std::string controllers;
  std::getline(std::ifstream(root + "/cgroup.controllers"), controllers);
  if ((" " + controllers + " ").find(" pids ") == std::string::npos)
    tree.pids_unavailable_ = "the pids controller is not available in " + root +
                             (controllers.empty() ? " (no controller is: cgroup v1 holds them)" : "");
  else if (int r = write_file(root + "/cgroup.subtree_control", "+pids"); r < 0)
    tree.pids_unavailable_ =
        "cannot enable the pids controller below " + root + ": " + strerror(-r) +
        (r == -EBUSY ? " (the root holds processes of its own: under systemd, the daemon itself)" : "");
  // Named on the root too, for whoever looks and for the refusal above. Where the mark cannot
  // be written (no xattrs, or no CAP_SYS_ADMIN for trusted.* in a container), the locked root
  // vouches for everything in it instead, and no start fails for want of a mark.
  if (fsetxattr(tree.lock_.get(), kOwnerXattr, owner.data(), owner.size(), 0) < 0) tree.xattrs_ = false;
  return tree;
}

int CgroupTree::set_pids_max(int dir, uint64_t max) {
  Fd fd(::openat(dir, "pids.max", O_WRONLY | O_CLOEXEC));
  if (!fd) return -errno;
  const std::string v = std::to_string(max);
  return ::write(fd.get(), v.data(), v.size()) < 0 ? -errno : 0;
}

bool CgroupTree::owns(const std::string& name) const {
  if (!xattrs_) return true;
  char buf[4096];
  const ssize_t n = getxattr(path_of(name).c_str(), kOwnerXattr, buf, sizeof buf);
  return n >= 0 && std::string_view(buf, static_cast<size_t>(n)) == owner_;
}

int CgroupTree::create(const std::string& name, Fd* dir) const {
  const std::string p = path_of(name);
  if (::mkdir(p.c_str(), 0755) < 0 && errno != EEXIST) return -errno;
  Fd fd(::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return -errno;
  // A mark that cannot be written only means a leftover of this job will not be taken for ours.
  if (xattrs_) (void)fsetxattr(fd.get(), kOwnerXattr, owner_.data(), owner_.size(), 0);
  *dir = std::move(fd);
  return 0;
}

int CgroupTree::kill(const std::string& name) const { return write_file(kill_file(name), "1"); }

int CgroupTree::open_kill(int dir, Fd* kill) {
  Fd fd(::openat(dir, "cgroup.kill", O_WRONLY | O_CLOEXEC));
  if (!fd) return -errno;
  *kill = std::move(fd);
  return 0;
}

int CgroupTree::kill(int kill_fd) { return ::write(kill_fd, "1", 1) < 0 ? -errno : 0; }

int CgroupTree::signal_all(const std::string& name, int sig) const {
  int result = 0;
  for (pid_t pid : procs(name)) {
    // Through a pidfd so that a PID recycled between the read and the signal is never hit
    // unless it was recycled into this very cgroup (impossible: it would have to be ours).
    Fd pidfd(pidfd_open(pid, 0));
    if (!pidfd) continue;
    if (pidfd_send_signal(pidfd.get(), sig, nullptr, 0) < 0 && errno != ESRCH) result = -errno;
  }
  return result;
}

std::vector<pid_t> CgroupTree::procs(const std::string& name) const {
  std::vector<pid_t> out;
  std::ifstream in(path_of(name) + "/cgroup.procs");
  pid_t pid;
  while (in >> pid) out.push_back(pid);
  return out;
}

bool CgroupTree::populated(const std::string& name) const {
  Fd fd(::open(events_file(name).c_str(), O_RDONLY | O_CLOEXEC));
  return fd && populated(fd.get());  // gone: nothing in it
}

int CgroupTree::open_events(int dir, Fd* events) {
  Fd fd(::openat(dir, "cgroup.events", O_RDONLY | O_CLOEXEC));
  if (!fd) return -errno;
  *events = std::move(fd);
  return 0;
}

bool CgroupTree::populated(int events_fd) {
  // The file is a few bytes rendered in one piece ("populated N" first), so a single read from
  // offset 0 has all of it, current as of this call.
  char buf[256];
  const ssize_t n = ::pread(events_fd, buf, sizeof buf, 0);
  return n > 0 && std::string_view(buf, static_cast<size_t>(n)).find("populated 1") != std::string_view::npos;
}

int CgroupTree::remove(const std::string& name) const {
  if (::rmdir(path_of(name).c_str()) < 0 && errno != ENOENT) return -errno;
  return 0;
}

}  // namespace repvisor::sys
