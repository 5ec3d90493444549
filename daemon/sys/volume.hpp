// Where job volumes may live, and opening them without being led astray: a path is resolved
// below its volume root with openat2(RESOLVE_BENEATH), so neither ".." nor a symbolic link can
// take it out; an existing block device is accepted only when the configuration names it.
#pragma once
#include <sys/types.h>

#include <string>
#include <vector>

#include "sys/qcow2.hpp"
#include "util/fd.hpp"

namespace repvisor::sys {

struct VolumePolicy {
  std::vector<std::string> roots;    // canonical absolute directories
  std::vector<std::string> devices;  // exact paths or glob patterns
};

// The root `path` lies below, or "" (paths are canonical: a string prefix test is exact).
std::string root_of(const VolumePolicy& p, const std::string& path);
bool device_allowed(const VolumePolicy& p, const std::string& path);

struct Opened {
  Fd fd;
  bool created = false;
  bool is_device = false;
};

// Opens `path` for reading (and writing when `write`), creating it with `size` bytes (sparse)
// when it does not exist and `size` is non-zero. 0, or -errno with `why` a sentence.
int open_volume(const VolumePolicy& p, const std::string& path, bool write, uint64_t size, Opened* out,
                std::string* why);

// Removes the regular file `path` below `root`, resolving its directory beneath the root. -errno.
int remove_volume(const std::string& root, const std::string& path);

// The qcow2 header of the image open at `fd` (sys/qcow2.hpp): "" or what is wrong with it.
std::string read_qcow2_header(int fd, Qcow2Header* out);

// The check made when a job is submitted: "" or why the path is refused. Does not create.
std::string check_volume(const VolumePolicy& p, const std::string& path, bool may_create);

}  // namespace repvisor::sys
