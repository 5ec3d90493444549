// repvisord measured from a warm sd-bus client on its private socket, on the same child as the
// syscall floor: force and graceful stop latency (request to the job terminal: the Stop call
// with wait=true returns then), escalation beyond a 1 s stop timeout, starting and stopping
// 1,000 jobs, the daemon's RSS and CPU with 1,000 idle jobs, the status round trip, List.
// Usage: repvisor-bench ADDRESS DAEMON_PID CHILD [ITERATIONS] [ESCALATIONS] [SCALE]
// Prints one JSON object.
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void check(int r, const char* what) {
  if (r < 0) throw std::runtime_error(std::string(what) + ": " + strerror(-r));
}

sd_bus* bus = nullptr;

void call_error(sd_bus_error* e, const char* what) {
  std::string msg = std::string(what) + ": " + (e->message ? e->message : "?");
  sd_bus_error_free(e);
  throw std::runtime_error(msg);
}

// Submits the child; returns the job's object path.
std::string submit(const std::string& child, const char* mode, uint64_t stop_timeout_usec) {
  sd_bus_message *m = nullptr, *reply = nullptr;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  check(sd_bus_message_new_method_call(bus, &m, "org.repvisor1", "/org/repvisor1", "org.repvisor1.Manager", "Submit"),
        "Submit");
  check(sd_bus_message_append(m, "a{sv}", 2, "argv", "as", 2, child.c_str(), mode, "stop_timeout_usec", "t",
                              stop_timeout_usec),
        "Submit");
  if (sd_bus_call(bus, m, 0, &err, &reply) < 0) call_error(&err, "Submit");
  sd_bus_message_unref(m);
  const char *id, *path;
  check(sd_bus_message_read(reply, "so", &id, &path), "Submit reply");
  std::string out = path;
  sd_bus_message_unref(reply);
  return out;
}

uint32_t main_pid(const std::string& path) {
  uint32_t pid = 0;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  sd_bus_get_property_trivial(bus, "org.repvisor1", path.c_str(), "org.repvisor1.Job", "MainPID", &err, 'u', &pid);
  sd_bus_error_free(&err);
  return pid;
}

bool term_ready(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("SigCgt:", 0) == 0 || line.rfind("SigIgn:", 0) == 0)
      if (std::stoull(line.substr(7), nullptr, 16) & (1ull << (15 - 1))) return true;
  return false;
}

// The job runs and its child has its SIGTERM disposition: no stop races the child's start-up.
void wait_ready(const std::string& path) {
  uint32_t pid = 0;
  while ((pid = main_pid(path)) == 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
  while (!term_ready(static_cast<pid_t>(pid))) std::this_thread::sleep_for(std::chrono::microseconds(100));
}

void stop(const std::string& path, bool force, bool wait) {
  sd_bus_message *m = nullptr, *reply = nullptr;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  check(sd_bus_message_new_method_call(bus, &m, "org.repvisor1", path.c_str(), "org.repvisor1.Job", "Stop"), "Stop");
  check(sd_bus_message_append(m, "a{sv}", 2, "force", "b", force, "wait", "b", wait), "Stop");
  if (sd_bus_call(bus, m, UINT64_MAX, &err, &reply) < 0) call_error(&err, "Stop");
  sd_bus_message_unref(m);
  sd_bus_message_unref(reply);
}

void remove_job(const std::string& path) {
  sd_bus_message* reply = nullptr;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  if (sd_bus_call_method(bus, "org.repvisor1", path.c_str(), "org.repvisor1.Job", "Delete", &err, &reply, "a{sv}", 0) < 0)
    call_error(&err, "Delete");
  sd_bus_message_unref(reply);
}

uint32_t jobs_active() {
  uint32_t n = 0;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  sd_bus_get_property_trivial(bus, "org.repvisor1", "/org/repvisor1", "org.repvisor1.Manager", "JobsActive", &err, 'u',
                              &n);
  sd_bus_error_free(&err);
  return n;
}

// Jobs in state "running", from one List call; its duration in *ms.
size_t running(double* ms) {
  sd_bus_message* reply = nullptr;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  const double t0 = now_ms();
  if (sd_bus_call_method(bus, "org.repvisor1", "/org/repvisor1", "org.repvisor1.Manager", "List", &err, &reply, "a{sv}",
                         0) < 0)
    call_error(&err, "List");
  if (ms) *ms = now_ms() - t0;
  size_t n = 0;
  check(sd_bus_message_enter_container(reply, 'a', "(ssssdtto)"), "List");
  const char *id, *name, *state, *phase, *path;
  double progress;
  uint64_t created, finished;
  while (sd_bus_message_read(reply, "(ssssdtto)", &id, &name, &state, &phase, &progress, &created, &finished, &path) > 0)
    if (strcmp(state, "running") == 0) ++n;
  sd_bus_message_unref(reply);
  return n;
}

std::string stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  char buf[200];
  snprintf(buf, sizeof buf, "{\"n\": %zu, \"median_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": %.4f}", n, v[n / 2],
           v[std::min(n - 1, static_cast<size_t>(static_cast<double>(n) * 0.99))], v[n - 1]);
  return buf;
}

