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
  uint64_t tasks_max = 0;  // the job cgroup's pids.max: how many processes and threads; 0: no limit
  // argv as the daemon shows it (the Argv property, the audit trail) when that differs from
  // argv: a template's secret parameters stay placeholders ("{password}"). Empty: argv.
  std::vector<std::string> shown_argv;
  const std::vector<std::string>& argv_shown() const { return shown_argv.empty() ? argv : shown_argv; }
};

}  // namespace repvisor::core
