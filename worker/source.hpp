// One NBD connection to the source (libnbd), read-only. Several are opened for parallel reads.
#pragma once
#include <libnbd.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace repvisor::worker {

class Source {
 public:
  explicit Source(const std::string& uri);  // throws std::runtime_error naming the URI
  ~Source();
  Source(const Source&) = delete;
  Source& operator=(const Source&) = delete;

  uint64_t size() const { return size_; }
  bool has_block_status() const { return block_status_; }
  // Reads [offset, offset+len) and waits for it; covered whole, as start_read() checks.
  void read(void* buf, size_t len, uint64_t offset);
  // A read in flight, owned by the caller until its `done` has run.
  struct PendingRead {
    char* buf = nullptr;
    uint64_t offset = 0, len = 0;
    std::function<void(int)>* done = nullptr;           // runs from within poll(): 0 or an errno
    std::vector<std::pair<uint64_t, uint64_t>> filled;  // (offset, length) the server sent
  };
  // Starts reading r->len bytes at r->offset into r->buf. The buffer is not cleared first (a
  // copy's buffers are reused, and clearing them cost a tenth of the copy's CPU): instead the
  // read succeeds only if the server's replies covered every byte, which libnbd leaves to us.
  void start_read(PendingRead* r);
  // Waits for the connection to make progress on the reads in flight.
  void poll();
  // Calls fn(offset, length, is_zero) for the extents covering [offset, offset+len), in order.
  // Without block status the whole range is reported as data.
  void extents(uint64_t offset, uint64_t len, const std::function<void(uint64_t, uint64_t, bool)>& fn);

 private:
  [[noreturn]] void fail(const std::string& what) const;
  static bool covered(PendingRead& r);
  nbd_handle* h_ = nullptr;
  std::string uri_;
  uint64_t size_ = 0;
  bool block_status_ = false;
};

}  // namespace repvisor::worker
