// Bad input through the real API from outside clients: each gets a clear error and changes
// nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "harness.hpp"

using namespace repvisor::test;

namespace {
struct BadInput : ::testing::Test {
  Daemon daemon;
  Bus bus{daemon.address()};
  std::string out;
  int busctl(const std::string& args) {
    return run_command("busctl --address=" + daemon.address() + " -- call org.repvisor1 " + args, &out);
  }
  int gdbus(const std::string& args) {
    return run_command("gdbus call --address " + daemon.address() + " --dest org.repvisor1 " + args, &out);
  }
};
}  // namespace

TEST_F(BadInput, WrongSignaturesAndTypesAreRefused) {
  EXPECT_NE(busctl("/org/repvisor1 org.repvisor1.Manager Submit s true"), 0);
  EXPECT_NE(out.find("Invalid"), std::string::npos) << out;
  EXPECT_NE(gdbus("--object-path /org/repvisor1 --method org.repvisor1.Manager.Submit \"{'argv': <'true'>}\""), 0);
  EXPECT_NE(out.find("argv: expected a value of type 'as', got 's'"), std::string::npos) << out;
  EXPECT_NE(gdbus("--object-path /org/repvisor1 --method org.repvisor1.Manager.Submit \"{'argv': <['true']>, "
                  "'stop_timeout_usec': <int32 5>}\""),
            0);
  EXPECT_NE(out.find("stop_timeout_usec: expected a value of type 't', got 'i'"), std::string::npos) << out;
  EXPECT_TRUE(bus.list().empty());
}

