#include "store/store.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace repvisor::store {

using nlohmann::json;

namespace {

// Forward-only migrations: kMigrations[i] takes the schema from version i to i + 1.
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE jobs (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL DEFAULT '',
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  sub_state TEXT NOT NULL,
  main_pid INTEGER NOT NULL DEFAULT 0,
  main_start_time INTEGER NOT NULL DEFAULT 0,
  created_usec INTEGER NOT NULL,
  started_usec INTEGER NOT NULL DEFAULT 0,
  stop_requested_usec INTEGER NOT NULL DEFAULT 0,
  finished_usec INTEGER NOT NULL DEFAULT 0,
  cancelled_usec INTEGER NOT NULL DEFAULT 0,
  stop_requested INTEGER NOT NULL DEFAULT 0,
  stop_mode TEXT NOT NULL DEFAULT '',
  stop_timeout_usec INTEGER NOT NULL DEFAULT 0,
  cancel_reason TEXT NOT NULL DEFAULT '',
  cancel_notes TEXT NOT NULL DEFAULT '',
  requested_by_uid INTEGER NOT NULL DEFAULT 0,
  exit_code INTEGER NOT NULL DEFAULT -1,
  exit_signal INTEGER NOT NULL DEFAULT 0,
  exit_unknown INTEGER NOT NULL DEFAULT 0,
  start_error INTEGER NOT NULL DEFAULT 0,
  status_text TEXT NOT NULL DEFAULT '',
  phase TEXT NOT NULL DEFAULT '',
  progress REAL NOT NULL DEFAULT -1,
  delete_requested INTEGER NOT NULL DEFAULT 0,
  delete_keep_data INTEGER NOT NULL DEFAULT 0,
  delete_uid INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  ts_usec INTEGER NOT NULL,
  job_id TEXT NOT NULL,
  type TEXT NOT NULL,
  message TEXT NOT NULL,
  details TEXT NOT NULL
);
CREATE INDEX events_by_job ON events(job_id, seq);
CREATE INDEX events_by_time ON events(ts_usec);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
)sql",
    // 2: what a replication worker reports (notify BYTES_DONE/BYTES_TOTAL/CHECKPOINT).
    R"sql(
ALTER TABLE jobs ADD COLUMN bytes_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN bytes_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN checkpoint TEXT NOT NULL DEFAULT '';
)sql",
    // 3: resources (NBD servers, volumes) and their cleanup; resume.
    R"sql(
ALTER TABLE jobs ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN cleanup_state TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN cleanup_error TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN fail_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN runs INTEGER NOT NULL DEFAULT 1;
)sql",
    // 4: events without AUTOINCREMENT. The trail is append-only (no row is ever deleted), so
    // the next seq is max + 1 and never reused either way; AUTOINCREMENT only added a write of
    // sqlite_sequence to every commit (1 page of 5 in a stop's). The table is rebuilt with its
    // rows and seq numbers; dropping it fires no trigger.
    R"sql(
CREATE TABLE events_v4 (
  seq INTEGER PRIMARY KEY,
  ts_usec INTEGER NOT NULL,
  job_id TEXT NOT NULL,
  type TEXT NOT NULL,
  message TEXT NOT NULL,
  details TEXT NOT NULL
);
INSERT INTO events_v4 (seq, ts_usec, job_id, type, message, details)
  SELECT seq, ts_usec, job_id, type, message, details FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_v4 RENAME TO events;
CREATE INDEX events_by_job ON events(job_id, seq);
CREATE INDEX events_by_time ON events(ts_usec);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
)sql",
    // 5: what the bound on the job's log cut from it.
    R"sql(
ALTER TABLE jobs ADD COLUMN log_bytes_cut INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN log_keep TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN log_limit INTEGER NOT NULL DEFAULT 0;
)sql",
    // 6: the sticky result, and the EXIT_STATUS= a job reported (so a restart keeps it). The
    // results of the jobs already recorded are read from what was recorded of their end.
    R"sql(
