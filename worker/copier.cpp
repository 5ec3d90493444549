#include "copier.hpp"

#include <fmt/format.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "source.hpp"
#include "target.hpp"

namespace repvisor::worker {

std::atomic<int> stop_requested{0};

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kEvictBehind = 4;  // chunks per connection left to write back before eviction

uint64_t round_up(uint64_t n) { return (n + Target::kDirectAlign - 1) / Target::kDirectAlign * Target::kDirectAlign; }

bool all_zero(const char* p, size_t n) {
  // Word at a time; the tail byte by byte.
  size_t i = 0;
  for (; i + sizeof(uint64_t) <= n; i += sizeof(uint64_t)) {
    uint64_t w;
    memcpy(&w, p + i, sizeof w);
    if (w) return false;
  }
  for (; i < n; ++i)
    if (p[i]) return false;
  return true;
}

// Reports to the supervisor (NOTIFY_SOCKET; nothing when there is none) and to stderr.
void notify(const std::string& fields) { sd_notify(0, fields.c_str()); }

std::string human(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return fmt::format("{:.1f} {}", v, units[u]);
}

class Copy {
 public:
  Copy(const std::string& uri, const std::string& target, const CopyOptions& o) : opts_(o) {
    for (unsigned i = 0; i < std::max(1u, o.connections); ++i) sources_.push_back(std::make_unique<Source>(uri));
    size_ = sources_[0]->size();
    if (o.resume) {
      if (o.resume->size != size_)
        throw std::runtime_error(
            fmt::format("the checkpoint is for a source of {} bytes; this one has {}", o.resume->size, size_));
      start_ = o.resume->done;
    }
    target_ = std::make_unique<Target>(target, size_);
    chunks_ = (size_ - start_ + opts_.chunk_size - 1) / opts_.chunk_size;
    done_.assign(chunks_, 0);
  }

  int run() {
    notify(fmt::format("READY=1\nPHASE=copy\nBYTES_TOTAL={}\nBYTES_DONE={}\nSTATUS=copying {} from offset {}", size_,
                       start_, human(size_), start_));
    fmt::print(stderr, "repvisor-copy: copying {} bytes{}, {} connection(s), chunks of {}\n", size_,
               start_ ? fmt::format(" from offset {} (resumed)", start_) : "", sources_.size(),
               human(opts_.chunk_size));
    std::vector<std::thread> threads;
    for (auto& s : sources_) threads.emplace_back([this, src = s.get()] { copy_worker(*src); });
    supervise(threads.size(), "copy");
    for (auto& t : threads) t.join();

    const uint64_t frontier = frontier_bytes();
    target_->flush();
    report_checkpoint(frontier);
    if (!error_.empty()) {
      notify(fmt::format("STATUS=failed: {}", error_));
      fmt::print(stderr, "repvisor-copy: {}\n", error_);
      return kExitError;
    }
    fmt::print(stderr, "repvisor-copy: {} bytes written, {} zeroed, done up to {} of {}\n", written_.load(),
               zeroed_.load(), frontier, size_);
    if (frontier < size_) {
      notify(
          fmt::format("STATUS=stopped cleanly at {} of {}; resume from the checkpoint", human(frontier), human(size_)));
      return kExitStopped;
    }
    if (opts_.verify) return verify();
    notify(fmt::format("PROGRESS=100\nSTATUS=done: {} copied", human(size_)));
    return kExitDone;
  }

 private:
  // One chunk being copied by a connection: its data extents are read asynchronously, several
  // chunks per connection at once, then written (on the connection's writer thread).
  enum class SlotState { Free, Reading, Writing };
  struct Slot {
    std::atomic<SlotState> state{SlotState::Free};
    uint64_t idx = 0, off = 0, len = 0;
    int pending = 0, error = 0;
    // Aligned for O_DIRECT writes.
    std::unique_ptr<char, decltype(&free)> buf{nullptr, &free};
    bool cached = false;  // some of it went through the page cache
    // Its data extents, each read into buf.
    std::vector<Source::PendingRead> data;
    std::function<void(int)> done;
  };

  // Claims the next chunk into `slot` and starts its reads; false when there is no more work.
  bool start_chunk(Source& src, Slot& slot) {
    if (stop_requested.load() || failed_.load()) return false;
    const uint64_t idx = next_.fetch_add(1);
    if (idx >= chunks_) return false;
    slot.state = SlotState::Reading;
    slot.idx = idx;
    slot.off = start_ + idx * opts_.chunk_size;
    slot.len = std::min<uint64_t>(opts_.chunk_size, size_ - slot.off);
    slot.pending = slot.error = 0;
    slot.data.clear();
    src.extents(slot.off, slot.len, [&](uint64_t o, uint64_t l, bool zero) {
      if (zero) {
        target_->zero(o, l);
        zeroed_ += l;
      } else {
        slot.data.push_back({.buf = slot.buf.get() + (o - slot.off), .offset = o, .len = l, .done = &slot.done});
      }
    });
    // Started once the list is complete: each read points at its own element.
    for (auto& r : slot.data) {
      ++slot.pending;
      src.start_read(&r);
    }
    return true;
  }

