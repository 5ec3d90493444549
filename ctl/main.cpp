// repvisorctl: the command line of repvisord. Each verb is a row of the table below: its name,
// what it does, the options it takes, and the function that runs it.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>

#include "output.hpp"
#include "verbs.hpp"
#include "watcher.hpp"

using namespace repvisor::ctl;

namespace {
// Usage lines name the program: "repvisorctl stop [OPTIONS] job", not "stop [OPTIONS] job".
class Formatter : public CLI::Formatter {
 public:
  std::string make_usage(const CLI::App* app, std::string name) const override {
    if (app->get_parent() != nullptr) name = app->get_parent()->get_name() + " " + name;
    return CLI::Formatter::make_usage(app, name);
  }
};

// D-Bus address values escape everything but a few safe characters as %XX.
std::string address_escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '/' || c == '.' || c == '@')
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02x}", c);
  }
  return out;
}

std::string system_bus_address() {
  const char* env = getenv("DBUS_SYSTEM_BUS_ADDRESS");
  return env && *env ? env : "unix:path=/run/dbus/system_bus_socket";
}
}  // namespace

int main(int argc, char** argv) {
  Globals g;
  std::string runtime_dir = "/run/repvisor", host;
  bool system = false;
  SubmitArgs submit;
  StopArgs stop;
  DeleteArgs del;
  JobArg job;
  EventsArgs events;

  CLI::App app{"repvisorctl: submit, watch, stop and delete replication jobs of repvisord", "repvisorctl"};
  app.formatter(std::make_shared<Formatter>());
  app.require_subcommand(1);
  app.fallthrough();  // global options (--json, --address) also after the verb
  auto* address_opt = app.add_option("--address", g.address, "D-Bus address of the daemon (unix:path=SOCKET)");
  auto* runtime_opt =
      app.add_option("--runtime-dir", runtime_dir, "runtime directory of the daemon (its socket is DIR/private)");
  auto* system_opt = app.add_flag("--system", system,
                                  "talk to repvisord on the system bus (the default when the private socket is not "
                                  "open to you)");
  auto* host_opt =
      app.add_option("-H,--host", host, "[USER@]HOST: repvisord on another machine, over SSH, on its system bus");
  // Each names one daemon: given together, one would be silently ignored.
  runtime_opt->excludes(system_opt)->excludes(address_opt)->excludes(host_opt);
  address_opt->excludes(system_opt)->excludes(host_opt);
  app.add_flag("--json", g.json, "machine-readable output");
  app.set_version_flag("--version", REPVISOR_VERSION);

  struct Verb {
    const char* name;
    const char* help;
    std::function<void(CLI::App*)> options;
    std::function<int()> run;
  };
  auto job_positional = [&](CLI::App* s) { s->add_option("job", job.job, "job id, id prefix or name")->required(); };
  auto stop_options = [&](CLI::App* s) {
    s->add_option("job", stop.job, "job id, id prefix or name")->required();
    s->add_flag("-f,--force", stop.force, "SIGKILL every process of the job at once");
    s->add_option("--timeout", stop.timeout, "how long to wait after the stop signal before SIGKILL (e.g. 10s)");
    s->add_option("--reason", stop.reason, "why (recorded; default user_request)");
    s->add_option("--notes", stop.notes, "free text recorded with the stop (at most 500 characters)");
    s->add_flag("--no-wait", stop.no_wait, "return once the stop is requested, not when the job has ended");
  };
  const Verb verbs[] = {
      {"submit", "run a new job: repvisorctl submit [options] -- COMMAND [ARGS...]",
       [&](CLI::App* s) {
         s->add_option("--name", submit.name, "unique job name");
         // One value an occurrence: "--env K=V sleep 1" leaves "sleep 1" to be named as a command.
         s->add_option("--env", submit.env, "KEY=VALUE for the job's environment (repeatable)")
             ->allow_extra_args(false);
         s->add_option("--workdir", submit.workdir, "working directory (default /)");
         s->add_option("--stop-signal", submit.stop_signal, "signal for a graceful stop (default SIGTERM)");
         s->add_option("--stop-timeout", submit.stop_timeout,
                       "graceful stop timeout before SIGKILL (default from config)");
         s->add_option("--kill-mode", submit.kill_mode, "mixed (stop signal to the main process) or control-group");
         s->add_option("--tasks-max", submit.tasks_max, "at most N processes and threads in the job")
             ->check(CLI::Range(uint64_t{1}, uint64_t{4194304}));
         s->add_option("-F,--file", submit.file, "TOML job file");
         s->add_option("-T,--template", submit.template_name,
                       "a job template of the daemon's configuration ([templates.NAME]); admins may use them");
         s->add_option("-p,--param", submit.params, "NAME=VALUE for the template (repeatable)")
             ->allow_extra_args(false);
         s->add_flag("--wait", submit.wait, "wait until the job has ended; exit status tells how");
       },
       [&] { return verb_submit(g, submit); }},
      {"list", "list jobs",
       [&](CLI::App* s) { s->add_option("--state", job.states, "only jobs in these states (repeatable)"); },
       [&] { return verb_list(g, job); }},
      {"status", "show one job in detail", job_positional, [&] { return verb_status(g, job); }},
      {"stop", "stop a job (graceful unless --force)", stop_options, [&] { return verb_stop(g, stop); }},
      {"cancel", "same as stop", stop_options, [&] { return verb_stop(g, stop); }},
      {"delete", "delete a finished job's record, log and the volumes it created",
       [&](CLI::App* s) {
         s->add_option("job", del.job, "job id, id prefix or name")->required();
         s->add_flag("-f,--force", del.force, "force-stop an active job first");
         s->add_flag("--keep-data", del.keep_data, "keep the job's log and the volumes it created");
         s->add_flag("-y,--yes", del.yes, "do not ask for confirmation");
       },
       [&] { return verb_delete(g, del); }},
      {"resume", "run a stopped or failed job again on its kept volumes, from its last checkpoint", job_positional,
       [&] { return verb_resume(g, job); }},
      {"cleanup", "tear down what is left of a finished job's resources (after a failed cleanup)", job_positional,
       [&] { return verb_cleanup(g, job); }},
      {"logs", "print a job's output",
       [&](CLI::App* s) {
         job_positional(s);
         s->add_flag("-f,--follow", job.follow, "keep printing until the job has ended");
         s->add_option("-n,--tail", job.tail, "only the last N lines (0-1000000000), then what follows")
             ->type_name("N")
             ->check(CLI::Range(int64_t{0}, int64_t{1000000000}).description(""));
         s->add_option("--since", job.since,
                       "only what was written at TIME or later (\"YYYY-MM-DD [HH:MM[:SS]]\", \"10min ago\")")
             ->type_name("TIME");
         s->add_flag("-t,--timestamps", job.timestamps, "each line with the time it was written by");
       },
       [&] { return verb_logs(g, job); }},
      {"wait", "wait until a job has ended (exit 0 completed, 10 failed, 11 cancelled)", job_positional,
       [&] { return verb_wait(g, job); }},
      {"events", "the audit trail: who did what to which job, and when",
       [&](CLI::App* s) {
         s->add_option("job", events.job, "only this job (a deleted job by its full id)");
         s->add_option("--since", events.since, "only events newer than this long ago (e.g. 1h)");
         s->add_option("--limit", events.limit, "at most this many, the newest (1-100000, default 1000)")
             ->type_name("N")
             ->check(CLI::Range(1, 100000).description(""));
       },
       [&] { return verb_events(g, events); }},
      {"watch", "live table of jobs, updated as they change",
       [&](CLI::App* s) { s->add_option("job", job.job, "only this job (exit when it ends)"); },
       [&] { return verb_watch(g, job); }},
  };
  std::vector<std::pair<CLI::App*, const Verb*>> subs;
  CLI::App* submit_app = nullptr;
  for (const auto& v : verbs) {
    CLI::App* s = app.add_subcommand(v.name, v.help);
    v.options(s);
    s->fallthrough();
    subs.emplace_back(s, &v);
    if (std::string_view(v.name) == "submit") submit_app = s;
  }
  // A command without "--" is collected here (unlisted) to be named in the error, rather than
  // refused as unexpected words in CLI11's reversed order.
  std::vector<std::string> stray;
  submit_app->add_option("stray", stray)->group("");

  // The verb is the first word that is neither an option nor an option's value; "help" and a
  // word that is no verb are answered here, before CLI11 would call them unexpected arguments.
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    const std::string_view w = argv[i];
    if (w == "--") break;
    if (w == "--address" || w == "--runtime-dir" || w == "-H" || w == "--host") {
      ++i;
      continue;
    }
    if (!w.empty() && w[0] != '-') words.emplace_back(w);
  }
  if (!words.empty()) {
    auto find_verb = [&](const std::string& name) -> CLI::App* {
      for (const auto& [s, v] : subs)
        if (name == v->name) return s;
      return nullptr;
    };
    if (words[0] == "help") {
      if (words.size() > 1) {
        if (CLI::App* s = find_verb(words[1])) {
          fmt::print("{}", s->help());
          return kExitOk;
        }
        fprintf(stderr, "repvisorctl: unknown command '%s'\n", words[1].c_str());
        return kExitUsage;
      }
      fmt::print("{}", app.help());
      return kExitOk;
    }
    if (!find_verb(words[0])) {
      std::string names;
      for (const auto& [s, v] : subs) names += fmt::format("  {:<9} {}\n", v->name, v->help);
      fprintf(stderr, "repvisorctl: unknown command '%s'\nThe commands are:\n%s", words[0].c_str(), names.c_str());
      fprintf(stderr, "'repvisorctl help COMMAND' tells more of one.\n");
      return kExitUsage;
    }
  }
  // Everything after "--" is the job's command line, options and all: split it off before
  // CLI11 sees it.
  std::vector<std::string> args;
  for (int i = argc - 1; i >= 1; --i) args.emplace_back(argv[i]);  // CLI11 wants them reversed
  for (size_t i = args.size(); i-- > 0;) {
    if (args[i] != "--") continue;
    submit.argv = std::vector<std::string>(args.begin(), args.begin() + static_cast<long>(i));
    std::reverse(submit.argv.begin(), submit.argv.end());
    args.erase(args.begin(), args.begin() + static_cast<long>(i) + 1);
    break;
  }
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    int r = app.exit(e);
    return r == 0 ? 0 : kExitUsage;
  }
  if (!stray.empty()) {
    std::string cmd;
    for (const auto& w : stray) cmd += " " + w;
    fprintf(stderr, "repvisorctl: the command goes after '--': repvisorctl submit [OPTIONS] --%s\n", cmd.c_str());
    return kExitUsage;
  }
  if (g.address.empty()) {
    const std::string priv = runtime_dir + "/private";
    if (!host.empty())
      // As systemctl -H does: ssh runs systemd-stdio-bridge, which joins the remote system bus.
      g.address = "unixexec:path=ssh,argv1=-xT,argv2=--,argv3=" + address_escape(host) + ",argv4=systemd-stdio-bridge";
    else if (!system && (runtime_opt->count() > 0 || access(priv.c_str(), R_OK | W_OK) == 0))
      g.address = "unix:path=" + priv;
    else
      g.address = system_bus_address();  // asked for, or the socket is not ours: the bus serves readers
  }
  set_colour(isatty(STDOUT_FILENO));
  install_interrupt_handler();

  for (const auto& [s, v] : subs) {
    if (!s->parsed()) continue;
    try {
      return v->run();
    } catch (const CtlError& e) {
      fprintf(stderr, "repvisorctl: %s\n", e.what());
      if (!e.hint.empty()) fprintf(stderr, "hint: %s\n", e.hint.c_str());
      return e.exit_code;
    } catch (const std::exception& e) {
      fprintf(stderr, "repvisorctl: %s\n", e.what());
      return kExitFailure;
    }
  }
  return kExitUsage;
}
