// Bounds the jobs' log files from a thread of its own, never the loop's.
//
// A job's stdout and stderr are its log file, which it writes directly (O_APPEND): no pipe
// through the daemon, so a job outlives a daemon crash or re-exec without a SIGPIPE, and the
// daemon copies none of its bytes. This thread is woken by inotify (IN_MODIFY) on the running
// jobs' logs and looks at a log at most every kLookEvery: a look is an fstat, and when the file
// is over its limit one cut (sys/log_cut.hpp). Between two looks a job can write past the limit
// its write rate × (kLookEvery + the cut's own time + this thread's wait for a core): the slack,
// docs/design.md. inotify merges a file's repeated events while they are unread, and the
// thread does not read them while a log waits for its next look, so a flood costs it ~100
// wake-ups a second, not one per write.
//
// The bytes cut per job reach the loop through a uv_async, at most every kReportEvery per job
// while it runs (the property's signals), and at once when its final look is done.
//
// max_total: when all logs together exceed it, finished jobs' logs are cut first (the oldest
// first), then the largest running ones, each no lower than kMinLogSize (config/logs.hpp).
#pragma once
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/logs.hpp"
#include "util/fd.hpp"
#include "util/time.hpp"
#include "util/uv.hpp"

namespace repvisor {

struct LogCutReport {
  std::string id;
  bool cut_changed = false;  // the three below are set: the log was cut
  uint64_t cut = 0;          // bytes cut from the log in all
  config::LogKeep keep{};    // what the cuts kept (head after a fall-back)
  uint64_t limit = 0;        // the bound it was cut to
  bool final = false;        // the job's processes are gone: nothing more will be cut but for the total
  // The bytes the job has written to its log in all (cut ones too), when a look found it grown
  // (or the first look after it was tracked): at most every kReportEvery, as the cuts.
  std::optional<uint64_t> written;
};

// What the cuts made of a log file, for a reader that maps the file's offsets to the bytes the
// job wrote (supervisor/log_reader.hpp). Taken under the log's lock, so the file matches it for
// as long as the reader holds it.
struct LogShape {
  uint64_t cut = 0;
  config::LogKeep keep = config::LogKeep::Both;
  uint64_t marker_end = 0;  // both, once cut: the file offset just past the marker line
  uint64_t head_end = 0;    // head, once cut and not sealed: the file's size after its last cut
  bool sealed = false;      // head: the file ends with the marker
};

class LogLimiter {
 public:
  using Reporter = std::function<void(const std::vector<LogCutReport>&)>;
  static constexpr usec_t kLookEvery = 10 * USEC_PER_MSEC;
  static constexpr usec_t kReportEvery = 100 * USEC_PER_MSEC;

  // Starts the thread (every signal blocked in it). `report` runs on `loop`.
  LogLimiter(uv_loop_t* loop, const config::LogLimits& limits, Reporter report);
  ~LogLimiter();  // stops and joins the thread
  LogLimiter(const LogLimiter&) = delete;
  LogLimiter& operator=(const LogLimiter&) = delete;

  // A job's log: `running` ones are watched as they grow, finished ones count towards max_total
  // (`finished_usec` orders them). `cut`, `keep`: what the job's record says was cut before.
  // Tracking a job again (a resume, a restart) carries on with its count. From the loop thread,
  // as are the others. track() and finished() only wake the thread (one eventfd write): it opens
  // and watches the log itself; forget() also removes the watch.
  void track(const std::string& id, const std::string& path, bool running, usec_t finished_usec, uint64_t cut,
             config::LogKeep keep);
  // The job's processes are gone: its log gets one last look (a head log its marker), then only
  // counts towards max_total.
  void finished(const std::string& id, usec_t finished_usec);
  // The job is deleted: nothing touches its log after this returns. Waits only while the thread
  // is cutting this very log.
  void forget(const std::string& id);
  void reconfigure(const config::LogLimits& limits);
  // Runs fn with the log's shape while the thread cannot cut it (fn holds the log's lock: it
  // reads a bounded part of the file and returns). From the loop thread; waits only while the
  // thread is cutting this very log. False, fn not called, for a log that is not tracked.
  bool with_shape(const std::string& id, const std::function<void(const LogShape&)>& fn);

 private:
  struct File;
  void run();
  void wake();
  void drain_inotify();
  void look(const std::shared_ptr<File>& f, const config::LogLimits& limits);
  void open_log(const std::shared_ptr<File>& f);  // f->mu held: its descriptor and watch
  void drop_watch(File& f);
  void mark_dirty(const std::shared_ptr<File>& f);  // mutex_ held: looked at when due
  void set_size(File& f, uint64_t size);            // f.mu held; keeps total_
  void enforce_total(const config::LogLimits& limits);
  void cut_to(File& f, uint64_t limit, bool last_look);  // f.mu held
  void stamp(File& f);                                   // f.mu held: its index, when it grew
  void thin_index(File& f, const std::string& path);     // f.mu held
  void deliver();                                        // on the loop

  std::mutex mutex_;  // everything below but the thread's own
  config::LogLimits limits_;
  std::map<std::string, std::shared_ptr<File>> files_;
  std::map<int, std::shared_ptr<File>> by_watch_;
  std::vector<std::shared_ptr<File>> dirty_;      // to be looked at, each once
  std::vector<std::shared_ptr<File>> unwatched_;  // running, without an inotify watch
  std::atomic<uint64_t> total_{0};                // every tracked log's size as last seen
  std::map<std::string, LogCutReport> reports_;   // not yet sent to the loop
  bool stopping_ = false;

  Reporter report_;
  Fd inotify_;
  Fd wake_;  // eventfd: a change the thread must see
  UvPtr<uv_async_t> async_;
  std::thread thread_;
  // The thread's own.
  usec_t last_report_ = 0;
  bool warned_no_collapse_ = false;
};

}  // namespace repvisor
