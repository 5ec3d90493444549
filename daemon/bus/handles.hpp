// Owners of sd-bus's handles: each holds one reference (or one sd_bus_error) and drops it once,
// so no path through the bus layer, a throwing one included, leaks or double-frees them. Those
// the clients need too are wire/handles.hpp's, under the bus layer's names.
#pragma once
#include <systemd/sd-bus.h>

#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "wire/handles.hpp"

namespace repvisor::bus {

using BusPtr = wire::Bus;
using MessageUnref = wire::MessageUnref;
using MessagePtr = wire::Message;

// A method call kept until it is answered: shared, as the std::functions that carry it need copies.
using CallRef = std::shared_ptr<sd_bus_message>;
inline CallRef ref(sd_bus_message* m) { return CallRef(sd_bus_message_ref(m), MessageUnref{}); }

using SlotPtr = wire::Slot;

struct CredsUnref {
  void operator()(sd_bus_creds* c) const { sd_bus_creds_unref(c); }
};
using CredsPtr = std::unique_ptr<sd_bus_creds, CredsUnref>;

// An sd_bus_error, freed at the end of its scope.
using ErrorBuffer = wire::Error;

// What one connection has registered (objects, enumerators, a filter): dropped all together,
// which unregisters them, when the connection is let go.
class Slots {
 public:
  // Keeps the slot that `add` (an sd_bus_add_* call) made; throws naming `what` when it failed.
  void add(const char* what, const std::function<int(sd_bus_slot**)>& add) {
    sd_bus_slot* slot = nullptr;
    if (const int r = add(&slot); r < 0) throw std::runtime_error(std::string(what) + ": " + strerror(-r));
    slots_.emplace_back(slot);
  }

 private:
  std::vector<SlotPtr> slots_;
};

}  // namespace repvisor::bus
