// The API's latency while a job floods its log (bench/log-flood.sh runs it): N blocking
// property reads (Get of a job's State) over the private socket with no job running, then the
// same with a job writing its stdout as fast as it can, and their ratio. The figure to watch is
// the ratio: this host's speed changes by the hour, the ratio much less.
//
// It also reports the flood's log's largest size seen (max_size plus the slack) and the CPU time
// of the daemon's log thread ("rv-logs") and of the whole daemon while timed.
//
//   bench-log-flood ADDRESS N DAEMON_PID [MBPS]
//
// MBPS (0 by default): the flood's pace in MB/s, 1 MiB writes spaced evenly (a perl loop);
// 0 is `dd bs=1M` as fast as it can.
#include <sys/stat.h>
#include <systemd/sd-bus.h>
#include <time.h>

#include <dirent.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

sd_bus* bus = nullptr;

[[noreturn]] void die(const char* what, int r, const sd_bus_error* err = nullptr) {
  fprintf(stderr, "bench-log-flood: %s: %s\n", what, err && err->message ? err->message : strerror(-r));
  exit(1);
}

double now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

std::string submit(const char* name, const char* command) {
  sd_bus_message* reply = nullptr;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  const int r = sd_bus_call_method(bus, "org.repvisor1", "/org/repvisor1", "org.repvisor1.Manager", "Submit", &err,
                                   &reply, "a{sv}", 2, "name", "s", name, "argv", "as", 3, "sh", "-c", command);
  if (r < 0) die("Submit", r, &err);
  const char *id = nullptr, *path = nullptr;
  if (sd_bus_message_read(reply, "so", &id, &path) < 0) die("Submit reply", -EBADMSG);
  std::string out = path;
  sd_bus_message_unref(reply);
  return out;
}

std::string get_s(const std::string& path, const char* property) {
  char* v = nullptr;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  const int r = sd_bus_get_property_string(bus, "org.repvisor1", path.c_str(), "org.repvisor1.Job", property, &err, &v);
  if (r < 0) die(property, r, &err);
  std::string out = v;
  free(v);
  return out;
}

uint64_t get_t(const std::string& path, const char* property) {
  uint64_t v = 0;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  const int r =
      sd_bus_get_property_trivial(bus, "org.repvisor1", path.c_str(), "org.repvisor1.Job", property, &err, 't', &v);
  if (r < 0) die(property, r, &err);
  return v;
}

void stop(const std::string& path) {
  sd_bus_error err = SD_BUS_ERROR_NULL;
  const int r = sd_bus_call_method(bus, "org.repvisor1", path.c_str(), "org.repvisor1.Job", "Stop", &err, nullptr,
                                   "a{sv}", 2, "force", "b", 1, "wait", "b", 1);
  if (r < 0) die("Stop", r, &err);
}

