#include "sys/log_cut.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>

namespace repvisor::sys {

namespace {

int64_t file_size(int fd) {
  struct stat st {};
  if (fstat(fd, &st) < 0) return -errno;
  return st.st_size;
}

uint64_t round_down(uint64_t v, uint64_t block) { return v - v % block; }

int write_marker(int fd, uint64_t at, uint64_t cut) {
  const std::string m = log_marker(cut);
  ssize_t n = 0;
  do n = pwrite(fd, m.data(), m.size(), static_cast<off_t>(at));
  while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  return static_cast<size_t>(n) == m.size() ? 0 : -EIO;
}

int collapse(int fd, uint64_t offset, uint64_t len) {
  if (fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, static_cast<off_t>(offset), static_cast<off_t>(len)) < 0) return -errno;
  return 0;
}

}  // namespace

std::string log_marker(uint64_t cut) {
  std::string m = fmt::format("\n[repvisor: {} bytes of this log were cut here]", cut);
  m.resize(kLogMarkerSize - 1, ' ');
  m.push_back('\n');
  return m;
}

uint64_t log_block_size(int fd) {
  struct statfs sf {};
  if (fstatfs(fd, &sf) < 0) return 0;
  return sf.f_bsize > 0 ? static_cast<uint64_t>(sf.f_bsize) : 4096;
}

int64_t cut_log_tail(int fd, uint64_t limit, uint64_t block) {
  const int64_t size = file_size(fd);
  if (size < 0) return size;
  if (static_cast<uint64_t>(size) <= limit) return 0;
  // Less than `limit` + one block is left: never less than asked for. The range ends before
  // the end of the file, as a collapse must.
  const uint64_t len = round_down(static_cast<uint64_t>(size) - limit, block);
  if (len == 0) return 0;
  if (int r = collapse(fd, 0, len); r < 0) return r;
  return static_cast<int64_t>(len);
}

int64_t cut_log_both(int fd, uint64_t layout, uint64_t limit, uint64_t block, uint64_t cut_so_far) {
  const int64_t size = file_size(fd);
  if (size < 0) return size;
  const uint64_t head = round_down(layout / 2, block);
  const uint64_t tail_start = head + block;  // the block [head, tail_start) ends with the marker
  limit = std::max(limit, tail_start + block);
  if (static_cast<uint64_t>(size) <= limit) return 0;
  const uint64_t len = round_down(static_cast<uint64_t>(size) - limit, block);
  if (len == 0) return 0;
  // tail_start + len <= tail_start + size - limit < size: the range ends before the end.
  if (int r = collapse(fd, tail_start, len); r < 0) return r;
  // The first cut also overwrites the head's last kLogMarkerSize bytes with the marker.
  const uint64_t removed = len + (cut_so_far == 0 ? kLogMarkerSize : 0);
  if (int r = write_marker(fd, tail_start - kLogMarkerSize, cut_so_far + removed); r < 0) return r;
  return static_cast<int64_t>(removed);
}

int64_t cut_log_head(int fd, uint64_t limit) {
  const int64_t size = file_size(fd);
  if (size < 0) return size;
  if (static_cast<uint64_t>(size) <= limit) return 0;
  if (ftruncate(fd, static_cast<off_t>(limit)) < 0) return -errno;
  return size - static_cast<int64_t>(limit);
}

int64_t seal_log_head(int fd, uint64_t limit, uint64_t cut_so_far, bool sealed) {
  const int64_t size = file_size(fd);
  if (size < 0) return size;
  if (cut_so_far == 0 && static_cast<uint64_t>(size) <= limit) return 0;
  const uint64_t keep = limit - kLogMarkerSize;
  if (sealed && static_cast<uint64_t>(size) <= limit) return 0;
  uint64_t removed = static_cast<uint64_t>(size) > keep ? static_cast<uint64_t>(size) - keep : 0;
  // A sealed file's last kLogMarkerSize bytes are the old marker, not the job's.
  if (sealed) removed -= std::min<uint64_t>(removed, kLogMarkerSize);
  if (ftruncate(fd, static_cast<off_t>(keep)) < 0) return -errno;
  if (int r = write_marker(fd, keep, cut_so_far + removed); r < 0) return r;
  return static_cast<int64_t>(removed);
}

}  // namespace repvisor::sys
