#include "verbs.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstring>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "log_follow.hpp"
#include "output.hpp"
#include "util/text.hpp"
#include "util/time.hpp"

namespace repvisor::ctl {

using nlohmann::json;

namespace {

constexpr const char* kJob = "org.repvisor1.Job";

bool is_terminal(const std::string& s) { return s == "completed" || s == "failed" || s == "cancelled"; }

json to_json(const DictValue& v) {
  return std::visit([](const auto& x) -> json { return x; }, v);
}

json to_json(const Value& v) {
  return std::visit(
      [](const auto& x) -> json {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, DictList>) {
          json a = json::array();
          for (const auto& d : x) {
            json o = json::object();
            for (const auto& [k, dv] : d) o[k] = to_json(dv);
            a.push_back(std::move(o));
          }
          return a;
        } else {
          return x;
        }
      },
      v);
}

std::string dict_s(const Dict& d, const std::string& k) {
  auto it = d.find(k);
  if (it == d.end()) return {};
  if (const auto* s = std::get_if<std::string>(&it->second)) return *s;
  return {};
}

// The JSON key of a D-Bus property: snake_case, as every key repvisorctl prints ("StartedUSec"
// is "started_usec", "MainPID" "main_pid").
std::string json_key(std::string_view property) {
  std::string k(property);
  for (const auto& [from, to] : {std::pair{"USec", "Usec"}, {"PIDs", "Pids"}, {"PID", "Pid"}, {"UID", "Uid"}})
    for (size_t at = k.find(from); at != std::string::npos; at = k.find(from, at)) k.replace(at, strlen(from), to);
  std::string out;
  for (size_t i = 0; i < k.size(); ++i) {
    const auto c = static_cast<unsigned char>(k[i]);
    if (isupper(c) && i > 0 && !isupper(static_cast<unsigned char>(k[i - 1]))) out += '_';
    out += static_cast<char>(tolower(c));
  }
  return out;
}

json props_json(const Props& p) {
  json j = json::object();
  for (const auto& [k, v] : p) j[json_key(k)] = to_json(v);
  return j;
}

volatile sig_atomic_t interrupted = 0;
volatile sig_atomic_t resized = 0;  // SIGWINCH: watch redraws for the new size

// Display columns of UTF-8 text without escape sequences: one a character.
size_t columns(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// The first `width` columns of s, cut between characters.
std::string fit(const std::string& s, size_t width) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && n++ == width) return s.substr(0, i);
  return s;
}

// Delivers PropertiesChanged of org.repvisor1.Job objects (one path, or all under /org/repvisor1)
// and InterfacesAdded/Removed to a callback: the live views are driven by signals, not polling.
class Watcher {
 public:
  using OnChange = std::function<void(const std::string& path, const Props& changed)>;
  using OnRemoved = std::function<void(const std::string& path)>;

  Watcher(Client& c, const std::string& path, OnChange on_change, OnRemoved on_removed = {})
      : on_change_(std::move(on_change)), on_removed_(std::move(on_removed)) {
    const std::string where = path.empty() ? "path_namespace='/org/repvisor1'" : "path='" + path + "'";
    const std::string rule =
        "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'," + where;
    if (int r = sd_bus_add_match(c.bus(), &slot_, rule.c_str(), on_signal, this); r < 0)
      throw CtlError(kExitFailure, fmt::format("cannot watch job changes: {}", strerror(-r)));
    const std::string removed =
        "type='signal',interface='org.freedesktop.DBus.ObjectManager',member='InterfacesRemoved'";
    if (int r = sd_bus_add_match(c.bus(), &removed_slot_, removed.c_str(), on_removed_signal, this); r < 0)
      throw CtlError(kExitFailure, fmt::format("cannot watch job removal: {}", strerror(-r)));
  }
  ~Watcher() {
    sd_bus_slot_unref(slot_);
    sd_bus_slot_unref(removed_slot_);
  }

