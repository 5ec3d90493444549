#include "supervisor/log_limiter.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/log_index.hpp"
#include "sys/log_cut.hpp"
#include "util/log.hpp"
#include "util/thread.hpp"

namespace repvisor {

using config::LogKeep;

struct LogLimiter::File {
  std::mutex mu;  // held by the thread while it cuts this log, by forget() to end it
  // Set on the loop, read by the thread.
  std::string id, path;
  std::atomic<bool> running{false};
  std::atomic<bool> final_look{false};  // its processes are gone: one more look, at once
  std::atomic<usec_t> finished_usec{0};
  std::atomic<bool> reopen{false};  // (re)tracked: the thread opens and watches it
  std::atomic<uint64_t> size{0};    // as last seen
  // Under mu.
  bool gone = false;
  Fd fd;  // read-write, while the job runs; a finished log is opened for a cut only
  uint64_t cut = 0;
  LogKeep keep = LogKeep::Both;
  bool no_collapse = false;  // its file system cannot: head instead
  bool sealed = false;       // head: the marker is at its end
  uint64_t layout = 0;       // both: the max_size its head and marker were placed by
  uint64_t head_end = 0;     // head: the size its last cut left (what it wrote after that follows)
  uint64_t lowered = 0;      // a running log's bound under max_total (0: max_size)
  uint64_t block = 4096;
  // Its index of when its bytes were written (core/log_index.hpp).
  Fd index;
  bool index_read = false;                   // its last stamp, from the file: a restart or resume carries on
  uint64_t stamped = 0;                      // the written-byte count of its last stamp
  size_t stamps = 0;                         // in the file
  std::optional<uint64_t> reported_written;  // its written count as last reported to the loop
  // Under LogLimiter::mutex_.
  int watch = -1;
  bool dirty = false;
  usec_t last_look = 0;
};

namespace {
int64_t size_of(int fd) {
  struct stat st {};
  return fstat(fd, &st) < 0 ? -errno : st.st_size;
}

std::string read_all(int fd) {
  std::string out;
  char buf[65536];
  for (off_t at = 0;;) {
    const ssize_t n = pread(fd, buf, sizeof buf, at);
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
    at += n;
  }
}
}  // namespace

LogLimiter::LogLimiter(uv_loop_t* loop, const config::LogLimits& limits, Reporter report)
    : limits_(limits), report_(std::move(report)) {
  inotify_.reset(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify_) throw std::runtime_error(std::string("inotify_init1: ") + strerror(errno));
  wake_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_) throw std::runtime_error(std::string("eventfd: ") + strerror(errno));
  async_ = make_uv<uv_async_t>(
      [&](uv_async_t* a) {
        return uv_async_init(loop, a, [](uv_async_t* h) {
          if (auto* self = static_cast<LogLimiter*>(h->data)) self->deliver();
        });
      },
      this);
  uv_unref(reinterpret_cast<uv_handle_t*>(async_.get()));
  thread_ = thread_without_signals([this] { run(); });
}

LogLimiter::~LogLimiter() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake();
  thread_.join();
}

void LogLimiter::wake() {
  const uint64_t one = 1;
  ssize_t ignored = ::write(wake_.get(), &one, sizeof one);
  (void)ignored;
}

void LogLimiter::track(const std::string& id, const std::string& path, bool running, usec_t finished_usec, uint64_t cut,
                       LogKeep keep) {
  // No system call here but the wake-up: the thread opens and watches the log (open_log), so
  // that a job's start costs the loop nothing more.
  {
    std::lock_guard lock(mutex_);
    std::shared_ptr<File>& f = files_[id];
    if (!f) {
      f = std::make_shared<File>();
      f->id = id;
      f->path = path;
      f->cut = cut;
      f->keep = cut > 0 ? keep : limits_.keep;
      f->layout = limits_.max_size;
      f->sealed = cut > 0 && keep == LogKeep::Head && !running;
    }
    f->running = running;
    f->final_look = !running;
    f->finished_usec = finished_usec;
    f->reopen = true;
    mark_dirty(f);  // what it wrote before the watch is seen by a first look
  }
  wake();
}

