#include "bus/connection.hpp"

#include <poll.h>
#include <time.h>

#include "util/log.hpp"
#include "util/time.hpp"

namespace repvisor::bus {

Connection::Connection(uv_loop_t* loop, BusPtr bus, std::function<void(Connection&)> on_closed)
    : bus_(std::move(bus)), on_closed_(std::move(on_closed)) {
  const int fd = sd_bus_get_fd(bus_.get());
  if (fd < 0) throw std::runtime_error("sd_bus_get_fd failed");
  poll_ = make_uv<uv_poll_t>([&](uv_poll_t* p) { return uv_poll_init(loop, p, fd); }, this);
  timer_ = make_uv<uv_timer_t>([&](uv_timer_t* t) { return uv_timer_init(loop, t); }, this);
  update();
}

void Connection::process() {
  if (closed_) return;
  for (;;) {
    int r = sd_bus_process(bus_.get(), nullptr);
    if (r < 0) {
      if (r != -ECONNRESET && r != -ENOTCONN) log::debug("bus connection closed: {}", strerror(-r));
      break;
    }
    if (r == 0) break;
  }
  if (!sd_bus_is_open(bus_.get())) {
    closed_ = true;
    poll_.reset();
    timer_.reset();
    on_closed_(*this);  // may destroy this
    return;
  }
  update();
}

void Connection::update() {
  if (closed_) return;
  const int ev = sd_bus_get_events(bus_.get());
  if (ev < 0) {
    process();
    return;
  }
  const int uv_ev = ((ev & POLLIN) ? UV_READABLE : 0) | ((ev & POLLOUT) ? UV_WRITABLE : 0);
  if (uv_ev != armed_events_) {
    armed_events_ = uv_ev;
    uv_poll_start(poll_.get(), uv_ev | UV_DISCONNECT, [](uv_poll_t* p, int, int) {
      if (auto* c = static_cast<Connection*>(p->data)) c->process();
    });
  }
  uint64_t until = 0;
  if (sd_bus_get_timeout(bus_.get(), &until) >= 0 && until != UINT64_MAX) {
    const usec_t now = now_monotonic();
    const uint64_t ms = until > now ? (until - now + 999) / 1000 : 0;
    uv_timer_start(
        timer_.get(),
        [](uv_timer_t* t) {
          if (auto* c = static_cast<Connection*>(t->data)) c->process();
        },
        ms, 0);
  } else {
    uv_timer_stop(timer_.get());
  }
}

}  // namespace repvisor::bus