 private:
  static int on_signal(sd_bus_message* m, void* userdata, sd_bus_error*) {
    auto* w = static_cast<Watcher*>(userdata);
    const char* iface = nullptr;
    if (sd_bus_message_read(m, "s", &iface) < 0 || std::string_view(iface) != kJob) return 0;
    try {
      w->on_change_(sd_bus_message_get_path(m), read_props(m));
    } catch (const CtlError&) {
    }
    return 0;
  }
  static int on_removed_signal(sd_bus_message* m, void* userdata, sd_bus_error*) {
    auto* w = static_cast<Watcher*>(userdata);
    const char* path = nullptr;
    if (w->on_removed_ && sd_bus_message_read(m, "o", &path) >= 0) w->on_removed_(path);
    return 0;
  }
  OnChange on_change_;
  OnRemoved on_removed_;
  sd_bus_slot* slot_ = nullptr;
  sd_bus_slot* removed_slot_ = nullptr;
};

// Processes the bus until `done()` or the timeout; calls tick() at least every tick_usec.
// SIGINT is let through only inside ppoll: one that came between the check of `interrupted`
// and a plain wait would be noticed only at the next message, perhaps never.
void run_until(Client& c, const std::function<bool()>& done, usec_t tick_usec = USEC_INFINITY,
               const std::function<void()>& tick = {}) {
  sigset_t block, old, waiting;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &old);
  waiting = old;
  sigdelset(&waiting, SIGINT);
  struct Restore {
    const sigset_t& mask;
    ~Restore() { sigprocmask(SIG_SETMASK, &mask, nullptr); }
  } restore{old};
  while (!done() && !interrupted) {
    int r = sd_bus_process(c.bus(), nullptr);
    if (r < 0) throw CtlError(kExitUnreachable, fmt::format("lost the connection to repvisord: {}", strerror(-r)));
    if (r > 0) continue;
    if (done()) break;
    // Wake for the bus, its own timeout (absolute, CLOCK_MONOTONIC) or our tick, whichever first.
    uint64_t wait_usec = tick_usec;
    if (uint64_t at = 0; sd_bus_get_timeout(c.bus(), &at) >= 0 && at != UINT64_MAX) {
      timespec now{};
      clock_gettime(CLOCK_MONOTONIC, &now);
      const uint64_t now_usec =
          static_cast<uint64_t>(now.tv_sec) * USEC_PER_SEC + static_cast<uint64_t>(now.tv_nsec) / 1000;
      wait_usec = std::min<uint64_t>(wait_usec, at > now_usec ? at - now_usec : 0);
    }
    timespec ts{static_cast<time_t>(wait_usec / USEC_PER_SEC), static_cast<long>((wait_usec % USEC_PER_SEC) * 1000)};
    pollfd p{sd_bus_get_fd(c.bus()), static_cast<short>(sd_bus_get_events(c.bus())), 0};
    if (ppoll(&p, 1, wait_usec == USEC_INFINITY ? nullptr : &ts, &waiting) < 0 && errno != EINTR)
      throw CtlError(kExitUnreachable, fmt::format("waiting on repvisord: {}", strerror(errno)));
    if (tick) tick();
  }
  if (interrupted) throw CtlError(130, "interrupted");
}

void merge(Props& into, const Props& changed) {
  for (const auto& [k, v] : changed) into[k] = v;
}

int exit_for_state(const std::string& state) {
  if (state == "completed") return kExitOk;
  if (state == "cancelled") return kExitJobCancelled;
  return kExitJobFailed;
}

std::string job_label(const Props& p) {
  const std::string name = escape(get_s(p, "Name"));
  return name.empty() ? short_id(get_s(p, "Id")) : fmt::format("{} ({})", name, short_id(get_s(p, "Id")));
}

// How a finished job ended, in a line: the daemon's reason for a failure, else the job's own
// words; a cancelled job's reason.
std::string end_line(const std::string& id, const Props& p) {
  const std::string state = get_s(p, "State");
  std::string why;
  if (state == "failed")
    why = !get_s(p, "FailReason").empty() ? get_s(p, "FailReason") : get_s(p, "StatusText");
  else if (state == "cancelled" && !get_s(p, "CancelReason").empty())
    why = "reason " + get_s(p, "CancelReason");
  return fmt::format("Job {} {}{}", id, coloured_state(state), why.empty() ? "" : ": " + escape(why));
}

