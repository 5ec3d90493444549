// The store on a real SQLite file: migrations, round trips, the append-only trail.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

#include "core/job.hpp"
#include "store/sqlite.hpp"
#include "store/store.hpp"
#include "temp_dir.hpp"

using namespace repvisor;
namespace fs = std::filesystem;

namespace {

class NullDriver : public core::JobDriver {
 public:
  int spawn(core::Job&) override { return -ENOSYS; }
  void begin_setup(core::Job&) override {}
  void abort_setup(core::Job&) override {}
  int signal_main(core::Job&, int) override { return 0; }
  int signal_tree(core::Job&, int) override { return 0; }
  int kill_tree(core::Job&) override { return 0; }
  void arm_timer(core::Job&, usec_t) override {}
  void disarm_timer(core::Job&) override {}
  std::vector<pid_t> tree_pids(core::Job&) override { return {}; }
  void begin_cleanup(core::Job& j) override { j.on_cleanup_done(true, ""); }
  void changed(core::Job&, uint32_t) override {}
  void finished(core::Job&) override {}
  void event(core::Job&, std::string_view, std::string_view) override {}
  usec_t now() override { return 1'000'000; }
};

struct StoreFile : ::testing::Test {
  repvisor::test::TempDir tmp{"store"};
  const std::string& dir = tmp.path();
  std::string path = dir + "/repvisor.db";
  NullDriver driver;

  std::unique_ptr<core::Job> job(const std::string& id) {
    core::JobSpec spec;
    spec.argv = {"repvisor-copy", "nbd+unix:///?socket=/x", "/y"};
    spec.name = "disk-" + id.substr(0, 4);
    spec.env = {{"A", "b"}};
    return std::make_unique<core::Job>(driver, id, spec, 10 * USEC_PER_SEC);
  }
};

}  // namespace

TEST_F(StoreFile, MigratesAnOlderSchemaKeepingItsJobs) {
  {
    store::Store v1(path, 1);
    EXPECT_FALSE(v1.dirty());
  }
  {
    // Write a version-1 row by hand, as a version-1 daemon would have.
    store::Db db(path);
    db.exec(
        "INSERT INTO jobs (id, name, spec, state, sub_state, created_usec) VALUES "
        "('0123456789abcdef0123456789abcdef', 'old', "
        "'{\"argv\":[\"true\"],\"env\":{},\"kill_mode\":\"mixed\",\"name\":\"old\",\"stop_signal\":15,"
        "\"stop_timeout_usec\":5000000,\"working_directory\":\"/\"}', 'completed', 'dead', 42)");
  }
  store::Store current(path);
  auto jobs = current.load(driver, 10 * USEC_PER_SEC);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0]->spec().name, "old");
  EXPECT_EQ(jobs[0]->state(), core::JobState::Completed);
  EXPECT_EQ(jobs[0]->created_usec, 42u);
  EXPECT_EQ(jobs[0]->checkpoint, "");
  EXPECT_EQ(jobs[0]->bytes_total, 0u);
}

TEST_F(StoreFile, EventsKeepTheirSeqAcrossTheMigrationThatDropsAutoincrement) {
  const std::string id = "fedcba9876543210fedcba9876543210";
  {
    store::Store v3(path, 3);
    store::Db db(path);
    db.exec("INSERT INTO events (ts_usec, job_id, type, message, details) VALUES (1, '" + id +
            "', 'submitted', 'a', '{}'), (2, '" + id + "', 'started', 'b', '{}'), (3, '" + id +
            "', 'exited', 'c', '{}')");
  }
  store::Store s(path);
  s.append({4, id, "cleanup", "d", nlohmann::json::object()});
  s.commit();
  const auto events = s.events({.job = id});
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].message, "a");
  EXPECT_EQ(events[3].type, "cleanup");
  store::Db raw(path);
  store::Stmt seqs(raw, "SELECT group_concat(seq, ',') FROM (SELECT seq FROM events ORDER BY seq)");
  ASSERT_TRUE(seqs.step());
  EXPECT_EQ(seqs.text(0), "1,2,3,4") << "the old rows kept theirs, the new one follows";
  seqs.reset();
  store::Stmt q(raw,
                "SELECT (SELECT count(*) FROM sqlite_master WHERE sql LIKE '%AUTOINCREMENT%'), "
                "(SELECT count(*) FROM sqlite_sequence)");
  ASSERT_TRUE(q.step());
  EXPECT_EQ(q.i64(0), 0) << "no table keeps a sequence any more";
  EXPECT_EQ(q.i64(1), 0) << "and none is written at each commit";
  q.reset();
  store::Stmt triggers(raw, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'");
  ASSERT_TRUE(triggers.step());
  EXPECT_EQ(triggers.i64(0), 2);
  triggers.reset();
  EXPECT_THROW(raw.exec("DELETE FROM events"), store::StoreError) << "still append-only";
}

