// The verbs that read and follow jobs without changing them: list, status, events, logs, wait
// and watch.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>

#include "job_view.hpp"
#include "log_follow.hpp"
#include "log_times.hpp"
#include "output.hpp"
#include "screen.hpp"
#include "util/text.hpp"
#include "util/time.hpp"
#include "verbs.hpp"
#include "watcher.hpp"

namespace repvisor::ctl {

using nlohmann::json;

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

namespace {

uint64_t file_size(int fd) {
  struct stat st {};
  return fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// The start of the line that `offset` is in: a time falls within a line at most as often as at
// its end, and a line is shown whole.
uint64_t line_start(int fd, uint64_t offset) {
  char buf[4096];
  while (offset > 0) {
    const uint64_t from = offset > sizeof buf ? offset - sizeof buf : 0;
    const ssize_t n = pread(fd, buf, static_cast<size_t>(offset - from), static_cast<off_t>(from));
    if (n <= 0) return offset;
    if (const void* nl = memrchr(buf, '\n', static_cast<size_t>(n)))
      return from + static_cast<uint64_t>(static_cast<const char*>(nl) - buf) + 1;
    offset = from;
  }
  return 0;
}

// "2026-12-08 01:44:15.123", local time as the other times repvisorctl prints.
std::string format_time_ms(usec_t usec) {
  return fmt::format("{}.{:03}", format_time(usec), (usec / USEC_PER_MSEC) % 1000);
}

// Where the last `lines` lines of the file begin (0: all of it when it has fewer), reading
// backwards from the end in blocks.
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
  std::optional<usec_t> since;
  if (!a.since.empty()) {
    std::string why;
    since = parse_since(a.since, now_realtime(), &why);
    if (!since) throw CtlError(kExitUsage, "--since: " + why);
  }
  if (a.timestamps && g.json) throw CtlError(kExitUsage, "-t: not with --json (its pieces carry no times)");
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
  std::optional<LogFollower> follower;
  auto follower_offset = [&] { return follower ? follower->offset() : 0; };
  std::function<void(std::string_view)> emit = [&](std::string_view text) {
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
  // When the lines were written (log_times.hpp), for --since and -t.
  std::optional<LogTimes> times;
  if (fd >= 0 && (since || a.timestamps)) {
    times.emplace(log, fd, get_s(p, "LogKeep"), get_t(p, "LogBytesCut"), get_t(p, "LogLimit"));
    if (times->empty() && file_size(fd) > 0)
      fmt::print(stderr, "repvisorctl: the daemon kept no times for this log (it ran before they were kept)\n");
  }
  uint64_t start = a.tail >= 0 ? last_lines_offset(fd, a.tail) : 0;
  if (times && since) start = std::max(start, line_start(fd, times->offset_since(*since)));
  bool at_line_start = true;  // -t: the next byte shown begins a line
  if (a.timestamps) {
    // Each line with the time it was written by; a line no look has seen yet with the time it
    // was read, marked "~".
    emit = [&, plain = emit](std::string_view text) {
      const uint64_t offset = follower_offset();
      std::string out;
      for (size_t i = 0; i < text.size();) {
        if (at_line_start) {
          auto t = times ? times->time_of(offset + i) : std::nullopt;
          if (!t && times) {
            times->reload();
            t = times->time_of(offset + i);
          }
          out += t ? " " + format_time_ms(*t) : "~" + format_time_ms(now_realtime());
          out += ' ';
        }
        const size_t nl = text.find('\n', i);
        const size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
        out.append(text.substr(i, end - i));
        at_line_start = nl != std::string_view::npos;
        i = end;
      }
      plain(out);
    };
  }
  // The follower notices the log's cuts (see log_follow.hpp) and goes on from the right place.
  if (fd >= 0) follower.emplace(fd, start);
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
  while (!done && !gone && !interrupted()) {
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
  if (interrupted()) throw CtlError(130, "interrupted");
  return kExitOk;
}

int verb_wait(const Globals& g, const JobArg& a) {
  Client c(g.address);
  Props p = wait_terminal(c, c.get_job(a.job));
  if (g.json)
    fmt::print("{}\n", props_json(p).dump());
  else
    fmt::print("{}\n", end_line(job_label(p), p));
  return exit_for_end(p);
}

int verb_watch(const Globals& g, const JobArg& a) {
  Client c(g.address);
  const bool tty = isatty(STDOUT_FILENO);
  std::map<std::string, Props> jobs;  // path -> properties
  std::string only;
  if (!a.job.empty()) only = c.get_job(a.job);

  // On a terminal (and without --json) a table redrawn in place (screen.hpp).
  auto draw = [&] {
    if (!g.json && tty) draw_table(jobs);
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
  if (tty && !g.json) start_screen();
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
        if (take_resize()) draw();
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

}  // namespace repvisor::ctl
