/* The syscall floor: what stopping a process costs with nothing in between. posix_spawn the
 * benchmark child, wait until its SIGTERM disposition is installed (/proc/PID/status), then time
 * pidfd_send_signal -> waitid(P_PIDFD). Escalation: SIGTERM, poll the pidfd for the timeout,
 * SIGKILL, waitid; the delay beyond the timeout is reported.
 * Usage: floor CHILD [ITERATIONS] [ESCALATIONS]   Prints one JSON object. */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static void stats(const char* name, double* v, int n, int last) {
  qsort(v, n, sizeof *v, cmp);
  printf("\"%s\": {\"n\": %d, \"median_ms\": %.4f, \"p99_ms\": %.4f, \"max_ms\": %.4f}%s", name, n, v[n / 2],
         v[(int)(n * 0.99) < n ? (int)(n * 0.99) : n - 1], v[n - 1], last ? "" : ", ");
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: floor CHILD [ITERATIONS] [ESCALATIONS]\n");
    return 2;
  }
  int n = argc > 2 ? atoi(argv[2]) : 200, esc = argc > 3 ? atoi(argv[3]) : 5;
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
  printf("{");
  stats("force_stop", force, n, 0);
  stats("graceful_stop", grace, n, 0);
  stats("escalation_beyond_1s", over, esc, 1);
  printf("}\n");
  return 0;
}
