// repvisord measured from a warm sd-bus client on its private socket, on the same child as the
// syscall floor: force and graceful stop latency (request to the job terminal: the Stop call
// with wait=true returns then), starting and stopping 1,000 jobs, escalation beyond a 1 s stop
// timeout while those 1,000 run, the daemon's RSS and CPU with 1,000 idle jobs, the status round trip, List.
// Usage: repvisor-bench ADDRESS DAEMON_PID CHILD [ITERATIONS] [ESCALATIONS] [SCALE]
// With REPVISORCTL set, also `repvisorctl status` run cold (exec to exit). With REPVISOR_COPY,
// COPY_SOURCE (an NBD URI) and COPY_DIR (under the daemon's [volumes] roots) set, also stops of
// repvisor-copy mid-copy: request to the job cancelled, its volume flushed (COPY_STOPS, default 5).
// Prints one JSON object.
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
#include <functional>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "wire/client.hpp"
#include "wire/names.hpp"
#include "wire/values.hpp"

namespace {

using repvisor::wire::kJobInterface;
using repvisor::wire::kManagerInterface;
using repvisor::wire::kManagerPath;
namespace wire = repvisor::wire;

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void check(int r, const char* what) {
  if (r < 0) throw std::runtime_error(std::string(what) + ": " + strerror(-r));
}

sd_bus* bus = nullptr;

[[noreturn]] void call_error(const wire::Error& e, const char* what) {
  throw std::runtime_error(std::string(what) + ": " + (e.get()->message ? e.get()->message : "?"));
}

wire::Message new_call(const char* path, const char* interface, const char* method) {
  wire::Message m;
  check(wire::new_call(bus, path, interface, method, &m), method);
  return m;
}

// Sends a Submit; returns the new job's object path.
std::string call_submit(const wire::Message& m) {
  wire::Error err;
  wire::Message reply;
  if (wire::call(bus, m.get(), 0, &err, &reply) < 0) call_error(err, "Submit");
  const char *id, *path;
  check(sd_bus_message_read(reply.get(), "so", &id, &path), "Submit reply");
  return path;
}

// Submits the child; returns the job's object path.
std::string submit(const std::string& child, const char* mode, uint64_t stop_timeout_usec) {
  const wire::Message m = new_call(kManagerPath, kManagerInterface, "Submit");
  check(sd_bus_message_append(m.get(), "a{sv}", 2, "argv", "as", 2, child.c_str(), mode, "stop_timeout_usec", "t",
                              stop_timeout_usec),
        "Submit");
  return call_submit(m);
}

// A repvisor-copy job from `source` into a `file` volume the daemon creates (and flushes when
// the job ends); returns the job's object path.
std::string submit_copy(const std::string& worker, const std::string& source, const std::string& target) {
  const wire::Message m = new_call(kManagerPath, kManagerInterface, "Submit");
  const wire::Dict spec = {
      {"argv", std::vector<std::string>{worker, source, "{volume.target}", "--checkpoint-interval", "1000"}},
      {"resources", wire::Records{{{"kind", std::string("file")},
                                   {"name", std::string("target")},
                                   {"path", target},
                                   {"size", uint64_t{64} << 30}}}}};
  check(wire::append_dict(m.get(), spec), "Submit");
  return call_submit(m);
}

std::string job_string(const std::string& path, const char* property) {
  std::string v;
  wire::get_property(bus, path.c_str(), kJobInterface, property, &v);
  return v;
}

uint64_t bytes_done(const std::string& path) {
  uint64_t v = 0;
  wire::get_property(bus, path.c_str(), kJobInterface, "BytesDone", &v);
  return v;
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
  if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) throw std::runtime_error("spawn " + args[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  const double t = now_ms() - t0;
  posix_spawn_file_actions_destroy(&fa);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error(args[0] + " failed");
  return t;
}

uint32_t jobs_active() {
  uint32_t n = 0;
  wire::get_property(bus, kManagerPath, kManagerInterface, "JobsActive", &n);
  return n;
}

// One property of an interface as PropertiesChanged signals announce it (the daemon sends them
// once the change is recorded): `on_value` gets each such signal positioned at the property's
// variant. Waiting on them, not polling, keeps the observer's own calls off the loop it times
// (polling List every millisecond while 1,000 jobs started loaded the daemon with its own work)
// and has no polling period to round a figure up to; the peers' figures are event-driven too
// (s6's event FIFOs, supervisord's blocking calls).
class PropertyWatch {
 public:
  using OnValue = std::function<void(sd_bus_message*)>;
  PropertyWatch(const char* iface, const char* property, OnValue on_value)
      : iface_(iface), property_(property), on_value_(std::move(on_value)) {
    sd_bus_slot* slot = nullptr;
    check(sd_bus_add_filter(bus, &slot, on_message, this), "filter");
    slot_.reset(slot);
  }
  PropertyWatch(const PropertyWatch&) = delete;
  PropertyWatch& operator=(const PropertyWatch&) = delete;
  void wait_until(const std::function<bool()>& done) {
    while (!done()) {
      const int r = sd_bus_process(bus, nullptr);
      check(r, "process");
      if (r == 0) check(sd_bus_wait(bus, UINT64_MAX), "wait");
    }
  }

 private:
  // No exception may cross sd-bus's C frames: a value that does not parse is skipped.
  static int on_message(sd_bus_message* m, void* userdata, sd_bus_error*) {
    auto* self = static_cast<PropertyWatch*>(userdata);
    if (!sd_bus_message_is_signal(m, "org.freedesktop.DBus.Properties", "PropertiesChanged")) return 0;
    const char* iface = nullptr;
    if (sd_bus_message_read_basic(m, 's', &iface) < 0 || strcmp(iface, self->iface_) != 0) return 0;
    if (wire::seek_key(m, self->property_) > 0) self->on_value_(m);
    return 0;
  }
  const char* iface_;
  const char* property_;
  OnValue on_value_;
  wire::Slot slot_;
};

// Counts the jobs the daemon announced running (State "running").
class RunningWatch {
 public:
  // Until `n` distinct jobs were announced running.
  void wait(size_t n) {
    watch_.wait_until([&] { return seen_.size() >= n; });
  }

 private:
  std::set<std::string> seen_;
  PropertyWatch watch_{kJobInterface, "State", [this](sd_bus_message* m) {
                         const char* value = nullptr;
                         if (sd_bus_message_read(m, "v", "s", &value) >= 0 && strcmp(value, "running") == 0)
                           seen_.insert(sd_bus_message_get_path(m));
                       }};
};

// Every Submit sent before any reply is read; returns the jobs' paths once all replies are in.
std::vector<std::string> submit_pipelined(const std::string& exe, const char* arg, int n) {
  std::vector<std::string> paths;
  int pending = n;
  struct Ctx {
    std::vector<std::string>* paths;
    int* pending;
    bool failed;
  } ctx{&paths, &pending, false};
  for (int i = 0; i < n; ++i) {
    const wire::Message m = new_call(kManagerPath, kManagerInterface, "Submit");
    check(sd_bus_message_append(m.get(), "a{sv}", 2, "argv", "as", 2, exe.c_str(), arg, "stop_timeout_usec", "t",
                                uint64_t{30'000'000}),
          "Submit");
    check(sd_bus_call_async(
              bus, nullptr, m.get(),
              [](sd_bus_message* reply, void* userdata, sd_bus_error*) {
                auto* c = static_cast<Ctx*>(userdata);
                const char *id, *path;
                --*c->pending;
                if (sd_bus_message_is_method_error(reply, nullptr) || sd_bus_message_read(reply, "so", &id, &path) < 0)
                  c->failed = true;  // no exception through sd-bus's C frames
                else
                  c->paths->push_back(path);
                return 0;
              },
              &ctx, UINT64_MAX),
          "Submit");
  }
  while (pending > 0) {
    const int r = sd_bus_process(bus, nullptr);
    check(r, "process");
    if (r == 0) check(sd_bus_wait(bus, UINT64_MAX), "wait");
  }
  if (ctx.failed) throw std::runtime_error("a pipelined Submit failed");
  return paths;
}

// Every Stop sent (graceful, the default), then until no job is active; its duration.
double stop_all(const std::vector<std::string>& jobs) {
  if (jobs_active() == 0) throw std::runtime_error("stop-all: no job is active");
  bool none_active = false;
  PropertyWatch watch(kManagerInterface, "JobsActive", [&](sd_bus_message* m) {
    uint32_t n = 0;
    if (sd_bus_message_read(m, "v", "u", &n) >= 0) none_active = n == 0;
  });
  const double t0 = now_ms();
  for (const auto& j : jobs) {
    const wire::Message m = new_call(j.c_str(), kJobInterface, "Stop");
    check(sd_bus_message_append(m.get(), "a{sv}", 0), "Stop");
    check(sd_bus_send(bus, m.get(), nullptr), "Stop");  // fire them all, then wait for the end
  }
  check(sd_bus_flush(bus), "flush");
  watch.wait_until([&] { return none_active; });
  return now_ms() - t0;
}

uint32_t main_pid(const std::string& path) {
  uint32_t pid = 0;
  wire::get_property(bus, path.c_str(), kJobInterface, "MainPID", &pid);
  return pid;
}

// The child runs (exec'd) and its SIGTERM is caught or ignored, per /proc/PID/status.
bool term_ready(pid_t pid, const std::string& child) {
  std::error_code ec;
  if (std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec) != child) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("SigCgt:", 0) == 0 || line.rfind("SigIgn:", 0) == 0)
      if (std::stoull(line.substr(7), nullptr, 16) & (1ull << (15 - 1))) return true;
  return false;
}