  void complete_chunk(Slot& slot) {
    if (slot.error) throw std::runtime_error(fmt::format("read at {}: {}", slot.off, strerror(slot.error)));
    slot.cached = false;
    for (const auto& r : slot.data) {
      const char* p = r.buf;
      const uint64_t o = r.offset, l = r.len;
      // Found all-zero by reading it: no need to store it.
      if (all_zero(p, l)) {
        target_->zero(o, l);
        zeroed_ += l;
      } else {
        slot.cached |= target_->write(p, l, o);
        written_ += l;
      }
    }
    if (slot.cached) target_->start_writeback(slot.off, slot.len);
    finish(slot.idx, slot.len);
  }

  // A connection's chunks are read on its thread (libnbd's replies arrive in its poll) and written
  // on a second thread of its own: a write waiting for the device then never holds up the reads
  // queued behind it (with both on one thread, the disk sat idle about a quarter of a copy).
  void copy_worker(Source& src) {
    std::vector<Slot> slots(std::max(1u, opts_.requests));
    for (auto& s : slots) {
      s.buf.reset(static_cast<char*>(aligned_alloc(Target::kDirectAlign, round_up(opts_.chunk_size))));
      if (!s.buf) throw std::bad_alloc();
      s.done = [&s](int error) {
        if (error && !s.error) s.error = error;
        --s.pending;
      };
    }
    Writer writer(*this);
    try {
      bool more = true;
      for (;;) {
        for (auto& s : slots)
          if (more && s.state == SlotState::Free) more = start_chunk(src, s);
        bool reading = false;
        for (auto& s : slots) {
          if (s.state != SlotState::Reading) continue;
          if (s.pending == 0)
            writer.push(s);
          else
            reading = true;
        }
        if (reading) {
          src.poll();
          continue;
        }
        // Nothing read here: wait for the writer to hand a slot back or, with no more to claim, to
        // have written them all.
        const auto is_free = [](const Slot& s) { return s.state == SlotState::Free; };
        if (!more) {
          writer.wait([&] { return std::all_of(slots.begin(), slots.end(), is_free); });
          break;
        }
        writer.wait([&] { return std::any_of(slots.begin(), slots.end(), is_free); });
      }
    } catch (const std::exception& e) {
      fail(e.what());
    }
  }

  // The connection's writer thread and its queue of chunks read whole.
  class Writer {
   public:
    explicit Writer(Copy& copy) : copy_(copy), thread_([this] { run(); }) {}
    ~Writer() {
      {
        std::lock_guard lock(m_);
        ending_ = true;
      }
      cv_.notify_all();
      thread_.join();
    }
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    void push(Slot& s) {
      {
        std::lock_guard lock(m_);
        s.state = SlotState::Writing;
        queue_.push_back(&s);
      }
      cv_.notify_all();
    }
    // Until `ready` holds; it is looked at whenever a slot is handed back.
    template <typename Ready>
    void wait(Ready ready) {
      std::unique_lock lock(m_);
      cv_.wait(lock, ready);
    }

   private:
    void run() {
      // What went through the page cache, oldest first: evicted once a few chunks newer are written.
      std::deque<std::pair<uint64_t, uint64_t>> cached;
      for (;;) {
        Slot* s = nullptr;
        {
          std::unique_lock lock(m_);
          cv_.wait(lock, [&] { return !queue_.empty() || ending_; });
          if (queue_.empty()) return;
          s = queue_.front();
          queue_.pop_front();
        }
        try {
          if (!copy_.failed_.load()) {
            copy_.complete_chunk(*s);
            if (s->cached) cached.emplace_back(s->off, s->len);
            while (cached.size() > kEvictBehind) {
              copy_.target_->evict(cached.front().first, cached.front().second);
              cached.pop_front();
            }
          }
        } catch (const std::exception& e) {
          copy_.fail(e.what());
        }
        {
          std::lock_guard lock(m_);
          s->state = SlotState::Free;
        }
        cv_.notify_all();
      }
    }

    Copy& copy_;
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<Slot*> queue_;
    bool ending_ = false;
    std::thread thread_;  // last: started once the rest is in place
  };

  void fail(const std::string& what) {
    std::lock_guard lock(m_);
    if (error_.empty()) error_ = what;
    failed_ = true;
    cv_.notify_all();
  }

  void finish(uint64_t idx, uint64_t len) {
    std::lock_guard lock(m_);
    done_[idx] = 1;
    while (frontier_ < chunks_ && done_[frontier_]) ++frontier_;
    completed_ += len;
    cv_.notify_all();
  }

  uint64_t frontier_bytes() {
    std::lock_guard lock(m_);
    return std::min(size_, start_ + frontier_ * opts_.chunk_size);
  }

  void report_checkpoint(uint64_t frontier) {
    // Called only after a flush that began after every byte below `frontier` was written.
    if (frontier <= last_checkpoint_ && last_checkpoint_ != 0) return;
    last_checkpoint_ = frontier;
    notify(
        fmt::format("CHECKPOINT={}\nBYTES_DONE={}", format_checkpoint({frontier, size_}), start_ + completed_.load()));
  }

