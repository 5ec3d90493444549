// Every property the daemon declares as emitting changes (so its introspection says, read from
// the running daemon) is signalled in PropertiesChanged, with its value, whenever it changes. A
// client's copy of the properties, kept up to date by the signals alone, must agree with what Get
// says at every checkpoint of a job's whole life: submitted, running and reporting, its log cut,
// stopped by an admin, left unkillable, cancelled with a failed cleanup, cleaned up on request,
// resumed, failed; the Manager's through a reload as well. Each such property must also have
// changed at least once on the way, so that the check covered it, and a const one never.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "harness.hpp"
#include "sys/cgroup.hpp"
#include "util/fd.hpp"

using namespace repvisor::test;

namespace {

uint64_t mono_usec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

// How long a signal may lag behind the change it reports: the commit, the flush, the hold on
// progress-only changes (100 ms) and a loaded machine. Only a missing signal waits this long.
constexpr uint64_t kSignalLagUsec = 10'000'000;

void check(int r, const char* what) {
  if (r < 0) throw std::runtime_error(std::string(what) + ": " + strerror(-r));
}

// The next complete value in `m`, of any type, as text: equal values give equal texts.
std::string read_value(sd_bus_message* m) {
  char type = 0;
  const char* contents = nullptr;
  check(sd_bus_message_peek_type(m, &type, &contents), "peek");
  switch (type) {
    case SD_BUS_TYPE_ARRAY:
    case SD_BUS_TYPE_STRUCT:
    case SD_BUS_TYPE_DICT_ENTRY:
    case SD_BUS_TYPE_VARIANT: {
      std::string out = std::string(1, type) + (contents ? contents : "") + "[";
      check(sd_bus_message_enter_container(m, type, contents), "enter");
      while (sd_bus_message_at_end(m, 0) == 0) out += read_value(m) + ",";
      check(sd_bus_message_exit_container(m), "exit");
      return out + "]";
    }
    case SD_BUS_TYPE_STRING:
    case SD_BUS_TYPE_OBJECT_PATH:
    case SD_BUS_TYPE_SIGNATURE: {
      const char* s = nullptr;
      check(sd_bus_message_read_basic(m, type, &s), "read");
      return "\"" + std::string(s) + "\"";
    }
    case SD_BUS_TYPE_DOUBLE: {
      double d = 0;
      check(sd_bus_message_read_basic(m, type, &d), "read");
      std::ostringstream out;
      out.precision(17);
      out << d;
      return out.str();
    }
    default: {
      // Every other basic type fits in 8 bytes; its text is its type and the integer.
      uint64_t v = 0;
      check(sd_bus_message_read_basic(m, type, &v), "read");
      const size_t size = type == 'y' ? 1 : (type == 'n' || type == 'q') ? 2 : (type == 't' || type == 'x') ? 8 : 4;
      if (size < 8) v &= (uint64_t{1} << (size * 8)) - 1;
      return std::string(1, type) + std::to_string(v);
    }
  }
}

// What the introspection of `path` declares about `interface`'s properties: name → the value of
// org.freedesktop.DBus.Property.EmitsChangedSignal ("true" when not annotated, as the spec says).
std::map<std::string, std::string> declared_properties(sd_bus* bus, const std::string& path,
                                                       const std::string& interface) {
  sd_bus_error err = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  const int r = sd_bus_call_method(bus, "org.repvisor1", path.c_str(), "org.freedesktop.DBus.Introspectable",
                                   "Introspect", &err, &reply, "");
  std::string xml;
  if (r >= 0) {
    const char* s = nullptr;
    if (sd_bus_message_read(reply, "s", &s) >= 0) xml = s;
  }
  sd_bus_message_unref(reply);
  sd_bus_error_free(&err);
  std::map<std::string, std::string> out;
  const auto begin = xml.find("<interface name=\"" + interface + "\">");
  if (begin == std::string::npos) return out;
  const std::string block = xml.substr(begin, xml.find("</interface>", begin) - begin);
  static const std::regex property(
      R"re(<property name="([^"]+)" type="[^"]+" access="[^"]+"(/>|>([\s\S]*?)</property>))re");
  static const std::regex emits(R"re(name="org\.freedesktop\.DBus\.Property\.EmitsChangedSignal" value="([^"]+)")re");
  for (std::sregex_iterator it(block.begin(), block.end(), property), end; it != end; ++it) {
    const std::string inner = (*it)[3];
    std::smatch m;
    out[(*it)[1]] = std::regex_search(inner, m, emits) ? m[1].str() : "true";
  }
  return out;
}

// One object's properties as a client that listens sees them: kept by PropertiesChanged alone,
// after one GetAll at the start.
class Mirror {
 public:
  Mirror(sd_bus* bus, std::string path, std::string interface)
      : bus_(bus), path_(std::move(path)), interface_(std::move(interface)) {
    for (const auto& [name, emits] : declared_properties(bus_, path_, interface_)) {
      if (emits == "true")
        emitting_.insert(name);
      else if (emits == "const")
        const_.insert(name);
      else
        ADD_FAILURE() << interface_ << "." << name << ": EmitsChangedSignal " << emits << " is not what the API uses";
    }
    EXPECT_FALSE(emitting_.empty()) << "no properties declared on " << path_;
    // Listening before the first look: a change between the two is seen either way.
    const std::string rule =
        "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',path='" + path_ + "'";
    check(sd_bus_add_match(bus_, &slot_, rule.c_str(), on_signal, this), "match");
    signalled_ = last_ = get_all();
  }
  ~Mirror() { sd_bus_slot_unref(slot_); }
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;

  // Every property as Get (GetAll) says it is now.
  std::map<std::string, std::string> get_all() {
    sd_bus_error err = SD_BUS_ERROR_NULL;
    sd_bus_message* reply = nullptr;
    std::map<std::string, std::string> out;
    const int r = sd_bus_call_method(bus_, "org.repvisor1", path_.c_str(), "org.freedesktop.DBus.Properties", "GetAll",
                                     &err, &reply, "s", interface_.c_str());
    if (r < 0) {
      ADD_FAILURE() << "GetAll " << path_ << ": " << (err.message ? err.message : strerror(-r));
    } else {
      read_dict(reply, &out);
    }
    sd_bus_message_unref(reply);
    sd_bus_error_free(&err);
    return out;
  }

  // A checkpoint: blocks until every emitting property's signalled value is what Get says
  // (signals come after the commit, so they may lag a little); fails naming the properties
  // whose change was never signalled. Then notes what changed since the last checkpoint.
  void expect_in_sync(const std::string& when) {
    const uint64_t deadline = mono_usec() + kSignalLagUsec;
    std::map<std::string, std::string> live;
    for (;;) {
      live = get_all();
      const bool more = drain(bus_);
      std::string behind;
      for (const auto& name : emitting_)
        if (live[name] != signalled_[name])
          behind += "\n  " + name + ": Get says " + live[name] + ", the signals said " + signalled_[name];
      if (behind.empty()) break;
      const uint64_t now = mono_usec();
      if (now >= deadline) {
        ADD_FAILURE() << path_ << ", " << when << ": changed without a PropertiesChanged:" << behind;
        break;
      }
      // Something came while looking: look again at once. Else the next message is awaited.
      if (!more) sd_bus_wait(bus_, deadline - now);
    }
    for (const auto& [name, value] : live) {
      if (last_[name] == value) continue;
      changed_.insert(name);
      if (const_.count(name)) ADD_FAILURE() << path_ << ", " << when << ": const property " << name << " changed";
    }
    last_ = live;
  }

  // The emitting properties that no checkpoint saw change: the check said nothing about them.
  std::set<std::string> never_changed() const {
    std::set<std::string> out;
    for (const auto& name : emitting_)
      if (!changed_.count(name)) out.insert(name);
    return out;
  }

  // Dispatches whatever has arrived, without blocking; whether there was anything.
  static bool drain(sd_bus* bus) {
    bool any = false;
    while (sd_bus_process(bus, nullptr) > 0) any = true;
    return any;
  }

 private:
  static void read_dict(sd_bus_message* m, std::map<std::string, std::string>* out) {
    check(sd_bus_message_enter_container(m, 'a', "{sv}"), "dict");
    while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
      const char* name = nullptr;
      check(sd_bus_message_read_basic(m, 's', &name), "name");
      const char* type = nullptr;
      check(sd_bus_message_peek_type(m, nullptr, &type), "variant");
      check(sd_bus_message_enter_container(m, 'v', type), "variant");
      (*out)[name] = read_value(m);
      check(sd_bus_message_exit_container(m), "variant");
      check(sd_bus_message_exit_container(m), "entry");
    }
    check(sd_bus_message_exit_container(m), "dict");
  }

  static int on_signal(sd_bus_message* m, void* userdata, sd_bus_error*) {
    auto* self = static_cast<Mirror*>(userdata);
    const char* interface = nullptr;
    if (sd_bus_message_read(m, "s", &interface) < 0 || self->interface_ != interface) return 0;
    read_dict(m, &self->signalled_);
    // Named without a value: no property of the API is declared so.
    char** invalidated = nullptr;
    if (sd_bus_message_read_strv(m, &invalidated) >= 0 && invalidated) {
      for (char** p = invalidated; *p; ++p) {
        ADD_FAILURE() << self->path_ << ": " << *p << " invalidated instead of sent with its value";
        free(*p);
      }
      free(invalidated);
    }
    return 0;
  }

  sd_bus* bus_;
  std::string path_, interface_;
  sd_bus_slot* slot_ = nullptr;
  std::set<std::string> emitting_, const_, changed_;
  std::map<std::string, std::string> signalled_, last_;
};

// Blocks until pred(GetAll of `mirror`'s object) holds, looked at again whenever a message comes.
void wait_for(sd_bus* bus, Mirror& mirror, const std::string& what,
              const std::function<bool(std::map<std::string, std::string>&)>& pred) {
  const uint64_t deadline = mono_usec() + kDeadlineUsec;
  for (;;) {
    auto live = mirror.get_all();
    if (pred(live)) return;
    const uint64_t now = mono_usec();
    if (now >= deadline) {
      ADD_FAILURE() << "timed out waiting for " << what << " (State " << live["State"] << ", SubState "
                    << live["SubState"] << ")";
      return;
    }
    // A message that came meanwhile may be what changed it: look again before waiting.
    if (!Mirror::drain(bus)) sd_bus_wait(bus, deadline - now);
  }
}

// A process traced so that SIGKILL cannot end it at once: it stops on its way out
// (PTRACE_EVENT_EXIT), still in its cgroup, until released. How a process in uninterruptible
// sleep looks to the daemon, made on demand.
class HeldOnExit {
 public:
  explicit HeldOnExit(pid_t pid) : pid_(pid) {
    if (ptrace(PTRACE_SEIZE, pid_, nullptr, PTRACE_O_TRACEEXIT) < 0) {
      ADD_FAILURE() << "PTRACE_SEIZE " << pid_ << ": " << strerror(errno);
      pid_ = -1;
    }
  }
  ~HeldOnExit() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);  // a test that failed early: it must not hold the job forever
    release();
  }
  // Waits for its stop on the way out, then lets it finish.
  void release() {
    if (pid_ <= 0) return;
    int status = 0;
    if (waitpid(pid_, &status, __WALL) == pid_ && WIFSTOPPED(status)) ptrace(PTRACE_DETACH, pid_, nullptr, nullptr);
    pid_ = -1;
  }

 private:
  pid_t pid_;
};

int call_job(sd_bus* bus, const std::string& path, const char* method, std::string* error) {
  sd_bus_error err = SD_BUS_ERROR_NULL;
  sd_bus_message* m = nullptr;
  sd_bus_message* reply = nullptr;
  int r = sd_bus_message_new_method_call(bus, &m, "org.repvisor1", path.c_str(), "org.repvisor1.Job", method);
  if (r >= 0 && std::string_view(method) != "RetryCleanup") r = sd_bus_message_append(m, "a{sv}", 0);
  if (r >= 0) r = sd_bus_call(bus, m, kDeadlineUsec, &err, &reply);
  if (r < 0) *error = err.message ? err.message : strerror(-r);
  sd_bus_message_unref(m);
  sd_bus_message_unref(reply);
  sd_bus_error_free(&err);
  return r;
}

}  // namespace

// The same on both ways to the daemon: its private socket (peer to peer), and a system bus (a
// private dbus-daemon with the shipped policy) on which the daemon owns org.repvisor1.
class Properties : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      sysbus_ = std::make_unique<PrivateSystemBus>();
      setenv("DBUS_SYSTEM_BUS_ADDRESS", sysbus_->address().c_str(), 1);
    }
    // An admin group that `nobody` is in, so that an admin other than root can stop the job.
    daemon_ = std::make_unique<Daemon>(std::string("final_kill_timeout = \"300ms\"\n") +
                                       "[logs]\nmax_size = \"64KiB\"\nkeep = \"tail\"\n[bus]\nsystem = \"" +
                                       (GetParam() ? "yes" : "no") + "\"\nadmin_group = \"nogroup\"\n");
    if (GetParam()) {
      ASSERT_TRUE(wait_for_owner(sysbus_->address(), "org.repvisor1"));
    }
    chmod(daemon_->dir.c_str(), 0711);
    chmod(daemon_->runtime_dir.c_str(), 0711);
  }
  void TearDown() override {
    daemon_.reset();
    unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
  }
  std::string address() const { return GetParam() ? sysbus_->address() : daemon_->address(); }

  std::unique_ptr<PrivateSystemBus> sysbus_;
  std::unique_ptr<Daemon> daemon_;
};

