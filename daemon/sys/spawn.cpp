#include "sys/spawn.hpp"

#include "sys/proc.hpp"

#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace repvisor::sys {

namespace {

// The child runs in our memory on a stack of its own and never returns: AddressSanitizer's
// instrumentation would poison our shadow memory for frames that are never unwound (and take
// the foreign stack for a broken one). Its code uses no heap and is not instrumented.
#define CHILD_CODE __attribute__((no_sanitize("address")))

rlimit original_nofile{};
bool nofile_raised = false;

[[noreturn]] CHILD_CODE void child_fail(int errpipe) {
  int e = errno;
  ssize_t ignored = ::write(errpipe, &e, sizeof e);
  (void)ignored;
  _exit(127);
}

// Writes "LISTEN_PID=<pid>" into `slot` (sized for any PID) without allocating.
CHILD_CODE void format_listen_pid(char* slot, pid_t pid) {
  char digits[16];
  int n = 0;
  do digits[n++] = static_cast<char>('0' + pid % 10);
  while ((pid /= 10) > 0);
  char* p = slot + strlen("LISTEN_PID=");
  while (n > 0) *p++ = digits[--n];
  *p = '\0';
}

// What the child is given, by the numbers it has them under (the parent's slots).
struct ChildContext {
  const SpawnRequest* req;
  char* const* argv;
  char* const* envp;
  char* listen_pid_slot;
  int keep_below;  // the child's table keeps only the numbers below this
  int errpipe;
  int output;  // -1: none
  int pass[kMaxPassFds];
};

// Runs in the child between clone3() and execve(), in the parent's memory (CLONE_VM) on its own
// stack: async-signal-safe calls only, no allocation. All it writes of the parent's memory is
// errno (the parent's thread-local one: the parent, asleep meanwhile, reads it only for a failed
// clone, when no child ran) and the LISTEN_PID slot the parent built for it.
[[noreturn]] CHILD_CODE void child(const ChildContext& c) {
  // First a table of our own, holding no number above the slots: until then we share the
  // parent's, which its other threads go on using.
  if (close_range(static_cast<unsigned>(c.keep_below), ~0U, CLOSE_RANGE_UNSHARE) < 0) child_fail(c.errpipe);

  // Handlers first, then the mask: the parent's handlers must never run here (see spawn()).
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < _NSIG; ++sig) sigaction(sig, &dfl, nullptr);
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_UNBLOCK, &all, nullptr);

  // Passed descriptors go to 3, 4, ...: the error pipe and they first out of the way (a slot may
  // sit on a target number), then into place; dup2() clears close-on-exec on the copy.
  const int npass = static_cast<int>(c.req->pass_fds.size());
  const int errpipe = fcntl(c.errpipe, F_DUPFD_CLOEXEC, 3 + npass);
  if (errpipe < 0) child_fail(c.errpipe);

  // A session of its own: no terminal signals from us, and in fallback mode the session id
  // names the job's processes.
  if (setsid() < 0) child_fail(errpipe);

  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0 || dup2(devnull, STDIN_FILENO) < 0) child_fail(errpipe);
  if (c.output >= 0) {
    if (dup2(c.output, STDOUT_FILENO) < 0 || dup2(c.output, STDERR_FILENO) < 0) child_fail(errpipe);
  }
  if (chdir(c.req->working_directory.c_str()) < 0) child_fail(errpipe);
  if (nofile_raised && setrlimit(RLIMIT_NOFILE, &original_nofile) < 0) child_fail(errpipe);
  int moved[kMaxPassFds];
  for (int i = 0; i < npass; ++i)
    if ((moved[i] = fcntl(c.pass[i], F_DUPFD_CLOEXEC, 3 + npass)) < 0) child_fail(errpipe);
  for (int i = 0; i < npass; ++i)
    if (dup2(moved[i], 3 + i) < 0) child_fail(errpipe);
  if (c.listen_pid_slot) format_listen_pid(c.listen_pid_slot, getpid());
  // Nothing of the daemon's (its low descriptors, the slots) leaks into the job; the error pipe
  // stays open until the exec.
  if (close_range(3 + npass, ~0U, CLOSE_RANGE_CLOEXEC) < 0) child_fail(errpipe);
  execve(c.req->executable.c_str(), c.argv, c.envp);
  child_fail(errpipe);
}

