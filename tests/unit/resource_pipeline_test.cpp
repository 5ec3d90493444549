// The resource pipeline without root: setup's order, the teardown's order, its idempotence,
// late completions, a stubborn server, a held loop device, and a daemon restart mid-teardown,
// against the fake host of fake_resource_system.hpp. (The real system calls are the integration
// tests' business: tests/integration/resources_test.cpp.)
#include <gtest/gtest.h>

#include "fake_resource_system.hpp"

using namespace repvisor;
using namespace repvisor::fake;

TEST(ResourcePipeline, SetupGoesVolumesServersDevicesAndTheJobRunsOnlyOnceServersAnswer) {
  Host host;
  host.files["/vol/src.img"] = true;
  Daemon d(host, full_spec());
  d.job->start();
  EXPECT_EQ(d.pipe->phase(), ResourcePhase::Setup);
  EXPECT_EQ(d.job->state(), core::JobState::Starting) << "the server has not answered yet";
  EXPECT_TRUE(d.sys.timer_armed()) << "nbd.ready_timeout";
  d.sys.answer_probes();
  EXPECT_EQ(d.job->state(), core::JobState::Running);
  EXPECT_EQ(d.sys.acts,
            (Acts{"mkdir", "open out", "open disk", "attach disk", "start src", "connect dev /run/test/nbd-2.sock"}));
  EXPECT_EQ(d.pipe->phase(), ResourcePhase::None);
  EXPECT_FALSE(d.sys.timer_armed());
  EXPECT_TRUE(d.job->resources[0].created);
  EXPECT_EQ(d.job->resources[1].device, "/dev/loop1");
  EXPECT_EQ(d.job->resources[2].endpoint, "nbd+unix:///?socket=/run/test/nbd-2.sock");
  EXPECT_EQ(d.job->resources[3].state, ResourceState::Ready);
}

TEST(ResourcePipeline, AServerThatDoesNotAnswerInTimeFailsTheSetupAndALateAnswerChangesNothing) {
  Host host;
  Daemon d(host, spec_of({server("src")}));
  host.files["/vol/src.img"] = true;
  d.job->start();
  auto late = std::move(d.sys.probes.at(0));
  d.sys.fire_timer();
  EXPECT_EQ(d.job->state(), core::JobState::Cleaning);
  EXPECT_NE(d.job->status_text.find("did not answer within nbd.ready_timeout"), std::string::npos);
  const auto acts = d.sys.acts;
  late(true, "");  // the real system drops it with stop_probe; a stray one must not matter either
  EXPECT_EQ(d.sys.acts, acts);
  EXPECT_NE(d.job->resources[0].state, ResourceState::Ready);
}

TEST(ResourcePipeline, TeardownRunsInItsSafeOrder) {
  Host host;
  host.files["/vol/src.img"] = true;
  Daemon d(host, full_spec());
  d.run();
  d.end();
  EXPECT_EQ(d.pipe->phase(), ResourcePhase::Sync);
  ASSERT_EQ(d.sys.flushes.size(), 2u);
  d.sys.complete_flush(1, 0);  // in any order
  EXPECT_EQ(d.pipe->phase(), ResourcePhase::Sync);
  d.sys.complete_flush(0, 0);
  EXPECT_EQ(d.pipe->phase(), ResourcePhase::StopServers);
  d.sys.server_exits(2);
  EXPECT_EQ(d.pipe->phase(), ResourcePhase::None);
  EXPECT_EQ(d.acts_since_begin(), (Acts{"flush out", "flush disk", "term src", "release src", "disconnect dev",
                                        "detach disk", "remove out", "rmdir"}));
  EXPECT_EQ(d.job->state(), core::JobState::Cancelled);
  EXPECT_EQ(d.job->cleanup_state, "done");
  EXPECT_EQ(d.driver.cleanups_done, 1);
  EXPECT_EQ(d.job->resources[0].state, ResourceState::Discarded);
  EXPECT_EQ(d.job->resources[1].state, ResourceState::Kept);
  EXPECT_EQ(d.job->resources[2].state, ResourceState::Released);
  EXPECT_EQ(d.job->resources[3].state, ResourceState::Released);
  EXPECT_FALSE(host.files["/vol/out.img"]);
  EXPECT_TRUE(host.files["/vol/disk.img"]);
  EXPECT_FALSE(host.loops[1].bound);
  EXPECT_FALSE(d.sys.timer_armed());
}

