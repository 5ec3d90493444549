// The cgroup v2 subtree the daemon puts its jobs in: one child cgroup per job, entered
// race-free by clone3(CLONE_INTO_CGROUP), killed as a whole with cgroup.kill.
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/fd.hpp"

namespace repvisor::sys {

// Mount point of the cgroup2 file system, from /proc/self/mountinfo; empty when none.
std::string find_cgroup2_mount();
// This process's cgroup v2 path ("/system.slice/repvisord.service"); empty when unknown.
std::string own_cgroup();

// The root "auto" makes below this process's own cgroup outside systemd: one per state
// directory ("repvisor-" and a hash of it), so that two daemons started from one cgroup never
// share a root.
std::string auto_root_name(std::string_view state_dir);

class CgroupTree {
 public:
  // setting: "auto" or an absolute path (a cgroup path below the cgroup2 mount, or a file-system
  // path inside it). Creates the root when missing. nullopt with *why when unusable. The root is
  // locked (flock) for as long as the tree is open: a second daemon on the same root is refused
  // with a std::runtime_error, never given the fallback. owner (the state directory) marks every
  // cgroup this tree creates (the trusted.repvisor.owner xattr).
  static std::optional<CgroupTree> open(const std::string& setting, const std::string& owner, std::string* why);

  const std::string& root() const { return root_; }
  std::string path_of(const std::string& name) const { return root_ + "/" + name; }
  // The cgroup's name as /proc/PID/cgroup shows it ("/repvisor/job-<id>").
  std::string cgroup_of(const std::string& name) const { return root_.substr(mount_.size()) + "/" + name; }

  // Creates (or reuses an empty) child cgroup, marked as ours, and returns an O_DIRECTORY fd for
  // clone3; -errno.
  int create(const std::string& name, Fd* dir) const;
  // "" when job cgroups can be given pids.max (the pids controller is enabled for the root's
  // children), else why not: a submit that asks for tasks_max is refused with it.
  const std::string& pids_unavailable() const { return pids_unavailable_; }
  // Writes the child cgroup's pids.max (dir as create() returned it); -errno.
  static int set_pids_max(int dir, uint64_t max);
  // Whether the child cgroup is marked as created by this tree's owner. A daemon kills no cgroup
  // it did not create. Without xattrs on cgroupfs, the locked root vouches for all of it.
  bool owns(const std::string& name) const;
  // cgroup.kill; -ENOENT on kernels without it (before 5.14) and for a cgroup gone: either way
  // signal_all is the fallback, and finds nothing in a cgroup gone.
  int kill(const std::string& name) const;
  // cgroup.kill of the cgroup open as dir, kept open while the job runs, so that a stop's kill
  // is one write instead of a walk of the whole path first; -errno (-ENOENT: no cgroup.kill).
  static int open_kill(int dir, Fd* kill);
  static int kill(int kill_fd);
  int signal_all(const std::string& name, int sig) const;  // each process in cgroup.procs
  std::vector<pid_t> procs(const std::string& name) const;
  bool populated(const std::string& name) const;
  // cgroup.events of the cgroup open as dir, kept open by a watcher so that each look at it is
  // one pread (the kernel renders the file afresh from offset 0); -errno.
  static int open_events(int dir, Fd* events);
  static bool populated(int events_fd);       // false when unreadable: a removed cgroup holds nothing
  int remove(const std::string& name) const;  // rmdir; 0 when already gone
  std::string events_file(const std::string& name) const { return path_of(name) + "/cgroup.events"; }
  std::string kill_file(const std::string& name) const { return path_of(name) + "/cgroup.kill"; }

 private:
  CgroupTree(std::string mount, std::string root, std::string owner, Fd lock)
      : mount_(std::move(mount)), root_(std::move(root)), owner_(std::move(owner)), lock_(std::move(lock)) {}
  std::string mount_, root_, owner_;
  Fd lock_;             // the root, flock'ed: one daemon per root
  bool xattrs_ = true;  // cgroupfs takes trusted.* xattrs (Linux 3.x on)
  std::string pids_unavailable_;
};

}  // namespace repvisor::sys
