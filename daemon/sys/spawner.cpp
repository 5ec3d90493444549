#include "sys/spawner.hpp"

#include <pthread.h>
#include <signal.h>

namespace repvisor::sys {

Spawner::Spawner() {
  // Signals stay with the loop's thread (libuv's handlers write into its loop).
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  thread_ = std::thread([this] { run(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

Spawner::~Spawner() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

int Spawner::spawn(const SpawnRequest& req, Spawned* out) {
  std::unique_lock lock(mutex_);
  req_ = &req;
  out_ = out;
  finished_ = false;
  wake_.notify_one();
  done_.wait(lock, [&] { return finished_; });
  req_ = nullptr;
  return result_;
}

void Spawner::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return req_ != nullptr || stopping_; });
    if (stopping_) return;
    // The caller waits, holding nothing; the request and its result are ours until we say done.
    const SpawnRequest* req = req_;
    Spawned* out = out_;
    req_ = nullptr;
    lock.unlock();
    const int r = sys::spawn(*req, out);
    lock.lock();
    result_ = r;
    finished_ = true;
    done_.notify_one();
  }
}

}  // namespace repvisor::sys
