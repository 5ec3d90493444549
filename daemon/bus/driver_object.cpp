// The bus driver's methods that clients call on a peer-to-peer connection, and its vtable. On
// the private socket every signal goes to every peer, so a match needs no record.
#include "bus/driver_object.hpp"

#include <systemd/sd-id128.h>

#include <string>
#include <string_view>

#include <fmt/format.h>

#include "bus/call.hpp"

namespace repvisor::bus {

namespace {

constexpr std::string_view kServedName = "org.repvisor1";

int ok(Driver&, sd_bus_message* call) { return sd_bus_reply_method_return(call, ""); }

const char* name_arg(sd_bus_message* call) {
  const char* name = nullptr;
  check(sd_bus_message_read(call, "s", &name), "reading the name");
  return name;
}

// Its error is the bus's own, not one of the API's (bus/errors.hpp): set as sd-bus has it,
// still inside the trampoline.
int get_name_owner(sd_bus_message* call, void*, sd_bus_error* err) {
  return guarded(err, [&] {
    const char* name = name_arg(call);
    if (name == kServedName || std::string_view(name) == "org.freedesktop.DBus")
      return sd_bus_reply_method_return(call, "s", name);
    return sd_bus_error_setf(err, SD_BUS_ERROR_NAME_HAS_NO_OWNER, "no owner for %s on this private socket", name);
  });
}

int name_has_owner(Driver&, sd_bus_message* call) {
  return sd_bus_reply_method_return(call, "b", name_arg(call) == kServedName);
}

int list_names(Driver&, sd_bus_message* call) {
  return sd_bus_reply_method_return(call, "as", 2, "org.freedesktop.DBus", "org.repvisor1");
}

int get_id(Driver&, sd_bus_message* call) {
  sd_id128_t id{};
  sd_bus_get_bus_id(sd_bus_message_get_bus(call), &id);
  char s[SD_ID128_STRING_MAX];
  return sd_bus_reply_method_return(call, "s", sd_id128_to_string(id, s));
}

}  // namespace

int Driver::hello(Driver& driver, sd_bus_message* call) {
  const std::string name = fmt::format(":1.{}", driver.next_peer_++);
  return sd_bus_reply_method_return(call, "s", name.c_str());
}

void Driver::serve(sd_bus* bus, Slots& slots) {
  static const sd_bus_vtable kVtable[] = {
      SD_BUS_VTABLE_START(0),
      SD_BUS_METHOD("Hello", "", "s", (method<Driver, hello>), SD_BUS_VTABLE_UNPRIVILEGED),
      SD_BUS_METHOD("AddMatch", "s", "", (method<Driver, ok>), SD_BUS_VTABLE_UNPRIVILEGED),
      SD_BUS_METHOD("RemoveMatch", "s", "", (method<Driver, ok>), SD_BUS_VTABLE_UNPRIVILEGED),
      SD_BUS_METHOD("GetNameOwner", "s", "s", get_name_owner, SD_BUS_VTABLE_UNPRIVILEGED),
      SD_BUS_METHOD("NameHasOwner", "s", "b", (method<Driver, name_has_owner>), SD_BUS_VTABLE_UNPRIVILEGED),
      SD_BUS_METHOD("ListNames", "", "as", (method<Driver, list_names>), SD_BUS_VTABLE_UNPRIVILEGED),
      SD_BUS_METHOD("GetId", "", "s", (method<Driver, get_id>), SD_BUS_VTABLE_UNPRIVILEGED),
      SD_BUS_VTABLE_END,
  };
  slots.add("driver object", [&](sd_bus_slot** s) {
    return sd_bus_add_object_vtable(bus, s, "/org/freedesktop/DBus", "org.freedesktop.DBus", kVtable, this);
  });
}

}  // namespace repvisor::bus
