// Starting a job's main process: clone3() straight into its cgroup with a pidfd, so the
// process is never outside the cgroup and never addressed by a PID that could be recycled.
#pragma once
#include <sys/types.h>

#include <array>
#include <cstdint>
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
  // Descriptors the child gets as 3, 4, ... in this order (a progress pipe, a listening socket);
  // at most kMaxPassFds.
  std::vector<int> pass_fds;
  // systemd socket activation: the first `listen_fds` of pass_fds are listening sockets;
  // LISTEN_FDS and LISTEN_PID (the child's own PID, known only after the clone) are set for it.
  unsigned listen_fds = 0;
};

// The daemon raises its own RLIMIT_NOFILE soft limit (it holds fds per job); jobs get the limit
// the daemon was started with, as select()-using programs expect. Call once at start-up.
void raise_fd_limit();

constexpr int kMaxPassFds = 16;

// What one spawning thread keeps from one spawn to the next.
//
// Descriptor slots, low in the table, where its children find what they are given. A child
// shares our table at the clone and first takes a copy of only the numbers up to the slots
// (close_range CLOSE_RANGE_UNSHARE). Copying the whole table, as a fork does, and closing it all
// again at exec is O(the daemon's descriptors), ~4 a job: at 1,000 jobs it was ~0.1 ms of CPU a
// start, measured with a start of 1,000 jobs.
//
// The stack its children run on until they exec: one spawn at a time per thread, and the thread
// sleeps until its child has exec'd (CLONE_VFORK), so one stack serves them all. A mapping made
// and unmapped per spawn cost an mmap and a munmap, whose TLB shootdown interrupts every core
// the daemon runs on.
class SpawnContext {
 public:
  static constexpr int kSlots = 2 + kMaxPassFds;  // the error pipe, the output, the passed ones
  static constexpr size_t kStackSize = size_t{64} << 10;

  SpawnContext();  // each slot held by /dev/null; throws if it cannot open them or map the stack
  ~SpawnContext();
  SpawnContext(const SpawnContext&) = delete;
  SpawnContext& operator=(const SpawnContext&) = delete;

  int put(int slot, int fd);        // the slot's number, now referring to fd's file; or -errno
  void clear();                     // what put() placed back to /dev/null: no file is held past a spawn
  int end() const { return end_; }  // one past the highest slot
  void* stack() const { return stack_; }

 private:
  Fd null_;
  std::array<Fd, kSlots> slots_;
  int used_ = 0;  // slots [0, used_) may hold a file
  int end_ = 0;
  void* stack_ = nullptr;
};

struct Spawned {
  pid_t pid = 0;
  Fd pidfd;
  uint64_t start_time = 0;  // sys::process_start_time(pid), read once it has exec'd; 0 if unknown
};

// 0 or -errno. The errno of a failed chdir/exec in the child is reported here, not as an exit.
// `ctx` is the calling thread's own: no other spawn may use it meanwhile.
int spawn(const SpawnRequest& req, SpawnContext& ctx, Spawned* out);

// Resolves argv[0] the way execvp would, against `path_env`; empty when not found.
std::string find_executable(const std::string& name, const std::string& path_env, int* error);

}  // namespace repvisor::sys
