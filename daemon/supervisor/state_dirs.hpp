// The daemon's directories: the state directory, which one daemon at a time holds by its lock;
// the job logs under it; the runtime directory, with one directory per job for its sockets; and
// the volume roots. Made at start; nothing here knows of jobs beyond their ids.
#pragma once
#include <string>

#include "config/config.hpp"
#include "util/fd.hpp"

namespace repvisor {

class StateDirs {
 public:
  explicit StateDirs(const config::Config& cfg) : cfg_(cfg) {}

  // Creates what is missing and takes the state directory's lock, waiting a bounded time for a
  // lock the job of a dead daemon still holds. Throws, naming the directory and the holder.
  void create_and_lock();

  std::string job_runtime_dir(const std::string& id) const { return cfg_.runtime_dir + "/jobs/" + id; }
  // 0 or -errno. One mkdir in the common case; the parents only when they were removed under us.
  int make_job_runtime_dir(const std::string& id) const;
  // Whether it is gone (or was never there); a directory left is tried again at the job's next end.
  bool remove_job_runtime_dir(const std::string& id) const;

 private:
  void lock();

  const config::Config& cfg_;
  Fd lock_fd_;  // held for the daemon's lifetime: its flock is the lock
};

}  // namespace repvisor
