#include "sys/loop.hpp"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace repvisor::sys {

namespace {
constexpr unsigned kLoopMajor = 7;

// Without udev (containers) a freshly allocated /dev/loopN may have no node yet.
int open_loop_node(int index, int flags) {
  const std::string path = "/dev/loop" + std::to_string(index);
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    if (mknod(path.c_str(), S_IFBLK | 0660, makedev(kLoopMajor, static_cast<unsigned>(index))) < 0 && errno != EEXIST)
      return -errno;
    fd = ::open(path.c_str(), flags | O_CLOEXEC);
  }
  return fd < 0 ? -errno : fd;
}

std::string sysfs_dir(const std::string& device) {
  const auto slash = device.rfind('/');
  return "/sys/block/" + device.substr(slash == std::string::npos ? 0 : slash + 1);
}
}  // namespace

int loop_attach(int file_fd, bool read_only, LoopDevice* out) {
  Fd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control) return -errno;
  // Another program may take the free device between GET_FREE and CONFIGURE: try again.
  for (int attempt = 0; attempt < 16; ++attempt) {
    const int index = ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (index < 0) return -errno;
    const int fd = open_loop_node(index, read_only ? O_RDONLY : O_RDWR);
    if (fd < 0) return fd;
    Fd dev(fd);
    loop_config cfg{};
    cfg.fd = static_cast<uint32_t>(file_fd);
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | (read_only ? LO_FLAGS_READ_ONLY : 0);
    if (ioctl(dev.get(), LOOP_CONFIGURE, &cfg) < 0) {
      if (errno == EBUSY) continue;
      return -errno;
    }
    out->index = index;
    out->path = "/dev/loop" + std::to_string(index);
    out->fd = std::move(dev);
    return 0;
  }
  return -EBUSY;
}

int loop_backing(const std::string& device, uint64_t* dev, uint64_t* ino) {
  Fd fd(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return -errno;
  loop_info64 info{};
  if (ioctl(fd.get(), LOOP_GET_STATUS64, &info) < 0) return -errno;
  *dev = info.lo_device;
  *ino = info.lo_inode;
  return 0;
}

int loop_detach(const std::string& device) {
  Fd fd(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return -errno;
  if (ioctl(fd.get(), LOOP_CLR_FD) < 0) return errno == ENXIO ? 0 : -errno;  // ENXIO: already unbound
  return 0;
}

bool loop_bound(const std::string& device) {
  struct stat st {};
  return stat((sysfs_dir(device) + "/loop/backing_file").c_str(), &st) == 0;
}

}  // namespace repvisor::sys
