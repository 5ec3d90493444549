// Loop devices: attached with LOOP_CONFIGURE (one ioctl, autoclear), detached with LOOP_CLR_FD,
// and recognised after a crash by their backing file's device and inode.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "util/fd.hpp"

namespace repvisor::sys {

struct LoopDevice {
  int index = -1;
  std::string path;  // /dev/loopN
  Fd fd;             // held while the job runs: with autoclear, the last close detaches
};

// Attaches `file_fd` to a free loop device. 0 or -errno.
int loop_attach(int file_fd, bool read_only, LoopDevice* out);
// The backing file of /dev/loopN (st_dev, st_ino); -ENXIO when the device is unbound.
int loop_backing(const std::string& device, uint64_t* dev, uint64_t* ino);
// Asks the kernel to detach. A device still open elsewhere is only marked autoclear and goes when
// the last holder closes it: confirm with loop_bound().
int loop_detach(const std::string& device);
// Whether sysfs still shows the device bound to a file.
bool loop_bound(const std::string& device);

}  // namespace repvisor::sys
