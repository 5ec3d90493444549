// pidfd system calls. glibc 2.36's <sys/pidfd.h> lacks extern "C" (fixed in 2.37), so C++ cannot
// link against it on Debian 12: call the kernel directly.
#pragma once
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace repvisor::sys {

inline int pidfd_open(pid_t pid, unsigned flags) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags)); }
inline int pidfd_send_signal(int pidfd, int sig, siginfo_t* info, unsigned flags) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, info, flags));
}

}  // namespace repvisor::sys
