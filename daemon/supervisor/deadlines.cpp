#include "supervisor/deadlines.hpp"

#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "util/log.hpp"

namespace repvisor {

namespace {

// Rounded up: a deadline computed from it is never before now + after.
usec_t now_ceil() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<usec_t>(ts.tv_sec) * USEC_PER_SEC + (static_cast<usec_t>(ts.tv_nsec) + 999) / 1000;
}

}  // namespace

Deadlines::Deadlines(uv_loop_t* loop, std::function<void(const std::string&)> fire) : fire_(std::move(fire)) {
  fd_.reset(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!fd_) throw std::runtime_error(std::string("timerfd_create: ") + strerror(errno));
  poll_ = make_uv<uv_poll_t>([&](uv_poll_t* p) { return uv_poll_init(loop, p, fd_.get()); }, this);
  uv_poll_start(poll_.get(), UV_READABLE, [](uv_poll_t* p, int, int) {
    if (auto* d = static_cast<Deadlines*>(p->data)) d->on_expiry();
  });
}

void Deadlines::arm(const std::string& key, usec_t after) {
  disarm(key);
  // A timeout is a client's u64: saturated, never wrapped round into the past.
  const usec_t now = now_ceil();
  const usec_t at = after >= USEC_INFINITY - now ? USEC_INFINITY - 1 : now + std::max<usec_t>(after, 1);
  by_time_.emplace(at, key);
  by_key_.emplace(key, at);
  program();
}

void Deadlines::disarm(const std::string& key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return;
  by_time_.erase({it->second, key});
  by_key_.erase(it);
}

void Deadlines::program() {
  if (firing_ || by_time_.empty()) return;  // a programmed expiry left behind wakes on_expiry once, harmlessly
  const usec_t next = by_time_.begin()->first;
  if (programmed_ != 0 && programmed_ <= next) return;  // fires first; on_expiry programs again
  itimerspec its{};
  its.it_value.tv_sec = static_cast<time_t>(next / USEC_PER_SEC);
  its.it_value.tv_nsec = static_cast<long>(next % USEC_PER_SEC) * 1000;
  if (timerfd_settime(fd_.get(), TFD_TIMER_ABSTIME, &its, nullptr) < 0) {
    log::err("timerfd_settime: {}", strerror(errno));
    return;
  }
  programmed_ = next;
}

void Deadlines::on_expiry() {
  uint64_t expirations = 0;
  if (::read(fd_.get(), &expirations, sizeof expirations) != sizeof expirations) return;  // re-programmed
  programmed_ = 0;
  // The timer fired at or after `programmed_`: every deadline up to now is due. A job's
  // transition may arm or disarm others (or itself), so the set is looked at afresh each time.
  const usec_t now = now_monotonic();
  firing_ = true;
  while (!by_time_.empty() && by_time_.begin()->first <= now) {
    const std::string key = by_time_.begin()->second;
    disarm(key);
    fire_(key);
  }
  firing_ = false;
  program();
}

}  // namespace repvisor
