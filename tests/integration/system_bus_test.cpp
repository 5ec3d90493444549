// repvisord on a system bus: a private dbus-daemon with a system-bus policy and the shipped
// org.repvisor1.conf, the daemon owning org.repvisor1 on it, driven by name from busctl and gdbus
// as root, as a member of the admin group and as a plain user; the bus restarting under it.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness.hpp"

using namespace repvisor::test;
namespace fs = std::filesystem;

namespace {

struct SystemBusTest : ::testing::Test {
  PrivateSystemBus sysbus;
  std::unique_ptr<Daemon> daemon;
  std::string out;

  void SetUp() override {
    setenv("DBUS_SYSTEM_BUS_ADDRESS", sysbus.address().c_str(), 1);
    // nobody's primary group is nogroup: nobody is an admin; daemon (uid 1) is not.
    daemon = std::make_unique<Daemon>(
        "[bus]\nsystem = \"yes\"\nadmin_group = \"nogroup\"\n"
        "[templates.sleeper]\ndescription = \"sleeps\"\nargv = [\"sleep\", \"{seconds}\"]\n"
        "[templates.sleeper.params.seconds]\npattern = \"[0-9]{1,4}\"\ndefault = \"1000\"\n");
    ASSERT_TRUE(wait_for_owner(sysbus.address(), "org.repvisor1"));
  }
  void TearDown() override {
    daemon.reset();
    unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
  }
  // busctl by name on the bus, as `user` (empty: root).
  int busctl(const std::string& user, const std::string& args) {
    const std::string as = user.empty() ? "" : "setpriv --reuid=" + user + " --regid=" + user + " --clear-groups ";
    return run_command(as + "busctl --address=" + sysbus.address() + " -- " + args, &out);
  }
  // gdbus by name on the system bus, as `user`: it prints the daemon's error message in full.
  int gdbus(const std::string& user, const std::string& object, const std::string& method, const std::string& args) {
    const std::string as = user.empty() ? "" : "setpriv --reuid=" + user + " --regid=" + user + " --clear-groups ";
    return run_command(as + "env DBUS_SYSTEM_BUS_ADDRESS=" + sysbus.address() +
                           " gdbus call --system --dest org.repvisor1 --object-path " + object + " --method " + method +
                           " " + args,
                       &out);
  }
  std::string submit_sleep() {
    EXPECT_EQ(busctl("", "call org.repvisor1 /org/repvisor1 org.repvisor1.Manager Submit a{sv} 1 argv as 2 sleep 1000"),
              0)
        << out;
    const auto q = out.find('"');
    return q == std::string::npos ? "" : out.substr(q + 1, 32);
  }
};

}  // namespace

TEST_F(SystemBusTest, RootDrivesItByNameWithBusctlAndGdbus) {
  const std::string id = submit_sleep();
  ASSERT_EQ(id.size(), 32u) << out;
  // gdbus finds the bus through DBUS_SYSTEM_BUS_ADDRESS, as any system-bus client would.
  ASSERT_EQ(run_command("gdbus call --system --dest org.repvisor1 --object-path /org/repvisor1/job/" + id +
                            " --method org.repvisor1.Job.Stop \"{'wait': <true>}\"",
                        &out),
            0)
      << out;
  EXPECT_NE(out.find("'cancelled'"), std::string::npos) << out;
  ASSERT_EQ(busctl("", "get-property org.repvisor1 /org/repvisor1/job/" + id + " org.repvisor1.Job State"), 0);
  EXPECT_EQ(out, "s \"cancelled\"\n");
}