// Jobs recorded before results were kept get the result their recorded end implies.
TEST_F(StoreFile, TheResultsOfJobsRecordedBeforeThemAreReadFromHowTheyEnded) {
  const char* spec =
      "'{\"argv\":[\"true\"],\"env\":{},\"kill_mode\":\"mixed\",\"stop_signal\":15,"
      "\"stop_timeout_usec\":5000000,\"working_directory\":\"/\"}'";
  struct Row {
    const char* id;
    const char* state;
    const char* extra;  // columns = values
    core::JobResult want;
  };
  const Row rows[] = {
      {"00000000000000000000000000000001", "completed", "exit_code = 0", core::JobResult::Success},
      {"00000000000000000000000000000002", "cancelled", "stop_requested = 1", core::JobResult::Cancelled},
      {"00000000000000000000000000000003", "failed", "start_error = 2, fail_reason = 'could not start x'",
       core::JobResult::StartFailed},
      {"00000000000000000000000000000004", "failed", "fail_reason = 'setting up resources failed: no'",
       core::JobResult::Resources},
      {"00000000000000000000000000000005", "failed", "exit_unknown = 1, fail_reason = 'interrupted: gone'",
       core::JobResult::DaemonRestart},
      {"00000000000000000000000000000006", "failed", "exit_unknown = 1, fail_reason = 'exit status unknown'",
       core::JobResult::Unknown},
      {"00000000000000000000000000000007", "failed", "exit_code = 3, fail_reason = 'exited with status 3'",
       core::JobResult::ExitCode},
      {"00000000000000000000000000000008", "failed", "exit_signal = 11, fail_reason = 'killed by SIGSEGV'",
       core::JobResult::Signal},
      {"00000000000000000000000000000009", "failed", "fail_reason = 'nbd-server ''src'' exited'",
       core::JobResult::Resources},
      {"0000000000000000000000000000000a", "running", "exit_code = -1", core::JobResult::None},
  };
  {
    store::Store v5(path, 5);
    store::Db db(path);
    for (const Row& r : rows) {
      db.exec(std::string("INSERT INTO jobs (id, spec, state, sub_state, created_usec) VALUES ('") + r.id + "', " +
              spec + ", '" + r.state + "', '" + (std::string(r.state) == "running" ? "running" : "dead") + "', 1)");
      db.exec(std::string("UPDATE jobs SET ") + r.extra + " WHERE id = '" + r.id + "'");
    }
  }
  store::Store current(path);
  auto jobs = current.load(driver, 10 * USEC_PER_SEC);
  ASSERT_EQ(jobs.size(), std::size(rows));
  for (const Row& r : rows) {
    auto it = std::find_if(jobs.begin(), jobs.end(), [&](const auto& j) { return j->id() == r.id; });
    ASSERT_NE(it, jobs.end());
    EXPECT_EQ((*it)->result(), r.want) << r.id << ": " << core::to_string((*it)->result());
  }
}

TEST_F(StoreFile, TheResultAndAReportedExitStatusAreKept) {
  const std::string id = "fedcba9876543210fedcba9876543211";
  {
    store::Store s(path);
    auto j = job(id);
    j->set_reported_exit_status(7);
    j->start();  // fails to start (NullDriver): start-failed
    ASSERT_EQ(j->result(), core::JobResult::StartFailed);
    s.save(*j);
    s.commit();
  }
  store::Store s(path);
  auto jobs = s.load(driver, 10 * USEC_PER_SEC);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0]->result(), core::JobResult::StartFailed);
  EXPECT_EQ(jobs[0]->reported_exit_status, 7);
}

TEST_F(StoreFile, JobsRoundTripAndEventsAreAppendOnly) {
  const std::string id = "fedcba9876543210fedcba9876543210";
  {
    store::Store s(path);
    auto j = job(id);
    j->checkpoint = "repvisor-copy/1 done=1048576 size=4194304";
    j->bytes_done = 1048576;
    j->cancel_notes = "caf\u00e9";
    s.save(*j);
    s.append({5, id, "submitted", "hello", {{"uid", 0}}});
    s.commit();
  }
  store::Store s(path);
  auto jobs = s.load(driver, 10 * USEC_PER_SEC);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0]->checkpoint, "repvisor-copy/1 done=1048576 size=4194304");
  EXPECT_EQ(jobs[0]->bytes_done, 1048576u);
  EXPECT_EQ(jobs[0]->cancel_notes, "caf\u00e9");
  EXPECT_EQ(jobs[0]->spec().env.at("A"), "b");
  auto events = s.events({.job = id});
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].details["uid"], 0);
  store::Db raw(path);
  EXPECT_THROW(raw.exec("DELETE FROM events"), store::StoreError);
  EXPECT_THROW(raw.exec("UPDATE events SET message = 'x'"), store::StoreError);
}

