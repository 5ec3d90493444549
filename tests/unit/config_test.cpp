#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "config/config.hpp"
#include "temp_dir.hpp"

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
  EXPECT_EQ(shipped.volume_roots, defaults.volume_roots);
  EXPECT_EQ(shipped.volume_devices, defaults.volume_devices);
  EXPECT_EQ(shipped.sync_timeout, defaults.sync_timeout);
  EXPECT_EQ(shipped.detach_timeout, defaults.detach_timeout);
  EXPECT_EQ(shipped.nbd_ready_timeout, defaults.nbd_ready_timeout);
  EXPECT_EQ(shipped.nbd_stop_timeout, defaults.nbd_stop_timeout);
  EXPECT_EQ(shipped.audit_env_values, defaults.audit_env_values);
}

TEST(Config, VolumesAndNbdSections) {
  auto c = config::parse(R"([volumes]
roots = ["/srv/vols", "/var/lib/images"]
devices = ["/dev/vd?", "/dev/disk/by-id/wwn-*"]
sync_timeout = "1min"
detach_timeout = "5s"
[nbd]
ready_timeout = "2s"
stop_timeout = 3
)",
                         "x");
  EXPECT_EQ(c.volume_roots, (std::vector<std::string>{"/srv/vols", "/var/lib/images"}));
  EXPECT_EQ(c.volume_devices.size(), 2u);
  EXPECT_EQ(c.sync_timeout, 60 * USEC_PER_SEC);
  EXPECT_EQ(c.detach_timeout, 5 * USEC_PER_SEC);
  EXPECT_EQ(c.nbd_ready_timeout, 2 * USEC_PER_SEC);
  EXPECT_EQ(c.nbd_stop_timeout, 3 * USEC_PER_SEC);
  auto back = config::parse(config::to_toml(c), "printed");
  EXPECT_EQ(back.volume_roots, c.volume_roots);
  EXPECT_EQ(back.volume_devices, c.volume_devices);
}

TEST(Config, Templates) {
  auto c = config::parse(R"([templates.copy]
description = "copy a disk"
argv = ["nbdcopy", "--flush", "{src}", "/v/{disk}.img"]
stop_timeout = "1min"
progress = "nbdcopy"
[templates.copy.params.src]
pattern = "nbd\\+unix://.*"
[templates.copy.params.disk]
default = "disk0"
)",
                         "x");
  ASSERT_EQ(c.templates.count("copy"), 1u);
  const auto& t = c.templates.at("copy");
  EXPECT_EQ(t.argv.size(), 4u);
  EXPECT_EQ(t.params.at("src").pattern, "nbd\\+unix://.*");
  EXPECT_EQ(t.params.at("disk").default_value, "disk0");
  EXPECT_EQ(t.stop_timeout, 60 * USEC_PER_SEC);
  auto back = config::parse(config::to_toml(c), "printed");
  EXPECT_EQ(config::to_toml(back), config::to_toml(c));
  EXPECT_NE(
      error_of("[templates.t]\nargv = [\"x\", \"{a}\"]\n").find("templates.t.argv: {a} is not a declared parameter"),
      std::string::npos);
  EXPECT_NE(error_of("[templates.t]\nargv = [\"x\"]\n[templates.t.params.a]\n")
                .find("templates.t.params.a: declared but not used"),
            std::string::npos);
  EXPECT_NE(error_of("[templates.t]\nargv = [\"{a}\"]\n[templates.t.params.a]\npattern = \"([\"\n")
                .find("templates.t.params.a.pattern: '([' is not a regular expression"),
            std::string::npos)
      << error_of("[templates.t]\nargv = [\"{a}\"]\n[templates.t.params.a]\npattern = \"([\"\n");
  EXPECT_NE(error_of("[templates.t]\ndescription = \"no argv\"\n").find("templates.t.argv: required"),
            std::string::npos);
  EXPECT_NE(error_of("[templates.t]\nargv = [\"x\"]\nuser = \"bob\"\n").find("templates.t.user: unknown key"),
            std::string::npos);
}

TEST(Config, AuditAndSecretParameters) {
  auto c = config::parse(R"([audit]
env_values = ["LANG", "TZ"]
[templates.t]
argv = ["tool", "--password={pw}"]
[templates.t.params.pw]
secret = true
)",
                         "x");
  EXPECT_EQ(c.audit_env_values, (std::vector<std::string>{"LANG", "TZ"}));
  EXPECT_TRUE(c.templates.at("t").params.at("pw").secret);
  auto back = config::parse(config::to_toml(c), "printed");
  EXPECT_EQ(config::to_toml(back), config::to_toml(c));
  EXPECT_TRUE(back.templates.at("t").params.at("pw").secret);
  EXPECT_NE(error_of("[audit]\nenv_values = [\"A-B\"]\n").find("audit.env_values: 'A-B' is not an environment"),
            std::string::npos);
  EXPECT_NE(error_of("[audit]\nenv_values = \"LANG\"\n").find("audit.env_values: expected an array"),
            std::string::npos);
  EXPECT_NE(error_of("[audit]\nkeep = 1\n").find("audit.keep: unknown key"), std::string::npos);
  EXPECT_NE(error_of("[templates.t]\nargv = [\"{a}\"]\n[templates.t.params.a]\nsecret = \"yes\"\n")
                .find("templates.t.params.a.secret: expected true or false"),
            std::string::npos);
}

