#include "sys/spawner.hpp"

#include "util/thread.hpp"

namespace repvisor::sys {

Spawner::Spawner(unsigned threads) {
  // Made here, on the caller's thread at its start-up, so that their slots sit low.
  for (unsigned i = 0; i < threads; ++i) contexts_.push_back(std::make_unique<SpawnContext>());
  for (unsigned i = 0; i < threads; ++i)
    threads_.push_back(thread_without_signals([this, c = contexts_[i].get()] { run(*c); }));
}

Spawner::~Spawner() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_.notify_all();
  for (auto& t : threads_) t.join();
}

void Spawner::submit(SpawnTask* task) {
  task->done = false;
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(task);
  }
  work_.notify_one();
}

int Spawner::wait(SpawnTask* task) {
  std::unique_lock lock(mutex_);
  done_.wait(lock, [&] { return task->done; });
  return task->result;
}

int Spawner::spawn(const SpawnRequest& req, Spawned* out) {
  SpawnTask task;
  task.req = &req;
  submit(&task);
  const int r = wait(&task);
  *out = std::move(task.child);
  return r;
}

void Spawner::run(SpawnContext& spawning) {
  std::unique_lock lock(mutex_);
  for (;;) {
    work_.wait(lock, [&] { return !queue_.empty() || stopping_; });
    // Nothing is queued when we stop: every task is waited for, so the caller is not stopping us.
    if (stopping_) return;
    SpawnTask* task = queue_.front();
    queue_.pop_front();
    // The task is ours until we say done; the caller touches it only after.
    lock.unlock();
    Spawned child;
    const int r = sys::spawn(*task->req, spawning, &child);
    lock.lock();
    task->child = std::move(child);
    task->result = r;
    task->done = true;
    done_.notify_all();
  }
}

}  // namespace repvisor::sys
