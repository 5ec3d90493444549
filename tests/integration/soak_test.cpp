// Chaos soak: clients submitting, stopping, deleting and resuming at once, jobs that fork trees,
// ignore SIGTERM, exit at random, flood the notify socket or copy from an NBD server into a loop
// volume, and the daemon SIGKILLed and restarted at random moments. Bounded: REPVISOR_SOAK_SECONDS (default 15 in CI;
// longer on demand:
//   REPVISOR_SOAK_SECONDS=600 build/tests/integration_tests --gtest_filter='Soak*').
// Invariants: every acknowledged stop ends its job, every acknowledged delete removes it and
// leaves an audit entry, no stray process, cgroup, NBD server, socket, loop device or fd, memory
// stable.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "harness.hpp"

using namespace repvisor::test;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

size_t open_fds(pid_t pid) {
  size_t n = 0;
  std::error_code ec;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) ++n;
  return n;
}

size_t rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
  return 0;
}

std::vector<std::string> job_kind(std::mt19937& rng) {
  switch (rng() % 5) {
    case 0:
      return {"sleep", "1000"};
    case 1:
      return {"sh", "-c", "sleep 1000 & (setsid sleep 1000 &); wait"};  // a tree with an escapee
    case 2:
      return {"sh", "-c", "trap '' TERM; sleep 1000 & wait"};  // ignores SIGTERM
    case 3:
      return {"sh", "-c", "sleep 0.$(( $$ % 9 + 1 )); exit $(( $$ % 2 ))"};  // ends by itself
    default:
      return {"sh", "-c", "while :; do systemd-notify --no-block PROGRESS=$(( $$ % 100 )); done"};  // floods
  }
}

// A job with resources: an NBD server on the shared source, a loop (or file) volume of its own.
Dict resource_job(std::mt19937& rng, const std::string& vol, unsigned n) {
  const bool loop = rng() % 2;
  const std::string target = vol + "/soak-" + std::to_string(n) + ".img";
  ResourceList res = {
      {{"kind", std::string("nbd-server")},
       {"name", std::string("src")},
       {"path", vol + "/source.img"},
       {"server", std::string(rng() % 2 ? "qemu-nbd" : "nbdkit")}},
      {{"kind", std::string(loop ? "loop" : "file")},
       {"name", std::string("dst")},
       {"path", target},
       {"size", uint64_t{4} << 20},
       {"on_stop", std::string(rng() % 2 ? "keep" : "discard")}},
  };
  std::vector<std::string> argv;
  if (rng() % 2)
    argv = {"nbdcopy", "{nbd.src}", "{volume.dst}"};  // ends by itself
  else
    argv = {"sh", "-c", "exec 3<>{volume.dst}; nbdcopy {nbd.src} - | head -c 1048576 >&3; exec sleep 1000"};
  return {{"argv", argv}, {"resources", res}};
}

// Loop devices bound to a file under `dir`, from sysfs.
std::vector<std::string> loops_under(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& d : fs::directory_iterator("/sys/block")) {
    std::ifstream in(d.path() / "loop" / "backing_file");
    std::string backing;
    if (std::getline(in, backing) && backing.rfind(dir + "/", 0) == 0) out.push_back(d.path().filename());
  }
  return out;
}

struct Ledger {
  std::mutex m;
  std::set<std::string> deleted;  // acknowledged deletes
  std::set<std::string> stopped;  // acknowledged stops (wait = true: the reply came at the end)
  std::set<std::string> known;
  std::set<std::string> delete_tried;  // a delete was sent (its reply may have been lost in a crash)
  // A resume may have started a later run, of which an earlier acknowledged stop says nothing:
  // acknowledged, or sent and not refused (its reply may have been lost in a crash).
  std::set<std::string> resumed;
  std::map<std::string, uint64_t> error_names;
  std::vector<std::string> pick_from;
  uint64_t ops = 0, errors = 0;
};

}  // namespace

