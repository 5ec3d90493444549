#include "store/sqlite.hpp"

#include <fmt/format.h>

#include <chrono>
#include <thread>

namespace repvisor::store {

Db::Db(const std::string& path) : path_(path) {
  int rc =
      sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw StoreError(fmt::format("{}: cannot open database: {}", path, msg));
  }
  sqlite3_extended_result_codes(db_, 1);
  // A busy database means another process has it: fail, do not wait (the state-dir lock
  // already keeps a second daemon out). The store's own connection waits a little for its
  // checkpointer (retry_when_busy).
  sqlite3_busy_timeout(db_, 0);
}

Db::~Db() { sqlite3_close_v2(db_); }

void Db::retry_when_busy() {
  // Our own second connection (the checkpointer's) holds WAL locks for microseconds, and a
  // commit that meets one must wait, not fail. SQLite's busy timeout would sleep a whole
  // millisecond first; this retries after 20 µs, then each millisecond, for at most ~1 s (a
  // lock held longer is someone else's, as before: the commit fails, naming it).
  sqlite3_busy_handler(
      db_,
      [](void*, int tries) {
        if (tries >= 1050) return 0;
        std::this_thread::sleep_for(tries < 50 ? std::chrono::microseconds(20) : std::chrono::microseconds(1000));
        return 1;
      },
      nullptr);
}

void Db::fail(const std::string& what, int rc) const {
  throw StoreError(fmt::format("{}: {}: {} ({})", path_, what, sqlite3_errmsg(db_), sqlite3_errstr(rc)));
}

void Db::exec(std::string_view sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw StoreError(fmt::format("{}: {}: {}", path_, sql.substr(0, sql.find_first_of(";\n")), msg));
  }
}

Stmt::Stmt(Db& db, std::string_view sql) : db_(db) {
  int rc =
      sqlite3_prepare_v3(db.get(), sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &s_, nullptr);
  if (rc != SQLITE_OK) db.fail("preparing statement", rc);
}

Stmt::~Stmt() { sqlite3_finalize(s_); }

Stmt& Stmt::bind(int i, int64_t v) {
  if (int rc = sqlite3_bind_int64(s_, i, v); rc != SQLITE_OK) db_.fail("bind", rc);
  return *this;
}
Stmt& Stmt::bind(int i, double v) {
  if (int rc = sqlite3_bind_double(s_, i, v); rc != SQLITE_OK) db_.fail("bind", rc);
  return *this;
}
Stmt& Stmt::bind(int i, std::string_view v) {
  if (int rc = sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT); rc != SQLITE_OK)
    db_.fail("bind", rc);
  return *this;
}
Stmt& Stmt::bind_null(int i) {
  if (int rc = sqlite3_bind_null(s_, i); rc != SQLITE_OK) db_.fail("bind", rc);
  return *this;
}

bool Stmt::step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite3_reset(s_);
  // Named by its first line, as Db::exec names its statements ("BEGIN IMMEDIATE: database is locked").
  const std::string_view sql = sqlite3_sql(s_);
  db_.fail(std::string(sql.substr(0, sql.find('\n'))), rc);
}

void Stmt::run() {
  while (step()) {
  }
  reset();
}

void Stmt::reset() {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}

std::string Stmt::text(int col) const {
  const auto* p = sqlite3_column_text(s_, col);
  return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(s_, col))) : "";
}

}  // namespace repvisor::store