// SQLite's integers are signed: a since_usec of 2^63 or more bound as one read as a time long
// past, and every event came back.
TEST_F(StoreFile, EventsSinceATimeBeyondAnySignedIntegerAreNone) {
  store::Store s(path);
  s.append({5, "fedcba9876543210fedcba9876543210", "submitted", "hello", nlohmann::json::object()});
  s.commit();
  EXPECT_EQ(s.events({.since_usec = 5}).size(), 1u);
  EXPECT_EQ(s.events({.since_usec = 6}).size(), 0u);
  EXPECT_EQ(s.events({.since_usec = uint64_t{1} << 63}).size(), 0u);
  EXPECT_EQ(s.events({.since_usec = UINT64_MAX}).size(), 0u);
}

TEST_F(StoreFile, CommitsReachTheWalAndOneSyncCoversThemAll) {
  store::Store s(path);
  EXPECT_FALSE(s.unsynced());
  s.sync();  // nothing to sync: no-op
  for (const char* id : {"00000000000000000000000000000001", "00000000000000000000000000000002"}) {
    auto j = job(id);
    s.save(*j);
    s.commit();
    EXPECT_TRUE(s.unsynced());
  }
  // Committed means readable by anyone (in the WAL, in the kernel) before any sync: a daemon
  // killed now loses nothing; sync() is what survives a power loss.
  store::Db other(path);
  store::Stmt count(other, "SELECT COUNT(*) FROM jobs");
  ASSERT_TRUE(count.step());
  EXPECT_EQ(count.i64(0), 2);
  s.sync();
  EXPECT_FALSE(s.unsynced());
  s.commit();  // nothing queued: nothing written, still synced
  EXPECT_FALSE(s.unsynced());
}

TEST_F(StoreFile, CheckpointsRunInTheirOwnThreadOnceTheWalIsLong) {
  store::Store s(path);
  ASSERT_NE(s.checkpointer(), nullptr);
  // Short of the threshold, no checkpoint: what is committed stays in the WAL.
  for (int i = 0; i < 20; ++i) {
    s.append({1, "", "small", "x", nlohmann::json::object()});
    s.commit();
  }
  EXPECT_EQ(s.checkpointer()->done(), 0u);
  // Events of ~6 KiB (two WAL pages or more each) until the WAL passes it.
  const std::string big(6000, 'x');
  for (int i = 0; i < store::Checkpointer::kPages; ++i) {
    s.append({1, "", "big", big, nlohmann::json::object()});
    s.commit();
  }
  // Until no checkpoint runs or is asked for (one may be copying into the file as we read it).
  ASSERT_TRUE(s.checkpointer()->wait_idle(std::chrono::seconds(60)));
  EXPECT_GE(s.checkpointer()->done(), 1u);
  // The database file alone (its WAL ignored) now holds what the checkpoint copied.
  sqlite3* file_only = nullptr;
  ASSERT_EQ(sqlite3_open_v2(("file:" + path + "?immutable=1").c_str(), &file_only,
                            SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, nullptr),
            SQLITE_OK);
  sqlite3_stmt* count = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(file_only, "SELECT COUNT(*) FROM events WHERE type = 'small'", -1, &count, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(file_only);
  ASSERT_EQ(sqlite3_step(count), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(count, 0), 20);
  sqlite3_finalize(count);
  sqlite3_close(file_only);
}

TEST_F(StoreFile, ACommitWaitsForALockAnotherConnectionHoldsBriefly) {
  // As the checkpointer's connection does for moments: a commit that met it failed with
  // "database is locked" (about once in 100,000 back-to-back commits, bench-micro). Here a
  // second connection holds the WAL's write lock for 20 ms: the commit waits, then succeeds.
  store::Store s(path);
  store::Db other(path);
  other.exec("BEGIN IMMEDIATE");
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    other.exec("COMMIT");
  });
  s.append({1, "", "event", "after the lock", nlohmann::json::object()});
  EXPECT_NO_THROW(s.commit());
  release.join();
  EXPECT_EQ(s.events({}).size(), 1u);
}

TEST_F(StoreFile, ACommitFailsNamingTheLockWhenItIsHeldOn) {
  // Held for good (another process): the commit fails after its bounded wait, and says why.
  store::Store s(path);
  store::Db other(path);
  other.exec("BEGIN IMMEDIATE");
  s.append({1, "", "event", "never written", nlohmann::json::object()});
  try {
    s.commit();
    ADD_FAILURE() << "the commit went through a held lock";
  } catch (const store::StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("BEGIN IMMEDIATE: database is locked"), std::string::npos) << e.what();
  }
  other.exec("ROLLBACK");
  s.commit();  // the change stayed queued: written once the lock is gone
  EXPECT_EQ(s.events({}).size(), 1u);
}
