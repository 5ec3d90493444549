// The API a console asks what it needs: Manager.GetAccess (what this caller may do, held against
// what the daemon then allows), Manager.ListTemplates, and Job.ReadLog with LogBytesWritten (a
// job's log by positions that survive its cuts, dated by its index). Real daemons and jobs; every
// wait is on an event (PropertiesChanged, a FIFO), never a sleep.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "harness.hpp"
#include "wire/client.hpp"
#include "wire/names.hpp"

using namespace repvisor::test;
namespace wire = repvisor::wire;

namespace {

uint64_t realtime_usec() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

using Pairs = std::vector<std::pair<uint64_t, uint64_t>>;

struct LogChunk {
  bool ok = false;
  std::string error_name, error_message;
  std::string data;
  uint64_t next = 0, start = 0, end = 0, cut = 0;
  std::string keep;
  Pairs kept, stamps;
};

// Job.ReadLog, read as any client would.
LogChunk read_log(Bus& bus, const std::string& id, uint64_t offset, uint32_t max, const Dict& options = {}) {
  LogChunk c;
  wire::Message m;
  wire::Error err;
  wire::Message reply;
  const std::string path = wire::job_path(id);
  if (wire::new_call(bus.get(), path.c_str(), "org.repvisor1.Job", "ReadLog", &m) < 0 ||
      sd_bus_message_append(m.get(), "tu", offset, max) < 0 || wire::append_dict(m.get(), options) < 0) {
    ADD_FAILURE() << "cannot build ReadLog";
    return c;
  }
  if (wire::call(bus.get(), m.get(), 0, &err, &reply) < 0) {
    c.error_name = err.name();
    c.error_message = err.message();
    return c;
  }
  sd_bus_message* r = reply.get();
  const void* data = nullptr;
  size_t size = 0;
  EXPECT_GE(sd_bus_message_read_array(r, 'y', &data, &size), 0);
  c.data.assign(static_cast<const char*>(data), size);
  EXPECT_GE(sd_bus_message_read(r, "t", &c.next), 0);
  EXPECT_GE(sd_bus_message_enter_container(r, 'a', "{sv}"), 0);
  while (sd_bus_message_enter_container(r, 'e', "sv") > 0) {
    const char* key = nullptr;
    sd_bus_message_read(r, "s", &key);
    const std::string k = key;
    const char* contents = nullptr;
    sd_bus_message_peek_type(r, nullptr, &contents);
    const std::string sig = contents;
    sd_bus_message_enter_container(r, 'v', contents);
    if (sig == "t") {
      uint64_t v = 0;
      sd_bus_message_read(r, "t", &v);
      if (k == "start") c.start = v;
      if (k == "end") c.end = v;
      if (k == "cut") c.cut = v;
    } else if (sig == "s") {
      const char* v = nullptr;
      sd_bus_message_read(r, "s", &v);
      if (k == "keep") c.keep = v;
    } else if (sig == "a(tt)") {
      Pairs& into = k == "kept" ? c.kept : c.stamps;
      sd_bus_message_enter_container(r, 'a', "(tt)");
      uint64_t a = 0, b = 0;
      while (sd_bus_message_read(r, "(tt)", &a, &b) > 0) into.emplace_back(a, b);
      sd_bus_message_exit_container(r);
    } else {
      ADD_FAILURE() << "unexpected info key " << k << " of type " << sig;
      sd_bus_message_skip(r, contents);
    }
    sd_bus_message_exit_container(r);
    sd_bus_message_exit_container(r);
  }
  c.ok = true;
  return c;
}

// What the test jobs below write: line k is "line NNNNNN\n" (12 bytes), k from 0.
std::string numbered_lines(size_t count) {
  std::string out;
  char buf[16];
  for (size_t k = 0; k < count; ++k) {
    snprintf(buf, sizeof buf, "line %06zu\n", k);
    out += buf;
  }
  return out;
}

std::string numbered_lines_command(size_t count) {
  return "i=0; while [ $i -lt " + std::to_string(count) + " ]; do printf 'line %06d\\n' $i; i=$((i+1)); done";
}

}  // namespace

