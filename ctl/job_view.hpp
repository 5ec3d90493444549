// How a job is shown: its properties as JSON, its status page, and the lines that say how it
// ended or how its stop goes. The verbs print with these; nothing here talks to the daemon.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "client.hpp"
#include "util/time.hpp"

namespace repvisor::ctl {

bool is_terminal(const std::string& state);
// What `wait` and `submit --wait` exit with for a job that ended (docs/cli.md, Exit codes).
int exit_for_end(const Props& p);

nlohmann::json to_json(const Value& v);
// The properties as a JSON object, keys in snake_case ("StartedUSec" is "started_usec").
nlohmann::json props_json(const Props& p);
// A string field of a resource's dictionary; "" when it is not there.
std::string dict_s(const Dict& d, const std::string& k);

// "name (short id)", or the short id of a job without a name.
std::string job_label(const Props& p);
// How a finished job ended, in a line: the daemon's reason for a failure, else the job's own
// words; a cancelled job's reason.
std::string end_line(const std::string& id, const Props& p);
// `repvisorctl status`: the job's page; `queue` its place among the pending jobs.
void print_status(const Props& raw, const std::string& queue = {});
// Where a stop is: the signal sent and the time it has had of `timeout`, SIGKILL, the cleanup.
std::string stop_line(const Props& p, usec_t timeout);

}  // namespace repvisor::ctl