// RSS (KiB) and CPU time (ms, user + system) of a process.
void usage(pid_t pid, long* rss_kib, double* cpu_ms) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) *rss_kib = std::stol(line.substr(6));
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream rest(all.substr(all.rfind(')') + 2));
  std::string f;
  unsigned long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> f; ++i) {
    if (i == 14) utime = std::stoul(f);
    if (i == 15) stime = std::stoul(f);
  }
  *cpu_ms = static_cast<double>(utime + stime) * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

int number(const char* s, const char* what) {
  char* end = nullptr;
  const long v = strtol(s, &end, 10);
  if (end == s || *end != 0 || v <= 0 || v > 1'000'000'000) throw std::runtime_error(std::string(what) + ": '" + s + "'");
  return static_cast<int>(v);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: repvisor-bench ADDRESS DAEMON_PID CHILD [ITERATIONS] [ESCALATIONS] [SCALE]\n");
    return 2;
  }
  const std::string address = argv[1], child = argv[3];
  try {
    const pid_t daemon = static_cast<pid_t>(number(argv[2], "DAEMON_PID"));
    const int n = argc > 4 ? number(argv[4], "ITERATIONS") : 200, esc = argc > 5 ? number(argv[5], "ESCALATIONS") : 5;
    const int scale = argc > 6 ? number(argv[6], "SCALE") : 1000;
    check(sd_bus_new(&bus), "sd_bus_new");
    check(sd_bus_set_address(bus, address.c_str()), "address");
    sd_bus_set_bus_client(bus, 1);
    check(sd_bus_start(bus), "connect");

    std::vector<double> force, grace, over, status_rt;
    for (int i = 0; i < n; ++i) {
      for (bool f : {true, false}) {
        const std::string job = submit(child, "term", 30'000'000);
        wait_ready(job);
        const double t0 = now_ms();
        stop(job, f, true);
        (f ? force : grace).push_back(now_ms() - t0);
        remove_job(job);
      }
    }
    for (int i = 0; i < esc; ++i) {
      const std::string job = submit(child, "ignore", 1'000'000);
      wait_ready(job);
      const double t0 = now_ms();
      stop(job, false, true);
      over.push_back(now_ms() - t0 - 1000.0);
      remove_job(job);
    }

    // Scale: start `scale` jobs, time until all run; idle cost; then stop them all.
    std::vector<std::string> jobs;
    const double s0 = now_ms();
    for (int i = 0; i < scale; ++i) jobs.push_back(submit(child, "term", 30'000'000));
    while (running(nullptr) < static_cast<size_t>(scale)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const double start_all = now_ms() - s0;
    for (int i = 0; i < 1000; ++i) {
      uint32_t pid = 0;
      const double t0 = now_ms();
      sd_bus_error err = SD_BUS_ERROR_NULL;
      sd_bus_get_property_trivial(bus, "org.repvisor1", jobs[0].c_str(), "org.repvisor1.Job", "MainPID", &err, 'u',
                                  &pid);
      sd_bus_error_free(&err);
      status_rt.push_back(now_ms() - t0);
    }
    double list_ms = 0;
    running(&list_ms);
    long rss0 = 0, rss1 = 0;
    double cpu0 = 0, cpu1 = 0;
    usage(daemon, &rss0, &cpu0);
    std::this_thread::sleep_for(std::chrono::seconds(10));
    usage(daemon, &rss1, &cpu1);
    const double t0 = now_ms();
    for (const auto& j : jobs) {
      sd_bus_message* m = nullptr;
      check(sd_bus_message_new_method_call(bus, &m, "org.repvisor1", j.c_str(), "org.repvisor1.Job", "Stop"), "Stop");
      check(sd_bus_message_append(m, "a{sv}", 0), "Stop");
      check(sd_bus_send(bus, m, nullptr), "Stop");  // fire them all, then wait for the end
      sd_bus_message_unref(m);
    }
    check(sd_bus_flush(bus), "flush");
    while (jobs_active() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const double stop_all = now_ms() - t0;
    for (const auto& j : jobs) remove_job(j);

    printf(
        "{\"force_stop\": %s, \"graceful_stop\": %s, \"escalation_beyond_1s\": %s, \"scale\": %d, "
        "\"start_all_ms\": %.1f, \"stop_all_ms\": %.1f, \"idle_rss_kib\": %ld, \"idle_cpu_ms_per_10s\": %.1f, "
        "\"status_roundtrip\": %s, \"list_ms\": %.3f}\n",
        stats(force).c_str(), stats(grace).c_str(), stats(over).c_str(), scale, start_all, stop_all, rss1,
        cpu1 - cpu0, stats(status_rt).c_str(), list_ms);
  } catch (const std::exception& e) {
    fprintf(stderr, "repvisor-bench: %s\n", e.what());
    return 1;
  }
  sd_bus_flush_close_unref(bus);
  return 0;
}
