// The verbs that change jobs: submit, stop, delete, resume and cleanup.
#include <fmt/format.h>
#include <limits.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "job_view.hpp"
#include "output.hpp"
#include "util/text.hpp"
#include "util/time.hpp"
#include "verbs.hpp"
#include "watcher.hpp"
#include "wire/names.hpp"

namespace repvisor::ctl {

using nlohmann::json;

int verb_submit(const Globals& g, const SubmitArgs& a) {
  Options spec;
  if (!a.file.empty()) spec = load_job_file(a.file);
  if (!a.argv.empty()) {
    std::vector<std::string> argv = a.argv;
    // The job does not run in our working directory: a relative command is made absolute here.
    if (argv[0].find('/') != std::string::npos && argv[0][0] != '/') {
      char cwd[PATH_MAX];
      if (getcwd(cwd, sizeof cwd)) argv[0] = std::string(cwd) + "/" + argv[0];
    }
    spec["argv"] = argv;
  }
  if (!a.template_name.empty()) {
    if (!spec.empty())
      throw CtlError(kExitUsage, "--template: the template fixes the command; give no command or file");
    spec["template"] = a.template_name;
    StringMap params;
    for (const auto& kv : a.params) {
      if (kv.find('=') == std::string::npos || kv.front() == '=')
        throw CtlError(kExitUsage, fmt::format("--param '{}': expected NAME=VALUE", kv));
      params[kv.substr(0, kv.find('='))] = kv.substr(kv.find('=') + 1);
    }
    spec["params"] = params;
  } else if (!a.params.empty()) {
    throw CtlError(kExitUsage, "--param: only with --template");
  }
  if (spec.find("argv") == spec.end() && spec.find("template") == spec.end())
    throw CtlError(kExitUsage, "nothing to run",
                   "give the command after --, a job file with --file, or a configured --template");
  if (!a.name.empty()) spec["name"] = a.name;
  if (!a.env.empty()) {
    for (const auto& kv : a.env)
      if (kv.find('=') == std::string::npos || kv.front() == '=')
        throw CtlError(kExitUsage, fmt::format("--env '{}': expected KEY=VALUE", kv));
  }
  if (!a.workdir.empty()) spec["working_directory"] = a.workdir;
  if (!a.stop_signal.empty()) {
    int sig = parse_signal(a.stop_signal);
    if (sig < 0)
      throw CtlError(kExitUsage, fmt::format("--stop-signal '{}': not a signal name or number", a.stop_signal));
    spec["stop_signal"] = static_cast<int32_t>(sig);
  }
  if (!a.stop_timeout.empty()) {
    std::string err;
    auto t = parse_timespan(a.stop_timeout, &err);
    if (!t) throw CtlError(kExitUsage, "--stop-timeout: " + err);
    spec["stop_timeout_usec"] = *t;
  }
  if (!a.kill_mode.empty()) spec["kill_mode"] = a.kill_mode;
  if (a.tasks_max) spec["tasks_max"] = a.tasks_max;

  Client c(g.address);
  // Env from the command line merges over the job file's.
  if (!a.env.empty()) {
    StringMap env;
    if (auto it = spec.find("env"); it != spec.end()) env = std::get<StringMap>(it->second);
    for (const auto& kv : a.env) env[kv.substr(0, kv.find('='))] = kv.substr(kv.find('=') + 1);
    spec["env"] = env;
  }
  const auto res = c.submit(spec);

  if (!a.wait) {
    // Submit answers once the command is spawned: a job that could not start (no such command,
    // its resources could not be set up) has its reason already, and no start time.
    const Props p = c.job_properties(res.second);
    const std::string why = get_s(p, "FailReason");
    const bool not_started = get_t(p, "StartedUSec") == 0 && !why.empty();
    if (g.json)
      fmt::print(
          "{}\n",
          json{{"id", res.first}, {"path", res.second}, {"state", get_s(p, "State")}, {"fail_reason", why}}.dump());
    else if (!not_started)
      fmt::print("Submitted job {}\n", res.first);
    if (not_started)
      throw CtlError(kExitFailure, fmt::format("job {} failed to start: {}", res.first, escape(why)),
                     fmt::format("'repvisorctl delete {}' removes its record", res.first));
    return kExitOk;
  }
  Props p = wait_terminal(c, res.second);
  if (g.json)
    fmt::print("{}\n", props_json(p).dump());
  else
    fmt::print("{}\n", end_line(res.first, p));
  return exit_for_end(p);
}

int verb_stop(const Globals& g, const StopArgs& a) {
  Options opts;
  usec_t timeout = USEC_INFINITY;
  if (a.force) opts["force"] = true;
  if (!a.timeout.empty()) {
    std::string err;
    auto t = parse_timespan(a.timeout, &err);
    if (!t) throw CtlError(kExitUsage, "--timeout: " + err);
    if (*t == 0) throw CtlError(kExitUsage, "--timeout: must be greater than 0 (use --force to kill at once)");
    opts["timeout_usec"] = timeout = *t;
  }
  if (!a.reason.empty()) opts["reason"] = a.reason;
  if (!a.notes.empty()) opts["notes"] = a.notes;
  opts["wait"] = !a.no_wait;

  Client c(g.address);
  const std::string path = c.get_job(a.job);
  Props p;
  bool live = !g.json && !a.no_wait && isatty(STDOUT_FILENO);
  std::unique_ptr<Watcher> watcher;
  if (live) {
    watcher = std::make_unique<Watcher>(c, path, [&](const std::string&, const Props& ch) { merge(p, ch); });
    merge(p, c.job_properties(path));
    if (timeout == USEC_INFINITY) timeout = get_t(p, "StopTimeoutUSec");
  }

  struct Reply {
    bool done = false;
    Props result;
    std::string err_name, err_msg;
  } reply;
  wire::Slot slot = c.call_async(
      path.c_str(), wire::kJobInterface, "Stop", {}, opts,
      [](sd_bus_message* m, void* userdata, sd_bus_error*) {
        auto* r = static_cast<Reply*>(userdata);
        r->done = true;
        if (const sd_bus_error* e = sd_bus_message_get_error(m)) {
          r->err_name = e->name ? e->name : "";
          r->err_msg = e->message ? e->message : "";
        } else {
          try {
            r->result = read_props(m);
          } catch (const CtlError& e) {
            r->err_msg = e.what();
          }
        }
        return 0;
      },
      &reply);
  std::string last;
  try {
    run_until(
        c, [&] { return reply.done; }, live ? 250 * USEC_PER_MSEC : USEC_INFINITY,
        [&] {
          if (!live) return;
          std::string line = stop_line(p, timeout);
          if (line != last) {
            fmt::print("\r\x1b[K{}", line);
            fflush(stdout);
            last = line;
          }
        });
  } catch (const CtlError& e) {
    slot.reset();
    if (e.exit_code != 130) throw;
    // Only the waiting ends: the daemon has the request and carries the stop through.
    if (live && !last.empty()) fmt::print("\r\x1b[K");
    throw CtlError(130, fmt::format("interrupted: the stop of job {} carries on in the daemon", a.job),
                   "follow it with: repvisorctl status " + a.job);
  }
  slot.reset();
  if (live && !last.empty()) fmt::print("\r\x1b[K");
  if (!reply.err_name.empty() || !reply.err_msg.empty()) {
    sd_bus_error e = SD_BUS_ERROR_MAKE_CONST(reply.err_name.c_str(), reply.err_msg.c_str());
    Client::raise(&e);
  }
  const Props& r = reply.result;
  if (g.json) {
    fmt::print("{}\n", props_json(r).dump());
  } else if (get_i(r, "already")) {
    fmt::print("Job {} is already {}; nothing changed.\n", short_id(get_s(r, "id")), coloured_state(get_s(r, "state")));
  } else if (a.no_wait) {
    fmt::print("Stop of job {} requested; it is {}.\n", short_id(get_s(r, "id")), coloured_state(get_s(r, "state")));
  } else {
    fmt::print("Job {} {}{}.\n", short_id(get_s(r, "id")), coloured_state(get_s(r, "state")),
               get_s(r, "reason").empty() ? "" : " (reason: " + get_s(r, "reason") + ")");
  }
  return kExitOk;
}

namespace {

// A job's volumes (file and loop resources) and what a delete does with each: it removes those
// the job created, unless the data is kept.
struct VolumeFate {
  std::string name, path, fate;
};
std::vector<VolumeFate> volume_fates(const Props& p, bool keep_data) {
  std::vector<VolumeFate> out;
  auto it = p.find("ResourceDetails");
  if (it == p.end()) return out;
  const auto* list = std::get_if<DictList>(&it->second);
  if (!list) return out;
  for (const auto& d : *list) {
    const std::string kind = dict_s(d, "kind");
    if (kind != "file" && kind != "loop") continue;
    const auto created = d.find("created");
    const bool own =
        created != d.end() && std::holds_alternative<bool>(created->second) && std::get<bool>(created->second);
    std::string fate;
    if (dict_s(d, "state") == "discarded")
      fate = "already removed";
    else if (!own)
      fate = "kept (the job did not create it)";
    else
      fate = keep_data ? "kept (--keep-data)" : "removed";
    out.push_back({escape(dict_s(d, "name")), escape(dict_s(d, "path")), fate});
  }
  return out;
}

// Why a job cannot be deleted as it is, in the words of its state.
std::string active_line(const Props& p) {
  const std::string state = get_s(p, "State");
  if (state == "pending") return "it is pending (waiting for a free slot; it has not started)";
  if (state == "starting") return "it is starting (its resources are being set up)";
  if (state == "stopping")
    return "it is stopping (a stop is under way: " + stop_line(p, get_t(p, "StopTimeoutUSec")) + ")";
  if (state == "cleaning") return "it is cleaning up (its processes have ended; its resources are being torn down)";
  return "it is " + state;
}

}  // namespace

int verb_delete(const Globals& g, const DeleteArgs& a) {
  Client c(g.address);
  const std::string path = c.get_job(a.job);
  Props p = c.job_properties(path);
  const std::string state = get_s(p, "State");
  const std::string id = get_s(p, "Id");
  if (!is_terminal(state) && !a.force) {
    const bool stopping = state == "stopping" || state == "cleaning";
    throw CtlError(kExitJobActive, fmt::format("cannot delete job {}: {}", job_label(p), active_line(p)),
                   stopping ? fmt::format("wait for it to end ('repvisorctl wait {}') or use --force", short_id(id))
                            : fmt::format("stop it first ('repvisorctl stop {}') or use --force", short_id(id)));
  }
  const auto volumes = volume_fates(p, a.keep_data);
  const std::string log = escape(get_s(p, "LogPath"));
  if (!a.yes && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)) {
    fmt::print("Delete job {} ({})?\n", bold(job_label(p)), coloured_state(state));
    if (!is_terminal(state)) fmt::print("  - it is {}: it will be force-stopped (SIGKILL) first\n", state);
    fmt::print("  - its record and runtime files will be removed\n");
    fmt::print("  - its log {} will be {}\n", log, a.keep_data ? "kept" : "removed");
    for (const auto& v : volumes)
      if (v.fate != "already removed")
        fmt::print("  - volume '{}' ({}) will be {}\n", v.name, v.path, v.fate == "removed" ? "removed" : v.fate);
    fmt::print("Continue? [y/N] ");
    fflush(stdout);
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y" && answer != "yes") {
      fmt::print("Nothing deleted.\n");
      return kExitFailure;
    }
  }
  Options opts;
  if (a.force) opts["force"] = true;
  if (a.keep_data) opts["keep_data"] = true;
  Props r = c.call_dict(path.c_str(), wire::kJobInterface, "Delete", {}, opts);
  if (g.json) {
    json j = props_json(r);
    j["log"] = {{"path", log}, {"kept", a.keep_data}};
    j["volumes"] = json::array();
    for (const auto& v : volumes) j["volumes"].push_back({{"name", v.name}, {"path", v.path}, {"fate", v.fate}});
    fmt::print("{}\n", j.dump());
    return kExitOk;
  }
  // The full id: a deleted job is found in 'repvisorctl events' by it alone.
  const std::string name = escape(get_s(p, "Name"));
  fmt::print("Deleted job {}{}.\n", name.empty() ? id : name + " (" + id + ")",
             is_terminal(state) ? "" : " (stopped first)");
  fmt::print("  log {}: {}\n", log, a.keep_data ? "kept" : "removed");
  for (const auto& v : volumes) fmt::print("  volume '{}' {}: {}\n", v.name, v.path, v.fate);
  fmt::print("Its history: repvisorctl events {}\n", id);
  return kExitOk;
}

int verb_resume(const Globals& g, const JobArg& a) {
  Client c(g.address);
  const std::string path = c.get_job(a.job);
  c.resume(path);
  Props p = c.job_properties(path);
  if (g.json) {
    fmt::print("{}\n", props_json(p).dump());
  } else {
    const std::string cp = get_s(p, "Checkpoint");
    fmt::print("Resumed job {} (run {}){}.\n", job_label(p), get_i(p, "Runs"),
               cp.empty() ? ", no checkpoint: it starts from the beginning" : ", from checkpoint " + cp);
  }
  return kExitOk;
}

int verb_cleanup(const Globals& g, const JobArg& a) {
  Client c(g.address);
  const std::string path = c.get_job(a.job);
  c.retry_cleanup(path);
  Props p = c.job_properties(path);
  if (g.json)
    fmt::print("{}\n", props_json(p).dump());
  else
    fmt::print("Cleanup of job {} done: nothing of it is left running or attached.\n", job_label(p));
  return kExitOk;
}

}  // namespace repvisor::ctl
