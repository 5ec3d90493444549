// A fake host for the resource pipeline's unit tests: a ResourceSystem that models files, loop
// devices, server processes and NBD devices, records every act ("flush out", "term src"), and
// completes each operation whenever the test says; and a Daemon, one daemon's life with one job
// (its system, job object and pipeline), that a test can crash and start again from the record.
#pragma once
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>

#include "supervisor/resource_pipeline.hpp"

namespace repvisor::fake {

using core::ResourceKind;
using core::ResourceSpec;
using core::ResourceState;

struct Crash {};  // thrown at an armed crash point: the daemon dies there

// What outlives a daemon.
struct Host {
  struct Server {
    bool alive = false, got_term = false, got_kill = false;
    bool ignores_term = false, unkillable = false;
  };
  struct Loop {
    bool bound = false;
    bool held_elsewhere = false;  // something besides the daemon has it open
    bool autoclear = false;       // asked to detach while held elsewhere: goes with that hold
  };
  std::map<std::string, bool> files;  // path -> exists
  std::map<size_t, Server> servers;   // by resource number
  std::map<size_t, Loop> loops;
  std::map<size_t, bool> devices;  // connected
  std::set<std::string> failing;   // acts that fail, as "remove out"
};

// One daemon's view of the host: its holds end with it.
class FakeSystem final : public ResourceSystem {
 public:
  struct FakeTimer final : Timer {
    FakeSystem& sys;
    std::function<void()> fire;
    explicit FakeTimer(FakeSystem& s, std::function<void()> f) : sys(s), fire(std::move(f)) { sys.timer = this; }
    ~FakeTimer() override { sys.timer = nullptr; }
    bool armed = false;
    usec_t due = 0, repeat = 0;
    void arm(usec_t after, usec_t rep) override {
      armed = true;
      due = sys.clock + after;
      repeat = rep;
    }
    void disarm() override { armed = false; }
  };
  struct Flush {
    size_t number;
    std::string name;
    int epoch;  // the test's count of teardowns begun when it was issued
    std::function<void(int)> done;
  };

  explicit FakeSystem(Host& h) : host(h) {}
  ~FakeSystem() override {
    // The daemon's holds close with it: a loop device nothing else holds detaches (autoclear).
    for (size_t n : loop_holds)
      if (!host.loops[n].held_elsewhere) host.loops[n].bound = false;
  }

  Host& host;
  std::vector<std::string> acts;
  std::vector<Flush> flushes;  // issued, not yet completed
  std::map<size_t, std::function<void(const std::string&)>> watched;
  std::map<size_t, std::function<void(bool, const std::string&)>> probes;
  std::set<size_t> loop_holds;
  FakeTimer* timer = nullptr;
  usec_t clock = 1'000'000;
  std::string crash_at;
  int epoch = 0;

  bool fails(const std::string& act) const { return host.failing.count(act) > 0; }

  std::unique_ptr<Timer> make_timer(std::function<void()> fire) override {
    return std::make_unique<FakeTimer>(*this, std::move(fire));
  }
  usec_t now() override { return clock; }
  void crash_point(const char* name) override {
    if (crash_at == name) throw Crash{};
  }
  int make_runtime_dir(const core::Job&, std::string*) override {
    acts.emplace_back("mkdir");
    return 0;
  }
  void remove_runtime_dir(const core::Job&) override { acts.emplace_back("rmdir"); }

  int open_volume(JobResource& r, bool* created, std::string* why) override {
    acts.push_back("open " + r.spec.name);
    bool& exists = host.files[r.spec.path];
    *created = !exists;
    if (!exists && !r.spec.size) {
      *why = r.spec.path + ": No such file or directory";
      return -ENOENT;
    }
    exists = true;
    return 0;
  }
  int attach_loop(JobResource& r, std::string* device, uint64_t* dev, uint64_t* ino, std::string*) override {
    acts.push_back("attach " + r.spec.name);
    host.loops[r.number] = Host::Loop{.bound = true};
    loop_holds.insert(r.number);
    *device = "/dev/loop" + std::to_string(r.number);
    *dev = 1;
    *ino = 100 + r.number;
    return 0;
  }
  void hold_volume(JobResource&) override {}
  int hold_loop(JobResource& r, std::string* why) override {
    if (!host.loops[r.number].bound) {
      *why = "detached while the daemon was down";
      return -ENXIO;
    }
    loop_holds.insert(r.number);
    return 0;
  }
  int flush_volume(JobResource& r, std::function<void(int)> done, std::string* why) override {
    if (!host.files[r.spec.path]) return -ENOENT;
    if (fails("flush " + r.spec.name)) {
      *why = "Input/output error";
      return -EIO;
    }
    acts.push_back("flush " + r.spec.name);
    flushes.push_back({r.number, r.spec.name, epoch, std::move(done)});
    return 0;
  }
  int detach_loop(JobResource& r, std::string* why) override {
    acts.push_back("detach " + r.spec.name);
    loop_holds.erase(r.number);
    Host::Loop& l = host.loops[r.number];
    if (!l.bound) return 1;
    if (fails("detach " + r.spec.name)) {
      *why = "detaching: Operation not permitted";
      return -EPERM;
    }
    if (l.held_elsewhere) {
      l.autoclear = true;
      return 0;
    }
    l.bound = false;
    return 1;
  }
  bool loop_released(JobResource& r) override { return !host.loops[r.number].bound; }
  void close_volume(JobResource&) override {}
  int remove_volume(JobResource& r, std::string* why) override {
    acts.push_back("remove " + r.spec.name);
    if (r.is(ResourceKind::Loop) && host.loops[r.number].bound)
      ADD_FAILURE() << "volume " << r.spec.name << " removed while its loop device is bound";
    if (fails("remove " + r.spec.name)) {
      *why = "removing: Permission denied";
      return -EACCES;
    }
    host.files[r.spec.path] = false;
    return 0;
  }

