// repvisord driven as most of its callers drive it: one blocking call at a time, each waiting for
// its reply before the next is sent, no signal watched (bench/simple-clients.sh runs it beside
// bench/simple_client.py, the same workload from dbus-python, and s6 and the syscall floor).
// Measures, each from the first request to the last reply or, for the start, until every job's
// State reads "running":
//   graceful_stop, force_stop: Stop {wait: true} of one running job (the child's SIGTERM handler in
//     place), request to the reply, which comes once the job is terminal and that is on disk;
//   start_each_ms: COUNT Submits, one at a time, until all COUNT jobs run (List, until it shows
//     them all running: a Submit answers once the job is recorded, before its start);
//   stop_each_ms: a graceful Stop {wait: true} of each of them, one at a time;
//   escalation_beyond_1s: Stop {wait: true} of a child that ignores SIGTERM, with a 1 s stop
//     timeout: the reply's delay beyond the 1 s;
//   with REPVISORCTL set, ctl_status_cold and ctl_stop_cold: `repvisorctl status ID` and
//     `repvisorctl stop ID` (which waits for the end), exec to exit; with COLD_CLIENT set, the
//     cold query's floor (bench/cold_client.c) timed the same way.
// Usage: bench-simple-client ADDRESS CHILD [ITERATIONS] [ESCALATIONS] [COUNT] [COLD_RUNS]
// Prints one JSON object (the keys of bench/simple_report.py).
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "wire/client.hpp"
#include "wire/names.hpp"
#include "wire/values.hpp"

namespace {

namespace wire = repvisor::wire;
using wire::kJobInterface;
using wire::kManagerInterface;
using wire::kManagerPath;

sd_bus* bus = nullptr;

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void check(int r, const char* what) {
  if (r < 0) throw std::runtime_error(std::string(what) + ": " + strerror(-r));
}

// One blocking call with an a{sv} argument; its reply.
wire::Message call(const char* path, const char* interface, const char* method, const wire::Dict& arg) {
  wire::Message m;
  check(wire::new_call(bus, path, interface, method, &m), method);
  check(wire::append_dict(m.get(), arg), method);
  wire::Error err;
  wire::Message reply;
  // No timeout of our own: a stop waits out the job's stop timeout before it answers.
  if (wire::call(bus, m.get(), UINT64_MAX, &err, &reply) < 0)
    throw std::runtime_error(std::string(method) + ": " + err.message());
  return reply;
}

// Submits the child in `mode` ("term": exits on SIGTERM; "ignore": ignores it); its object path.
std::string submit(const std::string& child, const char* mode, uint64_t stop_timeout_usec) {
  const wire::Message reply =
      call(kManagerPath, kManagerInterface, "Submit",
           {{"argv", std::vector<std::string>{child, mode}}, {"stop_timeout_usec", stop_timeout_usec}});
  const char *id = nullptr, *path = nullptr;
  check(sd_bus_message_read(reply.get(), "so", &id, &path), "Submit reply");
  return path;
}

// Stop {force, wait: true}: returns once the job is terminal; throws unless it ended cancelled.
void stop(const std::string& path, bool force) {
  const wire::Message reply = call(path.c_str(), kJobInterface, "Stop", {{"force", force}, {"wait", true}});
  wire::Dict result;
  check(wire::read_dict(reply.get(), &result), "Stop reply");
  const auto* state = std::get_if<std::string>(&result["state"]);
  if (!state || *state != "cancelled") throw std::runtime_error("Stop: the job ended " + (state ? *state : "?"));
}

void remove_job(const std::string& path) { call(path.c_str(), kJobInterface, "Delete", {}); }

std::string state(const std::string& path) {
  std::string v;
  check(wire::get_property(bus, path.c_str(), kJobInterface, "State", &v), "State");
  return v;
}

// How many of `jobs` are running, from one List call (what a client that submitted a batch asks
// to see it started).
size_t running(const std::vector<std::string>& jobs) {
  const wire::Message reply =
      call(kManagerPath, kManagerInterface, "List", {{"states", std::vector<std::string>{"running"}}});
  std::vector<wire::JobRow> rows;
  check(wire::read_job_rows(reply.get(), &rows), "List reply");
  return static_cast<size_t>(std::count_if(rows.begin(), rows.end(), [&](const wire::JobRow& r) {
    return std::find(jobs.begin(), jobs.end(), r.path) != jobs.end();
  }));
}

// The child runs (exec'd) and its SIGTERM is caught or ignored, per /proc/PID/status.
bool term_ready(pid_t pid, const std::string& child) {
  std::error_code ec;
  if (std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec) != child) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("SigCgt:", 0) == 0 || line.rfind("SigIgn:", 0) == 0)
      if (std::stoull(line.substr(7), nullptr, 16) & (1ull << (SIGTERM - 1))) return true;
  return false;
}