// The job runs and its child has its SIGTERM disposition: no stop races the child's start-up.
void wait_ready(const std::string& path, const std::string& child) {
  uint32_t pid = 0;
  while ((pid = main_pid(path)) == 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
  while (!term_ready(static_cast<pid_t>(pid), child)) std::this_thread::sleep_for(std::chrono::microseconds(100));
}

// Calls a method whose one argument is an empty a{sv}; its reply.
wire::Message call_empty(const char* path, const char* interface, const char* method, uint64_t timeout = 0) {
  const wire::Message m = new_call(path, interface, method);
  check(sd_bus_message_append(m.get(), "a{sv}", 0), method);
  wire::Error err;
  wire::Message reply;
  if (wire::call(bus, m.get(), timeout, &err, &reply) < 0) call_error(err, method);
  return reply;
}

void stop(const std::string& path, bool force, bool wait) {
  const wire::Message m = new_call(path.c_str(), kJobInterface, "Stop");
  check(sd_bus_message_append(m.get(), "a{sv}", 2, "force", "b", force, "wait", "b", wait), "Stop");
  wire::Error err;
  wire::Message reply;
  if (wire::call(bus, m.get(), UINT64_MAX, &err, &reply) < 0) call_error(err, "Stop");
}

void remove_job(const std::string& path) { call_empty(path.c_str(), kJobInterface, "Delete"); }

// Jobs in state "running", from one List call; its duration in *ms.
size_t running(double* ms) {
  const double t0 = now_ms();
  const wire::Message reply = call_empty(kManagerPath, kManagerInterface, "List");
  if (ms) *ms = now_ms() - t0;
  std::vector<wire::JobRow> rows;
  check(wire::read_job_rows(reply.get(), &rows), "List");
  return static_cast<size_t>(
      std::count_if(rows.begin(), rows.end(), [](const auto& r) { return r.state == "running"; }));
}

// Turns a `perf record --control fifo:PATH` on for one phase of SCALE_ONLY, and off after it.
class PerfControl {
 public:
  PerfControl(const char* fifo, std::string phase) : phase_(std::move(phase)) {
    if (!fifo) return;
    fd_ = open(fifo, O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error(std::string("PERF_CTL ") + fifo + ": " + strerror(errno));
    if (phase_ != "start" && phase_ != "stop") throw std::runtime_error("PHASE: '" + phase_ + "' is not start or stop");
  }
  ~PerfControl() {
    if (fd_ >= 0) close(fd_);
  }
  PerfControl(const PerfControl&) = delete;
  PerfControl& operator=(const PerfControl&) = delete;
  void begin(const std::string& phase) const { say(phase, "enable\n"); }
  void end(const std::string& phase) const { say(phase, "disable\n"); }

 private:
  void say(const std::string& phase, const std::string& what) const {
    if (fd_ >= 0 && phase == phase_ && write(fd_, what.data(), what.size()) != static_cast<ssize_t>(what.size()))
      throw std::runtime_error(std::string("PERF_CTL: ") + strerror(errno));
  }
  int fd_ = -1;
  std::string phase_;
};

std::string stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  char buf[200];
  snprintf(buf, sizeof buf, "{\"n\": %zu, \"median_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": %.4f}", n, v[n / 2],
           v[std::min(n - 1, static_cast<size_t>(static_cast<double>(n) * 0.99))], v[n - 1]);
  return buf;
}