ALTER TABLE jobs ADD COLUMN result TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN reported_exit_status INTEGER;
UPDATE jobs SET result = CASE
  WHEN state = 'completed' THEN 'success'
  WHEN state = 'cancelled' OR stop_requested != 0 THEN 'cancelled'
  WHEN state != 'failed' THEN ''
  WHEN start_error != 0 THEN 'start-failed'
  WHEN fail_reason LIKE 'setting up resources failed:%' THEN 'resources'
  WHEN fail_reason LIKE 'interrupted:%' THEN 'daemon-restart'
  WHEN exit_unknown != 0 AND fail_reason = 'exit status unknown' THEN 'unknown'
  WHEN fail_reason LIKE 'exited with status %' THEN 'exit-code'
  WHEN fail_reason LIKE 'killed by %' OR (fail_reason = '' AND exit_signal != 0) THEN 'signal'
  WHEN fail_reason = '' THEN 'exit-code'
  ELSE 'resources' END;
)sql",
};
constexpr int kKnownVersion = static_cast<int>(std::size(kMigrations));
static_assert(kKnownVersion == kSchemaVersion);

}  // namespace

json spec_to_json(const core::JobSpec& s) {
  json j{{"argv", s.argv},
         {"name", s.name},
         {"env", s.env},
         {"working_directory", s.working_directory},
         {"stop_signal", s.stop_signal},
         {"stop_timeout_usec", s.stop_timeout},
         {"kill_mode", core::to_string(s.kill_mode)},
         {"progress", core::to_string(s.progress)},
         {"resources", [&] {
            json a = json::array();
            for (const auto& r : s.resources) {
              json o{{"kind", core::to_string(r.kind)},
                     {"name", r.name},
                     {"path", r.path},
                     {"server", core::to_string(r.server)},
                     {"format", core::to_string(r.format)},
                     {"on_stop", core::to_string(r.on_stop)}};
              if (r.size) o["size"] = *r.size;
              if (!r.export_of.empty()) o["export"] = r.export_of;
              a.push_back(std::move(o));
            }
            return a;
          }()}};
  if (!s.shown_argv.empty()) j["shown_argv"] = s.shown_argv;
  if (s.tasks_max) j["tasks_max"] = s.tasks_max;
  return j;
}

json audit_spec_json(const core::JobSpec& spec, const std::vector<std::string>& env_values) {
  json j = spec_to_json(spec);
  j.erase("shown_argv");
  j["argv"] = spec.argv_shown();
  json env = json::object();
  for (const auto& [k, v] : spec.env)
    env[k] = std::find(env_values.begin(), env_values.end(), k) != env_values.end() ? json(v) : json(nullptr);
  j["env"] = std::move(env);
  return j;
}

core::JobSpec spec_from_json(const json& j) {
  core::JobSpec s;
  s.argv = j.at("argv").get<std::vector<std::string>>();
  s.name = j.value("name", "");
  s.env = j.value("env", std::map<std::string, std::string>{});
  s.working_directory = j.value("working_directory", "/");
  s.stop_signal = j.value("stop_signal", SIGTERM);
  s.stop_timeout = j.value("stop_timeout_usec", 30 * USEC_PER_SEC);
  core::kill_mode_from_string(j.value("kill_mode", "mixed"), &s.kill_mode);
  core::progress_source_from_string(j.value("progress", "notify"), &s.progress);
  s.shown_argv = j.value("shown_argv", std::vector<std::string>{});
  s.tasks_max = j.value("tasks_max", uint64_t{0});
  for (const auto& o : j.value("resources", json::array())) {
    core::ResourceSpec r;
    if (!core::resource_kind_from_string(o.at("kind").get<std::string>(), &r.kind))
      throw std::runtime_error("unknown resource kind " + o.at("kind").dump());
    r.name = o.at("name").get<std::string>();
    r.path = o.value("path", "");
    if (o.contains("size")) r.size = o.at("size").get<uint64_t>();
    core::nbd_server_kind_from_string(o.value("server", "qemu-nbd"), &r.server);
    core::image_format_from_string(o.value("format", "raw"), &r.format);
    core::on_stop_from_string(o.value("on_stop", "keep"), &r.on_stop);
    r.export_of = o.value("export", "");
    s.resources.push_back(std::move(r));
  }
  return s;
}