void LogLimiter::open_log(const std::shared_ptr<File>& f) {
  Fd fd(::open(f->path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY));
  if (!fd) {
    if (errno != ENOENT)
      log::warning("job {}: cannot open its log {} to bound it: {}", f->id, f->path, strerror(errno));
    return;  // no log (yet): nothing to bound
  }
  if (const uint64_t b = sys::log_block_size(fd.get()); b > 0) f->block = b;
  if (const int64_t s = size_of(fd.get()); s >= 0) set_size(*f, static_cast<uint64_t>(s));
  if (!f->running) return;  // opened for a cut only
  const int watch = inotify_add_watch(inotify_.get(), f->path.c_str(), IN_MODIFY);
  if (watch < 0)
    log::warning("job {}: cannot watch its log {} ({}): it is looked at every {} ms instead", f->id, f->path,
                 strerror(errno), kLookEvery * 25 / USEC_PER_MSEC);
  f->fd = std::move(fd);
  f->sealed = false;
  std::lock_guard lock(mutex_);
  if (f->watch >= 0 && f->watch != watch) by_watch_.erase(f->watch);
  f->watch = watch;
  if (watch >= 0)
    by_watch_[watch] = f;
  else if (std::find(unwatched_.begin(), unwatched_.end(), f) == unwatched_.end())
    unwatched_.push_back(f);
}

void LogLimiter::mark_dirty(const std::shared_ptr<File>& f) {
  if (f->dirty) return;
  f->dirty = true;
  dirty_.push_back(f);
}

void LogLimiter::set_size(File& f, uint64_t size) {
  // Modulo 2^64: a shrink adds its complement.
  total_.fetch_add(size - f.size.exchange(size));
}

void LogLimiter::drop_watch(File& f) {
  std::lock_guard lock(mutex_);
  std::erase_if(unwatched_, [&](const auto& u) { return u.get() == &f; });
  if (f.watch < 0) return;
  inotify_rm_watch(inotify_.get(), f.watch);
  by_watch_.erase(f.watch);
  f.watch = -1;
}

void LogLimiter::finished(const std::string& id, usec_t finished_usec) {
  {
    std::lock_guard lock(mutex_);
    auto it = files_.find(id);
    if (it == files_.end()) return;
    File& f = *it->second;
    f.running = false;  // its last look drops its watch
    f.final_look = true;
    f.finished_usec = finished_usec;
    mark_dirty(it->second);
  }
  wake();
}

void LogLimiter::forget(const std::string& id) {
  std::shared_ptr<File> f;
  {
    std::lock_guard lock(mutex_);
    auto it = files_.find(id);
    if (it == files_.end()) return;
    f = it->second;
    files_.erase(it);
    reports_.erase(id);
  }
  // The file is emptied and reused for another job's log next (sys/file_pool.hpp): no cut of
  // the thread's may land in it after this, and its watch (one per inode) must not outlive it.
  std::lock_guard file_lock(f->mu);
  f->gone = true;
  f->fd.reset();
  f->index.reset();
  set_size(*f, 0);  // no longer counted towards max_total
  drop_watch(*f);
}

void LogLimiter::reconfigure(const config::LogLimits& limits) {
  std::lock_guard lock(mutex_);
  limits_ = limits;
  for (auto& [id, f] : files_) mark_dirty(f);  // the next look applies them
  wake();
}