// RSS (KiB) and CPU time (ms) of a process: the sum of its threads' run time from
// /proc/PID/task/*/schedstat (nanoseconds; /proc/PID/stat counts whole clock ticks).
void usage(pid_t pid, long* rss_kib, double* cpu_ms) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::ifstream status(proc + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) *rss_kib = std::stol(line.substr(6));
  uint64_t ns = 0;
  for (const auto& task : std::filesystem::directory_iterator(proc + "/task")) {
    std::ifstream sched(task.path() / "schedstat");
    uint64_t run = 0;
    if (sched >> run) ns += run;
  }
  *cpu_ms = static_cast<double>(ns) / 1e6;
}

// The daemon's loop thread (its main thread, whose TID is the PID): the time it ran and the time
// it was ready to run but waited for a CPU (schedstat's first two fields, nanoseconds). In a
// stop-all of many jobs the second is the children it has just signalled exiting on its core.
struct LoopTime {
  double run_ms = 0, wait_ms = 0;
};
LoopTime loop_time(pid_t pid) {
  std::ifstream sched("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/schedstat");
  uint64_t run = 0, wait = 0;
  sched >> run >> wait;
  return {static_cast<double>(run) / 1e6, static_cast<double>(wait) / 1e6};
}

// CPU time (ms) every CPU of the machine has spent busy, from /proc/stat (clock ticks: 10 ms
// each, so only for phases of many of them): user, nice, system, irq and softirq, not idle,
// iowait or steal (time the hypervisor gave to others).
double machine_busy_ms() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq;
  return static_cast<double>(user + nice + system + irq + softirq) * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// One job of `child` started and its SIGTERM disposition set, then stopped (waiting for it to
