#include "store/checkpointer.hpp"

#include <memory>

#include "store/sqlite.hpp"
#include "util/log.hpp"
#include "util/thread.hpp"

namespace repvisor::store {

Checkpointer::Checkpointer(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {
  thread_ = thread_without_signals([this] { run(); });
  // Replaces the automatic checkpoint (sqlite3_wal_autocheckpoint is itself a WAL hook).
  sqlite3_wal_hook(
      db_,
      [](void* self, sqlite3*, const char*, int pages) {
        static_cast<Checkpointer*>(self)->committed(pages);
        return SQLITE_OK;
      },
      this);
}

Checkpointer::~Checkpointer() {
  sqlite3_wal_hook(db_, nullptr, nullptr);
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void Checkpointer::committed(int pages) {
  // The writer restarts the WAL at its first commit after a checkpoint has copied all of it.
  // While commits follow each other faster than checkpoints, the WAL grows instead, and
  // checkpoints run back to back, each copying only what is new; once commits pause, the next
  // one asks for the rest to be copied, and the one after restarts the WAL.
  if (pages >= kPages) request();
}

void Checkpointer::request() {
  {
    std::lock_guard lock(mutex_);
    wanted_ = true;
  }
  wake_.notify_one();
}

unsigned Checkpointer::done() const {
  std::lock_guard lock(mutex_);
  return done_;
}

bool Checkpointer::wait_idle(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return finished_.wait_for(lock, timeout, [&] { return !wanted_ && !running_; });
}

void Checkpointer::run() {
  std::unique_ptr<Db> db;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return wanted_ || stopping_; });
      if (stopping_) return;
      wanted_ = false;
      running_ = true;
    }
    int log_pages = 0, copied = 0, rc = SQLITE_OK;
    try {
      if (!db) {
        // Opened here: a connection is used by one thread. Until it has read the database it
        // does not know it is in WAL mode, and a checkpoint would do nothing.
        db = std::make_unique<Db>(path_);
        db->exec("PRAGMA journal_mode=WAL");
      }
      rc = sqlite3_wal_checkpoint_v2(db->get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log_pages, &copied);
    } catch (const StoreError& e) {
      log::err("checkpoint: {}", e.what());  // asked again by the next long WAL
      db.reset();
      rc = SQLITE_OK;  // said already
    }
    // BUSY: another checkpoint ran; the next commit past the threshold asks again.
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
      log::err("checkpoint of {}: {} ({} of {} WAL pages copied)", path_, sqlite3_errstr(rc), copied, log_pages);
    {
      std::lock_guard lock(mutex_);
      ++done_;
      running_ = false;
    }
    finished_.notify_all();
  }
}

}  // namespace repvisor::store
