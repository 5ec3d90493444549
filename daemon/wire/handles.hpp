// sd-bus's handles owned: a message, a slot, a connection and an error are each freed however
// the scope that holds them is left (an exception, an early return).
#pragma once
#include <systemd/sd-bus.h>

#include <memory>

namespace repvisor::wire {

struct MessageUnref {
  void operator()(sd_bus_message* m) const { sd_bus_message_unref(m); }
};
using Message = std::unique_ptr<sd_bus_message, MessageUnref>;

struct SlotUnref {
  void operator()(sd_bus_slot* s) const { sd_bus_slot_unref(s); }
};
using Slot = std::unique_ptr<sd_bus_slot, SlotUnref>;

// A connection is flushed before it is closed: what was queued (a Stop sent without waiting
// for its reply) still goes out.
struct BusClose {
  void operator()(sd_bus* b) const { sd_bus_flush_close_unref(b); }
};
using Bus = std::unique_ptr<sd_bus, BusClose>;

// An error reply (or sd-bus's own error), filled by the calls that take an sd_bus_error*.
class Error {
 public:
  Error() = default;
  ~Error() { sd_bus_error_free(&e_); }
  Error(const Error&) = delete;
  Error& operator=(const Error&) = delete;

  sd_bus_error* get() { return &e_; }
  const sd_bus_error* get() const { return &e_; }
  bool is_set() const { return sd_bus_error_is_set(&e_) > 0; }
  // Never null: "" where the error has no name or text.
  const char* name() const { return e_.name ? e_.name : ""; }
  const char* message() const { return e_.message ? e_.message : ""; }

 private:
  sd_bus_error e_ = SD_BUS_ERROR_NULL;
};

}  // namespace repvisor::wire