// end) and deleted: the stop's latency and the daemon's CPU time meanwhile, both in ms.
struct TimedStop {
  double ms, daemon_cpu_ms;
};
TimedStop timed_stop(pid_t daemon, const std::string& child, const char* mode, uint64_t stop_timeout_usec, bool force) {
  const std::string job = submit(child, mode, stop_timeout_usec);
  wait_ready(job, child);
  long rss = 0;
  double c0 = 0, c1 = 0;
  usage(daemon, &rss, &c0);
  const double t0 = now_ms();
  stop(job, force, true);
  const double ms = now_ms() - t0;
  usage(daemon, &rss, &c1);
  remove_job(job);
  return {ms, c1 - c0};
}

int number(const char* s, const char* what) {
  char* end = nullptr;
  const long v = strtol(s, &end, 10);
  if (end == s || *end != 0 || v <= 0 || v > 1'000'000'000)
    throw std::runtime_error(std::string(what) + ": '" + s + "'");
  return static_cast<int>(v);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: repvisor-bench ADDRESS DAEMON_PID CHILD [ITERATIONS] [ESCALATIONS] [SCALE]\n");
    return 2;
  }
  const std::string address = argv[1], child = argv[3];
  wire::Bus connection;
  try {
    const pid_t daemon = static_cast<pid_t>(number(argv[2], "DAEMON_PID"));
    const int n = argc > 4 ? number(argv[4], "ITERATIONS") : 200, esc = argc > 5 ? number(argv[5], "ESCALATIONS") : 5;
    const int scale = argc > 6 ? number(argv[6], "SCALE") : 1000;
    check(wire::connect(address, &connection), "connect");
    bus = connection.get();

    if (getenv("SCALE_ONLY")) {
      // A profiling aid (perf record -p DAEMON_PID meanwhile): pipelined start and stop-all of
      // `scale` jobs, ROUNDS times, and nothing else.
      const int rounds = getenv("ROUNDS") ? number(getenv("ROUNDS"), "ROUNDS") : 1;
      // PERF_CTL=FIFO PHASE=start|stop: the phase's start and end are written to `perf record
      // -D -1 --control fifo:FIFO` as "enable" and "disable", so that it profiles that phase alone.
      const PerfControl perf(getenv("PERF_CTL"), getenv("PHASE") ? getenv("PHASE") : "");
      // IDLE_SECONDS=N: the jobs sit idle that long before the stop-all, as in the full run.
      const int idle_seconds = getenv("IDLE_SECONDS") ? number(getenv("IDLE_SECONDS"), "IDLE_SECONDS") : 0;
      for (int r = 0; r < rounds; ++r) {
        long rss = 0;
        double c0 = 0, c1 = 0, c2 = 0;
        usage(daemon, &rss, &c0);
        const double m0 = machine_busy_ms();
        RunningWatch watch;
        perf.begin("start");
        const double s0 = now_ms();
        auto jobs = submit_pipelined(child, "term", scale);
        watch.wait(static_cast<size_t>(scale));
        const double started = now_ms() - s0;
        perf.end("start");
        usage(daemon, &rss, &c1);
        const double m1 = machine_busy_ms();
        std::this_thread::sleep_for(std::chrono::seconds(idle_seconds));
        double c1b = 0;
        usage(daemon, &rss, &c1b);
        const double m1b = machine_busy_ms();
        const LoopTime l0 = loop_time(daemon);
        perf.begin("stop");
        const double stopped = stop_all(jobs);
        perf.end("stop");
        const LoopTime l1 = loop_time(daemon);
        usage(daemon, &rss, &c2);
        const double m2 = machine_busy_ms();
        for (const auto& j : jobs) remove_job(j);
        // The machine's busy time beside the daemon's: how much of the cores the phase used (the
        // children's own start-up and exit, this client, the kernel's work for them).
        printf(
            "{\"start_all_ms\": %.1f, \"start_cpu_ms\": %.1f, \"start_machine_cpu_ms\": %.0f, \"stop_all_ms\": %.1f, "
            "\"stop_cpu_ms\": %.1f, \"stop_loop_cpu_ms\": %.1f, \"stop_loop_wait_ms\": %.1f, "
            "\"stop_machine_cpu_ms\": %.0f, \"cpus\": %ld}\n",
            started, c1 - c0, m1 - m0, stopped, c2 - c1b, l1.run_ms - l0.run_ms, l1.wait_ms - l0.wait_ms, m2 - m1b,
            sysconf(_SC_NPROCESSORS_ONLN));
      }
      return 0;
    }
    if (getenv("STOP_ONLY")) {
      // A profiling aid (perf record -p DAEMON_PID meanwhile): ITERATIONS force stops and
      // nothing else; their latency and the daemon's CPU time per stop.
      std::vector<double> lat, cpu;
      for (int i = 0; i < n; ++i) {
        const TimedStop t = timed_stop(daemon, child, "term", 30'000'000, true);
        lat.push_back(t.ms);
        cpu.push_back(t.daemon_cpu_ms);
      }
      printf("{\"force_stop\": %s, \"force_stop_daemon_cpu\": %s}\n", stats(lat).c_str(), stats(cpu).c_str());
      return 0;
    }
    std::vector<double> force, grace, over, status_rt, timeout_cpu, force_cpu;
    for (int i = 0; i < n; ++i) {
      for (bool f : {true, false}) {
        const TimedStop t = timed_stop(daemon, child, "term", 30'000'000, f);
        (f ? force : grace).push_back(t.ms);
        if (f) force_cpu.push_back(t.daemon_cpu_ms);  // the daemon's share of the latency
      }
    }

    // Scale: start `scale` jobs, time until all run; idle cost; then stop them all. First one
    // Submit at a time (each waits for its reply), then pipelined: every Submit sent, then the
    // replies collected, as an orchestrator starting a batch would (and as the peers' batch
    // interfaces do: one startProcessGroup call, a write to each control FIFO).
    std::vector<std::string> jobs;
    auto watch = std::make_unique<RunningWatch>();
    double s0 = now_ms();
    for (int i = 0; i < scale; ++i) jobs.push_back(submit(child, "term", 30'000'000));
    watch->wait(static_cast<size_t>(scale));
    const double start_all_sequential = now_ms() - s0;
    stop_all(jobs);
    for (const auto& j : jobs) remove_job(j);
    watch = std::make_unique<RunningWatch>();
    s0 = now_ms();
    jobs = submit_pipelined(child, "term", scale);
    watch->wait(static_cast<size_t>(scale));
    const double start_all = now_ms() - s0;
    watch.reset();
    // Escalation with `scale` idle jobs running: the target is "within 2 ms at 1,000 jobs".
    for (int i = 0; i < esc; ++i) {
      const TimedStop t = timed_stop(daemon, child, "ignore", 1'000'000, false);
      over.push_back(t.ms - 1000.0);
      timeout_cpu.push_back(t.daemon_cpu_ms);  // what waiting out the timeout cost the daemon
    }
    for (int i = 0; i < 1000; ++i) {
      uint32_t pid = 0;
      const double t0 = now_ms();
      wire::get_property(bus, jobs[0].c_str(), kJobInterface, "MainPID", &pid);
      status_rt.push_back(now_ms() - t0);
    }
    double list_ms = 0;
    running(&list_ms);
    std::string cold;
    if (const char* ctl = getenv("REPVISORCTL")) {
      std::vector<double> v;
      const std::string id = jobs[0].substr(jobs[0].rfind('/') + 1);
      for (int i = 0; i < 100; ++i) v.push_back(run_cold({ctl, "--address", address, "status", id}));
      cold = ", \"ctl_status_cold\": " + stats(v);
    }
    if (const char* floor_client = getenv("COLD_CLIENT")) {
      // The same query's floor on this machine (bench/cold_client.c), timed the same way.
      std::vector<double> v;
      for (int i = 0; i < 100; ++i) v.push_back(run_cold({floor_client, address, jobs[0]}));
      cold += ", \"ctl_status_cold_floor\": " + stats(v);
    }
    long rss0 = 0, rss1 = 0;
    double cpu0 = 0, cpu1 = 0;
    usage(daemon, &rss0, &cpu0);
    std::this_thread::sleep_for(
        std::chrono::seconds(getenv("IDLE_SECONDS") ? number(getenv("IDLE_SECONDS"), "IDLE_SECONDS") : 10));
    usage(daemon, &rss1, &cpu1);  // RSS with the jobs idle; CPU up to the stop-all's start
    const LoopTime loop0 = loop_time(daemon);
    const double busy0 = machine_busy_ms();
    const double stop_all_ms = stop_all(jobs);
    const double stop_all_machine_cpu = machine_busy_ms() - busy0;
    const LoopTime loop1 = loop_time(daemon);
    long rss_after = 0;
    double cpu_after = 0;
    usage(daemon, &rss_after, &cpu_after);
    for (const auto& j : jobs) remove_job(j);

    // List of many recorded jobs (LIST_JOBS, default 10,000): short jobs run to completion, then
    // List timed over the whole record, median of 20.
    const int list_jobs = getenv("LIST_JOBS") ? number(getenv("LIST_JOBS"), "LIST_JOBS") : 10'000;
    for (int done = 0; done < list_jobs; done += 1000)
      submit_pipelined("/bin/true", "", std::min(1000, list_jobs - done));
    while (jobs_active() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::vector<double> list_many;
    for (int i = 0; i < 20; ++i) {
      double ms = 0;
      running(&ms);
      list_many.push_back(ms);
    }

    // A stop mid-copy: repvisor-copy flushes and checkpoints on SIGTERM, then the daemon's
    // cleanup flushes the volume; the reply comes when the job is cancelled.
    std::string copy;
    const char *worker = getenv("REPVISOR_COPY"), *source = getenv("COPY_SOURCE"), *dir = getenv("COPY_DIR");
    if (worker && source && dir) {
      std::vector<double> v;
      const int stops = getenv("COPY_STOPS") ? number(getenv("COPY_STOPS"), "COPY_STOPS") : 5;
      for (int i = 0; i < stops; ++i) {
        const std::string job = submit_copy(worker, source, std::string(dir) + "/copy-" + std::to_string(i) + ".img");
        while (bytes_done(job) < (256ull << 20)) {  // well into the copy
          if (job_string(job, "State") != "running" && job_string(job, "State") != "starting")
            throw std::runtime_error("copy job ended early: " + job_string(job, "State"));
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        const double t0 = now_ms();
        stop(job, false, true);
        v.push_back(now_ms() - t0);
        const std::string state = job_string(job, "State"), cleanup = job_string(job, "CleanupState");
        if (state != "cancelled" || cleanup != "done")
          throw std::runtime_error("copy job after stop: state " + state + ", cleanup " + cleanup);
        remove_job(job);
      }
      copy = ", \"copy_stop\": " + stats(v);
    }

    printf(
        "{\"force_stop\": %s, \"graceful_stop\": %s, \"escalation_beyond_1s\": %s, \"scale\": %d, "
        "\"start_all_ms\": %.1f, \"start_all_sequential_ms\": %.1f, \"stop_all_ms\": %.1f, \"stop_all_cpu_ms\": %.1f, "
        "\"stop_all_loop_cpu_ms\": %.1f, \"stop_all_loop_wait_ms\": %.1f, \"stop_all_machine_cpu_ms\": %.0f, "
        "\"idle_rss_kib\": %ld, "
        "\"idle_cpu_ms_per_10s\": %.1f, "
        "\"status_roundtrip\": %s, \"list_ms\": %.3f, \"stop_timeout_cpu_ms\": %s, \"force_stop_cpu_ms\": %s, "
        "\"list_many_jobs\": %d, \"list_many\": %s%s%s}\n",
        stats(force).c_str(), stats(grace).c_str(), stats(over).c_str(), scale, start_all, start_all_sequential,
        stop_all_ms, cpu_after - cpu1, loop1.run_ms - loop0.run_ms, loop1.wait_ms - loop0.wait_ms, stop_all_machine_cpu,
        rss1, cpu1 - cpu0, stats(status_rt).c_str(), list_ms, stats(timeout_cpu).c_str(), stats(force_cpu).c_str(),
        list_jobs, stats(list_many).c_str(), cold.c_str(), copy.c_str());
  } catch (const std::exception& e) {
    fprintf(stderr, "repvisor-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