// Waits for a job to reach a terminal state; subscribes before reading so no change is missed.
Props wait_terminal(Client& c, const std::string& path, const std::function<void(const Props&)>& on_update = {}) {
  Props p;
  bool gone = false;
  Watcher w(
      c, path,
      [&](const std::string&, const Props& changed) {
        merge(p, changed);
        if (on_update) on_update(p);
      },
      [&](const std::string& removed) { gone |= removed == path; });
  merge(p, c.job_properties(path));
  if (on_update) on_update(p);
  run_until(c, [&] { return gone || is_terminal(get_s(p, "State")); });
  if (gone && !is_terminal(get_s(p, "State"))) throw CtlError(kExitNoSuchJob, "the job was deleted");
  return p;
}

// "1.0 MiB of 4.0 MiB (25%), 2.0 MiB/s, about 1s left": the rate is the average since the run
// started, so the estimate holds for a copy that goes at a steady pace.
std::string bytes_line(const Props& p, usec_t now) {
  const uint64_t done = get_t(p, "BytesDone"), total = get_t(p, "BytesTotal");
  if (done == 0 && total == 0) return {};
  std::string line = format_bytes(done);
  if (total > 0)
    line += fmt::format(" of {} ({:.0f}%)", format_bytes(total),
                        100.0 * static_cast<double>(std::min(done, total)) / static_cast<double>(total));
  const usec_t started = get_t(p, "StartedUSec");
  if (get_s(p, "State") != "running" || started == 0 || now <= started || done == 0) return line;
  const double secs = static_cast<double>(now - started) / USEC_PER_SEC;
  const double rate = static_cast<double>(done) / secs;
  line += fmt::format(", {}/s", format_bytes(static_cast<uint64_t>(rate)));
  if (total > done) {
    const auto left = static_cast<usec_t>(static_cast<double>(total - done) / rate * USEC_PER_SEC);
    line += fmt::format(", about {} left", format_timespan(left - left % USEC_PER_SEC + USEC_PER_SEC));
  }
  return line;
}

