// The verbs of repvisorctl, one function each (read_verbs.cpp those that only read,
// change_verbs.cpp those that change jobs); main.cpp holds the table that names them.
#pragma once
#include <string>
#include <vector>

#include "client.hpp"

namespace repvisor::ctl {

struct Globals {
  std::string address;
  bool json = false;
};

struct SubmitArgs {
  std::vector<std::string> argv, env;
  std::string name, workdir, stop_signal, stop_timeout, kill_mode, file, template_name;
  std::vector<std::string> params;
  uint64_t tasks_max = 0;
  bool wait = false;
};
struct StopArgs {
  std::string job, timeout, reason, notes;
  bool force = false, no_wait = false;
};
struct DeleteArgs {
  std::string job;
  bool force = false, keep_data = false, yes = false;
};
struct EventsArgs {
  std::string job, since;
  uint64_t limit = 1000;
};
struct JobArg {
  std::string job;
  bool follow = false;
  int64_t tail = -1;        // logs: only the last this many lines; -1 all
  std::string since;        // logs: only what was written at this time or later
  bool timestamps = false;  // logs: each line with the time it was written by
  std::vector<std::string> states;
};

int verb_submit(const Globals& g, const SubmitArgs& a);
int verb_list(const Globals& g, const JobArg& a);
int verb_status(const Globals& g, const JobArg& a);
int verb_stop(const Globals& g, const StopArgs& a);
int verb_delete(const Globals& g, const DeleteArgs& a);
int verb_logs(const Globals& g, const JobArg& a);
int verb_wait(const Globals& g, const JobArg& a);
int verb_watch(const Globals& g, const JobArg& a);
int verb_events(const Globals& g, const EventsArgs& a);
int verb_resume(const Globals& g, const JobArg& a);
int verb_cleanup(const Globals& g, const JobArg& a);

// Parses a TOML job file into Submit options; errors name file:line:column and the key.
Options load_job_file(const std::string& path);
Options parse_job_file(std::string_view text, const std::string& source);

}  // namespace repvisor::ctl