bool LogLimiter::with_shape(const std::string& id, const std::function<void(const LogShape&)>& fn) {
  std::shared_ptr<File> f;
  {
    std::lock_guard lock(mutex_);
    auto it = files_.find(id);
    if (it == files_.end()) return false;
    f = it->second;
  }
  // Not under mutex_: the thread takes a log's lock first, then mutex_ (cut_to).
  std::lock_guard file_lock(f->mu);
  if (f->gone) return false;
  LogShape shape{.cut = f->cut, .keep = f->keep, .sealed = f->sealed};
  if (f->cut > 0 && f->keep == LogKeep::Both) {
    const uint64_t head = f->layout / 2 - f->layout / 2 % f->block;  // as sys::cut_log_both places it
    shape.marker_end = head + f->block;
  }
  if (f->cut > 0 && f->keep == LogKeep::Head && !f->sealed) shape.head_end = f->head_end;
  fn(shape);
  return true;
}

void LogLimiter::deliver() {
  std::vector<LogCutReport> out;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, r] : reports_) out.push_back(std::move(r));
    reports_.clear();
  }
  if (!out.empty()) report_(out);
}

void LogLimiter::drain_inotify() {
  alignas(inotify_event) char buf[4096];
  for (;;) {
    const ssize_t n = ::read(inotify_.get(), buf, sizeof buf);
    if (n <= 0) return;
    std::lock_guard lock(mutex_);
    for (ssize_t at = 0; at < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + at);
      at += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      if (ev->mask & IN_Q_OVERFLOW) {
        for (auto& [id, f] : files_)
          if (f->running) mark_dirty(f);
        continue;
      }
      if (auto it = by_watch_.find(ev->wd); it != by_watch_.end()) mark_dirty(it->second);
    }
  }
}

void LogLimiter::run() {
  pthread_setname_np(pthread_self(), "rv-logs");  // its CPU time shows apart (bench/log-flood.sh)
  for (;;) {
    std::vector<std::shared_ptr<File>> due;
    config::LogLimits limits;
    int timeout_ms = -1;
    bool read_events = true;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      limits = limits_;
      const usec_t now = now_monotonic();
      usec_t next = USEC_INFINITY;
      // Unwatched logs (no inotify watch could be had) are looked at on a slower clock.
      for (const auto& f : unwatched_) {
        if (now >= f->last_look + 25 * kLookEvery) mark_dirty(f);
        next = std::min(next, f->last_look + 25 * kLookEvery);
      }
      // Only the logs with something to look at: a wake-up costs nothing per finished job.
      std::vector<std::shared_ptr<File>> waiting;
      for (auto& f : dirty_) {
        const usec_t at = f->final_look ? now : f->last_look + kLookEvery;
        if (at <= now) {
          f->dirty = false;
          f->last_look = now;
          due.push_back(std::move(f));
        } else {
          next = std::min(next, at);
          // Its events are not read until its look: inotify merges them meanwhile.
          read_events = false;
          waiting.push_back(std::move(f));
        }
      }
      dirty_.swap(waiting);
      if (!reports_.empty()) next = std::min(next, last_report_ + kReportEvery);
      if (due.empty() && next != USEC_INFINITY)
        timeout_ms = next <= now ? 0 : static_cast<int>((next - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC);
    }
    if (due.empty()) {
      pollfd fds[2] = {{wake_.get(), POLLIN, 0}, {inotify_.get(), POLLIN, 0}};
      poll(fds, read_events ? 2 : 1, timeout_ms);
      uint64_t v;
      while (::read(wake_.get(), &v, sizeof v) > 0) {
      }
      if (read_events && (fds[1].revents & POLLIN)) drain_inotify();
    }
    for (auto& f : due) look(f, limits);
    if (!due.empty()) enforce_total(limits);
    bool send = false;
    {
      std::lock_guard lock(mutex_);
      const usec_t now = now_monotonic();
      const bool final = std::any_of(reports_.begin(), reports_.end(), [](const auto& r) { return r.second.final; });
      if (!reports_.empty() && (final || now >= last_report_ + kReportEvery)) {
        last_report_ = now;
        send = true;
      }
    }
    if (send) uv_async_send(async_.get());
  }
}

