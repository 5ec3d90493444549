// repvisor-copy: copies an NBD export into a file or block device; stops cleanly on SIGTERM at a
// chunk boundary and resumes from its checkpoint. The reference worker of repvisord.
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "checkpoint.hpp"
#include "copier.hpp"

using namespace repvisor::worker;

namespace {
void on_stop_signal(int) {
  // The first asks for a clean stop; the second ends it now (the last reported checkpoint was
  // flushed before it was reported, so it stays valid).
  if (stop_requested.exchange(1)) _exit(128 + SIGTERM);
}
}  // namespace

int main(int argc, char** argv) {
  std::string source, target, resume, chunk = "4M";
  CopyOptions opts;
  CLI::App app{"repvisor-copy: copy an NBD export into a file or block device, resumably"};
  app.add_option("source", source, "NBD URI of the source, e.g. nbd+unix:///?socket=/run/x.sock")->required();
  app.add_option("target", target, "file (created or extended, never truncated) or block device")->required();
  app.add_option("--chunk-size", chunk, "unit of work and of checkpoints: 64K to 32M (default 4M)");
  // One connection per CPU up to 4, as nbdcopy does: each is a reading and a writing thread, and
  // more threads than cores slowed a 2-core host's copy by a sixth (bench/README.md).
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  const int usable = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 4;
  opts.connections = static_cast<unsigned>(std::clamp(usable, 1, 4));
  app.add_option("--connections", opts.connections,
                 "NBD connections, each with its reads in flight (default: one per usable CPU, at most 4)")
      ->check(CLI::Range(1, 64));
  app.add_option("--requests", opts.requests, "reads in flight per connection (default 4)")->check(CLI::Range(1, 64));
  app.add_option("--resume-from", resume,
                 "a checkpoint this tool reported (CHECKPOINT=...); default: $REPVISOR_CHECKPOINT, which repvisord "
                 "sets when it resumes a job");
  app.add_flag("--verify", opts.verify, "read both sides back and compare them after the copy");
  app.add_option("--checkpoint-interval", opts.checkpoint_interval_ms,
                 "milliseconds between checkpoints (default 5000); each one is an fdatasync")
      ->check(CLI::Range(10, 3600000));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  // Sizes: a number with an optional K/M suffix (powers of two).
  char* end = nullptr;
  unsigned long long v = strtoull(chunk.c_str(), &end, 10);
  if (end == chunk.c_str()) v = 0;
  if (*end == 'K' || *end == 'k')
    v <<= 10, ++end;
  else if (*end == 'M' || *end == 'm')
    v <<= 20, ++end;
  if (*end != 0 || v < (64ull << 10) || v > (32ull << 20)) {
    fprintf(stderr, "repvisor-copy: --chunk-size '%s': expected 64K to 32M\n", chunk.c_str());
    return kExitUsage;
  }
  opts.chunk_size = v;
  // Resumed by repvisord (Job.Resume): the job's last checkpoint comes in the environment.
  if (resume.empty())
    if (const char* cp = getenv("REPVISOR_CHECKPOINT")) resume = cp;
  if (!resume.empty()) {
    std::string error;
    opts.resume = parse_checkpoint(resume, &error);
    if (!opts.resume) {
      fprintf(stderr, "repvisor-copy: --resume-from: %s\n", error.c_str());
      return kExitUsage;
    }
  }
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  return run_copy(source, target, opts);
}
