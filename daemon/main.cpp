// repvisord: parses the command line and hands over to Daemon.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "config/config.hpp"
#include "daemon.hpp"
#include "util/log.hpp"

int main(int argc, char** argv) {
  std::string config_path = "/etc/repvisor/repvisord.toml", state_dir, runtime_dir;
  bool config_given = false, verbose = false, check_config = false;
  CLI::App app{"repvisord: supervises replication jobs and stops and deletes them safely"};
  app.add_option("--config", config_path, "configuration file (TOML)")->each([&](const std::string&) {
    config_given = true;
  });
  app.add_option("--state-dir", state_dir, "state directory (default /var/lib/repvisor)");
  app.add_option("--runtime-dir", runtime_dir, "runtime directory, holds the private socket (default /run/repvisor)");
  app.add_flag("-v,--verbose", verbose, "log debug messages");
  app.add_flag("--check-config", check_config,
               "validate the configuration (and drop-ins), print the effective one, exit");
  app.set_version_flag("--version", REPVISOR_VERSION);
  CLI11_PARSE(app, argc, argv);
  if (verbose) repvisor::log::set_max_level(repvisor::log::Debug);

  const repvisor::ConfigSource source{config_path, config_given, state_dir, runtime_dir};
  repvisor::config::Config cfg;
  std::vector<std::string> files;
  try {
    cfg = source.load(&files);
  } catch (const repvisor::config::ConfigError& e) {
    fprintf(stderr, "repvisord: %s\n", e.what());
    return 1;
  }
  if (check_config) {
    printf("# effective configuration%s\n", files.empty() ? ": defaults, no file read" : ", from:");
    for (const auto& f : files) printf("#   %s\n", f.c_str());
    fputs(repvisor::config::to_toml(cfg).c_str(), stdout);
    return 0;
  }
  try {
    repvisor::Daemon daemon(cfg, source);
    return daemon.run();
  } catch (const std::exception& e) {
    repvisor::log::err("fatal: {}", e.what());
    return 1;
  }
}
