// Micro-benchmarks of the hot paths (Google Benchmark): a notify datagram parsed, a stop's
// state machine run alone, and a state change written durably (store save + commit, i.e. the
// fsync a reply waits for). Run: build/bench/bench-micro [--benchmark_filter=...]
// BENCH_DIR picks the file system of the store (default /var/tmp: a disk, as /var/lib would be).
#include <benchmark/benchmark.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <string>

#include "core/job.hpp"
#include "core/notify.hpp"
#include "store/store.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

using namespace repvisor;

namespace {

class NullDriver : public core::JobDriver {
 public:
  store::Store* store = nullptr;
  void begin_setup(core::Job& j) override { j.on_setup_done(true, ""); }
  void abort_setup(core::Job&) override {}
  int spawn(core::Job& j) override {
    j.main_pid = 4242;
    return 0;
  }
  int signal_main(core::Job&, int) override { return 0; }
  int signal_tree(core::Job&, int) override { return 0; }
  int kill_tree(core::Job&) override { return 0; }
  void arm_timer(core::Job&, usec_t) override {}
  void disarm_timer(core::Job&) override {}
  std::vector<pid_t> tree_pids(core::Job&) override { return {}; }
  void begin_cleanup(core::Job& j) override { j.on_cleanup_done(true, ""); }
  void changed(core::Job& j, uint32_t) override {
    if (store) store->save(j);
  }
  void finished(core::Job&) override {}
  void event(core::Job&, std::string_view, std::string_view) override {}
  usec_t now() override { return 1; }
};

core::JobSpec spec() {
  core::JobSpec s;
  s.argv = {"/usr/bin/repvisor-copy", "nbd+unix:///?socket=/run/repvisor/jobs/x/nbd-0.sock", "/var/lib/x.img"};
  return s;
}

void BM_ParseNotify(benchmark::State& state) {
  const std::string msg =
      "PHASE=copying\nPROGRESS=42.5\nBYTES_DONE=4503599627370\nBYTES_TOTAL=10737418240\nSTATUS=copying disk0\n"
      "CHECKPOINT=repvisor-copy/1 done=4503599627370 size=10737418240\n";
  core::NotifyMessage out;
  std::string error;
  for (auto _ : state) {
    benchmark::DoNotOptimize(core::parse_notify(msg, &out, &error));
  }
}
BENCHMARK(BM_ParseNotify);

void BM_StopCycleStateMachine(benchmark::State& state) {
  NullDriver d;
  for (auto _ : state) {
    core::Job job(d, "0123456789abcdef0123456789abcdef", spec(), 10 * USEC_PER_SEC);
    job.start();
    job.request_stop({.force = true});
    job.on_main_exited(CLD_KILLED, SIGKILL);
    job.on_tree_empty();
    benchmark::DoNotOptimize(job.state());
  }
}
BENCHMARK(BM_StopCycleStateMachine);

// A store's directory for one benchmark, in BENCH_DIR, removed with the store's files after.
class StoreDir {
 public:
  StoreDir() {
    const char* dir = getenv("BENCH_DIR");
    path_ = std::string(dir ? dir : "/var/tmp") + "/repvisor-bench-XXXXXX";
    ok_ = mkdtemp(path_.data()) != nullptr;
  }
  ~StoreDir() {
    if (!ok_) return;
    for (const char* suffix : {"", "-wal", "-shm"}) unlink(db().append(suffix).c_str());
    rmdir(path_.c_str());
  }
  StoreDir(const StoreDir&) = delete;
  StoreDir& operator=(const StoreDir&) = delete;
  bool ok() const { return ok_; }
  std::string db() const { return path_ + "/repvisor.db"; }

 private:
  std::string path_;
  bool ok_ = false;
};

// Runs body(store, driver) on a store of its own in a StoreDir, the driver saving into it; the
// benchmark is skipped when the directory cannot be made. Both go before the files do.
template <typename Body>
void with_store(benchmark::State& state, Body body) {
  StoreDir dir;
  if (!dir.ok()) {
    state.SkipWithError("mkdtemp");
    return;
  }
  store::Store st(dir.db());
  NullDriver d;
  d.store = &st;
  body(st, d);
}

// One state change saved and committed; with `durable`, also synced (Store::sync, one
// fdatasync of the WAL): what a reply waits for. Without, what each further change in the same
// loop iteration costs (they share the iteration's one sync).
void StateChange(benchmark::State& state, bool durable) {
  with_store(state, [&](store::Store& st, NullDriver& d) {
    core::Job job(d, "0123456789abcdef0123456789abcdef", spec(), 10 * USEC_PER_SEC);
    job.start();
    st.commit();
    st.sync();
    uint64_t n = 0;
    for (auto _ : state) {
      job.set_checkpoint("repvisor-copy/1 done=" + std::to_string(++n) + " size=10737418240");
      st.commit();
      if (durable) st.sync();
    }
  });
}

// The commit that ends a force stop (what the reply waits for, before the sync): the job's row
// and the three events of its end (exited, cleanup, cancelled), on a store that already holds
// the history of 10,000 jobs, so that the indexes are as deep as on a server that has run for a
// while. Run it under callgrind for an instruction count that the machine's load cannot move.
// Its own function, so that callgrind counts one iteration and nothing of the set-up:
//   valgrind --tool=callgrind --toggle-collect='*stop_end_commit*' build/bench/bench-micro
//       --benchmark_filter=StopEnd
[[gnu::noinline]] void stop_end_commit(store::Store& st, core::Job& job, uint64_t n, const nlohmann::json& who) {
  job.set_checkpoint("repvisor-copy/1 done=" + std::to_string(n) + " size=10737418240");
  st.append({n, job.id(), "exited", "main process killed by SIGKILL", nlohmann::json::object()});
  st.append({n, job.id(), "cleanup", "cgroup job-" + job.id() + " removed", nlohmann::json::object()});
  st.append({n, job.id(), "cancelled", "stopped on request (force, reason user_request)", who});
  st.commit();
}

void BM_CommittedStopEnd(benchmark::State& state) {
  with_store(state, [&](store::Store& st, NullDriver& d) {
    const nlohmann::json who = {{"uid", 0}, {"pid", 4242}, {"comm", "repvisorctl"}};
    // Ids spread over the index, as random ones are.
    auto id_of = [](uint64_t n) { return fmt::format("{:032x}", n * 0x9e3779b97f4a7c15ULL); };
    for (uint64_t n = 0; n < 10000; ++n)
      for (const char* type : {"submitted", "started", "stop-requested", "signal", "exited", "cleanup", "cancelled"})
        st.append({n, id_of(n), type, "a message of the usual length, naming the job's main process", who});
    st.commit();
    // A few commits of the usual size after that big one, so that what its end costs once (the
    // allocator consolidating what it freed) is not counted as the first iteration's.
    for (uint64_t n = 10000; n < 10100; ++n) {
      st.append({n, id_of(n), "submitted", "a message of the usual length, naming the job's main process", who});
      st.commit();
    }
    core::Job job(d, id_of(10001), spec(), 10 * USEC_PER_SEC);
    job.start();
    st.commit();
    st.sync();
    uint64_t n = 20000;
    for (auto _ : state) stop_end_commit(st, job, ++n, who);
  });
}
BENCHMARK(BM_CommittedStopEnd)->Unit(benchmark::kMicrosecond);

void BM_DurableStateChange(benchmark::State& state) { StateChange(state, true); }
void BM_CommittedStateChange(benchmark::State& state) { StateChange(state, false); }
BENCHMARK(BM_DurableStateChange)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CommittedStateChange)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
