// pidfd system calls. glibc 2.36's <sys/pidfd.h> lacks extern "C" (fixed in 2.37), so C++ cannot
// link against it on Debian 12: call the kernel directly.
#pragma once
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace repvisor::sys {

inline int pidfd_open(pid_t pid, unsigned flags) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags)); }
inline int pidfd_send_signal(int pidfd, int sig, siginfo_t* info, unsigned flags) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, info, flags));
}

// How a process that is not our child ended, as waitid() would tell its parent: *code is
// CLD_EXITED, CLD_KILLED or CLD_DUMPED and *status the exit status or signal. The kernel keeps
// it for a pidfd's holder once the process has been reaped (PIDFD_GET_INFO with
// PIDFD_INFO_EXIT, Linux 6.15); until then -ENODATA (a zombie: its pidfd reports POLLHUP when
// its parent reaps it). -ENOTTY / -EINVAL on older kernels, -ESRCH on 6.13-6.14 once reaped.
// The structure is the kernel's UAPI (linux/pidfd.h), which Debian 12's headers predate.
inline int pidfd_exit_status(int pidfd, int* code, int* status) {
  struct Info {
    uint64_t mask, cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exit_code;
    uint32_t coredump_mask, spare;
  } info{};
  constexpr uint64_t kInfoExit = 1u << 3;
  info.mask = kInfoExit;
  if (::ioctl(pidfd, _IOWR(0xFF, 11, Info), &info) < 0) return -errno;
  if (!(info.mask & kInfoExit)) return -ENODATA;
  if (WIFEXITED(info.exit_code)) {
    *code = CLD_EXITED;
    *status = WEXITSTATUS(info.exit_code);
  } else {
    *code = WCOREDUMP(info.exit_code) ? CLD_DUMPED : CLD_KILLED;
    *status = WTERMSIG(info.exit_code);
  }
  return 0;
}

}  // namespace repvisor::sys