TEST(ResourcePipeline, ASecondTeardownActsOnNothingAndChangesNoRecord) {
  Host host;
  host.files["/vol/src.img"] = true;
  Daemon d(host, full_spec());
  d.run();
  d.end();
  d.sys.complete_flush(0, 0);
  d.sys.complete_flush(0, 0);
  d.sys.server_exits(2);
  ASSERT_EQ(d.job->cleanup_state, "done");
  const auto before = d.job->resources;
  int done = 0;
  d.retry(&done);
  EXPECT_EQ(done, 1) << "nothing to wait for: done at once";
  EXPECT_EQ(d.job->cleanup_state, "done");
  // The server's cgroup is looked for again (removing a missing one is a no-op); nothing else.
  EXPECT_EQ(d.acts_since_begin(), (Acts{"release src", "rmdir"}));
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(d.job->resources[i].state, before[i].state) << i;
    EXPECT_EQ(d.job->resources[i].endpoint, before[i].endpoint) << i;
  }
}

TEST(ResourcePipeline, AFlushThatOutlivesItsTimeoutIsFailedAndItsLateCompletionIgnored) {
  Host host;
  Daemon d(host, spec_of({volume(ResourceKind::File, "out", 4096, core::OnStop::Discard)}));
  d.run();
  d.end();
  ASSERT_EQ(d.sys.flushes.size(), 1u);
  d.sys.fire_timer();  // volumes.sync_timeout
  EXPECT_EQ(d.job->resources[0].state, ResourceState::Failed);
  EXPECT_TRUE(d.job->resources[0].teardown_failed);
  EXPECT_NE(d.job->cleanup_error.find("took longer than volumes.sync_timeout"), std::string::npos);
  EXPECT_EQ(d.job->cleanup_state, "failed");
  EXPECT_TRUE(host.files["/vol/out.img"]) << "a volume that was not flushed is never discarded";
  // A retry flushes again. The first run's flush, completing only now (with an error that
  // would fail the volume), is not taken for the second's.
  d.retry();
  ASSERT_EQ(d.sys.flushes.size(), 2u);
  const auto events = d.driver.events.size();
  d.sys.complete_flush(0, -EIO);
  EXPECT_EQ(d.pipe->phase(), ResourcePhase::Sync);
  EXPECT_TRUE(d.res("out").pending);
  EXPECT_EQ(d.driver.events.size(), events);
  d.sys.complete_flush(0, 0);
  EXPECT_EQ(d.job->cleanup_state, "done");
  EXPECT_EQ(d.job->resources[0].state, ResourceState::Discarded);
}

TEST(ResourcePipeline, ACompletionAfterThePipelineIsGoneIsDropped) {
  Host host;
  auto d = std::make_unique<Daemon>(host, spec_of({volume(ResourceKind::File, "out", 4096)}));
  d->run();
  d->end();
  ASSERT_EQ(d->sys.flushes.size(), 1u);
  auto done = std::move(d->sys.flushes[0].done);
  d.reset();  // the job was deleted while its flush ran in the thread pool
  done(0);    // must not touch anything (AddressSanitizer would say)
}

TEST(ResourcePipeline, AServerThatIgnoresSigtermIsKilledThenAbandonedAndARetryStopsIt) {
  Host host;
  host.files["/vol/src.img"] = true;
  Daemon d(host, spec_of({server("src")}));
  d.run();
  host.servers[0].ignores_term = host.servers[0].unkillable = true;
  d.end();
  EXPECT_EQ(d.pipe->phase(), ResourcePhase::StopServers);
  d.sys.fire_timer();  // nbd.stop_timeout
  EXPECT_EQ(d.pipe->phase(), ResourcePhase::KillServers);
  d.sys.fire_timer();  // final_kill_timeout
  EXPECT_EQ(d.acts_since_begin(), (Acts{"term src", "kill src", "abandon src"}));
  EXPECT_EQ(d.job->cleanup_state, "failed");
  EXPECT_EQ(d.job->state(), core::JobState::Cancelled);
  EXPECT_TRUE(d.driver.saw("cleanup-failed", "did not die after SIGKILL"));
  EXPECT_EQ(d.job->resources[0].pid, 1000) << "kept on record: a retry finds it again";

  host.servers[0].unkillable = host.servers[0].ignores_term = false;
  int done = 0;
  d.retry(&done);
  d.sys.server_exits(0, "was killed by SIGTERM");
  EXPECT_EQ(done, 1);
  EXPECT_EQ(d.job->cleanup_state, "done");
  EXPECT_EQ(d.acts_since_begin(), (Acts{"term src", "release src", "rmdir"}));
}

