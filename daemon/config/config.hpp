// repvisord.toml: parsed and validated in one place. A bad file is refused as a whole, with
// file:line:column and the key, so the daemon never runs on half a configuration.
#pragma once
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/logs.hpp"
#include "util/time.hpp"

namespace repvisor::config {

// A job an admin may submit by name: the command is fixed here, only the declared parameters
// vary, each checked against its pattern (whole-value match).
struct TemplateParam {
  std::string pattern = "[A-Za-z0-9._:/+=@,-]+";
  std::optional<std::string> default_value;
  bool secret = false;      // its value is never shown: not in the audit trail, not in the job's Argv
  std::string description;  // for people filling it in (the console's form)
};
struct JobTemplate {
  std::string description;
  std::vector<std::string> argv;  // with {param} placeholders
  std::map<std::string, TemplateParam> params;
  std::optional<usec_t> stop_timeout;
  std::string progress = "notify";
};

struct Config {
  unsigned max_concurrent_jobs = 64;
  usec_t stop_timeout = 30 * USEC_PER_SEC;         // default for jobs that do not set one
  usec_t final_kill_timeout = 10 * USEC_PER_SEC;   // after SIGKILL, before a job is called unkillable
  usec_t shutdown_timeout = 90 * USEC_PER_SEC;     // daemon stop: graceful for this long, then force
  usec_t max_stop_extension = 600 * USEC_PER_SEC;  // how far EXTEND_TIMEOUT_USEC may push a stop
  std::string cgroup_root = "auto";                // "auto", "none", or an absolute path
  std::string recovery = "stop";                   // jobs alive at start-up: "stop" them or "adopt" them
  std::string state_dir = "/var/lib/repvisor";
  std::string runtime_dir = "/run/repvisor";

  // [volumes]: where job volumes may be created or written, and which existing block devices a
  // job may be given (exact paths, or glob patterns such as "/dev/vd?").
  std::vector<std::string> volume_roots = {"/var/lib/repvisor/volumes"};
  std::vector<std::string> volume_devices;
  usec_t sync_timeout = 300 * USEC_PER_SEC;   // flushing a volume after its writers are gone
  usec_t detach_timeout = 30 * USEC_PER_SEC;  // a loop device to be unbound
  // [bus]
  std::string bus_system = "auto";       // serve on the system bus: "auto", "yes", "no"
  std::string admin_group = "repvisor";  // may stop, delete, resume and clean up jobs; owns the socket
  // [templates.NAME]
  std::map<std::string, JobTemplate> templates;
  // [audit]: environment variables whose values the audit trail may keep; of every other
  // variable it keeps the name only (values are often secrets, and the trail is never deleted).
  std::vector<std::string> audit_env_values;
  // [nbd]
  usec_t nbd_ready_timeout = 30 * USEC_PER_SEC;  // an NBD server to answer its first handshake
  usec_t nbd_stop_timeout = 10 * USEC_PER_SEC;   // after SIGTERM, before SIGKILL
  // [logs]
  LogLimits logs;
};

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses TOML text; `source` names it in errors. Throws ConfigError.
Config parse(std::string_view text, const std::string& source);
// Applies the keys present in `text` over `into` (drop-ins: later files win key by key).
void parse_into(Config& into, std::string_view text, const std::string& source);
// Reads and parses a file. A missing file is an error only when `must_exist`.
Config load(const std::string& path, bool must_exist);
// The file, then every PATH.d/*.toml in lexical order over it. Returns the files read too.
Config load_with_dropins(const std::string& path, bool must_exist, std::vector<std::string>* files = nullptr);
// The effective configuration as TOML (what --check-config prints).
std::string to_toml(const Config& c);
// Keys whose new value cannot take effect without a restart.
std::vector<std::string> keys_needing_restart(const Config& running, const Config& wanted);

}  // namespace repvisor::config
