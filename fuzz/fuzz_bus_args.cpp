// The validation layer for a{sv} arguments (Submit spec, Stop/Delete options, List/ListEvents
// filters): any dictionary sd-bus can carry is either accepted within bounds or refused with
// InvalidArgs naming the problem. The fuzz input is turned into a real sd-bus message.
#include <sys/socket.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "bus/args.hpp"
#include "core/errors.hpp"

namespace {

// Reads the fuzz input as a little program that builds a dictionary.
struct Reader {
  const uint8_t* p;
  size_t n;
  uint8_t byte() { return n ? (--n, *p++) : 0; }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | byte();
    return v;
  }
  std::string str() {
    size_t len = byte() % 40;
    std::string s;
    while (len-- && n) s += static_cast<char>(byte());
    return s;
  }
};

const char* const kKeys[] = {"argv",         "name",
                             "env",          "working_directory",
                             "stop_signal",  "stop_timeout_usec",
                             "kill_mode",    "force",
                             "timeout_usec", "reason",
                             "notes",        "wait",
                             "keep_data",    "states",
                             "job",          "since_usec",
                             "limit",        "bogus",
                             "resources",    "progress",
                             "template",     "params"};

const char* const kResourceKeys[] = {"kind", "name", "path", "size", "server", "format", "on_stop", "export", "bogus"};
const char* const kResourceWords[] = {"nbd-server", "nbd-device", "file", "loop",    "qemu-nbd", "nbdkit",
                                      "raw",        "qcow2",      "keep", "discard", "/v/a.img", "src"};

// One template, so that template submissions are fuzzed too.
const repvisor::config::Config& config() {
  static const repvisor::config::Config c = repvisor::config::parse(R"([templates.copy]
argv = ["nbdcopy", "{src}", "{dst}"]
[templates.copy.params.src]
pattern = "nbd\\+unix:///\\?socket=/run/[a-z0-9/.-]+"
[templates.copy.params.dst]
default = "/var/lib/repvisor/volumes/x.img"
)",
                                                                    "fuzz");
  return c;
}

sd_bus* bus() {
  // A bus object that is not UNSET, so that messages can be built; it never connects anywhere.
  static sd_bus* b = [] {
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    sd_bus* x = nullptr;
    sd_bus_new(&x);
    sd_bus_set_fd(x, sv[0], sv[0]);
    sd_bus_start(x);
    return x;
  }();
  return b;
}

// aa{sv} of resource-like dictionaries: mostly the right keys and words, sometimes not.
void append_resources(sd_bus_message* m, Reader& r) {
  sd_bus_message_open_container(m, 'v', "aa{sv}");
  sd_bus_message_open_container(m, 'a', "a{sv}");
  for (int i = r.byte() % 4; i > 0; --i) {
    sd_bus_message_open_container(m, 'a', "{sv}");
    for (int k = r.byte() % 6; k > 0; --k) {
      const char* key = kResourceKeys[r.byte() % std::size(kResourceKeys)];
      const uint8_t t = r.byte();
      if (t % 4 == 0)
        sd_bus_message_append(m, "{sv}", key, "t", r.u64());
      else if (t % 4 == 1)
        sd_bus_message_append(m, "{sv}", key, "s", r.str().c_str());
      else if (t % 4 == 2)
        sd_bus_message_append(m, "{sv}", key, "b", t & 8 ? 1 : 0);
      else
        sd_bus_message_append(m, "{sv}", key, "s", kResourceWords[r.byte() % std::size(kResourceWords)]);
    }
    sd_bus_message_close_container(m);
  }
  sd_bus_message_close_container(m);
  sd_bus_message_close_container(m);
}

void append_value(sd_bus_message* m, Reader& r) {
  switch (r.byte() % 9) {
    case 8:
      append_resources(m, r);
      break;
    case 0:
      sd_bus_message_append(m, "v", "s", r.str().c_str());
      break;
    case 1:
      sd_bus_message_append(m, "v", "b", r.byte() & 1);
      break;
    case 2:
      sd_bus_message_append(m, "v", "t", r.u64());
      break;
    case 3:
      sd_bus_message_append(m, "v", "i", static_cast<int32_t>(r.u64()));
      break;
    case 4:
      sd_bus_message_append(m, "v", "u", static_cast<uint32_t>(r.u64()));
      break;
    case 5: {
      sd_bus_message_open_container(m, 'v', "as");
      sd_bus_message_open_container(m, 'a', "s");
      for (int i = r.byte() % 5; i > 0; --i) sd_bus_message_append_basic(m, 's', r.str().c_str());
      sd_bus_message_close_container(m);
      sd_bus_message_close_container(m);
      break;
    }
    case 6: {
      sd_bus_message_open_container(m, 'v', "a{ss}");
      sd_bus_message_open_container(m, 'a', "{ss}");
      for (int i = r.byte() % 4; i > 0; --i) sd_bus_message_append(m, "{ss}", r.str().c_str(), r.str().c_str());
      sd_bus_message_close_container(m);
      sd_bus_message_close_container(m);
      break;
    }
    default:
      sd_bus_message_append(m, "v", "d", static_cast<double>(r.u64()));
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader r{data, size};
  const uint8_t which = r.byte() % 6;
  sd_bus_message* m = nullptr;
  if (sd_bus_message_new_method_call(bus(), &m, "org.repvisor1", "/org/repvisor1", "org.repvisor1.Manager", "X") < 0)
    return 0;
  sd_bus_message_open_container(m, 'a', "{sv}");
  for (int i = r.byte() % 8; i > 0; --i) {
    sd_bus_message_open_container(m, 'e', "sv");
    const uint8_t k = r.byte();
    sd_bus_message_append_basic(m, 's', k < 200 ? kKeys[k % std::size(kKeys)] : r.str().c_str());
    append_value(m, r);
    sd_bus_message_close_container(m);
  }
  // Strings that are not UTF-8 were refused by sd-bus while appending: such a message could not
  // have arrived, so it is not ours to parse.
  if (sd_bus_message_close_container(m) < 0 || sd_bus_message_seal(m, 1, 0) < 0 || sd_bus_message_rewind(m, true) < 0) {
    sd_bus_message_unref(m);
    return 0;
  }
  try {
    using namespace repvisor::bus;
    bool wait = false;
    switch (which) {
      case 0: {
        auto spec = parse_job_spec(m, config());
        if (spec.argv.empty() || spec.argv[0].empty() || spec.stop_timeout == 0) __builtin_trap();
        // An accepted spec passes the resource checks as a whole.
        if (!repvisor::core::check_resources(spec.resources).empty()) __builtin_trap();
        break;
      }
      case 1: {
        auto req = parse_stop_options(m, &wait);
        if (req.timeout == 0 || req.reason.empty()) __builtin_trap();
        break;
      }
      case 2:
        parse_delete_options(m);
        break;
      case 3:
        parse_list_filter(m);
        break;
      case 4: {
        auto f = parse_events_filter(m);
        if (f.limit == 0 || f.limit > 100000) __builtin_trap();
        break;
      }
      default:
        parse_job_spec(m, config());
        break;
    }
  } catch (const repvisor::ApiError& e) {
    if (e.kind() != repvisor::ErrorKind::InvalidArgs || std::string(e.what()).empty()) __builtin_trap();
  }
  sd_bus_message_unref(m);
  return 0;
}
