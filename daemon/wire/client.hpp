// What every client of repvisord does over sd-bus (repvisorctl, the integration tests, the
// benchmarks): connect, call a method, read properties, read List's rows. Thin on purpose: each
// is the sd-bus call a client would write, with the destination filled in and the handles owned,
// so that a benchmark timing a round trip pays nothing more. Every function returns sd-bus's way:
// >= 0, or -errno (and the peer's error in *error where one is taken).
#pragma once
#include <systemd/sd-bus.h>

#include <cstdint>
#include <string>
#include <vector>

#include "wire/handles.hpp"
#include "wire/values.hpp"

namespace repvisor::wire {

// Which step of connect() failed.
enum class ConnectStep { Create, Address, Start };

// Connects to `address` (the daemon's private socket, the system bus, ssh's stdio bridge) as a
// bus client: sends Hello, as busctl does, and the daemon's private socket answers it. Waits for
// that answer, so a peer that is not there (an ssh that could not connect) is found here rather
// than at the first call.
int connect(const std::string& address, Bus* out, ConnectStep* failed = nullptr);

// A method call to repvisord: its bus name is the destination.
int new_call(sd_bus* bus, const char* path, const char* interface, const char* method, Message* out);
// Sends `m`, waits up to `timeout` (0: sd-bus's default) and hands back the reply.
int call(sd_bus* bus, sd_bus_message* m, uint64_t timeout, Error* error, Message* reply);

// One property of one of repvisord's objects, of the type the out-parameter names (s, t, u, i,
// aa{sv}). `error` may be null.
int get_property(sd_bus* bus, const char* path, const char* interface, const char* name, std::string* out,
                 Error* error = nullptr);
int get_property(sd_bus* bus, const char* path, const char* interface, const char* name, uint64_t* out,
                 Error* error = nullptr);
int get_property(sd_bus* bus, const char* path, const char* interface, const char* name, uint32_t* out,
                 Error* error = nullptr);
int get_property(sd_bus* bus, const char* path, const char* interface, const char* name, int32_t* out,
                 Error* error = nullptr);
int get_property(sd_bus* bus, const char* path, const char* interface, const char* name, Records* out,
                 Error* error = nullptr);
// Every property of an interface (Properties.GetAll).
int get_all(sd_bus* bus, const char* path, const char* interface, Dict* out, Error* error = nullptr);

// A row of Manager.List's reply, a(ssssdtto).
struct JobRow {
  std::string id, name, state, phase;
  double progress = -1;
  uint64_t created_usec = 0, finished_usec = 0;
  std::string path;
};
int read_job_rows(sd_bus_message* reply, std::vector<JobRow>* out);

}  // namespace repvisor::wire