void print_status(const Props& raw, const std::string& queue = {}) {
  const Props p = for_terminal(raw);
  const usec_t now = now_realtime();
  const std::string state = get_s(p, "State");
  const std::string sub = get_s(p, "SubState");
  fmt::print("{} {}\n", colour() ? coloured_state("●") : "*", bold(job_label(raw)));
  auto row = [](const char* k, const std::string& v) {
    if (v.empty()) return;
    if (*k)
      fmt::print("{:>14}: {}\n", k, v);
    else
      fmt::print("{:>14}  {}\n", "", v);
  };
  row("Id", get_s(p, "Id"));
  row("State", fmt::format("{} ({})", coloured_state(state), sub));
  std::vector<std::string> argv;
  if (auto it = p.find("Argv"); it != p.end())
    if (auto* v = std::get_if<std::vector<std::string>>(&it->second)) argv = *v;
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + (a.find(' ') != std::string::npos ? "'" + a + "'" : a);
  row("Command", cmd);
  if (get_i(p, "MainPID")) row("Main PID", std::to_string(get_i(p, "MainPID")));
  const double prog = get_d(p, "Progress");
  if (prog >= 0 || !get_s(p, "Phase").empty())
    row("Progress", fmt::format("{} {}", progress_bar(prog, 20), get_s(p, "Phase")));
  row("Bytes", bytes_line(p, now));
  row("Queue", queue);
  row("Status", get_s(p, "StatusText"));
  if (get_s(p, "FailReason") != get_s(p, "StatusText")) row("Failure", get_s(p, "FailReason"));
  row("Created", fmt::format("{}; {}", format_time(get_t(p, "CreatedUSec")), format_ago(get_t(p, "CreatedUSec"), now)));
  if (get_t(p, "StartedUSec")) row("Started", format_time(get_t(p, "StartedUSec")));
  if (get_t(p, "StopRequestedUSec")) {
    // 4294967295 (UID_INVALID): the daemon stopped the job itself (shutdown, restart).
    const int64_t uid = get_i(p, "RequestedByUID");
    row("Stop requested", fmt::format("{} ({} by {})", format_time(get_t(p, "StopRequestedUSec")), get_s(p, "StopMode"),
                                      uid == 4294967295 ? std::string("repvisord") : fmt::format("uid {}", uid)));
    // While the stop signal's time runs: when it went out, the timeout in force (the stop's own,
    // with the job's extensions) and what is left of it before SIGKILL.
    const usec_t deadline = get_t(p, "StopDeadlineUSec"), asked = get_t(p, "StopRequestedUSec");
    if (sub == "stop-sigterm" && deadline > asked)
      row("Stop signal",
          fmt::format("{} sent {}; timeout {}; {}", signal_name(static_cast<int>(get_i(p, "StopSignal"))),
                      format_time(asked), format_timespan(deadline - asked),
                      deadline > now ? "SIGKILL in " + format_timespan((deadline - now) -
                                                                       (deadline - now) % USEC_PER_SEC + USEC_PER_SEC)
                                     : "SIGKILL due now"));
    row("Reason", get_s(p, "CancelReason"));
    row("Notes", get_s(p, "CancelNotes"));
  }
  if (get_t(p, "FinishedUSec")) row("Finished", format_time(get_t(p, "FinishedUSec")));
  if (is_terminal(state)) {
    if (get_i(p, "ExitSignal"))
      row("Exit", "killed by " + signal_name(static_cast<int>(get_i(p, "ExitSignal"))));
    else if (get_i(p, "ExitCode") >= 0 && get_t(p, "StartedUSec"))
      row("Exit", fmt::format("status {}", get_i(p, "ExitCode")));
  }
  row("Log", log_status(get_s(p, "LogPath"), get_t(p, "LogBytesCut"), get_s(p, "LogKeep"), get_t(p, "LogLimit")));
  if (get_i(p, "Runs") > 1) row("Runs", std::to_string(get_i(p, "Runs")));
  if (!get_s(p, "Checkpoint").empty()) row("Checkpoint", get_s(p, "Checkpoint"));
  if (auto it = p.find("ResourceDetails"); it != p.end())
    if (const auto* list = std::get_if<DictList>(&it->second); list && !list->empty()) {
      bool first = true;
      for (const auto& d : *list) {
        std::string where = dict_s(d, "endpoint");
        if (where.empty() || where == dict_s(d, "path"))
          where = dict_s(d, "path");
        else
          where = dict_s(d, "path").empty() ? where : dict_s(d, "path") + " -> " + where;
        std::string line = fmt::format("{} {} {}: {}", dict_s(d, "kind"), dict_s(d, "name"), where, dict_s(d, "state"));
        if (!dict_s(d, "error").empty()) line += " (" + dict_s(d, "error") + ")";
        row(first ? "Resources" : "", line);
        first = false;
      }
      const std::string cs = get_s(p, "CleanupState");
      if (!cs.empty())
        row("Cleanup",
            cs == "failed" ? "failed: " + get_s(p, "CleanupError") + " (retry: repvisorctl cleanup JOB)" : cs);
    }
}

std::string stop_line(const Props& p, usec_t timeout) {
  const std::string sub = get_s(p, "SubState");
  const usec_t since = get_t(p, "StopRequestedUSec");
  const usec_t elapsed = since ? now_realtime() - std::min(since, now_realtime()) : 0;
  if (sub == "stop-sigterm")
    return fmt::format("{} sent, {} s of {}", signal_name(static_cast<int>(get_i(p, "StopSignal"))),
                       elapsed / USEC_PER_SEC, format_timespan(timeout));
  if (sub == "stop-sigkill" || sub == "final-sigkill") return "SIGKILL sent to every process, waiting for them to end";
  if (sub == "unkillable") return "processes survive SIGKILL (uninterruptible sleep?): " + get_s(p, "StatusText");
  if (sub == "cleanup") return "cleaning up";
  return get_s(p, "State");
}

}  // namespace

// ---- submit -------------------------------------------------------------------------------

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
  return exit_for_state(get_s(p, "State"));
}

// ---- list / status ------------------------------------------------------------------------

