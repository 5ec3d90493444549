// Starts processes from threads of their own, so that they are those threads' children.
//
// We are child subreaper: the orphans a job leaves are reparented to our thread group leader,
// the loop's thread. Were the jobs' main processes also its children, every look for orphans
// (waitid(P_ALL) on SIGCHLD, the children list read when a job ends) would walk all of them:
// O(jobs) per job end, ~0.2 ms at 1,000 jobs. Started from here, the loop thread's children
// are only orphans, and it looks at its own children only (__WNOTHREAD, /proc/thread-self).
// waitid on a pidfd works from any thread of the group.
//
// A spawn returns once the child has exec'd (vfork semantics: that is how a failed exec is
// reported), ~0.4 ms on the development machine, nearly all of it the kernel's exec and the
// wait for a core. A caller with several to start submits them first and waits for each in
// turn: the threads run the clones meanwhile (several at a time), and the caller does its own
// work on the ones already done.
#pragma once
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "sys/spawn.hpp"

namespace repvisor::sys {

// One spawn handed to the Spawner. The caller owns it, and the request it points to, until
// wait() has returned for it: every submitted task must be waited for.
struct SpawnTask {
  const SpawnRequest* req = nullptr;
  Spawned child;   // the result, once done
  int result = 0;  // 0 or -errno, as sys::spawn()
  bool done = false;
};

class Spawner {
 public:
  explicit Spawner(unsigned threads = 1);  // starts them, every signal blocked in them
  ~Spawner();  // lets the spawns under way finish; their children, if left, go to another thread
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;

  // One caller thread for everything here (the loop's).
  void submit(SpawnTask* task);                      // queues it (begun in submission order); returns at once
  int wait(SpawnTask* task);                         // until it is done; its result
  int spawn(const SpawnRequest& req, Spawned* out);  // submit, then wait

 private:
  void run(SpawnContext& spawning);

  std::mutex mutex_;
  std::condition_variable work_, done_;
  std::deque<SpawnTask*> queue_;
  bool stopping_ = false;
  std::vector<std::unique_ptr<SpawnContext>> contexts_;  // one each thread's, made before any starts
  std::vector<std::thread> threads_;
};

}  // namespace repvisor::sys
