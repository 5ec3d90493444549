// The API as other programs see it: busctl and gdbus as outside clients, and repvisorctl.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "harness.hpp"

using namespace repvisor::test;

namespace {

struct OutsideClients : ::testing::Test {
  Daemon daemon;
  std::string out;
  std::string busctl(const std::string& args) { return "busctl --address=" + daemon.address() + " -- " + args; }
  std::string gdbus(const std::string& args) {
    return "gdbus call --address " + daemon.address() + " --dest org.repvisor1 " + args;
  }
  std::string ctl(const std::string& args) {
    return std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " " + args;
  }
  std::string submit_with_busctl(const std::string& argv_sig) {
    EXPECT_EQ(
        run_command(busctl("call org.repvisor1 /org/repvisor1 org.repvisor1.Manager Submit 'a{sv}' " + argv_sig), &out),
        0)
        << out;
    std::smatch m;
    EXPECT_TRUE(std::regex_search(out, m, std::regex("\"([0-9a-f]{32})\""))) << out;
    return m[1];
  }
};

}  // namespace

TEST_F(OutsideClients, BusctlDrivesTheWholeLifecycle) {
  ReadyFifo ready(daemon.dir);
  const std::string id =
      submit_with_busctl("2 argv as 3 sh -c 'echo ready > " + ready.path() + "; exec sleep 1000' name s from-busctl");
  ready.wait_line();
  ASSERT_EQ(run_command(busctl("get-property org.repvisor1 /org/repvisor1/job/" + id + " org.repvisor1.Job State Name"),
                        &out),
            0);
  EXPECT_EQ(out, "s \"running\"\ns \"from-busctl\"\n");

  ASSERT_EQ(
      run_command(busctl("call org.repvisor1 /org/repvisor1 org.repvisor1.Manager List 'a{sv}' 1 states as 1 running"),
                  &out),
      0);
  EXPECT_NE(out.find(id), std::string::npos) << out;

  ASSERT_EQ(run_command(busctl("introspect org.repvisor1 /org/repvisor1/job/" + id), &out), 0) << out;
  EXPECT_NE(out.find("org.repvisor1.Job"), std::string::npos);
  EXPECT_NE(out.find(".CancelReason"), std::string::npos);

  // Unknown keys are refused with a message naming them.
  EXPECT_NE(run_command(busctl("call org.repvisor1 /org/repvisor1 org.repvisor1.Manager StopJob 'sa{sv}' " + id +
                               " 1 frce b true"),
                        &out),
            0);
  EXPECT_NE(out.find("unknown key 'frce'"), std::string::npos) << out;

  ASSERT_EQ(run_command(
                busctl("call org.repvisor1 /org/repvisor1 org.repvisor1.Manager StopJob 'sa{sv}' from-busctl 2 wait b "
                       "true reason s busctl-test"),
                &out),
            0)
      << out;
  EXPECT_NE(out.find("\"state\" s \"cancelled\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"reason\" s \"busctl-test\""), std::string::npos) << out;

  ASSERT_EQ(
      run_command(busctl("call org.repvisor1 /org/repvisor1/job/" + id + " org.repvisor1.Job Delete 'a{sv}' 0"), &out),
      0)
      << out;
  EXPECT_NE(out.find("\"deleted\""), std::string::npos) << out;
  EXPECT_NE(run_command(busctl("call org.repvisor1 /org/repvisor1 org.repvisor1.Manager GetJob s " + id), &out), 0);
  EXPECT_NE(out.find("no job"), std::string::npos) << out;
}

TEST_F(OutsideClients, GdbusReadsObjectsAndProperties) {
  const std::string id = submit_with_busctl("1 argv as 1 true");
  ASSERT_EQ(
      run_command(gdbus("--object-path /org/repvisor1 --method org.freedesktop.DBus.ObjectManager.GetManagedObjects"),
                  &out),
      0)
      << out;
  EXPECT_NE(out.find("/org/repvisor1/job/" + id), std::string::npos) << out;
  ASSERT_EQ(
      run_command(gdbus("--object-path /org/repvisor1 --method org.repvisor1.Manager.GetJob " + id.substr(0, 6)), &out),
      0)
      << out;
  EXPECT_NE(out.find(id), std::string::npos);
  ASSERT_EQ(run_command(
                gdbus("--object-path /org/repvisor1 --method org.freedesktop.DBus.Properties.Get org.repvisor1.Manager "
                      "MaxConcurrentJobs"),
                &out),
            0)
      << out;
  EXPECT_NE(out.find("uint32 64"), std::string::npos) << out;
}