  // Runs on the main thread while the workers copy: progress, periodic checkpoints, stop.
  void supervise(size_t workers, const char* phase) {
    auto last_progress = Clock::time_point{};
    auto last_checkpoint = Clock::now();
    bool stopping_reported = false;
    for (;;) {
      {
        std::unique_lock lock(m_);
        cv_.wait_for(lock, std::chrono::milliseconds(250));
      }
      const bool finished = next_.load() >= chunks_ + workers || failed_.load() || all_done();
      if (stop_requested.load() && !stopping_reported) {
        stopping_reported = true;
        notify("STOPPING=1\nSTATUS=stopping: finishing the chunks in flight, then flushing");
      }
      const auto now = Clock::now();
      if (now - last_progress >= std::chrono::milliseconds(250)) {
        last_progress = now;
        const uint64_t done = start_ + completed_.load();
        notify(
            fmt::format("PHASE={}\nPROGRESS={:.1f}\nBYTES_DONE={}", phase, size_ ? 100.0 * done / size_ : 100.0, done));
      }
      if (std::string(phase) == "copy" &&
          now - last_checkpoint >= std::chrono::milliseconds(opts_.checkpoint_interval_ms)) {
        last_checkpoint = now;
        const uint64_t frontier = frontier_bytes();
        if (frontier > last_checkpoint_) {
          target_->flush();
          report_checkpoint(frontier);
        }
      }
      if (finished || stop_requested.load()) {
        if (stop_requested.load() || failed_.load() || all_done()) return;
      }
    }
  }

  bool all_done() {
    std::lock_guard lock(m_);
    return frontier_ >= chunks_;
  }

  int verify() {
    notify("PHASE=verify\nPROGRESS=0\nSTATUS=verifying");
    std::atomic<uint64_t> next{0}, verified{0};
    std::atomic<int64_t> mismatch{-1};
    const uint64_t vchunks = (size_ + opts_.chunk_size - 1) / opts_.chunk_size;
    std::vector<std::thread> threads;
    for (auto& s : sources_)
      threads.emplace_back([&, src = s.get()] {
        std::vector<char> a(opts_.chunk_size), b(opts_.chunk_size);
        try {
          for (;;) {
            const uint64_t idx = next.fetch_add(1);
            if (idx >= vchunks || mismatch.load() >= 0 || stop_requested.load()) return;
            const uint64_t off = idx * opts_.chunk_size;
            const size_t len = static_cast<size_t>(std::min<uint64_t>(opts_.chunk_size, size_ - off));
            src->read(a.data(), len, off);
            target_->read(b.data(), len, off);
            if (memcmp(a.data(), b.data(), len) != 0) {
              size_t i = 0;
              while (a[i] == b[i]) ++i;
              int64_t expected = -1;
              mismatch.compare_exchange_strong(expected, static_cast<int64_t>(off + i));
            }
            verified += len;
          }
        } catch (const std::exception& e) {
          std::lock_guard lock(m_);
          if (error_.empty()) error_ = e.what();
          failed_ = true;
        }
      });
    for (auto& t : threads) t.join();
    if (!error_.empty()) {
      notify(fmt::format("STATUS=verify failed: {}", error_));
      fmt::print(stderr, "repvisor-copy: verify: {}\n", error_);
      return kExitError;
    }
    if (stop_requested.load()) {
      notify("STATUS=stopped cleanly during verification; the copy itself is complete");
      return kExitStopped;
    }
    if (mismatch.load() >= 0) {
      notify(fmt::format("STATUS=verify failed: target differs from the source at byte {}", mismatch.load()));
      fmt::print(stderr, "repvisor-copy: verify: target differs from the source at byte {}\n", mismatch.load());
      return kExitVerifyMismatch;
    }
    notify(fmt::format("PROGRESS=100\nSTATUS=done: {} copied and verified", human(size_)));
    fmt::print(stderr, "repvisor-copy: verified {} bytes\n", verified.load());
    return kExitDone;
  }

  CopyOptions opts_;
  std::vector<std::unique_ptr<Source>> sources_;
  std::unique_ptr<Target> target_;
  uint64_t size_ = 0, start_ = 0, chunks_ = 0, last_checkpoint_ = 0;
  std::atomic<uint64_t> next_{0}, completed_{0}, written_{0}, zeroed_{0};
  std::atomic<bool> failed_{false};
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<uint8_t> done_;
  uint64_t frontier_ = 0;
  std::string error_;
};

}  // namespace

int run_copy(const std::string& source_uri, const std::string& target_path, const CopyOptions& opts) {
  try {
    Copy c(source_uri, target_path, opts);
    return c.run();
  } catch (const std::exception& e) {
    notify(fmt::format("STATUS=failed: {}", e.what()));
    fmt::print(stderr, "repvisor-copy: {}\n", e.what());
    return kExitError;
  }
}

}  // namespace repvisor::worker
