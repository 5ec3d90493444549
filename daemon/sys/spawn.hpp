// Starting a job's main process: clone3() straight into its cgroup with a pidfd, so the
// process is never outside the cgroup and never addressed by a PID that could be recycled.
#pragma once
#include <sys/types.h>

#include <string>
#include <vector>

#include "util/fd.hpp"

namespace repvisor::sys {

struct SpawnRequest {
  std::string executable;  // resolved path
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=value"
  std::string working_directory;
  int output_fd = -1;  // stdout and stderr; stdin is /dev/null
  int cgroup_fd = -1;  // -1: no cgroup; the child gets its own session (fallback mode)
  // Descriptors the child gets as 3, 4, ... in this order (a progress pipe, a listening socket).
  std::vector<int> pass_fds;
  // systemd socket activation: the first `listen_fds` of pass_fds are listening sockets;
  // LISTEN_FDS and LISTEN_PID (the child's own PID, known only after the clone) are set for it.
  unsigned listen_fds = 0;
};

// The daemon raises its own RLIMIT_NOFILE soft limit (it holds fds per job); jobs get the limit
// the daemon was started with, as select()-using programs expect. Call once at start-up.
void raise_fd_limit();

struct Spawned {
  pid_t pid = 0;
  Fd pidfd;
};

// 0 or -errno. The errno of a failed chdir/exec in the child is reported here, not as an exit.
int spawn(const SpawnRequest& req, Spawned* out);

// Resolves argv[0] the way execvp would, against `path_env`; empty when not found.
std::string find_executable(const std::string& name, const std::string& path_env, int* error);

}  // namespace repvisor::sys