int verb_list(const Globals& g, const JobArg& a) {
  Client c(g.address);
  auto rows = c.list(a.states);
  if (g.json) {
    json out = json::array();
    for (const auto& r : rows)
      out.push_back({{"id", r.id},
                     {"name", r.name},
                     {"state", r.state},
                     {"phase", r.phase},
                     {"progress", r.progress},
                     {"created_usec", r.created_usec},
                     {"finished_usec", r.finished_usec},
                     {"path", r.path}});
    fmt::print("{}\n", out.dump());
    return kExitOk;
  }
  if (rows.empty()) {
    // Say what matched nothing: an empty filter's answer is not "there are no jobs".
    std::string states;
    for (const auto& s : a.states) states += (states.empty() ? "" : ", ") + s;
    fmt::print("{}\n", states.empty() ? "No jobs." : "No jobs in state " + states + ".");
    return kExitOk;
  }
  std::sort(rows.begin(), rows.end(), [](const JobRow& x, const JobRow& y) { return x.created_usec < y.created_usec; });
  const usec_t now = now_realtime();
  // The name column is as wide as the longest name (at most 64 ASCII characters), so a
  // long name never pushes the columns after it out of line.
  size_t width = 4;
  for (const auto& r : rows) width = std::max(width, escape(r.name).size());
  const auto padded = [](const std::string& s, size_t w) { return s + std::string(w - std::min(w, s.size()), ' '); };
  fmt::print("{}\n", bold(fmt::format("{:<12}  {}  {:<10}  {:<12}  {:<17}  {}", "ID", padded("NAME", width), "STATE",
                                      "PHASE", "PROGRESS", "CREATED")));
  for (const auto& r : rows) {
    // Padding outside the colour codes, so columns line up on a terminal.
    const std::string pad(r.state.size() < 10 ? 10 - r.state.size() : 0, ' ');
    fmt::print("{:<12}  {}  {}{}  {:<12}  {:<17}  {}\n", short_id(r.id),
               padded(r.name.empty() ? "-" : escape(r.name), width), coloured_state(r.state), pad, escape(r.phase),
               r.progress >= 0 ? progress_bar(r.progress, 10) : "", format_ago(r.created_usec, now));
  }
  fmt::print("\n{} job(s).\n", rows.size());
  return kExitOk;
}

int verb_status(const Globals& g, const JobArg& a) {
  Client c(g.address);
  Props p = c.job_properties(c.get_job(a.job));
  if (g.json) {
    fmt::print("{}\n", props_json(p).dump());
    return kExitOk;
  }
  // A pending job's place: the daemon starts pending jobs in the order they were submitted.
  std::string queue;
  if (get_s(p, "State") == "pending") {
    auto rows = c.list({"pending"});
    std::sort(rows.begin(), rows.end(),
              [](const JobRow& x, const JobRow& y) { return x.created_usec < y.created_usec; });
    for (size_t i = 0; i < rows.size(); ++i)
      if (rows[i].id == get_s(p, "Id")) queue = fmt::format("{} of {} pending ({} before it)", i + 1, rows.size(), i);
  }
  print_status(p, queue);
  return kExitOk;
}

// ---- stop ---------------------------------------------------------------------------------

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
      path.c_str(), kJob, "Stop", {}, opts,
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

// ---- delete -------------------------------------------------------------------------------

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
  Props r = c.call_dict(path.c_str(), kJob, "Delete", {}, opts);
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

// ---- resume / cleanup ----------------------------------------------------------------------

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

// ---- logs / wait / watch ------------------------------------------------------------------

namespace {

// Moves fd to the start of its last `lines` lines, reading backwards from the end in blocks.
// Where the last `lines` lines of the file begin (0: all of it when it has fewer).
uint64_t last_lines_offset(int fd, int64_t lines) {
  struct stat st {};
  if (fstat(fd, &st) < 0) return 0;
  if (lines == 0) return static_cast<uint64_t>(st.st_size);
  off_t pos = st.st_size;
  // A final newline ends the last line; it does not start another.
  int64_t seen = 0;
  bool skip_final = true;
  char buf[65536];
  while (pos > 0) {
    const off_t at = pos > static_cast<off_t>(sizeof buf) ? pos - static_cast<off_t>(sizeof buf) : 0;
    const ssize_t n = pread(fd, buf, static_cast<size_t>(pos - at), at);
    if (n <= 0) break;
    for (ssize_t i = n - 1; i >= 0; --i) {
      if (buf[i] != '\n') continue;
      if (skip_final && at + i == st.st_size - 1) continue;
      if (++seen == lines) {
        return static_cast<uint64_t>(at + i + 1);
      }
    }
    skip_final = false;
    pos = at;
  }
  return 0;  // fewer lines than asked for: all of them
}

}  // namespace

