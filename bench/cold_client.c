/* The floor of a cold status query: the least a freshly exec'd sd-bus client does to show one
 * job (connect, Hello, one GetAll of its properties), in C, linked to libsystemd alone. What
 * `repvisorctl status` costs beyond it is the CLI's own (C++ runtime, option parsing, output).
 * Usage: bench-cold-client ADDRESS JOB_PATH   Prints nothing; exit 0 when the reply came. */
#include <stdio.h>
#include <string.h>
#include <systemd/sd-bus.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: bench-cold-client ADDRESS JOB_PATH\n");
    return 2;
  }
  sd_bus* bus = NULL;
  sd_bus_message* reply = NULL;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  int r = sd_bus_new(&bus);
  if (r >= 0) r = sd_bus_set_address(bus, argv[1]);
  if (r >= 0) r = sd_bus_set_bus_client(bus, 1);
  if (r >= 0) r = sd_bus_start(bus);
  if (r < 0) {
    fprintf(stderr, "bench-cold-client: cannot connect to %s: %s\n", argv[1], strerror(-r));
    return 1;
  }
  r = sd_bus_call_method(bus, "org.repvisor1", argv[2], "org.freedesktop.DBus.Properties", "GetAll", &err, &reply, "s",
                         "org.repvisor1.Job");
  if (r < 0) {
    fprintf(stderr, "bench-cold-client: GetAll on %s: %s\n", argv[2], err.message ? err.message : strerror(-r));
    return 1;
  }
  sd_bus_message_unref(reply);
  sd_bus_unref(bus);
  return 0;
}
