// What the audit trail keeps for good: never a secret (environment values unless allowed, a
// template's secret parameters), and the full spec for admins only.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <regex>

#include "harness.hpp"

using namespace repvisor::test;

namespace {

struct AuditTest : ::testing::Test {
  Daemon daemon{
      "[audit]\nenv_values = [\"LANG\"]\n"
      "[templates.token]\nargv = [\"sh\", \"-c\", \"test {token} = hunter2 && echo user {user}\"]\n"
      "[templates.token.params.token]\nsecret = true\n"
      "[templates.token.params.user]\npattern = \"[a-z]+\"\n"};
  Bus bus{daemon.address()};
  std::string out;

  int gdbus(const std::string& as, const std::string& method, const std::string& args) {
    return run_command(as + "gdbus call --address " + daemon.address() +
                           " --dest org.repvisor1 --object-path /org/repvisor1 --method org.repvisor1.Manager." +
                           method + " " + args,
                       &out);
  }
  // Submits with gdbus (a{ss} values, which the harness does not write); returns the job's id.
  std::string submit(const std::string& spec) {
    EXPECT_EQ(gdbus("", "Submit", "\"" + spec + "\""), 0) << out;
    std::smatch m;
    if (!std::regex_search(out, m, std::regex("[0-9a-f]{32}"))) return "";
    return m.str();
  }
  std::string events_of(const std::string& id, const std::string& as = "") {
    EXPECT_EQ(gdbus(as, "ListEvents", "\"{'job': <'" + id + "'>}\""), 0) << out;
    return out;
  }
  // Every byte the store holds: the events table and the jobs table alike.
  std::string database() {
    std::string db;
    EXPECT_EQ(run_command("sqlite3 " + daemon.state_dir + "/repvisor.db .dump", &db), 0) << db;
    return db;
  }
};

}  // namespace

TEST_F(AuditTest, EnvironmentValuesAreKeptOnlyForAllowedNames) {
  const std::string id = submit(
      "{'argv': <['sh', '-c', 'test \\$DB_PASSWORD = \\${LANG}2']>, 'env': <{'DB_PASSWORD': 'hunter2', "
      "'LANG': 'hunter'}>}");
  ASSERT_FALSE(id.empty());
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "completed") << "the job itself was given the value";
  const std::string events = events_of(id);
  EXPECT_EQ(events.find("hunter2"), std::string::npos) << events;
  EXPECT_NE(events.find(R"("DB_PASSWORD":null)"), std::string::npos) << events;
  EXPECT_NE(events.find(R"("LANG":"hunter")"), std::string::npos) << events;
  ASSERT_TRUE(bus.remove(id, {}).ok);
  // Gone with the job's record; never in the trail that stays.
  EXPECT_EQ(database().find("hunter2"), std::string::npos);
}

TEST_F(AuditTest, ASecretTemplateParameterIsShownAsItsPlaceholder) {
  const std::string id = submit("{'template': <'token'>, 'params': <{'token': 'hunter2', 'user': 'alice'}>}");
  ASSERT_FALSE(id.empty());
  bus.wait_terminal(id);
  EXPECT_EQ(bus.prop_s(id, "State"), "completed") << "the job ran with the value";
  std::string argv;
  ASSERT_EQ(run_command("busctl --address=" + daemon.address() + " get-property org.repvisor1 /org/repvisor1/job/" +
                            id + " org.repvisor1.Job Argv",
                        &argv),
            0)
      << argv;
  EXPECT_NE(argv.find("test {token} = hunter2 && echo user alice"), std::string::npos) << argv;
  const std::string events = events_of(id);
  EXPECT_NE(events.find("{token} = hunter2 && echo user alice"), std::string::npos) << events;
  // The one "hunter2" is the template's own text; the value given is never recorded.
  EXPECT_EQ(events.find("hunter2 = hunter2"), std::string::npos) << events;
}

TEST_F(AuditTest, OnlyAdminsReadTheSpecInTheTrail) {
  const std::string id = submit("{'argv': <['true']>, 'working_directory': <'/tmp'>}");
  ASSERT_FALSE(id.empty());
  bus.wait_terminal(id);
  EXPECT_NE(events_of(id).find("working_directory"), std::string::npos) << out;
  // The socket is root-only; open it up to reach the daemon's own check.
  ASSERT_EQ(chmod(daemon.dir.c_str(), 0755), 0);
  ASSERT_EQ(chmod(daemon.runtime_dir.c_str(), 0755), 0);
  ASSERT_EQ(chmod((daemon.runtime_dir + "/private").c_str(), 0666), 0);
  const std::string others = events_of(id, "setpriv --reuid=65534 --regid=65534 --clear-groups ");
  EXPECT_NE(others.find("submitted"), std::string::npos) << others;
  EXPECT_EQ(others.find("working_directory"), std::string::npos) << others;
  EXPECT_EQ(others.find("'spec'"), std::string::npos) << others;
}

// A refused secret is not echoed back in the error either.
TEST_F(AuditTest, ASecretParameterThatDoesNotMatchIsNotEchoed) {
  EXPECT_NE(gdbus("", "Submit", "\"{'template': <'token'>, 'params': <{'token': 'hunter 2', 'user': 'alice'}>}\""), 0);
  EXPECT_NE(out.find("params.token: its (secret) value does not match"), std::string::npos) << out;
  EXPECT_EQ(out.find("hunter"), std::string::npos) << out;
}
