// Small /proc readers used to find and reap what the kernel hands us as child subreaper.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace repvisor::sys {

// The calling thread's children (/proc/thread-self/children): on the loop's thread, the
// orphans the jobs left us (sys/spawner.hpp).
std::vector<pid_t> thread_children();
// Whether the calling thread has any child, alive or not: one waitid, against the open, read and
// close of thread_children(), which is empty when this is false.
bool thread_has_children();
// Every process whose session id is sid; zombies too when asked (they are not gone until reaped).
std::vector<pid_t> session_members(pid_t sid, bool with_zombies = false);
// The cgroup v2 path from /proc/PID/cgroup, also when that cgroup has been removed under a
// zombie; empty when the process is gone.
std::string process_cgroup(pid_t pid);
// The session id; -1 when the process is gone.
pid_t process_session(pid_t pid);
// Field 22 of /proc/PID/stat (clock ticks since boot): with the PID it names one process for
// ever. 0 when the process is gone.
uint64_t process_start_time(pid_t pid);

}  // namespace repvisor::sys
