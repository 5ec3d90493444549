#include "sys/volume.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

namespace repvisor::sys {

namespace {
int openat2_beneath(int dirfd, const std::string& rel, uint64_t flags, mode_t mode) {
  open_how how{};
  how.flags = flags;
  how.mode = mode;
  // BENEATH: no "..", absolute symlink or symlink target may leave the root. NO_MAGICLINKS:
  // no /proc/self/fd tricks. Symbolic links that stay inside the root are followed.
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(syscall(SYS_openat2, dirfd, rel.c_str(), &how, sizeof how));
}

std::string errno_sentence(int err, const std::string& path, const std::string& root) {
  if (err == EXDEV) return fmt::format("'{}' leads out of the volume root {} (through a symbolic link)", path, root);
  if (err == ELOOP) return fmt::format("'{}' is a symbolic link: name a volume by its real path", path);
  return fmt::format("'{}': {}", path, strerror(err));
}
}  // namespace

std::string root_of(const VolumePolicy& p, const std::string& path) {
  for (const auto& r : p.roots)
    if (path.size() > r.size() + 1 && path.compare(0, r.size(), r) == 0 && path[r.size()] == '/') return r;
  return "";
}

bool device_allowed(const VolumePolicy& p, const std::string& path) {
  for (const auto& d : p.devices)
    if (fnmatch(d.c_str(), path.c_str(), FNM_PATHNAME) == 0) return true;
  return false;
}

int open_volume(const VolumePolicy& p, const std::string& path, bool write, uint64_t size, Opened* out,
                std::string* why) {
  const int acc = write ? O_RDWR : O_RDONLY;
  if (device_allowed(p, path)) {
    Fd fd(::open(path.c_str(), acc | O_CLOEXEC | O_NOCTTY));
    if (!fd) {
      *why = fmt::format("'{}': {}", path, strerror(errno));
      return -errno;
    }
    struct stat st {};
    if (fstat(fd.get(), &st) < 0 || !S_ISBLK(st.st_mode)) {
      *why = fmt::format("'{}' is listed in volumes.devices but is not a block device", path);
      return -ENOTBLK;
    }
    out->fd = std::move(fd);
    out->is_device = true;
    return 0;
  }
  const std::string root = root_of(p, path);
  if (root.empty()) {
    *why = fmt::format("'{}' is outside every volume root and not an allowed device", path);
    return -EPERM;
  }
  Fd dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    *why = fmt::format("volume root {}: {}", root, strerror(errno));
    return -errno;
  }
  const std::string rel = path.substr(root.size() + 1);
  Fd fd(openat2_beneath(dir.get(), rel, acc | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0));
  if (!fd && errno == ENOENT && size > 0) {
    // O_EXCL: a file that appeared meanwhile is not ours, and is never called created.
    fd.reset(openat2_beneath(dir.get(), rel, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (fd) {
      out->created = true;
      if (ftruncate(fd.get(), static_cast<off_t>(size)) < 0) {
        const int e = errno;
        unlinkat(dir.get(), rel.c_str(), 0);
        *why = fmt::format("'{}': cannot size it to {} bytes: {}", path, size, strerror(e));
        return -e;
      }
    }
  }
  if (!fd) {
    const int e = errno;
    *why = e == ENOENT ? fmt::format("'{}' does not exist (give a size to create it)", path)
                       : errno_sentence(e, path, root);
    return -e;
  }
  struct stat st {};
  if (fstat(fd.get(), &st) < 0 || !S_ISREG(st.st_mode)) {
    *why = S_ISBLK(st.st_mode) ? fmt::format("'{}' is a block device not listed in volumes.devices", path)
                               : fmt::format("'{}' is not a regular file", path);
    return -EPERM;
  }
  out->fd = std::move(fd);
  return 0;
}

int remove_volume(const std::string& root, const std::string& path) {
  if (path.size() <= root.size() + 1 || path.compare(0, root.size(), root) != 0 || path[root.size()] != '/')
    return -EPERM;
  Fd dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return -errno;
  const std::string rel = path.substr(root.size() + 1);
  const auto slash = rel.rfind('/');
  Fd parent;
  if (slash == std::string::npos) {
    parent.reset(::open(root.c_str(), O_DIRECTORY | O_CLOEXEC));
  } else {
    parent.reset(openat2_beneath(dir.get(), rel.substr(0, slash), O_DIRECTORY | O_CLOEXEC, 0));
  }
  if (!parent) return -errno;
  const std::string name = slash == std::string::npos ? rel : rel.substr(slash + 1);
  struct stat st {};
  if (fstatat(parent.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return -errno;
  if (!S_ISREG(st.st_mode)) return -EPERM;
  return unlinkat(parent.get(), name.c_str(), 0) < 0 ? -errno : 0;
}

std::string read_qcow2_header(int fd, Qcow2Header* out) {
  return parse_qcow2(
      [fd](uint64_t offset, void* buf, size_t len) -> ssize_t {
        const ssize_t n = pread(fd, buf, len, static_cast<off_t>(offset));
        return n < 0 ? -errno : n;
      },
      out);
}

std::string check_volume(const VolumePolicy& p, const std::string& path, bool may_create) {
  if (device_allowed(p, path)) {
    struct stat st {};
    if (stat(path.c_str(), &st) < 0) return fmt::format("'{}': {}", path, strerror(errno));
    if (!S_ISBLK(st.st_mode)) return fmt::format("'{}' is listed in volumes.devices but is not a block device", path);
    return "";
  }
  const std::string root = root_of(p, path);
  if (root.empty()) {
    std::string roots;
    for (const auto& r : p.roots) roots += (roots.empty() ? "" : ", ") + r;
    return fmt::format("'{}' is outside the volume roots ({}) and not an allowed device", path,
                       roots.empty() ? "none configured" : roots);
  }
  Fd dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return fmt::format("volume root {}: {}", root, strerror(errno));
  const std::string rel = path.substr(root.size() + 1);
  Fd fd(openat2_beneath(dir.get(), rel, O_PATH | O_CLOEXEC | O_NOFOLLOW, 0));
  if (!fd) {
    if (errno == ENOENT) {
      if (!may_create) return fmt::format("'{}' does not exist (give a size to create it)", path);
      // The parent must exist and be inside the root.
      const auto slash = rel.rfind('/');
      if (slash == std::string::npos) return "";
      Fd parent(openat2_beneath(dir.get(), rel.substr(0, slash), O_PATH | O_DIRECTORY | O_CLOEXEC, 0));
      if (!parent) return errno_sentence(errno, path.substr(0, root.size() + 1 + slash), root);
      return "";
    }
    return errno_sentence(errno, path, root);
  }
  struct stat st {};
  if (fstat(fd.get(), &st) < 0) return fmt::format("'{}': {}", path, strerror(errno));
  if (S_ISBLK(st.st_mode)) return fmt::format("'{}' is a block device not listed in volumes.devices", path);
  // O_PATH|O_NOFOLLOW opens a final symbolic link itself rather than failing.
  if (S_ISLNK(st.st_mode)) return errno_sentence(ELOOP, path, root);
  if (!S_ISREG(st.st_mode)) return fmt::format("'{}' is not a regular file", path);
  return "";
}

}  // namespace repvisor::sys
