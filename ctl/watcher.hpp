// Following the daemon as jobs change: the Watcher hands a job's PropertiesChanged and its
// removal to callbacks, run_until() drives the bus until a condition holds, and a Ctrl-C ends
// any such wait. The live views are driven by signals, not polling.
#pragma once
#include <functional>
#include <string>

#include "client.hpp"
#include "util/time.hpp"
#include "wire/handles.hpp"

namespace repvisor::ctl {

// Delivers PropertiesChanged of org.repvisor1.Job objects (one path, or all under /org/repvisor1)
// and InterfacesRemoved to a callback.
class Watcher {
 public:
  using OnChange = std::function<void(const std::string& path, const Props& changed)>;
  using OnRemoved = std::function<void(const std::string& path)>;

  Watcher(Client& c, const std::string& path, OnChange on_change, OnRemoved on_removed = {});
  Watcher(const Watcher&) = delete;  // sd-bus holds `this`
  Watcher& operator=(const Watcher&) = delete;

 private:
  static int on_signal(sd_bus_message* m, void* userdata, sd_bus_error*);
  static int on_removed_signal(sd_bus_message* m, void* userdata, sd_bus_error*);
  OnChange on_change_;
  OnRemoved on_removed_;
  wire::Slot slot_, removed_slot_;
};

// Processes the bus until `done()` or the timeout; calls tick() at least every tick_usec.
// Throws CtlError 130 on Ctrl-C.
void run_until(Client& c, const std::function<bool()>& done, usec_t tick_usec = USEC_INFINITY,
               const std::function<void()>& tick = {});

// Waits for a job to reach a terminal state; subscribes before reading so no change is missed.
Props wait_terminal(Client& c, const std::string& path, const std::function<void(const Props&)>& on_update = {});

void merge(Props& into, const Props& changed);

// Catches SIGINT, so that a wait ends with a message (and exit 130) instead of dying.
void install_interrupt_handler();
// A SIGINT came.
bool interrupted();

}  // namespace repvisor::ctl