int verb_logs(const Globals& g, const JobArg& a) {
  // Following, SIGINT is let through only inside ppoll (below): one that came during a call
  // before it (the watch's match rules) would fail that call, and one between the check of
  // `interrupted` and the wait would be noticed only at the next line of output.
  sigset_t block, unblocked;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigprocmask(a.follow ? SIG_BLOCK : SIG_UNBLOCK, a.follow ? &block : nullptr, &unblocked);
  sigdelset(&unblocked, SIGINT);
  Client c(g.address);
  const std::string path = c.get_job(a.job);
  Props p = c.job_properties(path);
  const std::string id = get_s(p, "Id");
  const std::string log = get_s(p, "LogPath");
  int fd = open(log.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno != ENOENT) throw CtlError(kExitFailure, fmt::format("cannot read {}: {}", log, strerror(errno)));
  if (fd < 0 && !a.follow) {  // the job has written nothing yet
    if (g.json) fmt::print("{}\n", json{{"job", id}, {"log_path", log}, {"log", ""}}.dump());
    return kExitOk;
  }
  // With --json: without -f one object with the whole text; with -f one object a line of JSON
  // for each piece as it comes. Bytes that are not UTF-8 become U+FFFD.
  std::string whole;
  auto emit = [&](std::string_view text) {
    if (g.json && !a.follow) {
      whole.append(text);
      return;
    }
    if (!g.json)
      fwrite(text.data(), 1, text.size(), stdout);
    else if (!text.empty())
      fmt::print("{}\n",
                 json{{"job", id}, {"log", std::string(text)}}.dump(-1, ' ', false, json::error_handler_t::replace));
    fflush(stdout);
  };
  // The follower notices the log's cuts (see log_follow.hpp) and goes on from the right place.
  std::optional<LogFollower> follower;
  if (fd >= 0) follower.emplace(fd, a.tail >= 0 ? last_lines_offset(fd, a.tail) : 0);
  auto drain = [&](bool whole_lines = true) {
    if (follower) follower->drain(emit, get_s(p, "LogKeep"), whole_lines);
  };
  drain(a.follow);
  if (!a.follow) {
    close(fd);
    if (g.json)
      fmt::print("{}\n", json{{"job", id}, {"log_path", log}, {"log", whole}}.dump(-1, ' ', false,
                                                                                   json::error_handler_t::replace));
    return kExitOk;
  }
  // Follow until the job is terminal: inotify for the file, signals for the state. A log not
  // yet written is watched for in its directory.
  int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd >= 0)
    inotify_add_watch(in, log.c_str(), IN_MODIFY);
  else
    inotify_add_watch(in, log.substr(0, log.rfind('/')).c_str(), IN_CREATE | IN_MODIFY);
  bool done = is_terminal(get_s(p, "State")), gone = false;
  Watcher w(
      c, path,
      [&](const std::string&, const Props& ch) {
        merge(p, ch);
        done = is_terminal(get_s(p, "State"));
      },
      [&](const std::string& removed) { gone |= removed == path; });
  while (!done && !gone && !interrupted) {
    while (sd_bus_process(c.bus(), nullptr) > 0) {
    }
    if (done || gone) break;
    pollfd fds[2] = {{in, POLLIN, 0}, {sd_bus_get_fd(c.bus()), static_cast<short>(sd_bus_get_events(c.bus())), 0}};
    if (ppoll(fds, 2, nullptr, &unblocked) < 0 && errno != EINTR) break;
    char ev[4096];
    while (read(in, ev, sizeof ev) > 0) {
    }
    if (fd < 0) {
      fd = open(log.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd >= 0) {
        inotify_add_watch(in, log.c_str(), IN_MODIFY);
        follower.emplace(fd, 0);
      }
    }
    drain();
  }
  sigprocmask(SIG_SETMASK, &unblocked, nullptr);
  if (fd < 0) {
    fd = open(log.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) follower.emplace(fd, 0);
  }
  drain(false);  // the rest, a last line without its end too
  close(in);
  if (fd >= 0) close(fd);
  if (interrupted) throw CtlError(130, "interrupted");
  return kExitOk;
}

