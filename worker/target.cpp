#include "target.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace repvisor::worker {

namespace {
[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw std::runtime_error(fmt::format("{}: {}: {}", path, what, strerror(errno)));
}
}  // namespace

Target::Target(const std::string& path, uint64_t size) : path_(path) {
  fd_.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd_) fail("cannot open", path);
  struct stat st {};
  if (fstat(fd_.get(), &st) < 0) fail("cannot stat", path);
  if (S_ISBLK(st.st_mode)) {
    block_ = true;
    uint64_t dev_size = 0;
    if (ioctl(fd_.get(), BLKGETSIZE64, &dev_size) < 0) fail("cannot get the device size", path);
    if (dev_size < size)
      throw std::runtime_error(fmt::format("{}: device holds {} bytes, the source has {}", path, dev_size, size));
  } else if (S_ISREG(st.st_mode)) {
    if (static_cast<uint64_t>(st.st_size) < size && ftruncate(fd_.get(), static_cast<off_t>(size)) < 0)
      fail("cannot extend", path);
  } else {
    throw std::runtime_error(path + ": not a regular file or a block device");
  }
  // A second descriptor for the aligned writes: they skip the page cache (no copy into it, no
  // writeback to wait for, nothing to evict), which halved the copy's kernel CPU. File systems
  // that refuse O_DIRECT (tmpfs) get buffered writes only.
  direct_.reset(::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC));
}

bool Target::write(const void* buf, size_t len, uint64_t offset) {
  const char* p = static_cast<const char*>(buf);
  bool direct = direct_ && direct_ok_.load(std::memory_order_relaxed) &&
                reinterpret_cast<uintptr_t>(p) % kDirectAlign == 0 && len % kDirectAlign == 0 &&
                offset % kDirectAlign == 0;
  while (len > 0) {
    ssize_t n = pwrite(direct ? direct_.get() : fd_.get(), p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EINVAL && direct) {
        // Opened O_DIRECT but wants another alignment: buffered from now on.
        direct_ok_ = false;
        direct = false;
        continue;
      }
      fail(fmt::format("write at {}", offset), path_);
    }
    p += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return !direct;
}

void Target::read(void* buf, size_t len, uint64_t offset) {
  char* p = static_cast<char*>(buf);
  while (len > 0) {
    ssize_t n = pread(fd_.get(), p, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(fmt::format("read at {}", offset), path_);
    }
    if (n == 0) throw std::runtime_error(fmt::format("{}: short read at {}", path_, offset));
    p += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

void Target::zero(uint64_t offset, uint64_t len) {
  if (block_) {
    uint64_t range[2] = {offset, len};
    if (ioctl(fd_.get(), BLKZEROOUT, range) == 0) return;
  } else if (punch_ok_) {
    // A hole reads as zeros and costs nothing to store.
    if (fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(len)) == 0)
      return;
    if (errno != EOPNOTSUPP && errno != ENOSYS) fail(fmt::format("zeroing at {}", offset), path_);
    punch_ok_ = false;
  }
  static const std::vector<char> zeros(1 << 20, 0);
  while (len > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len, zeros.size()));
    write(zeros.data(), n, offset);
    offset += n;
    len -= n;
  }
}

void Target::start_writeback(uint64_t offset, uint64_t len) {
  // Advisory: an error here only means the data goes back later, with the flush.
  sync_file_range(fd_.get(), static_cast<off_t>(offset), static_cast<off_t>(len), SYNC_FILE_RANGE_WRITE);
}

void Target::evict(uint64_t offset, uint64_t len) {
  // Advisory too: waits for the range's writeback (started long ago, so mostly done), then drops
  // it from the page cache. The copy never reads it back.
  sync_file_range(fd_.get(), static_cast<off_t>(offset), static_cast<off_t>(len),
                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  posix_fadvise(fd_.get(), static_cast<off_t>(offset), static_cast<off_t>(len), POSIX_FADV_DONTNEED);
}

void Target::flush() {
  if (fdatasync(fd_.get()) < 0) fail("fdatasync", path_);
}

}  // namespace repvisor::worker
