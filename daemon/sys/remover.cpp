#include "sys/remover.hpp"

#include <unistd.h>

#include <cerrno>

#include "util/thread.hpp"

namespace repvisor::sys {

namespace {
int remove_dir(const std::string& path) { return ::rmdir(path.c_str()) < 0 && errno != ENOENT ? -errno : 0; }
}  // namespace

Remover::Remover() : thread_(thread_without_signals([this] { run(); })) {}

Remover::~Remover() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_.notify_one();
  thread_.join();
}

bool Remover::claim(Removal& r) {
  int expected = kQueued;
  return r.state.compare_exchange_strong(expected, kTaken, std::memory_order_acq_rel);
}

std::shared_ptr<Removal> Remover::submit(std::string path) {
  auto r = std::make_shared<Removal>();
  r->path = std::move(path);
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(r);
  }
  work_.notify_one();
  return r;
}

int Remover::take(Removal& r) {
  if (claim(r)) {
    r.result = remove_dir(r.path);
    r.state.store(kDone, std::memory_order_release);
    return r.result;
  }
  std::unique_lock lock(mutex_);
  done_.wait(lock, [&] { return r.state.load(std::memory_order_acquire) == kDone; });
  return r.result;
}

void Remover::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    work_.wait(lock, [&] { return !queue_.empty() || stopping_; });
    if (queue_.empty()) return;  // stopping, and nothing left
    std::shared_ptr<Removal> r = std::move(queue_.front());
    queue_.pop_front();
    if (!claim(*r)) continue;  // the caller took it first
    lock.unlock();
    r->result = remove_dir(r->path);
    lock.lock();
    // Set under the lock: take() checks it under the same lock before it sleeps.
    r->state.store(kDone, std::memory_order_release);
    done_.notify_all();
  }
}

}  // namespace repvisor::sys
