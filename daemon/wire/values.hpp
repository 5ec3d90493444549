// The API's dictionaries (a{sv}) as C++ values, written to and read from sd-bus messages: what
// repvisorctl, the tests and the benchmarks send (Submit's spec, Stop's options) and read back
// (properties, Stop's result, an event's details). Every function returns sd-bus's way: >= 0,
// or -errno with the message left where the failure was.
#pragma once
#include <systemd/sd-bus.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace repvisor::wire {

using StringMap = std::map<std::string, std::string>;  // a{ss}
// A job resource's fields, one a{sv} of a list: strings, sizes (u or t), flags.
using Scalar = std::variant<std::string, uint64_t, bool>;
using Record = std::map<std::string, Scalar>;
using Records = std::vector<Record>;  // aa{sv}
// s (o read as s), b, t, x, i, u, d, as, au, a{ss}, aa{sv}.
using Value = std::variant<std::string, bool, uint64_t, int64_t, int32_t, uint32_t, double, std::vector<std::string>,
                           std::vector<uint32_t>, StringMap, Records>;
using Dict = std::map<std::string, Value>;  // a{sv}

// Appends `d` as a{sv}.
int append_dict(sd_bus_message* m, const Dict& d);

// Reads the a{sv} at the message's position into *out. A value of a type Value does not hold is
// skipped, its key left out.
int read_dict(sd_bus_message* m, Dict* out);
// Reads the variant at the message's position: 1 with *out set, 0 (passed over) for a type Value
// does not hold.
int read_variant(sd_bus_message* m, Value* out);
// Reads the aa{sv} at the message's position; in each record, what is not a string, a flag or
// an unsigned number is left out.
int read_records(sd_bus_message* m, Records* out);

// In the a{sv} at the message's position, goes to the value of `key`: 1 with the message at
// that entry's variant (the caller reads it; the rest of the dictionary stays unread), 0 when
// there is no such key. For a signal handler that wants one property of many, without copying
// the others.
int seek_key(sd_bus_message* m, std::string_view key);

}  // namespace repvisor::wire