[[noreturn]] CHILD_CODE void child_entry(void* p) { child(*static_cast<const ChildContext*>(p)); }

#if defined(__x86_64__)
// clone3() with CLONE_VM: the child shares our memory (no copy of the daemon's page tables, the
// cost of a fork that only execs) and runs on its own stack, so it cannot return into this
// frame: it calls entry(arg) straight from the syscall, with no frame below. glibc 2.36 has no
// clone3 wrapper; its clone() cannot take CLONE_INTO_CGROUP.
CHILD_CODE long clone3_vm(clone_args* args, void (*entry)(void*), void* arg) {
  long ret;
  register void (*r12)(void*) asm("r12") = entry;  // kept by syscall, copied to the child
  register void* r13 asm("r13") = arg;
  asm volatile(
      "syscall\n\t"
      "testq %%rax, %%rax\n\t"
      "jnz 1f\n\t"
      "xorl %%ebp, %%ebp\n\t"  // the child: outermost frame, on the new stack's aligned top
      "movq %%r13, %%rdi\n\t"
      "callq *%%r12\n\t"
      "hlt\n"  // entry() never returns
      "1:\n\t"
      : "=a"(ret)
      : "0"(static_cast<long>(SYS_clone3)), "D"(args), "S"(sizeof(clone_args)), "r"(r12), "r"(r13)
      : "rcx", "r11", "memory");
  return ret;
}
#endif

}  // namespace

SpawnContext::SpawnContext() {
  null_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_) throw std::system_error(errno, std::generic_category(), "opening /dev/null");
  for (Fd& slot : slots_) {
    // Above 0-2, which the child's own stdin, stdout and stderr take over.
    slot.reset(fcntl(null_.get(), F_DUPFD_CLOEXEC, 3));
    if (!slot) throw std::system_error(errno, std::generic_category(), "holding descriptors for spawns");
    end_ = std::max(end_, slot.get() + 1);
  }
  stack_ = mmap(nullptr, kStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack_ == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mapping a stack for spawns");
}

SpawnContext::~SpawnContext() { munmap(stack_, kStackSize); }

int SpawnContext::put(int slot, int fd) {
  used_ = std::max(used_, slot + 1);
  const int number = slots_[static_cast<size_t>(slot)].get();
  return dup3(fd, number, O_CLOEXEC) < 0 ? -errno : number;
}

void SpawnContext::clear() {
  // dup3 onto a slot cannot fail for want of a number: it is held.
  for (int i = 0; i < used_; ++i) dup3(null_.get(), slots_[static_cast<size_t>(i)].get(), O_CLOEXEC);
  used_ = 0;
}

void raise_fd_limit() {
  if (getrlimit(RLIMIT_NOFILE, &original_nofile) < 0 || original_nofile.rlim_cur >= original_nofile.rlim_max) return;
  rlimit raised = original_nofile;
  raised.rlim_cur = raised.rlim_max;
  nofile_raised = setrlimit(RLIMIT_NOFILE, &raised) == 0;
}

