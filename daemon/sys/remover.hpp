// Removes empty directories (the cgroups of jobs that ended) on a thread of its own.
//
// A cgroup's rmdir is ~30 µs of kernel work (its interface files go one by one). When a
// thousand jobs end together, the loop spent ~45 ms removing their cgroups after it had seen
// them all end. Handed over here as each job's cgroup empties, the removals run on the other
// core while the loop reads the next job's end; the loop takes each result before it reports
// that job ended, so what a terminal state promises does not change.
//
// take() does a removal the thread has not begun itself, at once, and waits only for one the
// thread is doing (one rmdir at most). The supervisor hands cgroups over only when several jobs
// end in one loop iteration: a lone job's end removes its own, as the thread's wake-up would
// cost about what the rmdir does.
#pragma once
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace repvisor::sys {

// One directory handed to the Remover, shared by the caller and the thread.
struct Removal {
  std::string path;
  std::atomic<int> state{0};  // Remover::kQueued, kTaken, kDone
  int result = 0;             // 0 (removed, or already gone) or -errno; set before kDone
};

class Remover {
 public:
  Remover();   // starts the thread, every signal blocked in it
  ~Remover();  // finishes what is queued, then joins
  Remover(const Remover&) = delete;
  Remover& operator=(const Remover&) = delete;

  // One caller thread for both (the loop's).
  std::shared_ptr<Removal> submit(std::string path);  // queues it; returns at once
  int take(Removal& r);                               // its result, done here if not yet begun

  static constexpr int kQueued = 0, kTaken = 1, kDone = 2;

 private:
  void run();
  static bool claim(Removal& r);  // kQueued -> kTaken: true for the one side that does it

  std::mutex mutex_;
  std::condition_variable work_, done_;
  std::deque<std::shared_ptr<Removal>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace repvisor::sys