  int start_server(const core::Job&, JobResource& r, std::function<void(const std::string&)> on_exit, ServerStart* out,
                   std::string*) override {
    acts.push_back("start " + r.spec.name);
    out->socket = "/run/test/nbd-" + std::to_string(r.number) + ".sock";
    out->pid = static_cast<pid_t>(1000 + r.number);
    out->start_time = 7;
    host.servers[r.number] = Host::Server{.alive = true};
    watched[r.number] = std::move(on_exit);
    return 0;
  }
  int probe_server(JobResource& r, std::function<void(bool, const std::string&)> done, std::string*) override {
    probes[r.number] = std::move(done);
    return 0;
  }
  void stop_probe(JobResource& r) override { probes.erase(r.number); }
  bool hold_server(JobResource& r, std::function<void(const std::string&)> on_exit) override {
    if (watched.count(r.number)) return true;
    // Recorded by an earlier daemon: still that process?
    if (r.record.pid <= 0 || !host.servers[r.number].alive) return false;
    watched[r.number] = std::move(on_exit);
    return true;
  }
  void signal_server(JobResource& r, int sig) override {
    acts.push_back(std::string(sig == SIGTERM ? "term " : "signal ") + r.spec.name);
    host.servers[r.number].got_term = true;
  }
  void kill_server(const core::Job&, JobResource& r) override {
    acts.push_back("kill " + r.spec.name);
    host.servers[r.number].got_kill = true;
  }
  void abandon_server(JobResource& r) override {
    acts.push_back("abandon " + r.spec.name);
    watched.erase(r.number);
  }
  void release_server(const core::Job&, JobResource& r) override { acts.push_back("release " + r.spec.name); }

  int nbd_available(std::string*) override { return 0; }
  int connect_device(JobResource& r, const std::string& socket, std::string* device, std::string*) override {
    acts.push_back("connect " + r.spec.name + " " + socket);
    host.devices[r.number] = true;
    *device = "/dev/nbd" + std::to_string(r.number);
    return 0;
  }
  int disconnect_device(JobResource& r, std::string* why) override {
    acts.push_back("disconnect " + r.spec.name);
    if (fails("disconnect " + r.spec.name)) {
      *why = "Device or resource busy";
      return -EBUSY;
    }
    host.devices[r.number] = false;
    return 0;
  }

  // ---- the host's side, as the test drives it ----
  // The server process ends; a watched one is reported.
  void server_exits(size_t n, const std::string& how = "exited with status 0") {
    host.servers[n].alive = false;
    auto it = watched.find(n);
    if (it == watched.end()) return;
    auto on_exit = std::move(it->second);
    watched.erase(it);
    on_exit(how);
  }
  void answer_probes() {
    auto all = std::move(probes);
    probes.clear();
    for (auto& [n, done] : all) done(true, "");
  }
  void complete_flush(size_t k, int error) {
    auto f = std::move(flushes[k]);
    flushes.erase(flushes.begin() + static_cast<long>(k));
    f.done(error);
  }
  void fire_timer() {
    ASSERT_TRUE(timer && timer->armed) << "no timer armed";
    clock = std::max(clock, timer->due);
    if (timer->repeat)
      timer->due += timer->repeat;
    else
      timer->armed = false;
    timer->fire();
  }
  bool timer_armed() const { return timer && timer->armed; }
  void let_go_of_loop(size_t n) {
    Host::Loop& l = host.loops[n];
    l.held_elsewhere = false;
    if (l.autoclear) l.bound = false;
  }
};

class Driver final : public core::JobDriver {
 public:
  ResourcePipeline* pipeline = nullptr;
  FakeSystem* sys = nullptr;
  std::vector<std::pair<std::string, std::string>> events;
  int cleanups_done = 0;
  int spawn(core::Job& j) override {
    j.main_pid = 4242;
    return 0;
  }
  int signal_main(core::Job&, int) override { return 0; }
  int signal_tree(core::Job&, int) override { return 0; }
  int kill_tree(core::Job&) override { return 0; }
  void arm_timer(core::Job&, usec_t) override {}
  void disarm_timer(core::Job&) override {}
  std::vector<pid_t> tree_pids(core::Job&) override { return {}; }
  void begin_cleanup(core::Job&) override {
    sys->acts.emplace_back("begin");
    ++sys->epoch;
    pipeline->when_torn_down([this](bool) { ++cleanups_done; });
    pipeline->begin_teardown(true);
  }
  void begin_setup(core::Job&) override { pipeline->begin_setup(); }
  void abort_setup(core::Job&) override { pipeline->abort_setup(); }
  void changed(core::Job&, uint32_t) override {}
  void finished(core::Job&) override {}
  void event(core::Job&, std::string_view type, std::string_view message) override {
    events.emplace_back(type, message);
  }
  usec_t now() override { return 1; }
  bool saw(const std::string& type, const std::string& part = "") const {
    for (const auto& [t, m] : events)
      if (t == type && m.find(part) != std::string::npos) return true;
    return false;
  }
};

// What the store holds: the records as of the last commit (one per loop iteration).
struct Record {
  std::vector<core::Resource> resources;
  std::string cleanup_state, cleanup_error;
  bool delete_requested = false, delete_keep_data = false;
};

// One daemon's life with the job: its system, its job object, its pipeline.
struct Daemon {
  FakeSystem sys;
  Driver driver;
  config::Config cfg;
  std::unique_ptr<core::Job> job;
  std::unique_ptr<ResourcePipeline> pipe;

