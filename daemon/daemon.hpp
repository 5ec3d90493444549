// repvisord as a library: the loop and everything on it. main.cpp only parses the command line.
#pragma once
#include <uv.h>

#include <memory>

#include "bus/api.hpp"
#include "bus/server.hpp"
#include "bus/system_bus.hpp"
#include "config/config.hpp"
#include "supervisor/supervisor.hpp"

namespace repvisor {

// Where the configuration comes from, so that SIGHUP can read it again the same way.
struct ConfigSource {
  std::string path;
  bool must_exist = false;
  std::string state_dir, runtime_dir;  // command-line overrides, empty when not given
  config::Config load(std::vector<std::string>* files = nullptr) const;
};

class Daemon {
 public:
  Daemon(config::Config cfg, ConfigSource source);
  ~Daemon();
  // Runs until told to stop (SIGTERM/SIGINT) and every job is stopped. Returns the exit code.
  int run();

 private:
  void before_poll();
  // Makes what was committed durable, at once; false with *error when it could not.
  bool sync_now(std::string* error);
  void on_stop_signal(int sig);
  void reload();

  uv_loop_t loop_{};
  config::Config cfg_;
  ConfigSource source_;
  std::unique_ptr<Supervisor> sup_;
  std::unique_ptr<bus::Api> api_;
  std::unique_ptr<bus::PrivateServer> server_;
  std::unique_ptr<bus::SystemBus> system_bus_;
  UvPtr<uv_prepare_t> prepare_;
  UvPtr<uv_timer_t> retry_;  // armed only after a failed commit
  // How long signals alone may wait for the sync (see before_poll), and the timer bounding it.
  static constexpr uint64_t kSyncHoldMsec = 1;
  UvPtr<uv_timer_t> sync_hold_;
  bool sync_held_ = false, sync_due_ = false, sync_failed_ = false;
  UvPtr<uv_signal_t> sigterm_, sigint_, sighup_;
  UvPtr<uv_timer_t> watchdog_;  // WATCHDOG=1 at half of WatchdogSec, from the loop itself
  unsigned status_active_ = ~0u;
  size_t status_total_ = ~size_t{0};
  void update_status();
  bool stopping_ = false;
};

}  // namespace repvisor
