#include "job_view.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "log_follow.hpp"
#include "output.hpp"
#include "util/text.hpp"

namespace repvisor::ctl {

using nlohmann::json;

namespace {

json to_json(const DictValue& v) {
  return std::visit([](const auto& x) -> json { return x; }, v);
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

}  // namespace

bool is_terminal(const std::string& s) { return s == "completed" || s == "failed" || s == "cancelled"; }

int exit_for_end(const Props& p) {
  const std::string state = get_s(p, "State");
  if (state == "completed") return kExitOk;
  if (state == "cancelled") return kExitJobCancelled;
  // Not known to have failed: nothing could tell how its main process ended.
  if (get_s(p, "Result") == "unknown") return kExitJobUnknown;
  return kExitJobFailed;
}

std::string job_label(const Props& p) {
  const std::string name = escape(get_s(p, "Name"));
  return name.empty() ? short_id(get_s(p, "Id")) : fmt::format("{} ({})", name, short_id(get_s(p, "Id")));
}

std::string end_line(const std::string& id, const Props& p) {
  const std::string state = get_s(p, "State");
  std::string why;
  if (state == "failed")
    why = !get_s(p, "FailReason").empty() ? get_s(p, "FailReason") : get_s(p, "StatusText");
  else if (state == "cancelled" && !get_s(p, "CancelReason").empty())
    why = "reason " + get_s(p, "CancelReason");
  return fmt::format("Job {} {}{}", id, coloured_state(state), why.empty() ? "" : ": " + escape(why));
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

json props_json(const Props& p) {
  json j = json::object();
  for (const auto& [k, v] : p) j[json_key(k)] = to_json(v);
  return j;
}
void print_status(const Props& raw, const std::string& queue) {
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
  row("Result", get_s(p, "Result"));
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

}  // namespace repvisor::ctl