// Untimed set-up: until the job's child runs with its SIGTERM disposition, so that no timed stop
// races the child's start-up.
void wait_ready(const std::string& path, const std::string& child) {
  uint32_t pid = 0;
  for (;;) {
    check(wire::get_property(bus, path.c_str(), kJobInterface, "MainPID", &pid), "MainPID");
    if (pid != 0 && term_ready(static_cast<pid_t>(pid), child)) return;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

// Exec to exit of a command, as a user typing it pays for it.
double run_cold(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  const double t0 = now_ms();
  pid_t pid = 0;
  const int r = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (r != 0) throw std::runtime_error("spawn " + args[0] + ": " + strerror(r));
  int status = 0;
  waitpid(pid, &status, 0);
  const double t = now_ms() - t0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error(args[0] + " " + args[3] + " failed");
  return t;
}

std::string stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  char buf[200];
  snprintf(buf, sizeof buf, "{\"n\": %zu, \"median_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": %.4f}", n, v[n / 2],
           v[std::min(n - 1, static_cast<size_t>(static_cast<double>(n) * 0.99))], v[n - 1]);
  return buf;
}

int number(const char* s, const char* what) {
  char* end = nullptr;
  const long v = strtol(s, &end, 10);
  if (end == s || *end != 0 || v <= 0 || v > 1'000'000)
    throw std::runtime_error(std::string(what) + ": '" + s + "' is not a whole number from 1 to 1000000");
  return static_cast<int>(v);
}

std::string short_id(const std::string& path) { return path.substr(path.rfind('/') + 1); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: bench-simple-client ADDRESS CHILD [ITERATIONS] [ESCALATIONS] [COUNT] [COLD_RUNS]\n");
    return 2;
  }
  const std::string address = argv[1], child = argv[2];
  wire::Bus connection;
  try {
    const int n = argc > 3 ? number(argv[3], "ITERATIONS") : 50, esc = argc > 4 ? number(argv[4], "ESCALATIONS") : 3;
    const int count = argc > 5 ? number(argv[5], "COUNT") : 100,
              cold_runs = argc > 6 ? number(argv[6], "COLD_RUNS") : 50;
    check(wire::connect(address, &connection), "connect");
    bus = connection.get();

    std::vector<double> force, grace, over;
    for (int i = 0; i < n; ++i) {
      for (const bool f : {true, false}) {
        const std::string job = submit(child, "term", 30'000'000);
        wait_ready(job, child);
        const double t0 = now_ms();
        stop(job, f);
        (f ? force : grace).push_back(now_ms() - t0);
        remove_job(job);
      }
    }

    std::vector<std::string> jobs;
    double t0 = now_ms();
    for (int i = 0; i < count; ++i) jobs.push_back(submit(child, "term", 30'000'000));
    const double replied = now_ms() - t0;
    while (running(jobs) < jobs.size()) {
    }
    const double start_each = now_ms() - t0;
    for (const auto& j : jobs) wait_ready(j, child);
    t0 = now_ms();
    for (const auto& j : jobs) stop(j, false);
    const double stop_each = now_ms() - t0;
    for (const auto& j : jobs) remove_job(j);

    for (int i = 0; i < esc; ++i) {
      const std::string job = submit(child, "ignore", 1'000'000);
      wait_ready(job, child);
      const double s0 = now_ms();
      stop(job, false);
      over.push_back(now_ms() - s0 - 1000.0);
      remove_job(job);
    }

    std::string cold;
    if (const char* ctl = getenv("REPVISORCTL")) {
      std::vector<double> status, stops;
      const std::string job = submit(child, "term", 30'000'000);
      wait_ready(job, child);
      for (int i = 0; i < cold_runs; ++i)
        status.push_back(run_cold({ctl, "--address", address, "status", short_id(job)}));
      if (const char* floor_client = getenv("COLD_CLIENT")) {
        std::vector<double> v;
        for (int i = 0; i < cold_runs; ++i) v.push_back(run_cold({floor_client, address, job}));
        cold += ", \"ctl_status_cold_floor\": " + stats(v);
      }
      stop(job, true);
      remove_job(job);
      for (int i = 0; i < cold_runs; ++i) {
        const std::string j = submit(child, "term", 30'000'000);
        wait_ready(j, child);
        stops.push_back(run_cold({ctl, "--address", address, "stop", short_id(j)}));
        if (state(j) != "cancelled") throw std::runtime_error("repvisorctl stop: the job is " + state(j));
        remove_job(j);
      }
      cold += ", \"ctl_status_cold\": " + stats(status) + ", \"ctl_stop_cold\": " + stats(stops);
    }
    printf(
        "{\"force_stop\": %s, \"graceful_stop\": %s, \"count\": %d, \"start_each_ms\": %.1f, "
        "\"start_each_replies_ms\": %.1f, \"stop_each_ms\": %.1f, \"escalation_beyond_1s\": %s%s}\n",
        stats(force).c_str(), stats(grace).c_str(), count, start_each, replied, stop_each, stats(over).c_str(),
        cold.c_str());
  } catch (const std::exception& e) {
    fprintf(stderr, "bench-simple-client: %s\n", e.what());
    return 1;
  }
  return 0;
}
