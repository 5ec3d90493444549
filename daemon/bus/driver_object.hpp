// org.freedesktop.DBus at /org/freedesktop/DBus on peer-to-peer connections (the private
// socket): busctl, gdbus and sd-bus clients speak to a bus, so they send Hello first and AddMatch
// for signals, and there is no bus daemon to answer them. This object does, with the answers a
// bus that holds only org.repvisor1 would give.
#pragma once
#include <systemd/sd-bus.h>

#include <cstdint>

#include "bus/handles.hpp"

namespace repvisor::bus {

class Driver {
 public:
  // Serves the driver object on a peer-to-peer `bus`; throws.
  void serve(sd_bus* bus, Slots& slots);

 private:
  static int hello(Driver& driver, sd_bus_message* call);
  uint64_t next_peer_ = 1;  // the unique names handed out, as a bus would (":1.N")
};

}  // namespace repvisor::bus