INSTANTIATE_TEST_SUITE_P(Ways, Properties, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "SystemBus" : "PrivateSocket"; });

TEST_P(Properties, EveryEmittingPropertyIsSignalledWhenItChanges) {
  Daemon& daemon = *daemon_;
  Bus bus(address());
  std::string out, error;

  Mirror manager(bus.get(), "/org/repvisor1", "org.repvisor1.Manager");
  // A reload that changes the limit.
  const std::string limit = manager.get_all()["MaxConcurrentJobs"];  // "u64"
  const unsigned raised = static_cast<unsigned>(std::stoul(limit.substr(1))) + 1;
  std::filesystem::create_directories(daemon.config_path + ".d");
  std::ofstream(daemon.config_path + ".d/50-limit.toml") << "[daemon]\nmax_concurrent_jobs = " << raised << "\n";
  kill(daemon.pid, SIGHUP);
  wait_for(bus.get(), manager, "the reload", [&](auto& p) { return p["MaxConcurrentJobs"] != limit; });
  manager.expect_in_sync("after a reload");

  // Run 1 reports, gets its log cut, pins its cgroup (a child cgroup: the cleanup cannot remove
  // it) and leaves a child that ignores SIGTERM; run 2 (a resume, with the checkpoint) fails.
  // It starts reporting once the test looks (`go`), so that every change comes after the first look.
  ReadyFifo fifo(daemon.dir);
  const std::string go = daemon.dir + "/go";
  ASSERT_EQ(mkfifo(go.c_str(), 0600), 0);
  // Held open for reading and writing: neither end ever blocks on opening it, and what is written
  // waits in it for the job, which cannot hang the test if the job is gone.
  const repvisor::Fd go_fd(open(go.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_GE(go_fd.get(), 0) << strerror(errno);
  const std::string mount = repvisor::sys::find_cgroup2_mount();
  const std::string script =
      "if [ -n \"$REPVISOR_CHECKPOINT\" ]; then exit 3; fi; "
      "read x < " +
      go +
      "; yes | head -c 300000; "
      "systemd-notify PHASE=copying PROGRESS=42.5 BYTES_TOTAL=1000 BYTES_DONE=425 STATUS=copying CHECKPOINT=half; "
      "mkdir \"" +
      mount + "$(sed -n 's/^0:://p' /proc/self/cgroup)/pinned\"; trap '' TERM; sleep 1000 & echo $! > " + fifo.path() +
      "; wait";
  const std::string id =
      bus.submit_ok({"sh", "-c", script}, {{"resources", ResourceList{{{"kind", std::string("file")},
                                                                       {"name", std::string("scratch")},
                                                                       {"path", daemon.dir + "/volumes/scratch.img"},
                                                                       {"size", uint64_t{1} << 20}}}}});
  ASSERT_EQ(id.size(), 32u);
  const std::string path = "/org/repvisor1/job/" + id;
  Mirror job(bus.get(), path, "org.repvisor1.Job");
  ASSERT_EQ(write(go_fd.get(), "go\n", 3), 3);

  const pid_t child = static_cast<pid_t>(std::stol(fifo.wait_line()));
  HeldOnExit held(child);
  wait_for(bus.get(), job, "the job's report and its log's cut",
           [](auto& p) { return p["Checkpoint"] == "\"half\"" && p["LogBytesCut"] != "t0"; });
  job.expect_in_sync("running, after its report and a cut of its log");
  manager.expect_in_sync("a job running");

  // Stopped by an admin who is not root (RequestedByUID), gracefully: the SIGTERM is ignored.
  ASSERT_EQ(run_command("setpriv --reuid=65534 --regid=65534 --clear-groups busctl --address=" + address() +
                            " -- call org.repvisor1 " + path + " org.repvisor1.Job Stop a{sv} 2 reason s maintenance" +
                            " notes s checked",
                        &out),
            0)
      << out;
  wait_for(bus.get(), job, "the graceful stop", [](auto& p) { return p["SubState"] == "\"stop-sigterm\""; });
  job.expect_in_sync("stopping gracefully");
  // Forced by root: the SIGKILL leaves the held child.
  ASSERT_TRUE(bus.stop(id, {{"force", true}}).ok);
  wait_for(bus.get(), job, "unkillable", [](auto& p) { return p["SubState"] == "\"unkillable\""; });
  EXPECT_NE(job.get_all()["StuckPIDs"].find("u" + std::to_string(child)), std::string::npos);
  job.expect_in_sync("unkillable: a process outlived the SIGKILL");

  held.release();
  wait_for(bus.get(), job, "the end of run 1",
           [](auto& p) { return p["State"] == "\"cancelled\"" && p["CleanupState"] == "\"failed\""; });
  job.expect_in_sync("cancelled, its cgroup left behind");

  const std::string cgroup = daemon.cgroup_dir() + "/job-" + id;
  ASSERT_EQ(rmdir((cgroup + "/pinned").c_str()), 0) << strerror(errno);
  ASSERT_EQ(rmdir(cgroup.c_str()), 0) << strerror(errno);
  ASSERT_GE(call_job(bus.get(), path, "RetryCleanup", &error), 0) << error;
  job.expect_in_sync("cleaned up on request");

  ASSERT_GE(call_job(bus.get(), path, "Resume", &error), 0) << error;
  wait_for(bus.get(), job, "the end of run 2", [](auto& p) { return p["State"] == "\"failed\""; });
  job.expect_in_sync("run 2 failed");
  manager.expect_in_sync("no job running");

  EXPECT_EQ(job.never_changed(), std::set<std::string>{}) << "never changed: the test did not cover them";
  EXPECT_EQ(manager.never_changed(), std::set<std::string>{}) << "never changed: the test did not cover them";
  ASSERT_GE(call_job(bus.get(), path, "Delete", &error), 0) << error;
}
