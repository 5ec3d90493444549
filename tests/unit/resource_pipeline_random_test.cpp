// The resource pipeline under thousands of random event sequences (seeded: every run is the
// same), checked against invariants as job_state_test.cpp checks the job's own machine.
#include <gtest/gtest.h>

#include <random>

#include "fake_resource_system.hpp"

using namespace repvisor;
using namespace repvisor::fake;

namespace {

// The teardown's steps, in their order.
int step_of(const std::string& act) {
  static const std::map<std::string, int> steps{{"flush", 0},   {"term", 1},    {"kill", 1},
                                                {"abandon", 1}, {"release", 1}, {"disconnect", 2},
                                                {"detach", 3},  {"remove", 4},  {"rmdir", 5}};
  return steps.at(act.substr(0, act.find(' ')));
}

bool same(const core::Resource& a, const core::Resource& b) {
  return a.state == b.state && a.error == b.error && a.device == b.device && a.endpoint == b.endpoint &&
         a.pid == b.pid && a.socket == b.socket && a.teardown_failed == b.teardown_failed;
}

std::string join(const Acts& acts) {
  std::string out;
  for (const auto& a : acts) out += a + "; ";
  return out;
}

}  // namespace

// Random jobs on random hosts, then random event sequences: completions in any order, late ones,
// timeouts, servers that ignore SIGTERM or survive SIGKILL, loop devices held elsewhere, acts
// that fail, retries, and daemon crashes (anywhere between two loop iterations, and at the crash
// points) after which a new daemon goes on from the last committed record. Throughout, each
// teardown keeps its order, never waits without a timer, ignores what it is not waiting for,
// and reports once; whatever happened, a retry on a host that lets go leaves nothing behind.
TEST(ResourcePipeline, RandomEventSequencesKeepInvariants) {
  std::mt19937 rng(20240611);
  auto chance = [&](unsigned percent) { return rng() % 100 < percent; };
  for (int run = 0; run < 3000; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    std::vector<ResourceSpec> rs;
    auto on_stop = [&] { return chance(50) ? core::OnStop::Discard : core::OnStop::Keep; };
    auto size = [&]() -> std::optional<uint64_t> {
      if (chance(70)) return 4096;
      return std::nullopt;
    };
    if (chance(70)) rs.push_back(volume(ResourceKind::File, "out", size(), on_stop()));
    if (chance(60)) rs.push_back(volume(ResourceKind::Loop, "disk", size(), on_stop()));
    if (chance(60)) {
      rs.push_back(server("src"));
      if (chance(50)) rs.push_back(device("dev", "src"));
    }
    const core::JobSpec spec = spec_of(rs);
    Host host;
    // A volume without a size is given to the job; one with a size may be left from before.
    for (const auto& r : rs) host.files[r.path] = !r.size || chance(30);
    auto d = std::make_unique<Daemon>(host, spec);
    d->job->start();
    d->sys.answer_probes();
    ASSERT_EQ(d->job->state(), core::JobState::Running);
    for (auto& [n, srv] : host.servers) {
      srv.ignores_term = chance(20);
      srv.unkillable = chance(10);
    }
    for (auto& [n, loop] : host.loops) loop.held_elsewhere = chance(20);
    for (const auto& r : rs)
      for (const char* act : {"flush ", "remove ", "disconnect ", "detach "})
        if (chance(5)) host.failing.insert(act + r.name);
    d->job->delete_requested = d->job->delete_keep_data = chance(20);
    if (!host.servers.empty() && chance(10))
      d->sys.server_exits(host.servers.begin()->first, "was killed by SIGSEGV");  // under the job
    d->end();
    Record committed = d->record();
    int retries_done = 0, begun = 1;

    auto restart = [&] {
      d.reset();
      d = std::make_unique<Daemon>(host, spec, &committed);
      retries_done = 0;
      begun = 1;
      d->retry(&retries_done);  // recovery: the teardown cut short runs again
    };
    auto check = [&] {
      const Acts acts = d->acts_since_begin();
      for (size_t i = 1; i < acts.size(); ++i)
        ASSERT_LE(step_of(acts[i - 1]), step_of(acts[i])) << "out of order: " << join(acts);
      const ResourcePhase phase = d->pipe->phase();
      ASSERT_EQ(d->sys.timer_armed(), phase != ResourcePhase::None) << to_string(phase);
      ASSERT_EQ(d->driver.cleanups_done + retries_done, phase == ResourcePhase::None ? begun : begun - 1);
      if (phase != ResourcePhase::None) return;
      bool any_failed = false;
      for (const auto& r : d->job->resources) any_failed |= r.teardown_failed;
      ASSERT_EQ(d->job->cleanup_state, any_failed ? "failed" : "done");
      ASSERT_EQ(d->job->cleanup_error.empty(), !any_failed);
      if (any_failed) return;
      // Done: nothing of the job is left on the host but the volumes it keeps.
      for (const auto& [n, srv] : host.servers) ASSERT_FALSE(srv.alive);
      for (const auto& [n, connected] : host.devices) ASSERT_FALSE(connected);
      for (const auto& [n, loop] : host.loops) ASSERT_FALSE(loop.bound);
      for (auto& r : d->pipe->resources()) {
        if (!r.is_volume()) continue;
        const bool discard = r.spec.on_stop == core::OnStop::Discard && r.record.created && !d->job->delete_keep_data;
        ASSERT_EQ(r.record.state, discard ? ResourceState::Discarded : ResourceState::Kept) << r.spec.name;
        ASSERT_EQ(host.files[r.spec.path], !discard) << r.spec.name;
      }
    };
    // Until the teardown ends, the host doing what it is told (but what it refuses still).
    auto drain = [&] {
      for (int i = 0; i < 100 && d->pipe->phase() != ResourcePhase::None; ++i) {
        if (!d->sys.flushes.empty()) {
          d->sys.complete_flush(0, 0);
          continue;
        }
        bool exited = false;
        for (auto& [n, srv] : host.servers)
          if (srv.alive && d->sys.watched.count(n) &&
              ((srv.got_kill && !srv.unkillable) || (srv.got_term && !srv.ignores_term))) {
            d->sys.server_exits(n, "exited with status 0");
            exited = true;
            break;
          }
        if (exited) continue;
        if (d->pipe->phase() == ResourcePhase::Detach) d->sys.clock += d->cfg.detach_timeout;
        d->sys.fire_timer();
      }
      ASSERT_EQ(d->pipe->phase(), ResourcePhase::None) << "the teardown does not end";
    };

    for (int step = 0; step < 30; ++step) {
      try {
        switch (rng() % 8) {
          case 0:
          case 1: {
            if (d->sys.flushes.empty()) break;
            const size_t k = rng() % d->sys.flushes.size();
            const auto& f = d->sys.flushes[k];
            const bool awaited = f.epoch == d->sys.epoch && d->pipe->phase() == ResourcePhase::Sync &&
                                 d->pipe->resources()[f.number].pending;
            const auto records = d->job->resources;
            const size_t events = d->driver.events.size(), acts = d->sys.acts.size();
            d->sys.complete_flush(k, chance(20) ? -EIO : 0);
            if (!awaited) {
              ASSERT_EQ(d->driver.events.size(), events) << "a completion nobody waited for was taken";
              ASSERT_EQ(d->sys.acts.size(), acts);
              for (size_t i = 0; i < records.size(); ++i) ASSERT_TRUE(same(records[i], d->job->resources[i]));
            }
            break;
          }
          case 2:
            for (auto& [n, srv] : host.servers)
              if (srv.alive &&
                  ((srv.got_kill && !srv.unkillable) || (srv.got_term && !srv.ignores_term) || chance(10))) {
                d->sys.server_exits(n, srv.got_kill ? "was killed by SIGKILL" : "exited with status 0");
                break;
              }
            break;
          case 3:
            if (d->sys.timer_armed()) d->sys.fire_timer();
            break;
          case 4:
            for (auto& [n, loop] : host.loops)
              if (loop.held_elsewhere) {
                d->sys.let_go_of_loop(n);
                break;
              }
            break;
          case 5:
            if (chance(20)) restart();
            break;
          case 6:
            if (d->pipe->phase() == ResourcePhase::None) {
              d->retry(&retries_done);
              ++begun;
            }
            break;
          case 7:
            if (chance(30)) d->sys.crash_at = chance(50) ? "resource-stop" : "resource-discarded";
            break;
        }
      } catch (const Crash&) {
        restart();
      }
      committed = d->record();
      check();
      if (HasFatalFailure()) return;
    }
    d->sys.crash_at.clear();
    drain();
    check();
    if (HasFatalFailure()) return;

    host.failing.clear();
    for (auto& [n, srv] : host.servers) srv.ignores_term = srv.unkillable = false;
    for (auto& [n, loop] : host.loops) d->sys.let_go_of_loop(n);
    d->retry(&retries_done);
    ++begun;
    drain();
    check();
    if (HasFatalFailure()) return;
    ASSERT_EQ(d->job->cleanup_state, "done") << d->job->cleanup_error;
  }
}
