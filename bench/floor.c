/* The syscall floor: what stopping a process costs with nothing in between. posix_spawn the
 * benchmark child, wait until its SIGTERM disposition is installed (/proc/PID/status), then time
 * pidfd_send_signal -> waitid(P_PIDFD). Escalation: SIGTERM, poll the pidfd for the timeout,
 * SIGKILL, waitid; the delay beyond the timeout is reported.
 * At scale (SCALE children, 0 skips it): start them one after another until all run, then stop
 * them all (SIGTERM to each, then reap each), twice: as plain children, and each in a cgroup of
 * its own (created, entered by clone3(CLONE_INTO_CGROUP), removed once empty), which is the work
 * a supervisor that keeps one cgroup per job cannot avoid. The host's figures for those phases
 * bound what any supervisor can reach on it.
 * With DURABLE_DIR, a force stop is also timed with the least work a supervisor that keeps
 * repvisord's promises must do: the child in a cgroup of its own, killed whole (cgroup.kill),
 * the request recorded, the child reaped, its cgroup removed, the end recorded and both records
 * synced (4 KiB each, pwrite into a preallocated file in DURABLE_DIR, one fdatasync) before the
 * stop counts as done. No IPC and no database: a floor, not a supervisor.
 * With EACH set in the environment, the SCALE children are also stopped one after the other
 * (stop_each_ms, and stop_each_cgroups_ms with a cgroup each).
 * Usage: floor CHILD [ITERATIONS] [ESCALATIONS] [SCALE] [DURABLE_DIR]   Prints one JSON object. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CPU time (ms) every CPU of the machine has spent busy (user, nice, system, irq, softirq) from
 * /proc/stat, in clock ticks: only for phases of many ticks. A stop-all's children exit on every
 * core, so its wall time is bounded by this over the number of cores, not by our own work alone. */
static double machine_busy_ms(void) {
  unsigned long long user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
  FILE* f = fopen("/proc/stat", "r");
  if (!f) return 0;
  if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &sys, &idle, &iowait, &irq, &softirq) != 7)
    user = nice = sys = irq = softirq = 0;
  fclose(f);
  return (double)(user + nice + sys + irq + softirq) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

/* Whether SIGTERM (bit 15) is caught or ignored yet, per /proc/PID/status. */
static int term_ready(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE* f = fopen(path, "r");
  if (!f) return 0;
  int ready = 0;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "SigCgt:", 7) || !strncmp(line, "SigIgn:", 7))
      if (strtoull(line + 7, NULL, 16) & (1ull << (SIGTERM - 1))) ready = 1;
  fclose(f);
  return ready;
}

static int start(const char* child, const char* mode, pid_t* pid) {
  char* argv[] = {(char*)child, (char*)mode, NULL};
  if (posix_spawn(pid, child, NULL, NULL, argv, environ) != 0) return -1;
  while (!term_ready(*pid)) usleep(100);
  return (int)syscall(SYS_pidfd_open, *pid, 0);
}

/* The cgroup2 mount point, from /proc/self/mountinfo ("... /sys/fs/cgroup rw,... - cgroup2 ...");
 * NULL if there is none. Paths with blanks (escaped as \040) are not expected here. */
static char* cgroup2_mount(void) {
  FILE* f = fopen("/proc/self/mountinfo", "r");
  char line[4096], point[4096];
  char* found = NULL;
  while (f && !found && fgets(line, sizeof line, f)) {
    const char* sep = strstr(line, " - ");
    if (sep && !strncmp(sep + 3, "cgroup2 ", 8) && sscanf(line, "%*s %*s %*s %*s %4095s", point) == 1)
      found = strdup(point);
  }
  if (f) fclose(f);
  return found;
}

/* Starts CHILD `mode` ("term", "ignore") in the cgroup open as dirfd, or by posix_spawn if dirfd < 0; returns its
 * pidfd. clone3 (fork-like: this program's page tables are few) because posix_spawn cannot name
 * a cgroup. */
