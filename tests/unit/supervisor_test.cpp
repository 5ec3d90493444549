// The Supervisor's demands on the process it runs in.
#include "supervisor/supervisor.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <uv.h>

#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace {

TEST(Supervisor, RefusesToBeMadeOnceAnotherThreadRuns) {
  // SIGCHLD is read from a signalfd and must be blocked in every thread: a thread started
  // before the Supervisor blocks it would take the signal and drop it (its disposition is the
  // default, ignore), and orphans would never be reaped.
  sigset_t saved;
  pthread_sigmask(SIG_SETMASK, nullptr, &saved);
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::thread other([&] {
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return done; });
  });
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  EXPECT_THROW(repvisor::Supervisor(&loop, repvisor::config::Config{}), std::logic_error);
  {
    std::lock_guard lock(m);
    done = true;
  }
  cv.notify_one();
  other.join();
  EXPECT_EQ(uv_loop_close(&loop), 0);
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
}

}  // namespace