TEST(Soak, ChaosOfClientsJobsAndDaemonCrashes) {
  const char* env = getenv("REPVISOR_SOAK_SECONDS");
  const int seconds = env ? static_cast<int>(std::strtol(env, nullptr, 10)) : 15;
  Daemon daemon("max_concurrent_jobs = 24\nstop_timeout = \"300ms\"\nfinal_kill_timeout = \"3s\"");
  const std::string vol = daemon.dir + "/volumes";
  {
    std::ofstream src(vol + "/source.img", std::ios::binary);
    std::string chunk(1 << 20, 'x');
    for (int i = 0; i < 4; ++i) src << chunk;
  }
  std::atomic<unsigned> volume_counter{0};
  std::atomic<uint64_t> resumes{0};
  Ledger ledger;
  std::atomic<bool> done{false};
  std::atomic<uint64_t> restarts{0};
  std::mutex daemon_m;  // held while the daemon is being restarted

  auto client = [&](unsigned seed) {
    std::mt19937 rng(seed);
    std::unique_ptr<Bus> bus;
    while (!done.load()) {
      try {
        if (!bus) bus = std::make_unique<Bus>(daemon.address());
      } catch (const std::exception&) {
        std::lock_guard wait_for_restart(daemon_m);  // the daemon is down: wait until it is back
        continue;
      }
      std::string target;
      {
        std::lock_guard l(ledger.m);
        if (!ledger.pick_from.empty()) target = ledger.pick_from[rng() % ledger.pick_from.size()];
      }
      CallResult r;
      const unsigned op = rng() % 11;
      if (op < 4 || target.empty()) {
        r = bus->submit(rng() % 3 == 0 ? resource_job(rng, vol, volume_counter++) : Dict{{"argv", job_kind(rng)}});
        if (r.ok) {
          std::lock_guard l(ledger.m);
          ledger.known.insert(r.s1);
          ledger.pick_from.push_back(r.s1);
        }
      } else if (op == 10) {
        // Resume: refused (NotResumable, JobActive) as often as not, and that is checked too.
        sd_bus_error err = SD_BUS_ERROR_NULL;
        sd_bus_message* reply = nullptr;
        const std::string path = "/org/repvisor1/job/" + target;
        const int rc = sd_bus_call_method(bus->get(), "org.repvisor1", path.c_str(), "org.repvisor1.Job", "Resume",
                                          &err, &reply, "a{sv}", 0);
        r.ok = rc >= 0;
        if (!r.ok) {
          r.error_name = err.name ? err.name : "";
          r.error_message = err.message ? err.message : strerror(-rc);
        } else {
          ++resumes;
        }
        if (r.ok || r.error_name.rfind("org.repvisor1.Error.", 0) != 0) {
          std::lock_guard l(ledger.m);
          ledger.resumed.insert(target);
        }
        sd_bus_message_unref(reply);
        sd_bus_error_free(&err);
      } else if (op < 7) {
        const bool wait = rng() % 2;
        r = bus->stop(target, {{"force", static_cast<bool>(rng() % 2)}, {"wait", wait}});
        if (r.ok && wait) {
          std::lock_guard l(ledger.m);
          ledger.stopped.insert(target);
        }
      } else {
        {
          std::lock_guard l(ledger.m);
          ledger.delete_tried.insert(target);
        }
        r = bus->remove(target, {{"force", static_cast<bool>(rng() % 3)}, {"keep_data", static_cast<bool>(rng() % 2)}});
        if (r.ok) {
          std::lock_guard l(ledger.m);
          ledger.deleted.insert(target);
          std::erase(ledger.pick_from, target);
        }
      }
      {
        std::lock_guard l(ledger.m);
        ++ledger.ops;
        if (!r.ok) {
          ++ledger.errors;
          ++ledger.error_names[r.error_name.empty() ? "(connection) " + r.error_message : r.error_name];
        }
      }
      // A dropped connection (the daemon was killed) is expected: reconnect.
      if (!r.ok && (r.error_name.empty() || r.error_name.rfind("System.Error.", 0) == 0 ||
                    r.error_name == "org.freedesktop.DBus.Error.NoReply" ||
                    r.error_name == "org.freedesktop.DBus.Error.Disconnected"))
        bus.reset();
    }
  };

  std::vector<std::thread> clients;
  for (unsigned i = 0; i < 4; ++i) clients.emplace_back(client, 1000 + i);
  std::mt19937 rng(42);
  const auto end = Clock::now() + std::chrono::seconds(seconds);
  std::string failure;
  while (Clock::now() < end && failure.empty()) {
    // Let the chaos run for a while, then kill the daemon like a crash and start it again.
    std::this_thread::sleep_for(std::chrono::milliseconds(1500 + rng() % 2500));  // pacing, not synchronisation
    std::lock_guard l(daemon_m);
    kill(daemon.pid, SIGKILL);
    EXPECT_EQ(daemon.wait_exit(), 128 + SIGKILL);
    try {
      daemon.start();
      ++restarts;
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  done = true;
  for (auto& t : clients) t.join();
  ASSERT_TRUE(failure.empty()) << "the daemon did not come back after a crash: " << failure;

  // Settle: every job still there is deleted (forced); everything must then be gone.
  Bus bus(daemon.address());
  const size_t fds_before = open_fds(daemon.pid);
  for (const auto& id : ledger.stopped) {
    if (ledger.deleted.count(id) || ledger.resumed.count(id)) continue;
    if (!bus.job_exists(id)) {
      EXPECT_TRUE(ledger.delete_tried.count(id)) << "job " << id << " vanished without a delete";
      continue;
    }
    const std::string state = bus.prop_s(id, "State");
    EXPECT_TRUE(state == "cancelled" || state == "completed" || state == "failed")
        << "acknowledged stop of " << id << " but it is " << state;
  }
  for (const auto& row : bus.list()) {
    auto r = bus.remove(row[0], {{"force", true}});
    EXPECT_TRUE(r.ok) << row[0] << ": " << r.error_message;
  }
  EXPECT_TRUE(bus.list().empty());
  for (const auto& id : ledger.deleted) EXPECT_FALSE(bus.job_exists(id)) << "acknowledged delete undone: " << id;
  EXPECT_TRUE(zombie_children(daemon.pid).empty());
  // A killed server's cgroup that was still emptying goes when it is empty: waited for.
  EXPECT_TRUE(wait_no_child_cgroups(daemon.cgroup_dir())) << "a job or NBD server cgroup is left";
  EXPECT_TRUE(loops_under(vol).empty()) << "a loop device still holds a volume";
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(daemon.runtime_dir + "/jobs", ec))
    ADD_FAILURE() << "runtime files left: " << d.path();
  for (const auto& d : fs::directory_iterator(vol, ec)) {
    const std::string name = d.path().filename();
    if (name != "source.img" && name.rfind("soak-", 0) != 0) ADD_FAILURE() << "unexpected file " << name;
  }
  const size_t fds_after = open_fds(daemon.pid);
  EXPECT_LE(fds_after, fds_before) << "file descriptors leaked";
  const size_t rss = rss_kib(daemon.pid);
#if !defined(__SANITIZE_ADDRESS__)
  // (Under AddressSanitizer the shadow memory and quarantine make RSS meaningless.)
  EXPECT_LT(rss, 64u * 1024) << "RSS " << rss << " KiB";
#endif

  // The audit trail has the deletes that were acknowledged.
  std::string out;
  for (const auto& id : ledger.deleted) {
    run_command(std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " events " + id, &out);
    EXPECT_NE(out.find("deleted"), std::string::npos) << id << ":\n" << out;
  }
  for (const auto& [name, n] : ledger.error_names)
    printf("soak: %llu x %s\n", static_cast<unsigned long long>(n), name.c_str());
  RecordProperty("operations", static_cast<int>(ledger.ops));
  RecordProperty("daemon_kills", static_cast<int>(restarts.load()));
  printf(
      "soak: %d s, %llu operations (%llu refused or interrupted), %llu jobs (%u with NBD server and volume), "
      "%zu deletes acknowledged, %llu resumes, %llu daemon SIGKILLs and restarts, final RSS %zu KiB, fds %zu\n",
      seconds, static_cast<unsigned long long>(ledger.ops), static_cast<unsigned long long>(ledger.errors),
      static_cast<unsigned long long>(ledger.known.size()), volume_counter.load(), ledger.deleted.size(),
      static_cast<unsigned long long>(resumes.load()), static_cast<unsigned long long>(restarts.load()), rss,
      fds_after);
}