uint64_t file_size(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// N reads of one job's State, each a round trip; the times in milliseconds, sorted. Every
// 100th read, `between` runs (untimed).
template <class F>
std::vector<double> time_reads(const std::string& path, long n, F between) {
  std::vector<double> t;
  t.reserve(static_cast<size_t>(n));
  for (long i = 0; i < n; ++i) {
    const double a = now_ms();
    (void)get_s(path, "State");
    t.push_back(now_ms() - a);
    if (i % 100 == 0) between();
  }
  std::sort(t.begin(), t.end());
  return t;
}

double at(const std::vector<double>& sorted, double q) {
  return sorted[std::min(sorted.size() - 1, static_cast<size_t>(q * static_cast<double>(sorted.size())))];
}

uint64_t written(const std::string& path) {  // what the flood wrote so far: cut + still in its log
  return get_t(path, "LogBytesCut") + file_size(get_s(path, "LogPath"));
}

// CPU time (ns) of the daemon's threads named `name`, or of all of them when `name` is empty.
uint64_t cpu_ns(const std::string& pid, const std::string& name) {
  uint64_t total = 0;
  const std::string dir = "/proc/" + pid + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string comm;
    std::getline(std::ifstream(dir + "/" + e->d_name + "/comm"), comm);
    if (!name.empty() && comm != name) continue;
    uint64_t ns = 0;
    std::ifstream(dir + "/" + e->d_name + "/schedstat") >> ns;
    total += ns;
  }
  closedir(d);
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: bench-log-flood ADDRESS N DAEMON_PID [MBPS]\n");
    return 2;
  }
  char* end = nullptr;
  const long n = strtol(argv[2], &end, 10);
  if (*end != '\0' || n < 10 || n > 10'000'000) die("N", -EINVAL);
  const std::string pid = argv[3];
  const long mbps = argc == 5 ? strtol(argv[4], &end, 10) : 0;
  if (argc == 5 && (*end != '\0' || mbps < 0 || mbps > 100'000)) die("MBPS", -EINVAL);
  if (int r = sd_bus_new(&bus); r < 0) die("sd_bus_new", r);
  sd_bus_set_address(bus, argv[1]);
  sd_bus_set_bus_client(bus, 1);
  if (int r = sd_bus_start(bus); r < 0) die("connect", r);

  const std::string idle = submit("idle", "exec sleep 1000");
  while (get_s(idle, "State") != "running") {
  }
  (void)time_reads(idle, n / 10, [] {});  // warm
  const std::vector<double> quiet = time_reads(idle, n, [] {});

  const std::string paced =
      "exec perl -MTime::HiRes=time,sleep -e '$b = \"A\" x 1048575 . \"\\n\"; $per = 1048576 / (" +
      std::to_string(mbps) +
      " * 1e6); $t = time; for ($n = 1;; $n++) { syswrite STDOUT, $b; $d = $t + $n * $per - time; sleep $d if $d > 0 "
      "}'";
  const std::string flood = submit("flood", mbps ? paced.c_str() : "exec dd if=/dev/zero bs=1M status=none");
  // Timed once the flood has been cut at least once: the limiter is working, not warming up.
  while (get_t(flood, "LogBytesCut") == 0) {
  }
  const std::string log = get_s(flood, "LogPath");
  uint64_t largest = 0;
  const uint64_t w0 = written(flood), logs0 = cpu_ns(pid, "rv-logs"), all0 = cpu_ns(pid, "");
  const double t0 = now_ms();
  const std::vector<double> loud = time_reads(idle, n, [&] { largest = std::max(largest, file_size(log)); });
  const double secs = (now_ms() - t0) / 1e3;
  const uint64_t w1 = written(flood), logs1 = cpu_ns(pid, "rv-logs"), all1 = cpu_ns(pid, "");
  stop(flood);
  stop(idle);

  const double rate = static_cast<double>(w1 - w0) / secs / 1e6;
  printf("reads: %ld each; flood: %.0f MB/s into its log while timed (%.2f s)\n", n, rate, secs);
  printf("flood's log: largest seen %.1f MiB; CPU while timed: log thread %.1f%%, whole daemon %.1f%% of a core\n",
         static_cast<double>(largest) / (1 << 20), static_cast<double>(logs1 - logs0) / 1e7 / secs,
         static_cast<double>(all1 - all0) / 1e7 / secs);
  printf("%-22s %10s %10s %10s\n", "", "median ms", "p99 ms", "max ms");
  printf("%-22s %10.4f %10.4f %10.4f\n", "no job running", at(quiet, 0.5), at(quiet, 0.99), quiet.back());
  printf("%-22s %10.4f %10.4f %10.4f\n", "a job flooding its log", at(loud, 0.5), at(loud, 0.99), loud.back());
  printf("ratio (flood / none): median %.2f, p99 %.2f\n", at(loud, 0.5) / at(quiet, 0.5),
         at(loud, 0.99) / at(quiet, 0.99));
  sd_bus_unref(bus);
  return 0;
}