TEST(Config, BadVolumeSettingsNameTheKeyAndValue) {
  EXPECT_NE(error_of("[volumes]\nroots = [\"relative/dir\"]\n").find("test.toml:2:10: volumes.roots: 'relative/dir'"),
            std::string::npos)
      << error_of("[volumes]\nroots = [\"relative/dir\"]\n");
  EXPECT_NE(error_of("[volumes]\nroots = [\"/srv/../etc\"]\n").find("not an absolute path written canonically"),
            std::string::npos);
  EXPECT_NE(error_of("[volumes]\nroots = [\"/srv/*\"]\n").find("patterns are not allowed"), std::string::npos);
  EXPECT_NE(error_of("[volumes]\nroots = [\"/dev/shm\"]\n").find("cannot hold volumes"), std::string::npos);
  EXPECT_NE(error_of("[volumes]\ndevices = [\"/etc/passwd\"]\n").find("is not under /dev"), std::string::npos);
  EXPECT_NE(error_of("[volumes]\nroots = \"/srv\"\n").find("expected an array"), std::string::npos);
  EXPECT_NE(error_of("[nbd]\nready = \"1s\"\n").find("nbd.ready: unknown key"), std::string::npos);
}

namespace {
struct ConfigDir {
  repvisor::test::TempDir tmp{"config"};
  const std::string& dir = tmp.path();
  void write(const std::string& name, const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(dir + "/" + name).parent_path());
    std::ofstream(dir + "/" + name) << text;
  }
};
}  // namespace

TEST(Config, DropInsApplyInLexicalOrderKeyByKey) {
  ConfigDir d;
  d.write("r.toml", "[daemon]\nmax_concurrent_jobs = 3\nstop_timeout = \"10s\"\n");
  d.write("r.toml.d/20-late.toml", "[daemon]\nmax_concurrent_jobs = 9\n");
  d.write("r.toml.d/10-early.toml", "[daemon]\nmax_concurrent_jobs = 5\nrecovery = \"adopt\"\n");
  d.write("r.toml.d/ignored.conf", "this is not toml");
  std::vector<std::string> files;
  auto c = config::load_with_dropins(d.dir + "/r.toml", true, &files);
  EXPECT_EQ(c.max_concurrent_jobs, 9u);
  EXPECT_EQ(c.recovery, "adopt");
  EXPECT_EQ(c.stop_timeout, 10 * USEC_PER_SEC);
  ASSERT_EQ(files.size(), 3u);
  EXPECT_NE(files[1].find("10-early"), std::string::npos);
}

TEST(Config, ABadDropInNamesItselfAndChangesNothing) {
  ConfigDir d;
  d.write("r.toml", "[daemon]\nmax_concurrent_jobs = 3\n");
  d.write("r.toml.d/50-bad.toml", "[daemon]\nmax_concurrent_jobs = 4\nstop_timeout = \"soon\"\n");
  try {
    config::load_with_dropins(d.dir + "/r.toml", true);
    FAIL() << "accepted a bad drop-in";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("50-bad.toml:3:16: daemon.stop_timeout"), std::string::npos) << e.what();
  }
  config::Config c;
  c.max_concurrent_jobs = 7;
  EXPECT_THROW(config::parse_into(c, "[daemon]\nmax_concurrent_jobs = 4\nbogus = 1\n", "x"), ConfigError);
  EXPECT_EQ(c.max_concurrent_jobs, 7u) << "a refused file must not change anything";
}

TEST(Config, EffectiveConfigPrintsAsTomlThatParsesBack) {
  config::Config c;
  c.max_concurrent_jobs = 12;
  c.stop_timeout = 90 * USEC_PER_SEC;
  c.cgroup_root = "/a \"quoted\" path";
  auto back = config::parse(config::to_toml(c), "printed");
  EXPECT_EQ(back.max_concurrent_jobs, 12u);
  EXPECT_EQ(back.stop_timeout, 90 * USEC_PER_SEC);
  EXPECT_EQ(back.cgroup_root, c.cgroup_root);
  EXPECT_EQ(config::to_toml(back), config::to_toml(c));
}