static int start_in(const char* child, const char* mode, int dirfd, pid_t* pid) {
  if (dirfd < 0) {
    char* argv[] = {(char*)child, (char*)mode, NULL};
    if (posix_spawn(pid, child, NULL, NULL, argv, environ) != 0) return -1;
    return (int)syscall(SYS_pidfd_open, *pid, 0);
  }
  int pidfd = -1;
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = CLONE_PIDFD | CLONE_INTO_CGROUP;
  args.pidfd = (unsigned long)&pidfd;
  args.exit_signal = SIGCHLD;
  args.cgroup = (unsigned long)dirfd;
  long r = syscall(SYS_clone3, &args, sizeof args);
  if (r < 0) return -1;
  if (r == 0) {
    char* argv[] = {(char*)child, (char*)mode, NULL};
    execve(child, argv, environ);
    _exit(127);
  }
  *pid = (pid_t)r;
  return pidfd;
}

/* Start SCALE children one after another, then (once all have their SIGTERM handler, untimed)
 * stop them all: SIGTERM to each, then each reaped, or with `each`, one after the other (SIGTERM,
 * reaped, its cgroup removed, then the next: what a client stopping one job at a time waits for).
 * With a cgroup parent, each child gets a cgroup of its own, removed after. */
static int scale_run(const char* child, int scale, const char* parent, int each, double* start_ms, double* stop_ms,
                     double* stop_cpu_ms) {
  int* fds = calloc(scale, sizeof(int));
  int* dirs = calloc(scale, sizeof(int));
  pid_t* pids = calloc(scale, sizeof(pid_t));
  char path[4096];
  siginfo_t si;
  int ok = 0;
  double t0 = now_ms();
  for (int i = 0; i < scale; ++i) {
    dirs[i] = -1;
    if (parent) {
      snprintf(path, sizeof path, "%s/%d", parent, i);
      if (mkdir(path, 0755) < 0 || (dirs[i] = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) goto out;
    }
    if ((fds[i] = start_in(child, "term", dirs[i], &pids[i])) < 0) goto out;
  }
  *start_ms = now_ms() - t0;
  for (int i = 0; i < scale; ++i)
    while (!term_ready(pids[i])) usleep(100);
  t0 = now_ms();
  const double busy0 = machine_busy_ms();
  if (!each)
    for (int i = 0; i < scale; ++i) syscall(SYS_pidfd_send_signal, fds[i], SIGTERM, NULL, 0);
  for (int i = 0; i < scale; ++i) {
    if (each) syscall(SYS_pidfd_send_signal, fds[i], SIGTERM, NULL, 0);
    waitid(P_PIDFD, fds[i], &si, WEXITED);
    close(fds[i]);
    if (parent) {
      close(dirs[i]);
      snprintf(path, sizeof path, "%s/%d", parent, i);
      /* A cgroup whose last process was just reaped may still be busy for a moment. */
      while (rmdir(path) < 0 && errno == EBUSY) usleep(50);
    }
  }
  *stop_ms = now_ms() - t0;
  *stop_cpu_ms = machine_busy_ms() - busy0;
  ok = 1;
out:
  free(fds);
  free(dirs);
  free(pids);
  return ok;
}

static int cgroup_kill(const char* cgroup) {
  char path[4300];
  snprintf(path, sizeof path, "%s/cgroup.kill", cgroup);
  int k = open(path, O_WRONLY | O_CLOEXEC);
  int ok = k >= 0 && write(k, "1", 1) == 1;
  if (k >= 0) close(k);
  return ok;
}

/* The durable stop above, n times, under the cgroup `parent` (created and removed here),
 * recording into DURABLE_DIR/floor.records; times into v. A force stop kills at once; an
 * escalation (`escalate`, a child that ignores SIGTERM) sends SIGTERM, records and syncs that,
 * waits out a 1 s timeout on the pidfd (ppoll: no millisecond rounding), then kills, and v
 * holds the delay beyond the timeout. */
static int durable_stop(const char* child, int n, const char* parent, const char* dir, int escalate, double* v) {
  enum { kRecord = 4096, kSlots = 512 };
  static char record[kRecord];
  char path[4200], file[4200];
  snprintf(file, sizeof file, "%s/floor.records", dir);
  int rec = open(file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (rec < 0) {
    fprintf(stderr, "floor: %s: %s (durable figures left out)\n", file, strerror(errno));
    return 0;
  }
  /* Preallocated and synced first, as a database's log is once it has been used: an append
   * would make each sync write the file's size too. */
  for (int i = 0; i < 2 * kSlots; ++i)
    if (pwrite(rec, record, kRecord, (off_t)i * kRecord) != kRecord) goto fail;
  if (fsync(rec) < 0 || mkdir(parent, 0755) < 0) goto fail;
  for (int i = 0; i < n; ++i) {
    snprintf(path, sizeof path, "%s/%d", parent, i);
    int dirfd = -1;
    pid_t pid;
    if (mkdir(path, 0755) < 0 || (dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) goto fail_cg;
    int pidfd = start_in(child, escalate ? "ignore" : "term", dirfd, &pid);
    close(dirfd);
    if (pidfd < 0) goto fail_cg;
    while (!term_ready(pid)) usleep(100);
    const off_t at = (off_t)(i % kSlots) * 2 * kRecord;
    siginfo_t si;
    double t0 = now_ms();
    if (escalate) {
      syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0);
      if (pwrite(rec, record, kRecord, at) != kRecord || fdatasync(rec) < 0) goto fail_cg;
      const double left = 1000.0 - (now_ms() - t0);
      struct timespec timeout = {(time_t)(left / 1000), (long)((left - (time_t)(left / 1000) * 1000) * 1e6)};
      struct pollfd p = {pidfd, POLLIN, 0};
      if (left > 0) ppoll(&p, 1, &timeout, NULL);
    }
    if (!cgroup_kill(path)) goto fail_cg;
    if (pwrite(rec, record, kRecord, at) != kRecord) goto fail_cg;
    waitid(P_PIDFD, pidfd, &si, WEXITED);
    while (rmdir(path) < 0 && errno == EBUSY) continue; /* busy for a moment after the reap */
    if (pwrite(rec, record, kRecord, at + kRecord) != kRecord || fdatasync(rec) < 0) goto fail_cg;
    v[i] = now_ms() - t0 - (escalate ? 1000.0 : 0.0);
    close(pidfd);
  }
  rmdir(parent);
  close(rec);
  unlink(file);
  return 1;
fail_cg:
  rmdir(parent);
fail:
  fprintf(stderr, "floor: durable %s (%s, %s): %s (figures left out)\n", escalate ? "escalation" : "force stop", parent,
          file, strerror(errno));
  close(rec);
  unlink(file);
  return 0;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

/* A count argument: a whole number from 1 to 1,000,000, or exit 2 naming it. */
static int count(const char* s, const char* what) {
  char* end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end != 0 || errno != 0 || v < 1 || v > 1000000) {
    fprintf(stderr, "floor: %s: '%s' is not a whole number from 1 to 1000000\n", what, s);
    exit(2);
  }
  return (int)v;
}

static void stats(const char* name, double* v, int n, int last) {
  qsort(v, n, sizeof *v, cmp);
  printf("\"%s\": {\"n\": %d, \"median_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": %.4f}%s", name, n, v[n / 2],
         v[(int)(n * 0.99) < n ? (int)(n * 0.99) : n - 1], v[n - 1], last ? "" : ", ");
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: floor CHILD [ITERATIONS] [ESCALATIONS] [SCALE] [DURABLE_DIR]\n");
    return 2;
  }
  int n = argc > 2 ? count(argv[2], "ITERATIONS") : 200, esc = argc > 3 ? count(argv[3], "ESCALATIONS") : 5,
      scale = argc > 4 ? count(argv[4], "SCALE") : 1000;
  if (access(argv[1], X_OK) != 0) {
    fprintf(stderr, "floor: CHILD: '%s': %s\n", argv[1], strerror(errno));
    return 2;
  }
  struct stat dir_st;
  const int dir_error = argc <= 5 ? 0 : stat(argv[5], &dir_st) != 0 ? errno : S_ISDIR(dir_st.st_mode) ? 0 : ENOTDIR;
  if (dir_error) {
    fprintf(stderr, "floor: DURABLE_DIR: '%s': %s\n", argv[5], strerror(dir_error));
    return 2;
  }
  struct rlimit nofile;
  getrlimit(RLIMIT_NOFILE, &nofile); /* two descriptors per child at scale */
  nofile.rlim_cur = nofile.rlim_max;
  setrlimit(RLIMIT_NOFILE, &nofile);
  double* force = calloc(n, sizeof(double));
  double* grace = calloc(n, sizeof(double));
  double* over = calloc(esc, sizeof(double));
  siginfo_t si;
  for (int i = 0; i < n; ++i) {
    pid_t pid;
    int fd = start(argv[1], "term", &pid);
    double t0 = now_ms();
    syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
    waitid(P_PIDFD, fd, &si, WEXITED);
    force[i] = now_ms() - t0;
    close(fd);
    fd = start(argv[1], "term", &pid);
    t0 = now_ms();
    syscall(SYS_pidfd_send_signal, fd, SIGTERM, NULL, 0);
    waitid(P_PIDFD, fd, &si, WEXITED);
    grace[i] = now_ms() - t0;
    close(fd);
  }
  for (int i = 0; i < esc; ++i) {
    pid_t pid;
    int fd = start(argv[1], "ignore", &pid);
    double t0 = now_ms();
    syscall(SYS_pidfd_send_signal, fd, SIGTERM, NULL, 0);
    struct pollfd p = {fd, POLLIN, 0};
    poll(&p, 1, 1000);
    syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
    waitid(P_PIDFD, fd, &si, WEXITED);
    over[i] = now_ms() - t0 - 1000.0;
    close(fd);
  }
  char* mount = cgroup2_mount();
  double *durable = NULL, *durable_over = NULL;
  if (argc > 5 && mount) {
    char parent[4096];
    snprintf(parent, sizeof parent, "%s/repvisor-floor-durable.%d", mount, (int)getpid());
    durable = calloc(n, sizeof(double));
    durable_over = calloc(esc, sizeof(double));
    if (!durable_stop(argv[1], n, parent, argv[5], 0, durable)) {
      free(durable);
      durable = NULL;
    }
    if (esc <= 0 || !durable_stop(argv[1], esc, parent, argv[5], 1, durable_over)) {
      free(durable_over);
      durable_over = NULL;
    }
  }
  printf("{");
  stats("force_stop", force, n, 0);
  if (durable) stats("force_stop_durable", durable, n, 0);
  stats("graceful_stop", grace, n, 0);
  if (durable_over) stats("escalation_beyond_1s_durable", durable_over, esc, 0);
  stats("escalation_beyond_1s", over, esc, scale <= 0);
  if (scale > 0) {
    double start_ms = 0, stop_ms = 0, stop_cpu = 0, cg_start_ms = 0, cg_stop_ms = 0, cg_stop_cpu = 0;
    if (!scale_run(argv[1], scale, NULL, 0, &start_ms, &stop_ms, &stop_cpu)) {
      fprintf(stderr, "floor: starting %d children: %s\n", scale, strerror(errno));
      return 1;
    }
    printf("\"scale\": %d, \"start_all_ms\": %.1f, \"stop_all_ms\": %.1f, \"stop_all_machine_cpu_ms\": %.0f", scale,
           start_ms, stop_ms, stop_cpu);
    char parent[4096];
    if (mount) {
      snprintf(parent, sizeof parent, "%s/repvisor-floor.%d", mount, (int)getpid());
      if (mkdir(parent, 0755) == 0 && scale_run(argv[1], scale, parent, 0, &cg_start_ms, &cg_stop_ms, &cg_stop_cpu))
        printf(
            ", \"start_all_cgroups_ms\": %.1f, \"stop_all_cgroups_ms\": %.1f, \"stop_all_cgroups_machine_cpu_ms\": "
            "%.0f",
            cg_start_ms, cg_stop_ms, cg_stop_cpu);
      else
        fprintf(stderr, "floor: cgroups under %s: %s (figures left out)\n", parent, strerror(errno));
      rmdir(parent);
    }
    if (getenv("EACH")) {
      /* The simple-client workload (bench/simple-clients.sh): the stops one at a time. */
      double each_start = 0, each_stop = 0, each_cpu = 0;
      if (!scale_run(argv[1], scale, NULL, 1, &each_start, &each_stop, &each_cpu)) {
        fprintf(stderr, "floor: starting %d children: %s\n", scale, strerror(errno));
        return 1;
      }
      printf(", \"stop_each_ms\": %.2f", each_stop);
      if (mount && mkdir(parent, 0755) == 0 && scale_run(argv[1], scale, parent, 1, &each_start, &each_stop, &each_cpu))
        printf(", \"stop_each_cgroups_ms\": %.2f", each_stop);
      if (mount) rmdir(parent);
    }
  }
  printf("}\n");
  return 0;
}
