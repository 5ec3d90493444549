/* The benchmark's job: "term" exits at once on SIGTERM, "ignore" ignores it (and so needs
 * SIGKILL). Identical for every supervisor measured. It only waits: pause() in a loop. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void on_term(int sig) {
  (void)sig;
  _exit(0);
}

int main(int argc, char** argv) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = argc > 1 && strcmp(argv[1], "ignore") == 0 ? SIG_IGN : on_term;
  sigaction(SIGTERM, &sa, NULL);
  for (;;) pause();
}
