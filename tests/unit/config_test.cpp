#include <gtest/gtest.h>

#include "config/config.hpp"

using namespace repvisor;
using config::ConfigError;

static std::string error_of(const std::string& text) {
  try {
    config::parse(text, "test.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DefaultsWhenEmpty) {
  auto c = config::parse("", "x");
  EXPECT_EQ(c.max_concurrent_jobs, 64u);
  EXPECT_EQ(c.stop_timeout, 30 * USEC_PER_SEC);
  EXPECT_EQ(c.cgroup_root, "auto");
}

TEST(Config, ReadsEveryKey) {
  auto c = config::parse(R"([daemon]
max_concurrent_jobs = 3
stop_timeout = "1min 30s"
final_kill_timeout = "500ms"
shutdown_timeout = 5
cgroup_root = "/repvisor.test"
state_dir = "/tmp/s"
runtime_dir = "/tmp/r"
)",
                         "x");
  EXPECT_EQ(c.max_concurrent_jobs, 3u);
  EXPECT_EQ(c.stop_timeout, 90 * USEC_PER_SEC);
  EXPECT_EQ(c.final_kill_timeout, 500 * USEC_PER_MSEC);
  EXPECT_EQ(c.shutdown_timeout, 5 * USEC_PER_SEC);
  EXPECT_EQ(c.cgroup_root, "/repvisor.test");
  EXPECT_EQ(c.state_dir, "/tmp/s");
}

TEST(Config, ErrorsNameFileLineColumnAndKey) {
  EXPECT_EQ(error_of("[daemon]\nstop_timeout = \"5 fortnights\"\n").rfind("test.toml:2:16: daemon.stop_timeout:", 0),
            0u)
      << error_of("[daemon]\nstop_timeout = \"5 fortnights\"\n");
  EXPECT_NE(error_of("[daemon]\nmax_concurrent_jobs = 0\n")
                .find("test.toml:2:23: daemon.max_concurrent_jobs: 0 is out of range"),
            std::string::npos);
  EXPECT_NE(error_of("[daemon]\nmax_concurrent_job = 5\n").find("daemon.max_concurrent_job: unknown key"),
            std::string::npos);
  EXPECT_NE(error_of("[demon]\n").find("demon: unknown section"), std::string::npos);
  EXPECT_NE(error_of("[daemon]\ncgroup_root = \"relative\"\n").find("cgroup_root"), std::string::npos);
  EXPECT_NE(error_of("[daemon]\nstop_timeout = true\n").find("expected a time span"), std::string::npos);
  EXPECT_NE(error_of("[daemon]\nrecovery = \"kill\"\n").find("daemon.recovery: 'kill' is not"), std::string::npos);
  EXPECT_EQ(error_of("[daemon\n").rfind("test.toml:1:", 0), 0u);
}

TEST(Config, MissingFileIsFineOnlyWhenNotDemanded) {
  EXPECT_NO_THROW(config::load("/nonexistent/repvisord.toml", false));
  EXPECT_THROW(config::load("/nonexistent/repvisord.toml", true), ConfigError);
}

TEST(Config, ShippedDefaultFileParsesToTheDefaults) {
  // config/repvisord.toml documents every key with its default: it must stay true.
  auto shipped = config::load(SOURCE_DIR "/config/repvisord.toml", true);
  config::Config defaults;
  EXPECT_EQ(shipped.max_concurrent_jobs, defaults.max_concurrent_jobs);
  EXPECT_EQ(shipped.stop_timeout, defaults.stop_timeout);
  EXPECT_EQ(shipped.final_kill_timeout, defaults.final_kill_timeout);
  EXPECT_EQ(shipped.shutdown_timeout, defaults.shutdown_timeout);
  EXPECT_EQ(shipped.cgroup_root, defaults.cgroup_root);
  EXPECT_EQ(shipped.recovery, defaults.recovery);
  EXPECT_EQ(shipped.max_stop_extension, defaults.max_stop_extension);
  EXPECT_EQ(shipped.state_dir, defaults.state_dir);
  EXPECT_EQ(shipped.runtime_dir, defaults.runtime_dir);
}
