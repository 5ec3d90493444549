// Threads of ours other than the loop's: started with every signal blocked.
//
// Signals stay with the loop's thread: libuv's handlers write into its loop, and SIGCHLD is
// read there from a signalfd (supervisor.cpp). A thread inherits its creator's mask, so it is
// blocked around the creation and restored after.
#pragma once
#include <pthread.h>
#include <signal.h>

#include <thread>
#include <utility>

namespace repvisor {

template <typename F>
std::thread thread_without_signals(F&& f) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  std::thread t(std::forward<F>(f));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return t;
}

}  // namespace repvisor