void LogLimiter::look(const std::shared_ptr<File>& fp, const config::LogLimits& limits) {
  File& f = *fp;
  std::lock_guard file_lock(f.mu);
  if (f.gone) return;
  const bool last = f.final_look.exchange(false);
  if (f.reopen.exchange(false)) open_log(fp);
  // A log not cut yet follows the configuration; one cut keeps its layout (its marker's place).
  if (f.cut == 0 && !f.no_collapse) {
    f.keep = limits.keep;
    f.layout = limits.max_size;
  }
  cut_to(f, f.lowered ? std::min(f.lowered, limits.max_size) : limits.max_size, last);
  if (f.running || last) stamp(f);
  if (!f.running) drop_watch(f);  // ended, maybe while this look opened it
  if (last) {
    f.fd.reset();  // a finished log is opened again only to cut it for max_total
    f.index.reset();
    f.index_read = false;
  }
}

void LogLimiter::stamp(File& f) {
  const uint64_t size = f.size;
  // The marker's bytes are the daemon's, not the job's (sys/log_cut.hpp).
  const bool marker = (f.keep == LogKeep::Both && f.cut > 0) || (f.keep == LogKeep::Head && f.sealed);
  const uint64_t written = f.cut + size - (marker ? std::min<uint64_t>(size, sys::kLogMarkerSize) : 0);
  if (f.reported_written != written) {
    // LogBytesWritten: a follower of the log (the console) reads on from where it was.
    f.reported_written = written;
    std::lock_guard lock(mutex_);
    LogCutReport& rep = reports_[f.id];
    rep.id = f.id;
    rep.written = written;
  }
  if (written <= f.stamped && f.index_read) return;
  const std::string path = core::log_index_path(f.path);
  if (!f.index_read) {
    // The stamps it has, from before a restart or a resume: the next one carries on from them.
    f.index_read = true;
    f.index.reset(::open(path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY));
    if (f.index) {
      const std::string data = read_all(f.index.get());
      const auto stamps = core::decode_log_index(data);
      f.stamps = stamps.size();
      f.stamped = stamps.empty() ? 0 : stamps.back().written;
      if (data.size() % core::kLogStampSize != 0)  // torn by a crash: whole stamps only
        if (ftruncate(f.index.get(), static_cast<off_t>(stamps.size() * core::kLogStampSize)) < 0) f.index.reset();
    }
    if (written <= f.stamped) return;
  }
  if (!f.index) {
    // Made with the first stamp: a job that writes nothing costs no file.
    f.index.reset(::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600));
    if (!f.index) {
      log::warning("job {}: cannot open its log's index {}: {}", f.id, path, strerror(errno));
      return;
    }
  }
  const std::string rec = core::encode({now_realtime(), written});
  if (::write(f.index.get(), rec.data(), rec.size()) != static_cast<ssize_t>(rec.size())) {
    log::warning("job {}: cannot write its log's index {}: {}", f.id, path, strerror(errno));
    f.index.reset();  // no stamp rather than a torn one; the next look tries again
    return;
  }
  f.stamped = written;
  if (++f.stamps > 2 * core::kLogStampsMax) thin_index(f, path);
}