json resources_to_json(const std::vector<core::Resource>& rs) {
  json a = json::array();
  for (const auto& r : rs)
    a.push_back(json{{"state", core::to_string(r.state)},
                     {"created", r.created},
                     {"endpoint", r.endpoint},
                     {"socket", r.socket},
                     {"device", r.device},
                     {"inode", r.inode},
                     {"dev", r.dev},
                     {"pid", r.pid},
                     {"start_time", r.start_time},
                     {"error", r.error},
                     {"teardown_failed", r.teardown_failed}});
  return a;
}

std::vector<core::Resource> resources_from_json(const json& a) {
  std::vector<core::Resource> out;
  for (const auto& o : a) {
    core::Resource r;
    if (!core::resource_state_from_string(o.at("state").get<std::string>(), &r.state))
      throw std::runtime_error("unknown resource state " + o.at("state").dump());
    r.created = o.value("created", false);
    r.endpoint = o.value("endpoint", "");
    r.socket = o.value("socket", "");
    r.device = o.value("device", "");
    r.inode = o.value("inode", uint64_t{0});
    r.dev = o.value("dev", uint64_t{0});
    r.pid = o.value("pid", 0);
    r.start_time = o.value("start_time", uint64_t{0});
    r.error = o.value("error", "");
    r.teardown_failed = o.value("teardown_failed", false);
    out.push_back(std::move(r));
  }
  return out;
}

namespace {
// The database holds job environments (which may carry secrets): root-only from its creation.
const std::string& created_private(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd >= 0) ::close(fd);
  return path;
}
}  // namespace

Store::Store(const std::string& path, int schema) : db_(created_private(path)) {
  try {
    // WAL: readers never block the writer. synchronous=NORMAL: a commit is not synced on its
    // own; sync() syncs the WAL once for every commit since the last, before anything is told
    // (one fsync per loop iteration, not one per commit). A checkpoint still syncs the WAL first.
    db_.exec(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA "
        "journal_size_limit=8388608;");
    migrate(schema);
  } catch (const StoreError& e) {
    throw StoreError(std::string(e.what()) + " (is the file a repvisor database, and writable?)");
  }
  if (schema != kSchemaVersion) return;  // an old schema, for migration tests: read-only use
  checkpointer_ = std::make_unique<Checkpointer>(db_.get(), db_.path());
  db_.retry_when_busy();
  insert_ = std::make_unique<Stmt>(db_, R"sql(
INSERT INTO jobs (id, name, spec, state, sub_state, main_pid, main_start_time, created_usec, started_usec,
  stop_requested_usec, finished_usec, cancelled_usec, stop_requested, stop_mode, stop_timeout_usec, cancel_reason,
  cancel_notes, requested_by_uid, exit_code, exit_signal, exit_unknown, start_error, status_text, phase, progress,
  delete_requested, delete_keep_data, delete_uid, bytes_done, bytes_total, checkpoint, resources, cleanup_state,
  cleanup_error, fail_reason, runs, log_bytes_cut, log_keep, log_limit, result, reported_exit_status)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24,
  ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39, ?40, ?41))sql");
  // The same numbering; ?2, ?3 and ?8 (name, spec, created) are never updated.
  update_ = std::make_unique<Stmt>(db_, R"sql(
UPDATE jobs SET state=?4, sub_state=?5, main_pid=?6, main_start_time=?7, started_usec=?9,
  stop_requested_usec=?10, finished_usec=?11, cancelled_usec=?12, stop_requested=?13, stop_mode=?14,
  stop_timeout_usec=?15, cancel_reason=?16, cancel_notes=?17, requested_by_uid=?18, exit_code=?19, exit_signal=?20,
  exit_unknown=?21, start_error=?22, status_text=?23, phase=?24, progress=?25, delete_requested=?26,
  delete_keep_data=?27, delete_uid=?28, bytes_done=?29, bytes_total=?30, checkpoint=?31, resources=?32,
  cleanup_state=?33, cleanup_error=?34, fail_reason=?35, runs=?36, log_bytes_cut=?37, log_keep=?38, log_limit=?39,
  result=?40, reported_exit_status=?41
WHERE id=?1)sql");
  delete_ = std::make_unique<Stmt>(db_, "DELETE FROM jobs WHERE id = ?1");
  insert_event_ = std::make_unique<Stmt>(
      db_, "INSERT INTO events (ts_usec, job_id, type, message, details) VALUES (?1, ?2, ?3, ?4, ?5)");
  begin_ = std::make_unique<Stmt>(db_, "BEGIN IMMEDIATE");
  commit_ = std::make_unique<Stmt>(db_, "COMMIT");
}