TEST(ResourcePipeline, AHeldLoopDeviceFailsAfterTheDetachTimeoutAndTheVolumeIsKept) {
  Host host;
  Daemon d(host, spec_of({volume(ResourceKind::Loop, "disk", 4096, core::OnStop::Discard)}));
  d.run();
  host.loops[0].held_elsewhere = true;
  d.end();
  d.sys.complete_flush(0, 0);
  EXPECT_EQ(d.pipe->phase(), ResourcePhase::Detach);
  d.sys.fire_timer();  // a poll: still bound
  EXPECT_EQ(d.pipe->phase(), ResourcePhase::Detach);
  d.sys.clock += d.cfg.detach_timeout;
  d.sys.fire_timer();
  EXPECT_EQ(d.pipe->phase(), ResourcePhase::None);
  EXPECT_EQ(d.job->cleanup_state, "failed");
  EXPECT_TRUE(host.files["/vol/disk.img"]) << "never removed under a bound loop device";
  d.sys.let_go_of_loop(0);
  d.retry();
  d.sys.complete_flush(0, 0);
  EXPECT_EQ(d.job->cleanup_state, "done");
  EXPECT_FALSE(host.files["/vol/disk.img"]);
}

TEST(ResourcePipeline, ARestartMidTeardownFinishesItFromTheRecord) {
  Host host;
  host.files["/vol/src.img"] = true;
  auto d = std::make_unique<Daemon>(host, full_spec());
  d->run();
  d->sys.crash_at = "resource-stop";
  Record committed;
  try {
    d->end();
    committed = d->record();
    d->sys.complete_flush(0, 0);
    d->sys.complete_flush(0, 0);
    FAIL() << "no crash";
  } catch (const Crash&) {
  }
  d.reset();
  EXPECT_TRUE(host.servers[2].alive) << "the server outlives the daemon";
  Daemon again(host, full_spec(), &committed);
  int done = 0;
  again.retry(&done);
  again.sys.complete_flush(0, 0);
  again.sys.complete_flush(0, 0);
  EXPECT_EQ(again.acts_since_begin().at(2), "term src") << "found by its recorded pid and start time";
  again.sys.server_exits(2);
  EXPECT_EQ(done, 1);
  EXPECT_EQ(again.job->cleanup_state, "done");
  EXPECT_FALSE(host.files["/vol/out.img"]);
  EXPECT_FALSE(host.devices[3]);
}

TEST(ResourcePipeline, ACrashBetweenADiscardAndItsRecordIsToldAsAlreadyGone) {
  Host host;
  auto spec = spec_of({volume(ResourceKind::File, "out", 4096, core::OnStop::Discard)});
  auto d = std::make_unique<Daemon>(host, spec);
  d->run();
  d->end();
  const Record committed = d->record();
  d->sys.crash_at = "resource-discarded";
  EXPECT_THROW(d->sys.complete_flush(0, 0), Crash);
  d.reset();
  EXPECT_FALSE(host.files["/vol/out.img"]);
  Daemon again(host, spec, &committed);
  again.retry();
  EXPECT_EQ(again.job->cleanup_state, "done");
  EXPECT_EQ(again.job->resources[0].state, ResourceState::Discarded);
  EXPECT_TRUE(again.driver.saw("resource-discarded", "already gone"));
}

TEST(ResourcePipeline, ADeleteThatSaysKeepWinsOverTheDiscardPolicy) {
  Host host;
  Daemon d(host, spec_of({volume(ResourceKind::File, "out", 4096, core::OnStop::Discard)}));
  d.run();
  d.job->delete_requested = d.job->delete_keep_data = true;
  d.end();
  d.sys.complete_flush(0, 0);
  EXPECT_EQ(d.job->resources[0].state, ResourceState::Kept);
  EXPECT_TRUE(host.files["/vol/out.img"]);
  EXPECT_TRUE(d.driver.saw("resource-kept", "the delete asked to keep data"));
}
