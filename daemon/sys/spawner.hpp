// Starts processes from a thread of its own, so that they are that thread's children.
//
// We are child subreaper: the orphans a job leaves are reparented to our thread group leader,
// the loop's thread. Were the jobs' main processes also its children, every look for orphans
// (waitid(P_ALL) on SIGCHLD, the children list read when a job ends) would walk all of them:
// O(jobs) per job end, ~0.2 ms at 1,000 jobs. Started from here, the loop thread's children
// are only orphans, and it looks at its own children only (__WNOTHREAD, /proc/thread-self).
// The caller waits for each spawn as it would for sys::spawn(): nothing else changes for it
// (waitid on a pidfd works from any thread of the group).
#pragma once
#include <condition_variable>
#include <mutex>
#include <thread>

#include "sys/spawn.hpp"

namespace repvisor::sys {

class Spawner {
 public:
  Spawner();   // starts the thread, every signal blocked in it
  ~Spawner();  // stops it; its children, if any are left, go to another thread of ours
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  // sys::spawn(), run on the spawner's thread; blocks the caller until it returns. One caller
  // (the loop's thread).
  int spawn(const SpawnRequest& req, Spawned* out);

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const SpawnRequest* req_ = nullptr;  // set: a spawn is asked for
  Spawned* out_ = nullptr;
  int result_ = 0;
  bool finished_ = false, stopping_ = false;
  std::thread thread_;
};

}  // namespace repvisor::sys
