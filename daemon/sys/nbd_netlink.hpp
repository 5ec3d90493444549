// The kernel NBD client (/dev/nbdN) through its generic netlink interface ("nbd" family):
// NBD_CMD_CONNECT hands the kernel a socket that has finished the NBD handshake; NBD_CMD_DISCONNECT
// flushes and lets it go (the older ioctl disconnect does not flush). Message building is kept
// apart from sending so that it can be checked where no NBD module is loaded.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace repvisor::sys {

struct NbdConnect {
  int index = -1;  // -1: the kernel picks a free device
  std::vector<int> sockets;
  uint64_t size_bytes = 0;
  uint64_t block_size = 512;
  uint64_t server_flags = 0;  // NBD_FLAG_* from the handshake
  uint64_t timeout_sec = 0;   // 0: no I/O timeout
};

// Each returns the message length written into `buf` (0 when it does not fit).
size_t nbd_build_get_family(void* buf, size_t len, uint32_t seq);
size_t nbd_build_connect(void* buf, size_t len, uint16_t family, uint32_t seq, const NbdConnect& c);
size_t nbd_build_disconnect(void* buf, size_t len, uint16_t family, uint32_t seq, uint32_t index);

// The "nbd" family id; -ENOENT with a sentence when the kernel module is not loaded.
int nbd_family(uint16_t* family, std::string* why);
// Connects; `index` gets the device number. 0 or -errno with `why`.
int nbd_connect(const NbdConnect& c, uint32_t* index, std::string* why);
int nbd_disconnect(uint32_t index, std::string* why);

}  // namespace repvisor::sys