Store::~Store() = default;

void Store::migrate(int up_to) {
  Stmt v(db_, "PRAGMA user_version");
  v.step();
  const int version = static_cast<int>(v.i64(0));
  v.reset();
  if (version > kKnownVersion)
    throw StoreError(
        fmt::format("{}: database schema version {} is newer than this repvisord knows ({}); "
                    "run a newer repvisord or restore a backup",
                    db_.path(), version, kKnownVersion));
  for (int from = version; from < std::min(up_to, kKnownVersion); ++from) {
    db_.exec("BEGIN IMMEDIATE");
    try {
      db_.exec(kMigrations[from]);
      db_.exec(fmt::format("PRAGMA user_version = {}", from + 1));
      db_.exec("COMMIT");
    } catch (...) {
      db_.exec("ROLLBACK");
      throw;
    }
  }
}

void Store::save(const core::Job& job) {
  removed_.erase(job.id());
  saved_[job.id()] = &job;
}

void Store::remove(const std::string& id) {
  saved_.erase(id);
  removed_.insert(id);
}

void Store::append(Event e) { events_.push_back(std::move(e)); }

void Store::discard(const std::string& job_id) {
  saved_.erase(job_id);
  std::erase_if(events_, [&](const Event& e) { return e.job_id == job_id; });
}

// What can change of a job: every parameter of insert_ and update_ but ?2, ?3 and ?8.
void Store::bind_state(Stmt& s, const core::Job& j) {
  s.bind(1, j.id())
      .bind(4, core::to_string(j.state()))
      .bind(5, core::to_string(j.sub_state()))
      .bind(6, j.main_pid)
      .bind(7, j.main_start_time)
      .bind(9, j.started_usec)
      .bind(10, j.stop_requested_usec)
      .bind(11, j.finished_usec)
      .bind(12, j.cancelled_usec)
      .bind(13, static_cast<int>(j.stop_requested))
      .bind(14, core::to_string(j.stop_mode))
      .bind(15, j.stop_timeout_used)
      .bind(16, j.cancel_reason)
      .bind(17, j.cancel_notes)
      .bind(18, j.requested_by_uid)
      .bind(19, j.exit_code)
      .bind(20, j.exit_signal)
      .bind(21, static_cast<int>(j.exit_unknown))
      .bind(22, j.start_error)
      .bind(23, j.status_text)
      .bind(24, j.phase)
      .bind(25, j.progress)
      .bind(26, static_cast<int>(j.delete_requested))
      .bind(27, static_cast<int>(j.delete_keep_data))
      .bind(28, j.delete_uid)
      .bind(29, j.bytes_done)
      .bind(30, j.bytes_total)
      .bind(31, j.checkpoint)
      .bind(32, resources_to_json(j.resources).dump())
      .bind(33, j.cleanup_state)
      .bind(34, j.cleanup_error)
      .bind(35, j.fail_reason)
      .bind(36, j.runs)
      .bind(37, j.log_bytes_cut)
      .bind(38, j.log_keep)
      .bind(39, j.log_limit)
      .bind(40, core::to_string(j.result()));
  if (j.reported_exit_status)
    s.bind(41, *j.reported_exit_status);
  else
    s.bind_null(41);
}