TEST_F(SystemBusTest, EveryAuthorizationRule) {
  const std::string id = submit_sleep();
  const std::string job = "/org/repvisor1/job/" + id;
  // Anyone reads.
  EXPECT_EQ(busctl("1", "call org.repvisor1 /org/repvisor1 org.repvisor1.Manager List a{sv} 0"), 0) << out;
  EXPECT_NE(out.find(id), std::string::npos) << out;
  EXPECT_EQ(busctl("1", "get-property org.repvisor1 " + job + " org.repvisor1.Job State"), 0) << out;
  // A plain user changes nothing, and is told who may.
  EXPECT_NE(gdbus("1", job, "org.repvisor1.Job.Stop", "{}"), 0);
  EXPECT_NE(out.find("org.freedesktop.DBus.Error.AccessDenied"), std::string::npos) << out;
  EXPECT_NE(out.find("uid 1 may not stop jobs (only root and members of group 'nogroup' may stop jobs)"),
            std::string::npos)
      << out;
  EXPECT_NE(busctl("1", "call org.repvisor1 " + job + " org.repvisor1.Job Delete a{sv} 1 force b true"), 0);
  EXPECT_NE(busctl("1", "call org.repvisor1 /org/repvisor1 org.repvisor1.Manager Submit a{sv} 1 argv as 1 true"), 0);
  // An admin may not run commands (that would be root code execution)...
  EXPECT_NE(gdbus("65534", "/org/repvisor1", "org.repvisor1.Manager.Submit", "\"{'argv': <['true']>}\""), 0);
  EXPECT_NE(out.find("uid 65534 may not submit jobs (only root may submit jobs)"), std::string::npos) << out;
  // ...but stops, resumes, cleans up and deletes.
  EXPECT_EQ(busctl("65534", "call org.repvisor1 " + job + " org.repvisor1.Job Stop a{sv} 1 wait b true"), 0) << out;
  EXPECT_EQ(busctl("65534", "call org.repvisor1 " + job + " org.repvisor1.Job RetryCleanup"), 0) << out;
  EXPECT_EQ(busctl("65534", "call org.repvisor1 " + job + " org.repvisor1.Job Resume a{sv} 0"), 0) << out;
  EXPECT_EQ(busctl("65534", "call org.repvisor1 " + job + " org.repvisor1.Job Delete a{sv} 1 force b true"), 0) << out;
  // Every denial is in the audit trail with who asked.
  ASSERT_EQ(busctl("", "call org.repvisor1 /org/repvisor1 org.repvisor1.Manager ListEvents a{sv} 0"), 0) << out;
  EXPECT_NE(out.find("uid 1 may not stop jobs"), std::string::npos) << out;
  EXPECT_NE(out.find("uid 65534 may not submit jobs"), std::string::npos) << out;
  // The private socket belongs to the admin group.
  struct stat st {};
  ASSERT_EQ(stat((daemon->runtime_dir + "/private").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, 65534u);
}

TEST_F(SystemBusTest, AdminsSubmitFromTemplatesOnly) {
  const std::string env = "env DBUS_SYSTEM_BUS_ADDRESS=" + sysbus.address() + " ";
  const std::string as_admin = "setpriv --reuid=65534 --regid=65534 --clear-groups " + env + REPVISORCTL_PATH " ";
  const std::string as_user = "setpriv --reuid=1 --regid=1 --clear-groups " + env + REPVISORCTL_PATH " ";
  ASSERT_EQ(run_command(as_admin + "--json submit --template sleeper -p seconds=600 --name nap", &out), 0) << out;
  ASSERT_EQ(busctl("", "get-property org.repvisor1 /org/repvisor1 org.repvisor1.Manager JobsActive"), 0);
  std::string argv_out;
  ASSERT_EQ(run_command(env + REPVISORCTL_PATH " --system --json status nap", &argv_out), 0) << argv_out;
  EXPECT_NE(argv_out.find(R"("argv":["sleep","600"])"), std::string::npos) << argv_out;
  // Checked against the pattern, named when wrong; unknown parameters and templates named too.
  EXPECT_EQ(run_command(as_admin + "submit --template sleeper -p 'seconds=1;reboot'", &out), 7) << out;
  EXPECT_NE(out.find("params.seconds: '1;reboot' does not match the template's pattern '[0-9]{1,4}'"),
            std::string::npos)
      << out;
  EXPECT_EQ(run_command(as_admin + "submit --template sleeper -p color=red", &out), 7) << out;
  EXPECT_NE(out.find("params.color: not a parameter of template 'sleeper'"), std::string::npos) << out;
  EXPECT_EQ(run_command(as_admin + "submit --template nope", &out), 7) << out;
  EXPECT_NE(out.find("no template 'nope' (configured: sleeper)"), std::string::npos) << out;
  // A template fixes everything but its parameters and the name.
  EXPECT_NE(gdbus("", "/org/repvisor1", "org.repvisor1.Manager.Submit",
                  "\"{'template': <'sleeper'>, 'env': <{'LD_PRELOAD': '/tmp/x.so'}>}\""),
            0);
  EXPECT_NE(out.find("'env' cannot be given with a template"), std::string::npos) << out;
  // A plain user may not use templates; an admin may not run a raw command.
  EXPECT_EQ(run_command(as_user + "submit --template sleeper", &out), 5) << out;
  EXPECT_NE(out.find("may not submit jobs from templates"), std::string::npos) << out;
  EXPECT_EQ(run_command(as_admin + "submit -- /bin/true", &out), 5) << out;
  EXPECT_EQ(run_command(as_admin + "stop nap", &out), 0) << out;
}

TEST_F(SystemBusTest, RepvisorctlUsesTheSystemBus) {
  const std::string id = submit_sleep();
  const std::string env = "env DBUS_SYSTEM_BUS_ADDRESS=" + sysbus.address() + " ";
  // Explicitly, and as a user who cannot open the private socket (the default then).
  ASSERT_EQ(run_command(env + REPVISORCTL_PATH " --system status " + id, &out), 0) << out;
  EXPECT_NE(out.find("running"), std::string::npos) << out;
  ASSERT_EQ(run_command("setpriv --reuid=1 --regid=1 --clear-groups " + env + REPVISORCTL_PATH " list", &out), 0)
      << out;
  EXPECT_NE(out.find(id.substr(0, 12)), std::string::npos) << out;
  EXPECT_EQ(run_command("setpriv --reuid=1 --regid=1 --clear-groups " + env + REPVISORCTL_PATH " stop " + id, &out), 5)
      << out;
  EXPECT_NE(out.find("may not stop jobs"), std::string::npos) << out;
  EXPECT_EQ(
      run_command("setpriv --reuid=65534 --regid=65534 --clear-groups " + env + REPVISORCTL_PATH " stop " + id, &out),
      0)
      << out;
}

// -H HOST: repvisorctl runs `ssh HOST systemd-stdio-bridge`, as systemctl -H does. Here "ssh" is
// a stand-in on PATH that records its arguments and runs the bridge to our bus, locally.
TEST_F(SystemBusTest, RepvisorctlReachesARemoteHostOverSsh) {
  const std::string id = submit_sleep();
  const std::string bin = temp_dir();
  std::ofstream(bin + "/ssh") << "#!/bin/sh\necho \"$@\" > " << bin
                              << "/args\nexec systemd-stdio-bridge --bus-path=" << sysbus.address() << "\n";
  chmod((bin + "/ssh").c_str(), 0755);
  ASSERT_EQ(run_command("PATH=" + bin + ":$PATH " REPVISORCTL_PATH " -H admin@vm-host status " + id, &out), 0) << out;
  EXPECT_NE(out.find("running"), std::string::npos) << out;
  std::stringstream args;
  args << std::ifstream(bin + "/args").rdbuf();
  EXPECT_EQ(args.str(), "-xT -- admin@vm-host systemd-stdio-bridge\n");
  fs::remove_all(bin);
}

TEST_F(SystemBusTest, TheDaemonComesBackWhenTheBusRestarts) {
  const std::string id = submit_sleep();
  sysbus.stop();
  sysbus.start();
  ASSERT_TRUE(wait_for_owner(sysbus.address(), "org.repvisor1")) << daemon->log();
  ASSERT_EQ(busctl("", "get-property org.repvisor1 /org/repvisor1/job/" + id + " org.repvisor1.Job State"), 0) << out;
  EXPECT_EQ(out, "s \"running\"\n");
  EXPECT_NE(daemon->log().find("lost the system bus connection"), std::string::npos);
}

TEST(SystemBusRequired, RefusesToStartWithoutIt) {
  setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/system_bus_socket", 1);
  std::string out;
  {
    Daemon probe("[bus]\nsystem = \"auto\"");  // auto: serves the private socket alone
    Bus b(probe.address());
    EXPECT_TRUE(b.list().empty());
    EXPECT_NE(probe.log().find("serving the private socket only"), std::string::npos) << probe.log();
    probe.terminate();
    std::stringstream conf;
    conf << std::ifstream(probe.config_path).rdbuf();
    std::string text = conf.str();
    text.replace(text.find("system = \"auto\""), 15, "system = \"yes\"");
    std::ofstream(probe.config_path) << text;
    EXPECT_EQ(probe.start_expecting_failure(&out), 1);
  }
  unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
  EXPECT_NE(out.find("cannot connect to the system bus"), std::string::npos) << out;
  EXPECT_NE(out.find("[bus] system = \"yes\""), std::string::npos) << out;
}