int spawn(const SpawnRequest& req, SpawnContext& spawning, Spawned* out) {
  // Everything the child needs is built before the clone: it must not allocate.
  std::vector<char*> argv, envp;
  for (const auto& a : req.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : req.env) envp.push_back(const_cast<char*>(e.c_str()));
  std::string listen_pid(32, '\0'), listen_fds;
  char* listen_pid_slot = nullptr;
  if (req.listen_fds > 0) {
    listen_pid.replace(0, strlen("LISTEN_PID="), "LISTEN_PID=");
    listen_pid_slot = listen_pid.data();
    listen_fds = "LISTEN_FDS=" + std::to_string(req.listen_fds);
    envp.push_back(listen_pid_slot);
    envp.push_back(listen_fds.data());
  }
  envp.push_back(nullptr);

  const int npass = static_cast<int>(req.pass_fds.size());
  if (npass > kMaxPassFds) return -E2BIG;
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) return -errno;
  Fd rd(pipefd[0]), wr(pipefd[1]);

  // What the child is given goes into the slots: past the clone it sees no higher number.
  ChildContext ctx{&req, argv.data(), envp.data(), listen_pid_slot, spawning.end(), -1, -1, {}};
  int placed = ctx.errpipe = spawning.put(0, wr.get());
  if (placed >= 0 && req.output_fd >= 0) placed = ctx.output = spawning.put(1, req.output_fd);
  for (int i = 0; i < npass && placed >= 0; ++i) placed = ctx.pass[i] = spawning.put(2 + i, req.pass_fds[i]);
  if (placed < 0) {
    spawning.clear();
    return placed;
  }

  int pidfd = -1;
  clone_args args{};
  // CLONE_FILES: the child shares our descriptor table until it takes its small copy (child()).
  args.flags = CLONE_PIDFD | CLONE_VFORK | CLONE_FILES;
  args.pidfd = reinterpret_cast<uintptr_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  if (req.cgroup_fd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(req.cgroup_fd);
  }
  // CLONE_VFORK: we resume only once the child has exec'd or died, so the error pipe below can
  // be read without blocking.
  long pid;
#if defined(__x86_64__)
  // The child runs on this thread's spawn stack; ours is shared with it, but we sleep until it
  // has exec'd.
  args.flags |= CLONE_VM;
  args.stack = reinterpret_cast<uintptr_t>(spawning.stack());
  args.stack_size = SpawnContext::kStackSize;
  // Sharing our memory, the child must not run any of our signal handlers (libuv's would write
  // into our loop): everything stays blocked until it has reset them to the default.
  sigset_t all, old_mask;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old_mask);
  pid = clone3_vm(&args, child_entry, &ctx);
  const int clone_errno = pid < 0 ? static_cast<int>(-pid) : 0;
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
#else
  // Elsewhere: a child with its own copy of our memory (page tables copied, then dropped at exec).
  pid = syscall(SYS_clone3, &args, sizeof args);
  const int clone_errno = pid < 0 ? errno : 0;
  if (pid == 0) child_entry(&ctx);
#endif
  // Before the read: a slot still holding the pipe's write end would keep it from ending.
  spawning.clear();
  if (pid < 0) return -clone_errno;

  Fd owned_pidfd(pidfd);
  wr.reset();
  int child_errno = 0;
  ssize_t n;
  do n = ::read(rd.get(), &child_errno, sizeof child_errno);
  while (n < 0 && errno == EINTR);
  if (n == sizeof child_errno) {
    siginfo_t si{};
    waitid(P_PIDFD, static_cast<id_t>(owned_pidfd.get()), &si, WEXITED);
    return -(child_errno ? child_errno : EIO);
  }
  out->pid = static_cast<pid_t>(pid);
  out->pidfd = std::move(owned_pidfd);
  // Here, on the spawning thread rather than the caller's: /proc/PID/stat is ~15 us to read.
  out->start_time = process_start_time(out->pid);
  return 0;
}

std::string find_executable(const std::string& name, const std::string& path_env, int* error) {
  *error = ENOENT;
  auto usable = [&](const std::string& p) {
    struct stat st {};
    if (stat(p.c_str(), &st) < 0) {
      *error = errno;
      return false;
    }
    if (S_ISDIR(st.st_mode)) {
      *error = EISDIR;
      return false;
    }
    if (access(p.c_str(), X_OK) < 0) {
      *error = errno;
      return false;
    }
    return true;
  };
  if (name.empty()) return {};
  if (name.find('/') != std::string::npos) return usable(name) ? name : std::string();
  size_t start = 0;
  while (start <= path_env.size()) {
    size_t end = path_env.find(':', start);
    if (end == std::string::npos) end = path_env.size();
    std::string dir = path_env.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    int saved = *error;
    if (usable(candidate)) return candidate;
    if (*error == ENOENT) *error = saved;
    start = end + 1;
  }
  return {};
}

}  // namespace repvisor::sys