// ---- Job.ReadLog ---------------------------------------------------------------------------

// A running job's log read as it grows: LogBytesWritten says when there is more (no polling),
// each read goes on from the last one's next_offset, the stamps date the bytes, since_usec and
// from_end start where asked, and whole_lines never cuts a line.
TEST(ReadLog, FollowsARunningJobByItsGrowthAndDatesItsBytes) {
  Daemon daemon;
  Bus bus(daemon.address());
  const std::string go = daemon.dir + "/go";
  ASSERT_EQ(mkfifo(go.c_str(), 0600), 0);
  const uint64_t before = realtime_usec();
  const std::string id = bus.submit_ok(
      {"sh", "-c", "echo one; read x < " + go + "; printf 'three\\npart'; read x < " + go + "; echo ial"});
  bus.wait_until(id, [&](Bus& b) { return b.prop_t(id, "LogBytesWritten") == 4; });
  LogChunk c = read_log(bus, id, 0, 1000);
  ASSERT_TRUE(c.ok) << c.error_message;
  EXPECT_EQ(c.data, "one\n");
  EXPECT_EQ(c.start, 0u);
  EXPECT_EQ(c.next, 4u);
  EXPECT_EQ(c.end, 4u);
  EXPECT_EQ(c.kept, (Pairs{{0, 4}}));
  EXPECT_EQ(c.cut, 0u);
  ASSERT_EQ(c.stamps.size(), 1u);
  EXPECT_EQ(c.stamps[0].first, 4u);
  EXPECT_GE(c.stamps[0].second, before);
  const uint64_t middle = realtime_usec();
  EXPECT_LE(c.stamps[0].second, middle);

  std::ofstream(go) << "\n";
  bus.wait_until(id, [&](Bus& b) { return b.prop_t(id, "LogBytesWritten") == 14; });
  c = read_log(bus, id, 4, 1000);
  ASSERT_TRUE(c.ok) << c.error_message;
  EXPECT_EQ(c.data, "three\npart") << "without whole_lines, what is there";
  EXPECT_EQ(c.start, 4u);
  EXPECT_EQ(c.next, 14u);
  ASSERT_FALSE(c.stamps.empty());
  EXPECT_GE(c.stamps.back().second, middle) << "the second part dated before it could be written";
  EXPECT_EQ(c.stamps.back().first, 14u);
  // With whole_lines the unfinished line waits: the job is running and may end it.
  c = read_log(bus, id, 4, 1000, {{"whole_lines", true}});
  EXPECT_EQ(c.data, "three\n");
  EXPECT_EQ(c.next, 10u);
  c = read_log(bus, id, 10, 1000, {{"whole_lines", true}});
  EXPECT_EQ(c.data, "");
  EXPECT_EQ(c.next, 10u);
  // since_usec: only what was written after the first part was seen.
  c = read_log(bus, id, 0, 1000, {{"since_usec", middle}});
  EXPECT_EQ(c.start, 4u);
  EXPECT_EQ(c.data, "three\npart");
  // from_end: the last bytes; whole_lines skips the line it starts within.
  c = read_log(bus, id, 6, 1000, {{"from_end", true}});
  EXPECT_EQ(c.data, "e\npart");
  EXPECT_EQ(c.start, 8u);
  c = read_log(bus, id, 12, 1000, {{"from_end", true}, {"whole_lines", true}});
  EXPECT_EQ(c.data, "three\n") << "from 'ne\\n' on, the partial line skipped";
  EXPECT_EQ(c.start, 4u);
  // max_bytes bounds the data; 0 reads nothing but says where the end is.
  c = read_log(bus, id, 0, 3);
  EXPECT_EQ(c.data, "one");
  EXPECT_EQ(c.next, 3u);
  c = read_log(bus, id, 0, 0);
  EXPECT_EQ(c.data, "");
  EXPECT_EQ(c.end, 14u);

  std::ofstream(go) << "\n";
  bus.wait_terminal(id);
  bus.wait_until(id, [&](Bus& b) { return b.prop_t(id, "LogBytesWritten") == 18; });
  c = read_log(bus, id, 10, 1000, {{"whole_lines", true}});
  EXPECT_EQ(c.data, "partial\n");
  // Past the end: nothing, and the end.
  c = read_log(bus, id, 1000, 1000);
  EXPECT_EQ(c.data, "");
  EXPECT_EQ(c.start, 18u);
  // What is refused.
  c = read_log(bus, id, 0, 10, {{"tail", true}});
  EXPECT_EQ(c.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_NE(c.error_message.find("unknown key 'tail' in log read options"), std::string::npos) << c.error_message;
  c = read_log(bus, id, 0, 10, {{"since_usec", std::string("yesterday")}});
  EXPECT_EQ(c.error_name, "org.freedesktop.DBus.Error.InvalidArgs");
}

// A pending job has no log yet: an empty read, not an error. A plain user reads logs as it reads
// properties.
TEST(ReadLog, APendingJobHasAnEmptyLogAndAnyoneMayRead) {
  Daemon daemon("max_concurrent_jobs = 1\n");
  Bus bus(daemon.address());
  const std::string first = bus.submit_ok({"sh", "-c", "echo hello; exec sleep 1000"});
  const std::string queued = bus.submit_ok({"true"});
  EXPECT_EQ(bus.prop_s(queued, "State"), "pending");
  LogChunk c = read_log(bus, queued, 0, 100);
  ASSERT_TRUE(c.ok) << c.error_message;
  EXPECT_EQ(c.data, "");
  EXPECT_EQ(c.end, 0u);
  EXPECT_TRUE(c.kept.empty());
  bus.wait_until(first, [&](Bus& b) { return b.prop_t(first, "LogBytesWritten") == 6; });
  // The private socket is the admin group's; make it reachable to nobody for this read only.
  ASSERT_EQ(chmod((daemon.runtime_dir + "/private").c_str(), 0666), 0);
  ASSERT_EQ(chmod(daemon.runtime_dir.c_str(), 0755), 0);
  ASSERT_EQ(chmod(daemon.dir.c_str(), 0755), 0);
  std::string out;
  ASSERT_EQ(run_command("setpriv --reuid=65534 --regid=65534 --clear-groups busctl --address=" + daemon.address() +
                            " -- call org.repvisor1 " + wire::job_path(first) +
                            " org.repvisor1.Job ReadLog 'tua{sv}' 0 100 0",
                        &out),
            0)
      << out;
  EXPECT_EQ(out.rfind("ayta{sv} 6 104 101 108 108 111 10 6 ", 0), 0u) << out;
}

// Cut logs, each way: a position names the same byte before and after a cut, bytes cut are
// skipped with the read starting at the first kept after them, and the daemon's marker line is
// never returned as the job's.
class ReadLogCut : public ::testing::TestWithParam<std::string> {};

TEST_P(ReadLogCut, PositionsSurviveTheCutAndTheMarkerIsNotTheJobs) {
  const std::string keep = GetParam();
  Daemon daemon("\n[logs]\nmax_size = \"64KiB\"\nkeep = \"" + keep + "\"\n");
  Bus bus(daemon.address());
  constexpr size_t kLines = 20000;  // 240,000 bytes: cut to 64 KiB
  const std::string expected = numbered_lines(kLines);
  const std::string id = bus.submit_ok({"sh", "-c", numbered_lines_command(kLines)});
  bus.wait_terminal(id);
  ASSERT_EQ(bus.prop_s(id, "State"), "completed");
  // Its final look has cut it and reported both counts: the file and the properties agree.
  bus.wait_until(id, [&](Bus& b) {
    const uint64_t written = b.prop_t(id, "LogBytesWritten");
    return written > 0 && b.prop_t(id, "LogBytesCut") > 0 && read_log(b, id, 0, 0).end == written;
  });
  // A head log's count can fall short by what the job wrote between a cut's look at the file's
  // size and its truncation (those bytes are gone, uncounted); tail and both count every byte.
  const uint64_t written = bus.prop_t(id, "LogBytesWritten");
  if (keep != "head") {
    EXPECT_EQ(written, expected.size());
  }
  const std::string kept_as = bus.prop_s(id, "LogKeep");
  // Read it all, from 0, as a client following it would: chunk by chunk from next_offset.
  uint64_t at = 0;
  size_t gaps = 0, read_bytes = 0;
  for (int i = 0; i < 100; ++i) {
    const LogChunk c = read_log(bus, id, at, 16384);
    ASSERT_TRUE(c.ok) << c.error_message;
    EXPECT_EQ(c.end, written);
    EXPECT_EQ(c.keep, kept_as);
    if (c.start > at) ++gaps;
    ASSERT_LE(c.start + c.data.size(), expected.size());
    EXPECT_EQ(c.data, expected.substr(c.start, c.data.size())) << "at position " << c.start;
    EXPECT_EQ(c.data.find("[repvisor:"), std::string::npos) << "the marker is the daemon's";
    read_bytes += c.data.size();
    at = c.next;
    if (c.data.empty()) break;
  }
  EXPECT_EQ(gaps, 1u) << "one cut: one gap";
  EXPECT_GE(read_bytes, 60000u);
  EXPECT_LE(read_bytes, 64u * 1024 + 4096);
  const LogChunk info = read_log(bus, id, 0, 0);
  const uint64_t cut = bus.prop_t(id, "LogBytesCut");
  EXPECT_EQ(info.cut, cut);
  uint64_t held = 0;
  for (const auto& [from, to] : info.kept) held += to - from;
  EXPECT_EQ(held, read_bytes);
  if (kept_as == "tail") {
    EXPECT_EQ(info.kept, (Pairs{{cut, written}}));
  } else if (kept_as == "head") {
    ASSERT_EQ(info.kept.size(), 1u);
    EXPECT_EQ(info.kept[0].first, 0u);
  } else {
    ASSERT_EQ(info.kept.size(), 2u);
    EXPECT_EQ(info.kept[0].first, 0u);
    EXPECT_EQ(info.kept[1].first - info.kept[0].second, cut) << "the gap is what was cut";
    EXPECT_EQ(info.kept[1].second, written);
  }
  // The last 1000 bytes, whole lines only: the last lines the job wrote, wherever the cut fell.
  const LogChunk last = read_log(bus, id, 1000, 100000, {{"from_end", true}, {"whole_lines", true}});
  if (kept_as == "head") {
    EXPECT_EQ(last.data, "") << "a head log's end was cut";
    EXPECT_EQ(last.start, written);
  } else {
    EXPECT_EQ(last.data, expected.substr(expected.size() - 996)) << "83 whole lines of 12 bytes";
  }
}

INSTANTIATE_TEST_SUITE_P(EachKeep, ReadLogCut, ::testing::Values("tail", "both", "head"));

// ---- Manager.GetAccess ---------------------------------------------------------------------

namespace {
struct AccessOnTheSystemBus : ::testing::Test {
  PrivateSystemBus sysbus;
  std::unique_ptr<Daemon> daemon;
  std::string out;

  void SetUp() override {
    setenv("DBUS_SYSTEM_BUS_ADDRESS", sysbus.address().c_str(), 1);
    // nobody's primary group is nogroup: nobody is an admin; daemon (uid 1) is not.
    daemon = std::make_unique<Daemon>(
        "[bus]\nsystem = \"yes\"\nadmin_group = \"nogroup\"\n"
        "[templates.copy]\ndescription = \"copies an export\"\n"
        "argv = [\"sh\", \"-c\", \"exec sleep {seconds}\", \"{target}\", \"{token}\"]\nstop_timeout = \"7s\"\n"
        "[templates.copy.params.token]\nsecret = true\n"
        "[templates.copy.params.target]\npattern = \"vd[b-z]\"\ndefault = \"vdb\"\ndescription = \"the disk\"\n"
        "[templates.copy.params.seconds]\npattern = \"[0-9]+\"\n"
        "[templates.idle]\nargv = [\"sleep\", \"1000\"]\n");
    ASSERT_TRUE(wait_for_owner(sysbus.address(), "org.repvisor1"));
  }
  void TearDown() override {
    daemon.reset();
    unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
  }
  // busctl --json by name on the bus as `user` (empty: root): the reply's data.
  nlohmann::json call(const std::string& user, const std::string& args, int* status = nullptr) {
    const std::string as = user.empty() ? "" : "setpriv --reuid=" + user + " --regid=" + user + " --clear-groups ";
    const int r = run_command(as + "busctl --json=short --address=" + sysbus.address() + " -- " + args, &out);
    if (status) *status = r;
    if (r != 0) return {};
    return nlohmann::json::parse(out)["data"];
  }
  nlohmann::json access(const std::string& user) {
    const auto d = call(user, "call org.repvisor1 /org/repvisor1 org.repvisor1.Manager GetAccess");
    EXPECT_TRUE(d.is_array()) << out;
    nlohmann::json flat;
    if (d.is_array())
      for (const auto& [k, v] : d[0].items()) flat[k] = v["data"];
    return flat;
  }
};
}  // namespace

// The answer and the daemon's decisions agree, for root, an admin-group member and a plain user.
TEST_F(AccessOnTheSystemBus, TheAnswerIsWhatTheDaemonThenAllows) {
  const auto root = access("");
  EXPECT_EQ(root["level"], "root");
  EXPECT_EQ(root["uid"], 0);
  EXPECT_EQ(root["admin_group"], "nogroup");
  for (const char* k : {"may_read", "may_stop", "may_delete", "may_resume", "may_clean_up", "may_submit_templates",
                        "may_submit_commands", "may_read_specs"})
    EXPECT_EQ(root[k], true) << k;

  const auto admin = access("65534");
  EXPECT_EQ(admin["level"], "admin");
  EXPECT_EQ(admin["uid"], 65534);
  EXPECT_EQ(admin["may_stop"], true);
  EXPECT_EQ(admin["may_submit_templates"], true);
  EXPECT_EQ(admin["may_submit_commands"], false);
  const auto user = access("1");
  EXPECT_EQ(user["level"], "read-only");
  EXPECT_EQ(user["admin_group"], "nogroup") << "named, so a client can say whom to ask";
  for (const char* k : {"may_stop", "may_delete", "may_resume", "may_clean_up", "may_submit_templates",
                        "may_submit_commands", "may_read_specs"})
    EXPECT_EQ(user[k], false) << k;
  EXPECT_EQ(user["may_read"], true);

  // Held against what the daemon does: each said "may" is allowed, each said "may not" refused.
  int status = 0;
  const std::string submit_idle =
      "call org.repvisor1 /org/repvisor1 org.repvisor1.Manager Submit a{sv} 1 template s idle";
  call("1", submit_idle, &status);
  EXPECT_NE(status, 0) << "may_submit_templates false, yet allowed";
  const auto submitted = call("65534", submit_idle, &status);
  ASSERT_EQ(status, 0) << out;
  const std::string job = submitted[1];
  call("65534", "call org.repvisor1 /org/repvisor1 org.repvisor1.Manager Submit a{sv} 1 argv as 1 true", &status);
  EXPECT_NE(status, 0) << "may_submit_commands false, yet allowed";
  call("1", "call org.repvisor1 " + job + " org.repvisor1.Job Stop a{sv} 0", &status);
  EXPECT_NE(status, 0) << "may_stop false, yet allowed";
  call("65534", "call org.repvisor1 " + job + " org.repvisor1.Job Stop a{sv} 1 wait b true", &status);
  EXPECT_EQ(status, 0) << out;
  call("1", "call org.repvisor1 " + job + " org.repvisor1.Job Delete a{sv} 0", &status);
  EXPECT_NE(status, 0) << "may_delete false, yet allowed";
  call("65534", "call org.repvisor1 " + job + " org.repvisor1.Job Delete a{sv} 0", &status);
  EXPECT_EQ(status, 0) << out;

  // The group changes with a reload: the answer follows it. MaxConcurrentJobs changes with it,
  // and its PropertiesChanged says when the reload was applied.
  std::string conf;
  {
    std::ifstream in(daemon->config_path);
    std::stringstream ss;
    ss << in.rdbuf();
    conf = ss.str();
  }
  const size_t at = conf.find("admin_group = \"nogroup\"");
  ASSERT_NE(at, std::string::npos);
  conf.replace(at, 23, "admin_group = \"daemon\"");
  conf.replace(conf.find("[daemon]\n"), 9, "[daemon]\nmax_concurrent_jobs = 7\n");
  std::ofstream(daemon->config_path, std::ios::trunc) << conf;
  Bus root_bus(daemon->address());
  sd_bus_slot* raw = nullptr;
  ASSERT_GE(sd_bus_add_match(root_bus.get(), &raw,
                             "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',"
                             "path='/org/repvisor1'",
                             nullptr, nullptr),
            0);
  const wire::Slot slot(raw);
  kill(daemon->pid, SIGHUP);
  auto limit = [&] {
    uint32_t v = 0;
    wire::get_property(root_bus.get(), "/org/repvisor1", "org.repvisor1.Manager", "MaxConcurrentJobs", &v);
    return v;
  };
  const uint64_t deadline = realtime_usec() + kDeadlineUsec;
  while (limit() != 7) {
    ASSERT_LT(realtime_usec(), deadline) << "the reload was not applied";
    if (sd_bus_process(root_bus.get(), nullptr) == 0) sd_bus_wait(root_bus.get(), kDeadlineUsec);
  }
  EXPECT_EQ(access("65534")["level"], "read-only");
  EXPECT_EQ(access("1")["level"], "admin") << "uid 1 (daemon) is in group daemon";
  EXPECT_EQ(access("1")["admin_group"], "daemon");
}

// ---- Manager.ListTemplates -----------------------------------------------------------------

TEST_F(AccessOnTheSystemBus, AnyoneListsTheTemplatesWithTheirParameters) {
  const auto d = call("1", "call org.repvisor1 /org/repvisor1 org.repvisor1.Manager ListTemplates");
  ASSERT_TRUE(d.is_array()) << out;
  const auto& list = d[0];
  ASSERT_EQ(list.size(), 2u) << out;
  const auto& copy = list[0];
  EXPECT_EQ(copy["name"]["data"], "copy");
  EXPECT_EQ(copy["description"]["data"], "copies an export");
  EXPECT_EQ(copy["progress"]["data"], "notify");
  EXPECT_EQ(copy["stop_timeout_usec"]["data"], 7'000'000);
  EXPECT_EQ(copy["argv"]["data"],
            nlohmann::json::parse(R"(["sh", "-c", "exec sleep {seconds}", "{target}", "{token}"])"));
  const auto& params = copy["params"]["data"];
  ASSERT_EQ(params.size(), 3u) << out;
  // In the order the command uses them.
  EXPECT_EQ(params[0]["name"]["data"], "seconds");
  EXPECT_EQ(params[0]["pattern"]["data"], "[0-9]+");
  EXPECT_FALSE(params[0].contains("default"));
  EXPECT_EQ(params[0]["secret"]["data"], false);
  EXPECT_EQ(params[1]["name"]["data"], "target");
  EXPECT_EQ(params[1]["default"]["data"], "vdb");
  EXPECT_EQ(params[1]["description"]["data"], "the disk");
  EXPECT_EQ(params[2]["name"]["data"], "token");
  EXPECT_EQ(params[2]["secret"]["data"], true);
  EXPECT_EQ(params[2]["pattern"]["data"], "[A-Za-z0-9._:/+=@,-]+") << "the default pattern";
  const auto& idle = list[1];
  EXPECT_EQ(idle["name"]["data"], "idle");
  EXPECT_EQ(idle["params"]["data"].size(), 0u);
  EXPECT_EQ(idle["stop_timeout_usec"]["data"], 30'000'000) << "the daemon's default";
}
