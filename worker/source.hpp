// One NBD connection to the source (libnbd), read-only. Several are opened for parallel reads.
#pragma once
#include <libnbd.h>

#include <cstdint>
#include <functional>
#include <string>

namespace repvisor::worker {

class Source {
 public:
  explicit Source(const std::string& uri);  // throws std::runtime_error naming the URI
  ~Source();
  Source(const Source&) = delete;
  Source& operator=(const Source&) = delete;

  uint64_t size() const { return size_; }
  bool has_block_status() const { return block_status_; }
  void read(void* buf, size_t len, uint64_t offset);
  // Starts a read; `done(error)` runs from within poll() when it completes (error: 0 or errno).
  void start_read(void* buf, size_t len, uint64_t offset, std::function<void(int)>* done);
  // Waits for the connection to make progress on the reads in flight.
  void poll();
  // Calls fn(offset, length, is_zero) for the extents covering [offset, offset+len), in order.
  // Without block status the whole range is reported as data.
  void extents(uint64_t offset, uint64_t len, const std::function<void(uint64_t, uint64_t, bool)>& fn);

 private:
  [[noreturn]] void fail(const std::string& what) const;
  nbd_handle* h_ = nullptr;
  std::string uri_;
  uint64_t size_ = 0;
  bool block_status_ = false;
};

}  // namespace repvisor::worker