TEST_F(OutsideClients, RepvisorctlVerbsAndExitCodes) {
  ReadyFifo ready(daemon.dir);
  ASSERT_EQ(run_command(ctl("submit --name ctl-job --stop-timeout 30s -- sh -c 'echo ready > " + ready.path() +
                            "; exec sleep 1000'"),
                        &out),
            0)
      << out;
  ready.wait_line();
  ASSERT_EQ(run_command(ctl("status ctl-job --json"), &out), 0) << out;
  EXPECT_NE(out.find("\"state\":\"running\""), std::string::npos) << out;

  EXPECT_EQ(run_command(ctl("delete ctl-job --yes"), &out), 4) << out;
  EXPECT_NE(out.find("or use --force"), std::string::npos) << out;

  EXPECT_EQ(run_command(ctl("status no-such-job"), &out), 3) << out;
  EXPECT_EQ(run_command(ctl("stop ctl-job --notes x --bogus"), &out), 2) << out;

  ASSERT_EQ(run_command(ctl("stop ctl-job --reason ctl --notes 'by test' --json"), &out), 0) << out;
  EXPECT_NE(out.find("\"state\":\"cancelled\""), std::string::npos) << out;
  EXPECT_EQ(run_command(ctl("wait ctl-job"), &out), 11) << out;
  ASSERT_EQ(run_command(ctl("stop ctl-job"), &out), 0) << out;
  EXPECT_NE(out.find("already cancelled"), std::string::npos) << out;

  EXPECT_EQ(run_command(ctl("submit --wait -- false"), &out), 10) << out;
  EXPECT_EQ(run_command(ctl("submit --wait -- true"), &out), 0) << out;

  ASSERT_EQ(run_command(ctl("list --json"), &out), 0) << out;
  EXPECT_NE(out.find("ctl-job"), std::string::npos);
  ASSERT_EQ(run_command(ctl("delete ctl-job --yes"), &out), 0) << out;
  EXPECT_EQ(run_command(ctl("status ctl-job"), &out), 3) << out;
  EXPECT_EQ(run_command(std::string(REPVISORCTL_PATH) + " --runtime-dir /nonexistent list", &out), 6) << out;
}

TEST_F(OutsideClients, RepvisorctlJobFileErrorsNameTheLine) {
  const std::string file = daemon.dir + "/job.toml";
  ASSERT_EQ(run_command("printf 'argv = [\"true\"]\\nstop_timeout = \"3 lightyears\"\\n' > " + file, &out), 0);
  EXPECT_EQ(run_command(ctl("submit --file " + file), &out), 2) << out;
  EXPECT_NE(out.find("job.toml:2:16: stop_timeout"), std::string::npos) << out;
  ASSERT_EQ(
      run_command(
          "printf 'argv = [\"sh\", \"-c\", \"exit 0\"]\\nname = \"from-file\"\\nstop_signal = \"SIGINT\"\\n' > " + file,
          &out),
      0);
  ASSERT_EQ(run_command(ctl("submit --wait --file " + file), &out), 0) << out;
}

TEST_F(OutsideClients, ShippedIntrospectionMatchesTheDaemon) {
  const std::string id = submit_with_busctl("1 argv as 1 true");
  std::string live;
  for (const std::string& path : std::vector<std::string>{"/org/repvisor1", "/org/repvisor1/job/" + id}) {
    ASSERT_EQ(
        run_command("busctl --xml-interface --address=" + daemon.address() + " introspect org.repvisor1 " + path, &out),
        0)
        << out;
    live += out;
  }
  std::ifstream in(SOURCE_DIR "/docs/org.repvisor1.xml");
  std::stringstream shipped;
  shipped << in.rdbuf();
  auto ours = [](const std::string& xml) {
    std::string blocks;
    std::regex re(R"( <interface name="org\.repvisor1\.[^"]+">[\s\S]*?</interface>)");
    for (std::sregex_iterator it(xml.begin(), xml.end(), re), end; it != end; ++it) blocks += it->str() + "\n";
    return blocks;
  };
  EXPECT_FALSE(ours(live).empty());
  EXPECT_EQ(ours(shipped.str()), ours(live)) << "docs/org.repvisor1.xml is out of date";
}

TEST(DaemonStart, BadConfigIsRefusedWithFileLineAndKey) {
  const std::string dir = temp_dir();
  std::string out;
  ASSERT_EQ(run_command("printf '[daemon]\\nmax_concurrent_jobs = 4\\nstop_timeout = \"ten seconds\"\\n' > " + dir +
                            "/bad.toml",
                        &out),
            0);
  EXPECT_EQ(run_command(std::string(REPVISORD_PATH) + " --config " + dir + "/bad.toml --state-dir " + dir +
                            "/state --runtime-dir " + dir + "/run",
                        &out),
            1);
  EXPECT_NE(out.find(dir + "/bad.toml:3:16: daemon.stop_timeout: invalid time span 'ten seconds'"), std::string::npos)
      << out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/run/private")) << "a refused config must change nothing";
  EXPECT_EQ(run_command(
                std::string(REPVISORD_PATH) + " --config " + dir + "/missing.toml --runtime-dir " + dir + "/run", &out),
            1);
  EXPECT_NE(out.find("missing.toml: cannot read"), std::string::npos) << out;
  std::filesystem::remove_all(dir);
}
