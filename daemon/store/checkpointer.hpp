// Copies the WAL back into the database from a thread of its own, on a connection of its own.
// A checkpoint reads and writes up to a thousand pages and syncs the database file: tens of
// milliseconds on a busy disk (105 ms seen), which SQLite's automatic checkpoint would spend
// inside a commit, on the loop. PASSIVE: it never waits for the writer, and the writer never
// waits for it (WAL).
#pragma once
#include <sqlite3.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace repvisor::store {

class Checkpointer {
 public:
  // Takes over `db`'s checkpoints: from now on its commits only ask for one, past
  // kPages pages of WAL. `db` must outlive this.
  Checkpointer(sqlite3* db, std::string path);
  ~Checkpointer();  // lets a running checkpoint finish, then stops the thread
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // SQLite's own threshold for its automatic checkpoint (wal_autocheckpoint).
  static constexpr int kPages = 1000;

  // Checkpoints tried since start; waits up to `timeout` until none is asked for or running, so
  // that the database file stays as it is while nothing is committed (for tests).
  unsigned done() const;
  bool wait_idle(std::chrono::milliseconds timeout) const;
  // Asks for one now (the WAL hook asks when the WAL is long enough).
  void request();

 private:
  void run();
  void committed(int pages);  // the WAL hook, on the committing thread

  sqlite3* db_;
  std::string path_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  mutable std::condition_variable finished_;
  bool wanted_ = false, running_ = false, stopping_ = false;
  unsigned done_ = 0;
  std::thread thread_;
};

}  // namespace repvisor::store
