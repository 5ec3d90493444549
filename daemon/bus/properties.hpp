// An interface's properties as one table: each row names a property, its D-Bus signature, the
// change bits that signal it and how its value is read. The vtable entries, the getter sd-bus
// calls and the PropertiesChanged name lists are all made from the table, so a property cannot
// be declared, read and signalled inconsistently: a row with change bits is declared
// emits-change and is named in every PropertiesChanged for those bits; a row without is const.
#pragma once
#include <systemd/sd-bus.h>

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace repvisor::bus {

// Change bits of a property that never changes while its object exists.
inline constexpr uint32_t kConst = 0;

// Source: what a value is read from (a job and its supervisor, say).
template <class Source>
struct Property {
  const char* name;
  const char* signature;
  uint32_t changed_by;  // the change bits that signal it; kConst: never changes
  // Appends the value, of `signature`, to the message; an sd-bus result (or throws).
  int (*get)(sd_bus_message* reply, const Source& from);
};

// Appending the C++ types properties have, each as its one D-Bus type. Any other type is
// refused at compile time rather than converted into a type the row does not declare.
template <class T>
int append(sd_bus_message*, T) = delete;
inline int append(sd_bus_message* m, const char* v) { return sd_bus_message_append_basic(m, 's', v); }
inline int append(sd_bus_message* m, const std::string& v) { return sd_bus_message_append_basic(m, 's', v.c_str()); }
inline int append(sd_bus_message* m, double v) { return sd_bus_message_append_basic(m, 'd', &v); }
inline int append(sd_bus_message* m, uint64_t v) { return sd_bus_message_append_basic(m, 't', &v); }
inline int append(sd_bus_message* m, uint32_t v) { return sd_bus_message_append_basic(m, 'u', &v); }
inline int append(sd_bus_message* m, int32_t v) { return sd_bus_message_append_basic(m, 'i', &v); }

// The vtable of an interface: `methods` (and signals), then one entry per property row with its
// flag from the row, in table order (which is the order introspection shows). `get` is the
// interface's getter, which finds the row by name (get_property). Made once, kept for good.
template <class Source>
std::vector<sd_bus_vtable> make_vtable(std::initializer_list<sd_bus_vtable> methods,
                                       std::span<const Property<Source>> properties, sd_bus_property_get_t get) {
  std::vector<sd_bus_vtable> v;
  v.push_back(sd_bus_vtable SD_BUS_VTABLE_START(0));
  v.insert(v.end(), methods.begin(), methods.end());
  for (const auto& p : properties)
    v.push_back(sd_bus_vtable SD_BUS_PROPERTY(
        p.name, p.signature, get, 0,
        p.changed_by == kConst ? SD_BUS_VTABLE_PROPERTY_CONST : SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE));
  v.push_back(sd_bus_vtable SD_BUS_VTABLE_END);
  return v;
}

// Appends the value of property `name` read from `from`; -ENOENT for a name not in the table.
template <class Source>
int get_property(std::span<const Property<Source>> properties, std::string_view name, sd_bus_message* reply,
                 const Source& from) {
  for (const auto& p : properties)
    if (name == p.name) return p.get(reply, from);
  return -ENOENT;
}

// The properties that `changed` (a set of change bits) signals, in table order, with the
// terminating NULL that sd_bus_emit_properties_changed_strv() wants.
template <class Source>
std::vector<const char*> changed_properties(std::span<const Property<Source>> properties, uint32_t changed) {
  std::vector<const char*> names;
  for (const auto& p : properties)
    if (p.changed_by & changed) names.push_back(p.name);
  names.push_back(nullptr);
  return names;
}

}  // namespace repvisor::bus