TEST_F(BadInput, HugeStringsAreRefusedWithTheirSize) {
  const std::string huge(100000, 'n');
  auto r = bus.submit({{"argv", std::vector<std::string>{"true"}}, {"name", huge}});
  EXPECT_EQ(r.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_NE(r.error_message.find("longer than 64"), std::string::npos);
  auto id = bus.submit_ok({"true"});
  bus.wait_terminal(id);
  auto s = bus.stop(id, {{"notes", huge}});
  EXPECT_EQ(s.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_NE(s.error_message.find("100000 characters"), std::string::npos) << s.error_message;
  auto reason = bus.stop(id, {{"reason", std::string(65, 'r')}});
  EXPECT_EQ(reason.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_EQ(bus.list().size(), 1u);
}

// sd-bus sends nothing that is not valid UTF-8: an error that cut a character in half never
// reached the caller, who waited out its timeout.
TEST_F(BadInput, ANonAsciiNameGetsAnAnswerThatQuotesItWhole) {
  auto r = bus.submit({{"argv", std::vector<std::string>{"true"}}, {"name", std::string("héllo")}});
  EXPECT_EQ(r.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_NE(r.error_message.find("contains 'é'"), std::string::npos) << r.error_message;
  EXPECT_TRUE(bus.list().empty());
}

// An error names what was wrong, but never echoes a whole huge input back.
TEST_F(BadInput, ErrorsQuoteAtMostTheStartOfAHugeValue) {
  const std::string key(100000, 'K');
  auto r = bus.submit({{"argv", std::vector<std::string>{"true"}}, {key, std::string("v")}});
  EXPECT_EQ(r.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_NE(r.error_message.find("(100000 bytes)"), std::string::npos) << r.error_message.substr(0, 300);
  EXPECT_LT(r.error_message.size(), 400u);
  auto wd = bus.submit({{"argv", std::vector<std::string>{"true"}}, {"working_directory", "/" + key}});
  EXPECT_EQ(wd.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_NE(wd.error_message.find("working_directory: '/KKK"), std::string::npos) << wd.error_message.substr(0, 300);
  EXPECT_LT(wd.error_message.size(), 400u);
  // Control characters come back escaped, not raw.
  auto esc = bus.submit({{"argv", std::vector<std::string>{"true"}}, {"working_directory", std::string("/\x1b[2J")}});
  EXPECT_NE(esc.error_message.find("'/\\x1b[2J'"), std::string::npos) << esc.error_message;
  EXPECT_EQ(esc.error_message.find('\x1b'), std::string::npos);
  EXPECT_TRUE(bus.list().empty());
}

TEST_F(BadInput, NamesAndIdsThatCollideOrMislead) {
  auto a = bus.submit_ok({"true"}, {{"name", std::string("same")}});
  auto dup = bus.submit({{"argv", std::vector<std::string>{"true"}}, {"name", std::string("same")}});
  EXPECT_EQ(dup.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  // A name that would read as an id prefix is refused, so lookups stay unambiguous.
  auto hexname = bus.submit({{"argv", std::vector<std::string>{"true"}}, {"name", std::string("cafe")}});
  EXPECT_EQ(hexname.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_EQ(bus.get_job("abc").error_name, "org.repvisor1.Error.NoSuchJob");
  EXPECT_EQ(bus.get_job("../../etc").error_name, "org.repvisor1.Error.NoSuchJob");
  EXPECT_EQ(bus.get_job("").error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  // A path that is not a job object.
  EXPECT_NE(busctl("/org/repvisor1/job/nosuchjob org.repvisor1.Job Stop 'a{sv}' 0"), 0);
  EXPECT_NE(busctl("/org/repvisor1/job/" + a + "/x org.repvisor1.Job Stop 'a{sv}' 0"), 0);
  EXPECT_EQ(bus.list().size(), 1u);
}

TEST_F(BadInput, CallsOnADeletedJob) {
  auto id = bus.submit_ok({"true"});
  bus.wait_terminal(id);
  ASSERT_TRUE(bus.remove(id, {}).ok);
  EXPECT_EQ(bus.stop(id, {}).error_name, "org.repvisor1.Error.NoSuchJob");
  EXPECT_EQ(bus.remove(id, {}).error_name, "org.repvisor1.Error.NoSuchJob");
  EXPECT_NE(busctl("/org/repvisor1/job/" + id + " org.repvisor1.Job Delete 'a{sv}' 0"), 0);
  EXPECT_NE(run_command("busctl --address=" + daemon.address() + " get-property org.repvisor1 /org/repvisor1/job/" +
                            id + " org.repvisor1.Job State",
                        &out),
            0);
}

TEST_F(BadInput, TwoClientsDeletingTheSameJobAtOnceBothSucceedOnce) {
  ReadyFifo ready(daemon.dir);
  auto id = bus.submit_ok({"sh", "-c", "trap '' TERM; echo ready > " + ready.path() + "; exec sleep 1000"});
  ready.wait_line();
  CallResult r1, r2;
  std::thread t1([&] {
    Bus b(daemon.address());
    r1 = b.remove(id, {{"force", true}});
  });
  std::thread t2([&] {
    Bus b(daemon.address());
    r2 = b.remove(id, {{"force", true}});
  });
  t1.join();
  t2.join();
  // Whichever came second either joined the first delete or found the job gone: never a half
  // state, and at least one of them deleted it.
  EXPECT_TRUE(r1.ok || r2.ok) << r1.error_message << " / " << r2.error_message;
  EXPECT_TRUE(r1.ok || r1.error_name == "org.repvisor1.Error.NoSuchJob") << r1.error_message;
  EXPECT_TRUE(r2.ok || r2.error_name == "org.repvisor1.Error.NoSuchJob") << r2.error_message;
  EXPECT_FALSE(bus.job_exists(id));
  run_command(std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " events " + id + " --json",
              &out);
  size_t deletes = 0;
  for (size_t pos = 0; (pos = out.find("\"type\":\"deleted\"", pos)) != std::string::npos; ++pos) ++deletes;
  EXPECT_EQ(deletes, 1u) << out;
}

TEST_F(BadInput, ResourcesWithWrongTypesOrPathsThatEscapeAreRefused) {
  const std::string root = daemon.dir + "/volumes";
  // Wrong container type, wrong value type, missing kind: each names the key.
  EXPECT_NE(gdbus("--object-path /org/repvisor1 --method org.repvisor1.Manager.Submit \"{'argv': <['true']>, "
                  "'resources': <['x']>}\""),
            0);
  EXPECT_NE(out.find("resources: expected a value of type 'aa{sv}', got 'as'"), std::string::npos) << out;
  EXPECT_NE(gdbus("--object-path /org/repvisor1 --method org.repvisor1.Manager.Submit \"{'argv': <['true']>, "
                  "'resources': <[{'kind': <'file'>, 'name': <'d'>, 'path': <'" +
                  root + "/a.img'>, 'size': <'1G'>}]>}\""),
            0);
  EXPECT_NE(out.find("size: expected a value of type 't', got 's'"), std::string::npos) << out;
  EXPECT_NE(gdbus("--object-path /org/repvisor1 --method org.repvisor1.Manager.Submit \"{'argv': <['true']>, "
                  "'resources': <[{'name': <'d'>}]>}\""),
            0);
  EXPECT_NE(out.find("resources[0].kind: required key is missing"), std::string::npos) << out;
  // Traversal, through busctl's own dictionary syntax.
  for (const std::string& path :
       {root + "/../../../etc/passwd", std::string("/etc/shadow"), root + "/./x.img", std::string("relative.img")}) {
    EXPECT_NE(busctl("/org/repvisor1 org.repvisor1.Manager Submit 'a{sv}' 2 argv as 1 true resources aa{sv} 1 4 "
                     "kind s file name s d path s '" +
                     path + "' size t 4096"),
              0)
        << path;
    EXPECT_NE(out.find("resources[0].path"), std::string::npos) << path << ": " << out;
  }
  EXPECT_TRUE(bus.list().empty());
  EXPECT_FALSE(std::filesystem::exists(root + "/x.img"));
}

// What a job's submitter chose (argv, reason, notes, its status text) reaches every reader's
// terminal as text: an escape sequence in it is shown escaped, never sent raw.
TEST_F(BadInput, ControlCharactersInAJobReachNoTerminalRaw) {
  ReadyFifo ready(daemon.dir);
  const std::string id = bus.submit_ok(
      {"sh", "-c",
       "systemd-notify --status=\"$(printf '\\033[2Jcleared')\"; echo r > " + ready.path() + "; exec sleep 1000",
       "\x1b]0;title\x07"});
  ready.wait_line();
  ASSERT_TRUE(
      bus.stop(id, {{"wait", true}, {"reason", std::string("a\x1b[31mb")}, {"notes", std::string("n\x1b[2Jn\nx")}}).ok);
  const std::string ctl = std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " ";
  for (const std::string& verb : std::vector<std::string>{"status " + id, "list", "events " + id}) {
    ASSERT_EQ(run_command(ctl + verb, &out), 0) << verb << ": " << out;
    EXPECT_EQ(out.find('\x1b'), std::string::npos) << verb << " printed an escape sequence raw: " << out;
    EXPECT_EQ(out.find('\x07'), std::string::npos) << verb << ": " << out;
  }
  ASSERT_EQ(run_command(ctl + "status " + id, &out), 0);
  EXPECT_NE(out.find("a\\x1b[31mb"), std::string::npos) << out;
  EXPECT_NE(out.find("n\\x1b[2Jn\\nx"), std::string::npos) << out;
  EXPECT_NE(out.find("\\x1b]0;title\\x07"), std::string::npos) << out;
  EXPECT_NE(out.find("\\x1b[2Jcleared"), std::string::npos) << out;
}

// A task limit is enforced (pids.max on the job's cgroup, set before its first process) or
// refused at submit with the reason: never accepted and dropped.
TEST_F(BadInput, ATaskLimitIsEnforcedOrRefusedNeverDropped) {
  std::string controllers;
  std::getline(std::ifstream(daemon.cgroup_dir() + "/cgroup.controllers"), controllers);
  const bool pids = (" " + controllers + " ").find(" pids ") != std::string::npos;
  ReadyFifo ready(daemon.dir);
  auto r = bus.submit({{"argv", polite(ready)}, {"tasks_max", uint64_t{16}}});
  if (!pids) {
    // A hybrid layout keeps the pids controller on cgroup v1.
    EXPECT_EQ(r.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
    EXPECT_NE(r.error_message.find("tasks_max: the pids controller is not available in " + daemon.cgroup_dir()),
              std::string::npos)
        << r.error_message;
    EXPECT_TRUE(bus.list().empty());
    return;
  }
  ASSERT_TRUE(r.ok) << r.error_message;
  ready.wait_line();
  const std::string id = r.s1;
  std::string max;
  std::getline(std::ifstream(daemon.cgroup_dir() + "/job-" + id + "/pids.max"), max);
  EXPECT_EQ(max, "16");
  ASSERT_TRUE(bus.stop(id, {{"wait", true}}).ok);
}

TEST_F(BadInput, ATaskLimitOutOfRangeIsRefused) {
  auto r = bus.submit({{"argv", std::vector<std::string>{"true"}}, {"tasks_max", uint64_t{0}}});
  EXPECT_EQ(r.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_NE(r.error_message.find("tasks_max: 0 is out of range (1-4194304)"), std::string::npos) << r.error_message;
  EXPECT_TRUE(bus.list().empty());
}

TEST_F(BadInput, RepvisorctlSubmitTasksMaxIsPassedOnOrRefusedWithTheReason) {
  const std::string ctl = std::string(REPVISORCTL_PATH) + " --runtime-dir " + daemon.runtime_dir + " ";
  EXPECT_EQ(run_command(ctl + "submit --tasks-max 0 -- true", &out), 2) << out;
  EXPECT_NE(out.find("--tasks-max"), std::string::npos) << out;
  std::string controllers;
  std::getline(std::ifstream(daemon.cgroup_dir() + "/cgroup.controllers"), controllers);
  if ((" " + controllers + " ").find(" pids ") == std::string::npos) {
    EXPECT_EQ(run_command(ctl + "submit --tasks-max 16 -- true", &out), 7) << out;
    EXPECT_NE(out.find("tasks_max: the pids controller is not available"), std::string::npos) << out;
  } else {
    EXPECT_EQ(run_command(ctl + "submit --wait --tasks-max 16 -- true", &out), 0) << out;
  }
  EXPECT_TRUE(bus.list().size() <= 1u);
}
