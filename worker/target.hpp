// The copy's target: a regular file or a block device, written in place. Never truncated: a
// resumed copy keeps what the earlier run wrote.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

#include "util/fd.hpp"

namespace repvisor::worker {

class Target {
 public:
  // Opens (creating a file if needed) and makes sure it can hold `size` bytes: a file is
  // extended (never shrunk), a block device must be large enough. Throws std::runtime_error.
  Target(const std::string& path, uint64_t size);

  // Writes [offset, offset+len). Where the buffer, offset and length are all multiples of
  // kDirectAlign and the target takes O_DIRECT, the write goes straight to the device (returns
  // false); otherwise it goes through the page cache (returns true) and start_writeback()/evict()
  // apply to it. Either way, only flush() makes it durable.
  bool write(const void* buf, size_t len, uint64_t offset);
  static constexpr size_t kDirectAlign = 4096;
  // Makes [offset, offset+len) read as zeros, as cheaply as the target allows.
  void zero(uint64_t offset, uint64_t len);
  void read(void* buf, size_t len, uint64_t offset);
  void flush();  // fdatasync: what was written is on stable storage when it returns
  // Starts writing [offset, offset+len) back now, without waiting: keeps the page cache from
  // piling up dirty data that a later flush (a checkpoint) would have to wait for all at once.
  void start_writeback(uint64_t offset, uint64_t len);
  // Waits for that writeback and drops the range from the page cache: a multi-GiB copy then
  // neither fills memory with dirty pages nor gets throttled for them, and a checkpoint's flush
  // has little left to do.
  void evict(uint64_t offset, uint64_t len);
  bool is_block_device() const { return block_; }

 private:
  std::string path_;
  Fd fd_;
  Fd direct_;                          // the same file opened O_DIRECT; empty when the file system refuses it
  std::atomic<bool> direct_ok_{true};  // false once a direct write was refused for its alignment
  bool block_ = false;
  bool punch_ok_ = true;
};

}  // namespace repvisor::worker
