// What a client asks to run: validated once at the API boundary, then immutable.
#pragma once
#include <csignal>
#include <map>
#include <string>
#include <vector>

#include "core/resource.hpp"
#include "util/time.hpp"

namespace repvisor::core {

enum class KillMode { Mixed, ControlGroup };

const char* to_string(KillMode m);
bool kill_mode_from_string(std::string_view s, KillMode* out);

// Where a job's progress comes from: the notify protocol, or nbdcopy's --progress=FD lines.
enum class ProgressSource { Notify, Nbdcopy };
const char* to_string(ProgressSource p);
bool progress_source_from_string(std::string_view s, ProgressSource* out);

struct JobSpec {
  std::vector<std::string> argv;
  std::string name;
  std::map<std::string, std::string> env;
  std::string working_directory = "/";
  int stop_signal = SIGTERM;
  usec_t stop_timeout = 30 * USEC_PER_SEC;
  KillMode kill_mode = KillMode::Mixed;
  std::vector<ResourceSpec> resources;
  ProgressSource progress = ProgressSource::Notify;
};

}  // namespace repvisor::core