int verb_wait(const Globals& g, const JobArg& a) {
  Client c(g.address);
  Props p = wait_terminal(c, c.get_job(a.job));
  if (g.json)
    fmt::print("{}\n", props_json(p).dump());
  else
    fmt::print("{}\n", end_line(job_label(p), p));
  return exit_for_state(get_s(p, "State"));
}

int verb_watch(const Globals& g, const JobArg& a) {
  Client c(g.address);
  const bool tty = isatty(STDOUT_FILENO);
  std::map<std::string, Props> jobs;  // path -> properties
  std::string only;
  if (!a.job.empty()) only = c.get_job(a.job);

  // On a terminal (and without --json) a table redrawn in place: every row cut to the width,
  // never wrapped, and as many rows as the height allows, the rest counted.
  auto draw = [&] {
    if (g.json || !tty) return;
    winsize ws{};
    size_t height = 24, width = 80;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
      height = ws.ws_row, width = ws.ws_col;
    std::string frame = "\x1b[H";
    size_t lines = 0;
    // The last line of the screen stays empty: a newline there would scroll the table.
    auto put = [&](const std::string& plain, const std::string& painted) {
      if (lines + 1 >= height) return;
      frame += (colour() && columns(plain) <= width ? painted : fit(plain, width)) + "\x1b[K\n";
      ++lines;
    };
    const std::string title = fmt::format("repvisor — {} job(s)   (Ctrl-C to quit)", jobs.size());
    put(title, bold(title));
    put("", "");
    const std::string head = fmt::format("{:<12}  {:<18}  {:<10}  {:<13}  {:<18} {}", "ID", "NAME", "STATE", "SUBSTATE",
                                         "PROGRESS", "PHASE / STATUS");
    put(head, bold(head));
    std::vector<const Props*> order;
    for (const auto& [path, p] : jobs) order.push_back(&p);
    std::sort(order.begin(), order.end(),
              [](const Props* x, const Props* y) { return get_t(*x, "CreatedUSec") < get_t(*y, "CreatedUSec"); });
    const size_t room = height > lines + 1 ? height - lines - 1 : 0;
    const size_t shown_rows = order.size() <= room ? order.size() : (room > 0 ? room - 1 : 0);
    for (size_t i = 0; i < shown_rows; ++i) {
      const Props p = for_terminal(*order[i]);
      const std::string st = get_s(p, "State");
      std::string info = get_s(p, "Phase");
      if (!get_s(p, "StatusText").empty()) info += (info.empty() ? "" : " — ") + get_s(p, "StatusText");
      const std::string left =
          fmt::format("{:<12}  {:<18}  ", short_id(get_s(p, "Id")), get_s(p, "Name").empty() ? "-" : get_s(p, "Name"));
      const std::string right =
          fmt::format("  {:<13}  {:<18} {}", get_s(p, "SubState"), progress_bar(get_d(p, "Progress"), 10), info);
      const std::string pad(st.size() < 10 ? 10 - st.size() : 0, ' ');
      put(left + st + pad + right, left + coloured_state(st) + pad + right);
    }
    if (shown_rows < order.size()) {
      const std::string more = fmt::format("+{} more", order.size() - shown_rows);
      put(more, dim(more));
    }
    frame += "\x1b[J";
    fmt::print("{}", frame);
    fflush(stdout);
  };
  // Not on a terminal: one line per change, naming the job; jobs added and removed say so.
  auto label = [](const Props& p) {
    const std::string name = escape(get_s(p, "Name"));
    return short_id(get_s(p, "Id")) + (name.empty() ? "" : " " + name);
  };
  auto print_event = [&](const std::string& path, const Props& ch, const char* event) {
    if (tty && !g.json) return;
    const Props& p = jobs[path];
    if (g.json) {
      json j = props_json(ch);
      j["id"] = get_s(p, "Id");
      if (*event) j["event"] = event;
      fmt::print("{}\n", j.dump());
    } else if (*event) {
      fmt::print("{}: {} ({})\n", label(p), event, get_s(p, "State"));
    } else {
      std::string what;
      for (const auto& [k, v] : ch) what += fmt::format(" {}={}", k, to_json(v).dump());
      fmt::print("{}:{}\n", label(p), what);
    }
    fflush(stdout);
  };
  Watcher w(
      c, only,
      [&](const std::string& path, const Props& ch) {
        auto it = jobs.find(path);
        if (it == jobs.end()) {
          try {
            jobs[path] = c.job_properties(path);
          } catch (const CtlError&) {
            return;
          }
          print_event(path, jobs[path], "added");
        }
        merge(jobs[path], ch);
        print_event(path, ch, "");
        draw();
      },
      [&](const std::string& path) {
        if (auto it = jobs.find(path); it != jobs.end()) {
          print_event(path, Props{}, "removed");
          jobs.erase(it);
        }
        draw();
      });
  if (only.empty()) {
    for (const auto& r : c.list()) jobs[r.path] = c.job_properties(r.path);
  } else {
    jobs[only] = c.job_properties(only);
  }
  // JSON lines begin with every job as it is, text lines with every job and its state (not on
  // a terminal); the changes follow.
  if (g.json) {
    for (const auto& [path, p] : jobs) fmt::print("{}\n", props_json(p).dump());
    fflush(stdout);
  } else if (!tty) {
    for (const auto& [path, p] : jobs) print_event(path, p, "listed");
  }
  if (tty && !g.json) {
    struct sigaction sa {};
    sa.sa_handler = [](int) { resized = 1; };
    sigaction(SIGWINCH, &sa, nullptr);
    fmt::print("\x1b[2J");  // once: later frames overwrite in place, without a flash
  }
  draw();
  run_until(
      c,
      [&] {
        if (only.empty()) return false;
        auto it = jobs.find(only);
        return it == jobs.end() || is_terminal(get_s(it->second, "State"));
      },
      USEC_INFINITY,
      [&] {
        if (!resized) return;
        resized = 0;
        draw();
      });
  return kExitOk;
}

