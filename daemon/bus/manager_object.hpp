// org.repvisor1.Manager at /org/repvisor1: submitting, listing and finding jobs, the events, the
// *Job verbs by id or name, and the daemon-wide properties (one table).
#pragma once
#include <systemd/sd-bus.h>

#include <cstdint>
#include <vector>

#include "bus/handles.hpp"
#include "wire/names.hpp"

namespace repvisor::bus {

class Api;

using wire::kManagerInterface;
using wire::kManagerPath;

// What changed on the Manager, for its PropertiesChanged.
enum ManagerChanged : uint32_t {
  kManagerChangedJobsActive = 1u << 0,  // JobsActive
  kManagerChangedLimits = 1u << 1,      // MaxConcurrentJobs (a reload)
};

// Serves the Manager object and the object manager at its path on `bus`; throws.
void serve_manager(sd_bus* bus, Api& api, Slots& slots);

// The Manager properties that a set of ManagerChanged bits signals, NULL-terminated.
std::vector<const char*> manager_properties_changed(uint32_t changed);

}  // namespace repvisor::bus
