// Every job's stop timeout on one timerfd.
//
// A timerfd, not a libuv timer: libuv counts whole milliseconds on a clock cached per loop
// iteration, so a timeout that must never expire early would be rounded up by up to 2 ms; the
// kernel's timer is exact and never early. One for all jobs, not one per job: a stop then costs
// no timerfd_create, epoll_ctl or close, and usually not even a timerfd_settime (the kernel
// timer is moved only when a new deadline comes before the one it holds). A disarmed deadline
// leaves the kernel timer as it is; it may then wake the loop once for nothing.
#pragma once
#include <functional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

#include "util/fd.hpp"
#include "util/time.hpp"
#include "util/uv.hpp"

namespace repvisor {

class Deadlines {
 public:
  // `fire` is called with the key of each deadline reached, once, in deadline order.
  Deadlines(uv_loop_t* loop, std::function<void(const std::string&)> fire);  // throws if no timerfd
  Deadlines(const Deadlines&) = delete;
  Deadlines& operator=(const Deadlines&) = delete;

  // Replaces the key's deadline, if it had one, with now + `after` (at least 1 µs).
  void arm(const std::string& key, usec_t after);
  void disarm(const std::string& key);
  size_t armed() const { return by_key_.size(); }

 private:
  void on_expiry();
  void program();  // the kernel timer to the earliest deadline, when that is earlier than its own

  std::function<void(const std::string&)> fire_;
  Fd fd_;
  UvPtr<uv_poll_t> poll_;
  std::set<std::pair<usec_t, std::string>> by_time_;  // (CLOCK_MONOTONIC µs, key)
  std::unordered_map<std::string, usec_t> by_key_;
  usec_t programmed_ = 0;  // the kernel timer's expiry; 0: disarmed
  bool firing_ = false;    // in on_expiry: it programs the timer once, after every due deadline
};

}  // namespace repvisor
