#include "sys/spawn.hpp"

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

#include <cerrno>
#include <cstring>

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

// Runs in the child between clone3() and execve(), in the parent's memory (CLONE_VM) on its own
// stack: async-signal-safe calls only, no allocation. All it writes of the parent's memory is
// errno (the parent's thread-local one: the parent, asleep meanwhile, reads it only for a failed
// clone, when no child ran) and the LISTEN_PID slot the parent built for it.
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

[[noreturn]] CHILD_CODE void child(const SpawnRequest& req, char* const* argv, char* const* envp, char* listen_pid_slot,
                                   int errpipe) {
  // Handlers first, then the mask: the parent's handlers must never run here (see spawn()).
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < _NSIG; ++sig) sigaction(sig, &dfl, nullptr);
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_UNBLOCK, &all, nullptr);

  // A session of its own: no terminal signals from us, and in fallback mode the session id
  // names the job's processes.
  if (setsid() < 0) child_fail(errpipe);

  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0 || dup2(devnull, STDIN_FILENO) < 0) child_fail(errpipe);
  if (req.output_fd >= 0) {
    if (dup2(req.output_fd, STDOUT_FILENO) < 0 || dup2(req.output_fd, STDERR_FILENO) < 0) child_fail(errpipe);
  }
  if (chdir(req.working_directory.c_str()) < 0) child_fail(errpipe);
  if (nofile_raised && setrlimit(RLIMIT_NOFILE, &original_nofile) < 0) child_fail(errpipe);
  // Passed descriptors go to 3, 4, ...: first out of the way (a source may sit on a target
  // number), then into place; dup2() clears close-on-exec on the copy.
  const int npass = static_cast<int>(req.pass_fds.size());
  int moved[16];
  if (npass > 16) {
    errno = E2BIG;
    child_fail(errpipe);
  }
  for (int i = 0; i < npass; ++i)
    if ((moved[i] = fcntl(req.pass_fds[i], F_DUPFD_CLOEXEC, 3 + npass)) < 0) child_fail(errpipe);
  for (int i = 0; i < npass; ++i)
    if (dup2(moved[i], 3 + i) < 0) child_fail(errpipe);
  if (listen_pid_slot) format_listen_pid(listen_pid_slot, getpid());
  // Nothing of the daemon's (bus sockets, other jobs' pidfds) leaks into the job.
  if (close_range(3 + npass, ~0U, CLOSE_RANGE_CLOEXEC) < 0) child_fail(errpipe);
  execve(req.executable.c_str(), argv, envp);
  child_fail(errpipe);
}

struct ChildContext {
  const SpawnRequest* req;
  char* const* argv;
  char* const* envp;
  char* listen_pid_slot;
  int errpipe;
};

[[noreturn]] CHILD_CODE void child_entry(void* p) {
  const auto* c = static_cast<const ChildContext*>(p);
  child(*c->req, c->argv, c->envp, c->listen_pid_slot, c->errpipe);
}

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

void raise_fd_limit() {
  if (getrlimit(RLIMIT_NOFILE, &original_nofile) < 0 || original_nofile.rlim_cur >= original_nofile.rlim_max) return;
  rlimit raised = original_nofile;
  raised.rlim_cur = raised.rlim_max;
  nofile_raised = setrlimit(RLIMIT_NOFILE, &raised) == 0;
}

int spawn(const SpawnRequest& req, Spawned* out) {
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

  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) return -errno;
  Fd rd(pipefd[0]), wr(pipefd[1]);

  int pidfd = -1;
  clone_args args{};
  args.flags = CLONE_PIDFD | CLONE_VFORK;
  args.pidfd = reinterpret_cast<uintptr_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  if (req.cgroup_fd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(req.cgroup_fd);
  }
  // CLONE_VFORK: we resume only once the child has exec'd or died, so the error pipe below can
  // be read without blocking.
  ChildContext ctx{&req, argv.data(), envp.data(), listen_pid_slot, wr.get()};
  long pid;
#if defined(__x86_64__)
  // The child's stack; ours is shared with it, but we sleep until it has exec'd.
  constexpr size_t kStack = size_t{64} << 10;
  void* stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return -errno;
  args.flags |= CLONE_VM;
  args.stack = reinterpret_cast<uintptr_t>(stack);
  args.stack_size = kStack;
  // Sharing our memory, the child must not run any of our signal handlers (libuv's would write
  // into our loop): everything stays blocked until it has reset them to the default.
  sigset_t all, old_mask;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old_mask);
  pid = clone3_vm(&args, child_entry, &ctx);
  const int clone_errno = pid < 0 ? static_cast<int>(-pid) : 0;
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  munmap(stack, kStack);
  if (pid < 0) return -clone_errno;
#else
  // Elsewhere: a child with its own copy of our memory (page tables copied, then dropped at exec).
  pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) return -errno;
  if (pid == 0) child_entry(&ctx);
#endif

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
