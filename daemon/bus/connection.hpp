// The one place where sd-bus meets libuv: a connection's fd is watched by a uv_poll handle and
// its timeout by a uv_timer; update() re-arms both from sd-bus's own view (sd_bus_get_events,
// sd_bus_get_timeout) and is called before the loop blocks, so queued output is always flushed.
#pragma once
#include <systemd/sd-bus.h>
#include <uv.h>

#include <functional>

#include "bus/handles.hpp"
#include "util/uv.hpp"

namespace repvisor::bus {

class Connection {
 public:
  // on_closed runs (once) when the peer goes away; the owner then destroys the Connection.
  Connection(uv_loop_t* loop, BusPtr bus, std::function<void(Connection&)> on_closed);
  sd_bus* bus() const { return bus_.get(); }
  bool closed() const { return closed_; }
  void update();

 private:
  void process();
  BusPtr bus_;
  UvPtr<uv_poll_t> poll_;
  UvPtr<uv_timer_t> timer_;
  std::function<void(Connection&)> on_closed_;
  bool closed_ = false;
  int armed_events_ = -1;
};

}  // namespace repvisor::bus
