// org.repvisor1.Job, one object per job at /org/repvisor1/job/<id>: its methods, its properties
// (one table), and the job verbs that Manager's StopJob, DeleteJob, ResumeJob and RetryCleanup
// share with it.
#pragma once
#include <systemd/sd-bus.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bus/handles.hpp"
#include "core/job.hpp"
#include "wire/names.hpp"

namespace repvisor::bus {

class Api;

using wire::kJobInterface;
using wire::kJobPrefix;

std::string job_path(const std::string& id);

// Serves every job's object on `bus` (one fallback vtable and an enumerator); throws.
void serve_jobs(sd_bus* bus, Api& api, Slots& slots);

// The Job properties that a set of core::kChanged* bits signals, NULL-terminated.
std::vector<const char*> job_properties_changed(uint32_t changed);

// The verbs, for a call whose remaining arguments are the verb's options (a{sv}). Each answers
// the call, now or once the change is done and on disk; returns as a handler does.
int stop_job(Api& api, sd_bus_message* call, core::Job& job);
int delete_job(Api& api, sd_bus_message* call, core::Job& job);
int resume_job(Api& api, sd_bus_message* call, core::Job& job);
int retry_cleanup(Api& api, sd_bus_message* call, core::Job& job);

}  // namespace repvisor::bus
