#include "sys/file_pool.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <stdexcept>
#include <system_error>

namespace repvisor::sys {

namespace fs = std::filesystem;

namespace {
constexpr int kFlags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY;
constexpr mode_t kMode = 0640;
}  // namespace

FilePool::FilePool(std::string dir, size_t capacity)
    : dir_(std::move(dir)), capacity_(capacity), uid_(geteuid()), gid_(getegid()) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw std::runtime_error("cannot create " + dir_ + ": " + ec.message());
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename();
    if (names_.size() < capacity_ && entry.is_regular_file(ec))
      names_.push_back(name);
    else
      fs::remove_all(entry.path(), ec);
  }
  if (ec) throw std::runtime_error("cannot read " + dir_ + ": " + ec.message());
}

int FilePool::open_append(const std::string& path) {
  int fd = ::open(path.c_str(), kFlags);  // a resumed job's log goes on as it is
  if (fd >= 0 || errno != ENOENT) return fd < 0 ? -errno : fd;
  while (!names_.empty()) {
    const std::string from = dir_ + "/" + names_.back();
    if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0) {
      names_.pop_back();
      fd = ::open(path.c_str(), kFlags);
      if (fd < 0) return -errno;
      if (const int r = renew(fd); r < 0) {
        ::close(fd);
        return r;
      }
      return fd;
    }
    if (::access(from.c_str(), F_OK) == 0) break;  // kept; `path` is the trouble, told below
    names_.pop_back();                             // gone from under us: try the next
  }
  fd = ::open(path.c_str(), kFlags | O_CREAT, kMode);
  return fd < 0 ? -errno : fd;
}

int FilePool::renew(int fd) const {
  // As a new file would be, whatever was done to the old one (a log chmod'ed to share it, data
  // written into the pool by hand): empty, ours, its mode, its times now. Each change is made
  // only when needed: every one dirties the inode, and a start of 1,000 jobs did 3,000.
  struct stat st {};
  if (fstat(fd, &st) < 0) return -errno;
  if (st.st_size != 0 && ftruncate(fd, 0) < 0) return -errno;
  if ((st.st_uid != uid_ || st.st_gid != gid_) && fchown(fd, uid_, gid_) < 0) return -errno;
  // After the chown, which may have cleared set-id bits: the mode is set from what it was.
  if ((st.st_mode & 07777) != kMode && fchmod(fd, kMode) < 0) return -errno;
  return futimens(fd, nullptr) < 0 ? -errno : 0;
}

int FilePool::release(const std::string& path) {
  auto remove = [&] { return ::unlink(path.c_str()) < 0 && errno != ENOENT ? -errno : 0; };
  if (names_.size() >= capacity_) return remove();
  if (::truncate(path.c_str(), 0) < 0) return errno == ENOENT ? 0 : -errno;
  // Kept under its own name (a job id's: unique), never over another kept file.
  std::string name = fs::path(path).filename();
  if (renameat2(AT_FDCWD, path.c_str(), AT_FDCWD, (dir_ + "/" + name).c_str(), RENAME_NOREPLACE) < 0)
    return remove();  // emptied, not moved: removed as if there were no pool
  names_.push_back(std::move(name));
  return 0;
}

}  // namespace repvisor::sys
