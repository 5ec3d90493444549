// The durable record: jobs (every property, across restarts) and the append-only audit trail,
// in SQLite (WAL) in the state dir. Writes are collected during a loop iteration and committed
// together by commit(); sync() makes what was committed durable, and nothing is told to a
// client before it.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/job.hpp"
#include "store/checkpointer.hpp"
#include "store/sqlite.hpp"

namespace repvisor::store {

inline constexpr int kSchemaVersion = 6;

struct Event {
  usec_t ts_usec = 0;
  std::string job_id, type, message;
  nlohmann::json details = nlohmann::json::object();
};

struct EventFilter {
  std::string job;
  usec_t since_usec = 0;
  uint64_t limit = 1000;
};

class Store {
 public:
  // Opens or creates STATE_DIR/repvisor.db, runs migrations. Throws StoreError with a sentence.
  // `schema` is for tests that need an old schema to migrate from.
  explicit Store(const std::string& path, int schema = kSchemaVersion);
  ~Store();

  // Queued for the next commit.
  void save(const core::Job& job);
  void remove(const std::string& job_id);
  void append(Event e);
  // Forgets everything queued about a job that must leave no trace (an unrecorded submission).
  void discard(const std::string& job_id);
  bool dirty() const { return !saved_.empty() || !removed_.empty() || !events_.empty(); }

  // Writes everything queued in one transaction. On failure nothing is written, the queue is
  // kept for the next try, and the error is thrown. A commit reaches the WAL, that is the
  // kernel: it survives the daemon dying (SIGKILL, crash), not yet the machine losing power.
  void commit();
  // Makes every commit so far durable (one fdatasync of the WAL, which covers them all).
  // Throws StoreError when the system cannot; the commits stay unsynced then.
  void sync();
  bool unsynced() const { return unsynced_; }

  // Reads every job; jobs are built against `driver`.
  std::vector<std::unique_ptr<core::Job>> load(core::JobDriver& driver, usec_t final_kill_timeout);
  std::vector<Event> events(const EventFilter& f);

  const std::string& path() const { return db_.path(); }
  // WAL checkpoints run in their own thread (see Checkpointer); null for an old schema.
  Checkpointer* checkpointer() const { return checkpointer_.get(); }

 private:
  void migrate(int up_to);
  static void bind_state(Stmt& s, const core::Job& j);
  void write_job(const core::Job& job);

  Db db_;
  std::unique_ptr<Checkpointer> checkpointer_;     // after db_: stopped before it closes
  std::map<std::string, const core::Job*> saved_;  // id -> job, written at commit
  std::unordered_set<std::string> removed_;
  std::vector<Event> events_;
  std::unique_ptr<Stmt> insert_, update_, delete_, insert_event_;
  std::unique_ptr<Stmt> begin_, commit_;  // prepared once: parsing them was in every commit's profile
  bool unsynced_ = false;
};

// The spec as JSON, whole: for the jobs table, which is root's alone and goes with the job.
nlohmann::json spec_to_json(const core::JobSpec& spec);
// The spec as the audit trail keeps it for good: argv as shown (a template's secret parameters
// as placeholders), and of the environment the names, with values only for the variables named
// in env_values ([audit] env_values); every other value is null.
nlohmann::json audit_spec_json(const core::JobSpec& spec, const std::vector<std::string>& env_values);
core::JobSpec spec_from_json(const nlohmann::json& j);
nlohmann::json resources_to_json(const std::vector<core::Resource>& resources);
std::vector<core::Resource> resources_from_json(const nlohmann::json& a);

}  // namespace repvisor::store
