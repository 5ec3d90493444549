// repvisord: parses the command line and hands over to Daemon.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "config/config.hpp"
#include "daemon.hpp"
#include "util/log.hpp"

int main(int argc, char** argv) {
  std::string config_path = "/etc/repvisor/repvisord.toml", state_dir, runtime_dir;
  bool config_given = false, verbose = false;
  CLI::App app{"repvisord: supervises replication jobs and stops and deletes them safely"};
  app.add_option("--config", config_path, "configuration file (TOML)")->each([&](const std::string&) {
    config_given = true;
  });
  app.add_option("--state-dir", state_dir, "state directory (default /var/lib/repvisor)");
  app.add_option("--runtime-dir", runtime_dir, "runtime directory, holds the private socket (default /run/repvisor)");
  app.add_flag("-v,--verbose", verbose, "log debug messages");
  app.set_version_flag("--version", REPVISOR_VERSION);
  CLI11_PARSE(app, argc, argv);
  if (verbose) repvisor::log::set_max_level(repvisor::log::Debug);

  repvisor::config::Config cfg;
  try {
    cfg = repvisor::config::load(config_path, config_given);
  } catch (const repvisor::config::ConfigError& e) {
    fprintf(stderr, "repvisord: %s\n", e.what());
    return 1;
  }
  if (!state_dir.empty()) cfg.state_dir = state_dir;
  if (!runtime_dir.empty()) cfg.runtime_dir = runtime_dir;
  try {
    repvisor::Daemon daemon(cfg);
    return daemon.run();
  } catch (const std::exception& e) {
    repvisor::log::err("fatal: {}", e.what());
    return 1;
  }
}
