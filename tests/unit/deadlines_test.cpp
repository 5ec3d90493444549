// Deadlines on a real libuv loop and a real timerfd.
#include "supervisor/deadlines.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace repvisor {
namespace {

class DeadlinesTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }
  void TearDown() override {
    deadlines_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);  // the poll handle's close callback
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }
  // Fires in order into `fired_`, with the monotonic time of each; `then` may arm more.
  void make(const std::function<void(const std::string&)>& then = nullptr) {
    deadlines_ = std::make_unique<Deadlines>(&loop_, [this, then](const std::string& key) {
      fired_.push_back(key);
      at_[key] = now_monotonic();
      if (then) then(key);
    });
  }
  // Turns the loop until `n` deadlines fired (it blocks on the timerfd in between).
  void run_until(size_t n) {
    while (fired_.size() < n) uv_run(&loop_, UV_RUN_ONCE);
  }

  uv_loop_t loop_{};
  std::unique_ptr<Deadlines> deadlines_;
  std::vector<std::string> fired_;
  std::map<std::string, usec_t> at_;
};

TEST_F(DeadlinesTest, NeverFiresEarlyAndFiresInDeadlineOrder) {
  make();
  const usec_t t0 = now_monotonic();
  deadlines_->arm("c", 30 * USEC_PER_MSEC);
  deadlines_->arm("a", 10 * USEC_PER_MSEC);
  deadlines_->arm("b", 20 * USEC_PER_MSEC);
  EXPECT_EQ(deadlines_->armed(), 3u);
  run_until(3);
  EXPECT_EQ(fired_, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_GE(at_["a"], t0 + 10 * USEC_PER_MSEC);
  EXPECT_GE(at_["b"], t0 + 20 * USEC_PER_MSEC);
  EXPECT_GE(at_["c"], t0 + 30 * USEC_PER_MSEC);
  EXPECT_EQ(deadlines_->armed(), 0u);
}

TEST_F(DeadlinesTest, AnEarlierDeadlineMovesTheKernelTimer) {
  // "late" holds the kernel timer first; "soon", armed after it, must not wait for it.
  make();
  const usec_t late = now_monotonic() + 60 * USEC_PER_SEC;
  deadlines_->arm("late", 60 * USEC_PER_SEC);
  deadlines_->arm("soon", 1 * USEC_PER_MSEC);
  run_until(1);
  EXPECT_EQ(fired_, std::vector<std::string>{"soon"});
  EXPECT_LT(at_["soon"], late);
  EXPECT_EQ(deadlines_->armed(), 1u);
}

TEST_F(DeadlinesTest, DisarmedAndReplacedDeadlinesDoNotFire) {
  make();
  deadlines_->arm("gone", 1 * USEC_PER_MSEC);
  deadlines_->disarm("gone");
  deadlines_->disarm("never-armed");  // a no-op
  const usec_t t0 = now_monotonic();
  deadlines_->arm("moved", 1 * USEC_PER_MSEC);
  deadlines_->arm("moved", 20 * USEC_PER_MSEC);  // replaces the first
  deadlines_->arm("last", 30 * USEC_PER_MSEC);
  // The kernel timer still holds the disarmed 1 ms expiry: it wakes the loop for nothing.
  run_until(2);
  EXPECT_EQ(fired_, (std::vector<std::string>{"moved", "last"}));
  EXPECT_GE(at_["moved"], t0 + 20 * USEC_PER_MSEC);
}

TEST_F(DeadlinesTest, ADeadlineArmedWhileFiringIsKept) {
  // As a job's stop sequence does: the SIGTERM timeout's expiry arms the SIGKILL one.
  int rounds = 0;
  make([&](const std::string& key) {
    if (++rounds < 3) deadlines_->arm(key, 2 * USEC_PER_MSEC);
  });
  deadlines_->arm("job", 2 * USEC_PER_MSEC);
  run_until(3);
  EXPECT_EQ(fired_, (std::vector<std::string>{"job", "job", "job"}));
  EXPECT_EQ(deadlines_->armed(), 0u);
}

TEST_F(DeadlinesTest, AHugeTimeoutNeverWrapsIntoThePast) {
  // stop_timeout_usec comes from a client as any u64 below infinity.
  make();
  deadlines_->arm("huge", USEC_INFINITY - 5);
  deadlines_->arm("soon", 1 * USEC_PER_MSEC);
  run_until(1);
  EXPECT_EQ(fired_, std::vector<std::string>{"soon"});
  EXPECT_EQ(deadlines_->armed(), 1u);
}

TEST_F(DeadlinesTest, ZeroIsStillAnExpiry) {
  make();
  deadlines_->arm("now", 0);
  run_until(1);
  EXPECT_EQ(fired_, std::vector<std::string>{"now"});
}

}  // namespace
}  // namespace repvisor