int verb_events(const Globals& g, const EventsArgs& a) {
  uint64_t since = 0;
  if (!a.since.empty()) {
    std::string err;
    auto ago = parse_timespan(a.since, &err);
    if (!ago) throw CtlError(kExitUsage, "--since: " + err, "give how long ago, e.g. 10min or 2h");
    const usec_t now = now_realtime();
    since = *ago < now ? now - *ago : 0;
  }
  Client c(g.address);
  const auto rows = c.list_events(a.job, since, a.limit);
  if (g.json) {
    json out = json::array();
    for (const auto& e : rows)
      out.push_back({{"ts_usec", e.ts_usec},
                     {"job", e.job},
                     {"type", e.type},
                     {"message", e.message},
                     {"details", props_json(e.details)}});
    fmt::print("{}\n", out.dump());
    return kExitOk;
  }
  for (const auto& e : rows) {
    std::string who;
    if (e.details.count("uid")) who = fmt::format(" [uid {}", get_i(e.details, "uid"));
    if (!who.empty() && !get_s(e.details, "command").empty())
      who += fmt::format(" {}({})", get_s(e.details, "command"), get_i(e.details, "pid"));
    if (!who.empty()) who += "]";
    fmt::print("{}  {}  {:<16} {}{}\n", dim(format_time(e.ts_usec)),
               e.job.empty() ? std::string(12, '-') : short_id(e.job), escape(e.type), escape(e.message), escape(who));
  }
  return kExitOk;
}

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = [](int) { interrupted = 1; };
  sigaction(SIGINT, &sa, nullptr);
}

}  // namespace repvisor::ctl