  Daemon(Host& host, const core::JobSpec& spec, const Record* restored = nullptr) : sys(host) {
    job = std::make_unique<core::Job>(driver, "0123456789abcdef0123456789abcdef", spec, 10 * USEC_PER_SEC);
    if (restored) {
      job->resources = restored->resources;
      job->cleanup_state = restored->cleanup_state;
      job->cleanup_error = restored->cleanup_error;
      job->delete_requested = restored->delete_requested;
      job->delete_keep_data = restored->delete_keep_data;
    }
    pipe = std::make_unique<ResourcePipeline>(*job, driver, sys, cfg);
    driver.pipeline = pipe.get();
    driver.sys = &sys;
  }
  ~Daemon() { pipe.reset(); }  // before the system its timer and handles point into

  Record record() const {
    return {job->resources, job->cleanup_state, job->cleanup_error, job->delete_requested, job->delete_keep_data};
  }
  JobResource& res(const std::string& name) {
    for (auto& r : pipe->resources())
      if (r.spec.name == name) return r;
    throw std::logic_error("no resource " + name);
  }
  // Set up and running.
  void run() {
    job->start();
    sys.answer_probes();
    ASSERT_EQ(job->state(), core::JobState::Running);
  }
  // Its processes gone after a force stop: the teardown begins.
  void end() {
    job->request_stop({.force = true});
    job->on_main_exited(CLD_KILLED, SIGKILL);
    job->on_tree_empty();
    ASSERT_TRUE(job->state() == core::JobState::Cleaning || core::is_terminal(job->state()));
  }
  // RetryCleanup, or a restarted daemon finishing a teardown.
  void retry(int* done = nullptr) {
    sys.acts.emplace_back("begin");
    ++sys.epoch;
    pipe->when_torn_down([done](bool) {
      if (done) ++*done;
    });
    pipe->begin_teardown(false);
  }
  std::vector<std::string> acts_since_begin() const {
    auto it = std::find(sys.acts.rbegin(), sys.acts.rend(), "begin");
    return {it.base(), sys.acts.end()};
  }
};

inline ResourceSpec volume(ResourceKind kind, std::string name, std::optional<uint64_t> size,
                           core::OnStop on_stop = core::OnStop::Keep) {
  ResourceSpec r;
  r.kind = kind;
  r.path = "/vol/" + name + ".img";
  r.name = std::move(name);
  r.size = size;
  r.on_stop = on_stop;
  return r;
}

inline ResourceSpec server(std::string name) {
  ResourceSpec r;
  r.kind = ResourceKind::NbdServer;
  r.path = "/vol/" + name + ".img";
  r.name = std::move(name);
  return r;
}

inline ResourceSpec device(std::string name, std::string export_of) {
  ResourceSpec r;
  r.kind = ResourceKind::NbdDevice;
  r.name = std::move(name);
  r.path = "/dev/nbd5";
  r.export_of = std::move(export_of);
  return r;
}

inline core::JobSpec spec_of(std::vector<ResourceSpec> resources) {
  core::JobSpec s;
  s.argv = {"/bin/true"};
  s.resources = std::move(resources);
  return s;
}

// A created volume discarded at the end, a loop device, a server and a device on it.
inline core::JobSpec full_spec() {
  return spec_of({volume(ResourceKind::File, "out", 1 << 20, core::OnStop::Discard),
                  volume(ResourceKind::Loop, "disk", 1 << 20), server("src"), device("dev", "src")});
}

using Acts = std::vector<std::string>;

}  // namespace repvisor::fake
