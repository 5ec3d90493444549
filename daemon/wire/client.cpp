#include "wire/client.hpp"

#include <cstdlib>
#include <memory>

#include "wire/names.hpp"

namespace repvisor::wire {

int connect(const std::string& address, Bus* out, ConnectStep* failed) {
  auto fail = [&](ConnectStep step, int r) {
    if (failed) *failed = step;
    return r;
  };
  sd_bus* raw = nullptr;
  if (int r = sd_bus_new(&raw); r < 0) return fail(ConnectStep::Create, r);
  Bus bus(raw);
  if (int r = sd_bus_set_address(raw, address.c_str()); r < 0) return fail(ConnectStep::Address, r);
  sd_bus_set_bus_client(raw, 1);
  int r = sd_bus_start(raw);
  const char* unique = nullptr;
  if (r >= 0) r = sd_bus_get_unique_name(raw, &unique);
  if (r < 0) return fail(ConnectStep::Start, r);
  *out = std::move(bus);
  return 0;
}

int new_call(sd_bus* bus, const char* path, const char* interface, const char* method, Message* out) {
  sd_bus_message* m = nullptr;
  const int r = sd_bus_message_new_method_call(bus, &m, kBusName, path, interface, method);
  out->reset(m);
  return r;
}

int call(sd_bus* bus, sd_bus_message* m, uint64_t timeout, Error* error, Message* reply) {
  sd_bus_message* raw = nullptr;
  const int r = sd_bus_call(bus, m, timeout, error->get(), &raw);
  reply->reset(raw);
  return r;
}

namespace {

template <class T>
int get_trivial(sd_bus* bus, const char* path, const char* interface, const char* name, char type, T* out,
                Error* error) {
  Error local;
  return sd_bus_get_property_trivial(bus, kBusName, path, interface, name, (error ? error : &local)->get(), type, out);
}

}  // namespace

int get_property(sd_bus* bus, const char* path, const char* interface, const char* name, std::string* out,
                 Error* error) {
  Error local;
  char* raw = nullptr;
  const int r = sd_bus_get_property_string(bus, kBusName, path, interface, name, (error ? error : &local)->get(), &raw);
  const std::unique_ptr<char, decltype(&free)> s(raw, free);
  if (r >= 0) *out = s ? s.get() : "";
  return r;
}

int get_property(sd_bus* bus, const char* path, const char* interface, const char* name, uint64_t* out, Error* error) {
  return get_trivial(bus, path, interface, name, 't', out, error);
}

int get_property(sd_bus* bus, const char* path, const char* interface, const char* name, uint32_t* out, Error* error) {
  return get_trivial(bus, path, interface, name, 'u', out, error);
}

int get_property(sd_bus* bus, const char* path, const char* interface, const char* name, int32_t* out, Error* error) {
  return get_trivial(bus, path, interface, name, 'i', out, error);
}

int get_property(sd_bus* bus, const char* path, const char* interface, const char* name, Records* out, Error* error) {
  Error local;
  sd_bus_message* raw = nullptr;
  const int r =
      sd_bus_get_property(bus, kBusName, path, interface, name, (error ? error : &local)->get(), &raw, "aa{sv}");
  const Message reply(raw);
  return r < 0 ? r : read_records(raw, out);
}

int get_all(sd_bus* bus, const char* path, const char* interface, Dict* out, Error* error) {
  Error local;
  sd_bus_message* raw = nullptr;
  const int r = sd_bus_call_method(bus, kBusName, path, "org.freedesktop.DBus.Properties", "GetAll",
                                   (error ? error : &local)->get(), &raw, "s", interface);
  const Message reply(raw);
  return r < 0 ? r : read_dict(raw, out);
}

int read_job_rows(sd_bus_message* reply, std::vector<JobRow>* out) {
  int r = sd_bus_message_enter_container(reply, 'a', "(ssssdtto)");
  if (r < 0) return r;
  for (;;) {
    const char *id = nullptr, *name = nullptr, *state = nullptr, *phase = nullptr, *path = nullptr;
    JobRow row;
    r = sd_bus_message_read(reply, "(ssssdtto)", &id, &name, &state, &phase, &row.progress, &row.created_usec,
                            &row.finished_usec, &path);
    if (r <= 0) break;
    row.id = id, row.name = name, row.state = state, row.phase = phase, row.path = path;
    out->push_back(std::move(row));
  }
  return r < 0 ? r : sd_bus_message_exit_container(reply);
}

}  // namespace repvisor::wire