void LogLimiter::thin_index(File& f, const std::string& path) {
  // A new file put in place of the old one: a reader sees either, never a half-written one.
  auto stamps = core::decode_log_index(read_all(f.index.get()));
  while (stamps.size() > core::kLogStampsMax) stamps = core::thin(stamps);
  std::string data;
  for (const auto& s : stamps) data += core::encode(s);
  const std::string tmp = path + ".new";
  Fd out(::open(tmp.c_str(), O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!out || ::write(out.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size()) ||
      ::rename(tmp.c_str(), path.c_str()) < 0) {
    log::warning("job {}: cannot thin its log's index {}: {}", f.id, path, strerror(errno));
    ::unlink(tmp.c_str());
    return;  // it goes on growing; tried again at the next stamp
  }
  f.index = std::move(out);
  f.stamps = stamps.size();
}

void LogLimiter::cut_to(File& f, uint64_t limit, bool last_look) {
  Fd opened;
  int fd = f.fd.get();
  if (fd < 0) {
    opened.reset(::open(f.path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY));
    if (!opened) return;
    fd = opened.get();
  }
  const bool running = f.running;
  int64_t r = 0;
  if (f.keep == LogKeep::Tail)
    r = sys::cut_log_tail(fd, limit, f.block);
  else if (f.keep == LogKeep::Both)
    r = sys::cut_log_both(fd, f.layout, limit, f.block, f.cut);
  if ((r == -EOPNOTSUPP || r == -EINVAL) && f.keep != LogKeep::Head) {
    // tmpfs, and file systems without FALLOC_FL_COLLAPSE_RANGE: the head is what can be kept.
    if (!warned_no_collapse_)
      log::warning("the file system of {} cannot remove a file's first blocks ({}): logs keep their head instead",
                   f.path, strerror(static_cast<int>(-r)));
    warned_no_collapse_ = true;
    f.keep = LogKeep::Head;
    f.no_collapse = true;
    r = 0;
  }
  if (f.keep == LogKeep::Head) {
    if (running) {
      r = sys::cut_log_head(fd, limit);
    } else {
      r = sys::seal_log_head(fd, limit, f.cut, f.sealed);
      if (r >= 0 && f.cut + static_cast<uint64_t>(r) > 0) f.sealed = true;
    }
  }
  if (r < 0) {
    log::warning("job {}: cannot cut its log {}: {}", f.id, f.path, strerror(static_cast<int>(-r)));
    return;
  }
  if (const int64_t s = size_of(fd); s >= 0) set_size(f, static_cast<uint64_t>(s));
  const bool final = !running;
  // The last look reports a cut log even when it cut nothing more: its count is then final.
  if (r == 0 && !(last_look && f.cut > 0)) return;
  f.cut += static_cast<uint64_t>(r);
  if (f.keep == LogKeep::Head && running && r > 0) f.head_end = limit;
  std::lock_guard lock(mutex_);
  LogCutReport& rep = reports_[f.id];
  rep.id = f.id;
  rep.cut_changed = true;
  rep.cut = f.cut;
  rep.keep = f.keep;
  rep.limit = limit;
  rep.final = rep.final || final;
}

void LogLimiter::enforce_total(const config::LogLimits& limits) {
  // Summed after every round of looks: a few thousand additions. Only a log set over the total
  // is copied and sorted.
  if (total_ <= limits.max_total) return;  // the usual case, without a walk over every log
  uint64_t total = 0;
  struct Order {
    bool running;
    usec_t finished;
    uint64_t size;
    std::shared_ptr<File> file;
  };
  std::vector<Order> order;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, f] : files_) total += f->size;
    if (total <= limits.max_total) return;
    order.reserve(files_.size());
    for (const auto& [id, f] : files_) order.push_back({f->running, f->finished_usec, f->size, f});
  }
  // Finished logs first, the oldest first; then running ones, the largest first.
  std::sort(order.begin(), order.end(), [](const Order& a, const Order& b) {
    if (a.running != b.running) return !a.running;
    if (!a.running) return a.finished < b.finished;
    return a.size > b.size;
  });
  uint64_t excess = total - limits.max_total;
  for (auto& [running, finished, size, f] : order) {
    if (excess == 0) break;
    std::lock_guard file_lock(f->mu);
    const uint64_t before = f->size;
    if (f->gone || before <= config::kMinLogSize) continue;
    const uint64_t target = std::max(config::kMinLogSize, before > excess ? before - excess : 0);
    // A running log stays at its lower bound: it would grow back to max_size otherwise.
    if (f->running) f->lowered = f->lowered ? std::min(f->lowered, target) : target;
    cut_to(*f, target, false);
    if (f->size < before) excess -= std::min(excess, before - f->size);
  }
}

}  // namespace repvisor