void Store::write_job(const core::Job& j) {
  // Most saves are of a job already in the table: an UPDATE of what can change, without
  // serializing the spec again (it never changes). An INSERT only when no row was there.
  bind_state(*update_, j);
  update_->run();
  if (sqlite3_changes(db_.get()) > 0) return;
  bind_state(*insert_, j);
  insert_->bind(2, j.spec().name).bind(3, spec_to_json(j.spec()).dump()).bind(8, j.created_usec).run();
}

void Store::commit() {
  if (!dirty()) return;
  try {
    begin_->run();
    for (const auto& [id, job] : saved_) write_job(*job);
    for (const auto& id : removed_) delete_->bind(1, id).run();
    for (const auto& e : events_)
      insert_event_->bind(1, e.ts_usec)
          .bind(2, e.job_id)
          .bind(3, e.type)
          .bind(4, e.message)
          .bind(5, e.details.dump())
          .run();
    commit_->run();
    unsynced_ = true;
  } catch (const StoreError&) {
    if (!sqlite3_get_autocommit(db_.get())) sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
  saved_.clear();
  removed_.clear();
  events_.clear();
}

void Store::sync() {
  if (!unsynced_) return;
  // The WAL as SQLite holds it open: syncing it is what synchronous=FULL does at each commit.
  sqlite3_file* wal = nullptr;
  int rc = sqlite3_file_control(db_.get(), "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal);
  if (rc == SQLITE_OK && wal && wal->pMethods) rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
  if (rc != SQLITE_OK)
    throw StoreError("cannot sync " + db_.path() + "-wal: " + sqlite3_errstr(rc) + " (" + strerror(errno) + ")");
  unsynced_ = false;
}

std::vector<std::unique_ptr<core::Job>> Store::load(core::JobDriver& driver, usec_t final_kill_timeout) {
  std::vector<std::unique_ptr<core::Job>> out;
  Stmt s(db_, R"sql(
SELECT id, spec, state, sub_state, main_pid, main_start_time, created_usec, started_usec, stop_requested_usec,
  finished_usec, cancelled_usec, stop_requested, stop_mode, stop_timeout_usec, cancel_reason, cancel_notes,
  requested_by_uid, exit_code, exit_signal, exit_unknown, start_error, status_text, phase, progress,
  delete_requested, delete_keep_data, delete_uid, bytes_done, bytes_total, checkpoint, resources, cleanup_state,
  cleanup_error, fail_reason, runs, log_bytes_cut, log_keep, log_limit, result, reported_exit_status
FROM jobs ORDER BY created_usec)sql");
  while (s.step()) {
    const std::string id = s.text(0);
    core::JobSpec spec;
    try {
      spec = spec_from_json(json::parse(s.text(1)));
    } catch (const std::exception& e) {
      throw StoreError(fmt::format("{}: job {}: unreadable spec: {}", db_.path(), id, e.what()));
    }
    auto job = std::make_unique<core::Job>(driver, id, std::move(spec), final_kill_timeout);
    core::JobState state;
    core::SubState sub;
    if (!core::job_state_from_string(s.text(2), &state) || !core::sub_state_from_string(s.text(3), &sub))
      throw StoreError(fmt::format("{}: job {}: unknown state {}/{}", db_.path(), id, s.text(2), s.text(3)));
    job->restore(state, sub);
    job->main_pid = static_cast<pid_t>(s.i64(4));
    job->main_start_time = static_cast<uint64_t>(s.i64(5));
    job->created_usec = static_cast<usec_t>(s.i64(6));
    job->started_usec = static_cast<usec_t>(s.i64(7));
    job->stop_requested_usec = static_cast<usec_t>(s.i64(8));
    job->finished_usec = static_cast<usec_t>(s.i64(9));
    job->cancelled_usec = static_cast<usec_t>(s.i64(10));
    job->stop_requested = s.i64(11) != 0;
    job->stop_mode = s.text(12) == "force"      ? core::StopMode::Force
                     : s.text(12) == "graceful" ? core::StopMode::Graceful
                                                : core::StopMode::None;
    job->stop_timeout_used = static_cast<usec_t>(s.i64(13));
    job->cancel_reason = s.text(14);
    job->cancel_notes = s.text(15);
    job->requested_by_uid = static_cast<uint32_t>(s.i64(16));
    job->exit_code = static_cast<int>(s.i64(17));
    job->exit_signal = static_cast<int>(s.i64(18));
    job->exit_unknown = s.i64(19) != 0;
    job->start_error = static_cast<int>(s.i64(20));
    job->status_text = s.text(21);
    job->phase = s.text(22);
    job->progress = s.f64(23);
    job->delete_requested = s.i64(24) != 0;
    job->delete_keep_data = s.i64(25) != 0;
    job->delete_uid = static_cast<uint32_t>(s.i64(26));
    job->bytes_done = static_cast<uint64_t>(s.i64(27));
    job->bytes_total = static_cast<uint64_t>(s.i64(28));
    job->checkpoint = s.text(29);
    try {
      job->resources = resources_from_json(json::parse(s.text(30)));
    } catch (const std::exception& e) {
      throw StoreError(fmt::format("{}: job {}: unreadable resources: {}", db_.path(), id, e.what()));
    }
    if (job->resources.size() != job->spec().resources.size())
      throw StoreError(fmt::format("{}: job {}: {} resource records for {} declared resources", db_.path(), id,
                                   job->resources.size(), job->spec().resources.size()));
    job->cleanup_state = s.text(31);
    job->cleanup_error = s.text(32);
    job->fail_reason = s.text(33);
    job->runs = static_cast<uint32_t>(s.i64(34));
    job->log_bytes_cut = static_cast<uint64_t>(s.i64(35));
    job->log_keep = s.text(36);
    job->log_limit = static_cast<uint64_t>(s.i64(37));
    core::JobResult result = core::JobResult::None;
    if (!core::job_result_from_string(s.text(38), &result) && !s.text(38).empty())
      throw StoreError(fmt::format("{}: job {}: unknown result '{}'", db_.path(), id, s.text(38)));
    job->restore_result(result);
    if (!s.null(39)) job->reported_exit_status = static_cast<int>(s.i64(39));
    out.push_back(std::move(job));
  }
  return out;
}

std::vector<Event> Store::events(const EventFilter& f) {
  // SQLite's integers are signed: bound as one, a later time would wrap to a time long past.
  if (f.since_usec > static_cast<uint64_t>(INT64_MAX)) return {};
  // The newest `limit` events that match, oldest first.
  Stmt s(db_, R"sql(
SELECT ts_usec, job_id, type, message, details FROM (
  SELECT seq, ts_usec, job_id, type, message, details FROM events
  WHERE (?1 = '' OR job_id = ?1) AND ts_usec >= ?2 ORDER BY seq DESC LIMIT ?3)
ORDER BY seq)sql");
  s.bind(1, f.job).bind(2, f.since_usec).bind(3, static_cast<int64_t>(std::min<uint64_t>(f.limit, INT64_MAX)));
  std::vector<Event> out;
  while (s.step()) {
    Event e;
    e.ts_usec = static_cast<usec_t>(s.i64(0));
    e.job_id = s.text(1);
    e.type = s.text(2);
    e.message = s.text(3);
    e.details = json::parse(s.text(4), nullptr, false);
    if (e.details.is_discarded()) e.details = json::object();
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace repvisor::store
