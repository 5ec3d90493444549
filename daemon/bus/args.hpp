// The validation layer for a{sv} arguments: each key has one type, unknown keys and wrong types
// are InvalidArgs naming the key, and nothing is acted on until the whole dictionary is valid.
#pragma once
#include <systemd/sd-bus.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/job.hpp"
#include "core/job_spec.hpp"
#include "supervisor/log_reader.hpp"
#include "supervisor/supervisor.hpp"

namespace repvisor::bus {

// One variant's value, read on demand with the type the key requires.
class Value {
 public:
  Value(sd_bus_message* m, std::string key, std::string signature)
      : m_(m), key_(std::move(key)), sig_(std::move(signature)) {}
  std::string str();
  bool boolean();
  uint64_t u64();
  int32_t i32();
  std::vector<std::string> strv();
  std::map<std::string, std::string> str_map();
  // An aa{sv}: fn is called for each dictionary with its index, positioned inside it.
  void each_dict(const std::function<void(size_t, sd_bus_message*)>& fn);
  const std::string& key() const { return key_; }

 private:
  void expect(const char* sig);
  sd_bus_message* m_;
  std::string key_, sig_;
};

// Iterates an a{sv}; fn is called for each key, positioned inside its variant, and must read it.
void read_dict(sd_bus_message* m, const std::function<void(Value&)>& fn);

// A raw spec (argv and the rest), or `template` + `params` (a{ss}) + optionally `name`: the job
// of [templates.NAME] with its parameters checked and put in place. *from_template says which.
core::JobSpec parse_job_spec(sd_bus_message* m, const config::Config& cfg, bool* from_template = nullptr);
// Job.Resume options: none yet; an unknown key is refused.
void parse_resume_options(sd_bus_message* m);
core::StopRequest parse_stop_options(sd_bus_message* m, bool* wait);
DeleteOptions parse_delete_options(sd_bus_message* m);
std::vector<core::JobState> parse_list_filter(sd_bus_message* m);
// ListEvents filter: `job` (id, prefix or name, or the id of a deleted job), `since_usec`, `limit`.
struct EventsFilterArgs {
  std::string job;
  uint64_t since_usec = 0;
  uint64_t limit = 1000;
};
EventsFilterArgs parse_events_filter(sd_bus_message* m);

// Job.ReadLog options: `from_end` b, `since_usec` t, `whole_lines` b, set into *req.
void parse_read_log_options(sd_bus_message* m, LogReadRequest* req);

// Checks shared by the bus and the TOML job-file paths; throw ApiError(InvalidArgs).
void validate_job_spec(const core::JobSpec& spec);

}  // namespace repvisor::bus
