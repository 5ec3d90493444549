// Test harness: a real repvisord on a temporary state/runtime dir and a cgroup subtree of its
// own, reached over its private socket by a real sd-bus client. Everything waits on events
// (sd_notify READY, PropertiesChanged, FIFOs); deadlines exist only to fail a hung test.
#pragma once
#include <sys/types.h>
#include <systemd/sd-bus.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "wire/handles.hpp"
#include "wire/values.hpp"

namespace repvisor::test {

inline constexpr uint64_t kDeadlineUsec = 60'000'000;  // a hung test fails after this

// Job resources (aa{sv}): each a dictionary of strings and sizes.
using ResourceList = wire::Records;
using Value = wire::Value;
using Dict = wire::Dict;

struct CallResult {
  bool ok = false;
  std::string error_name, error_message;
  Dict dict;           // for a{sv} replies
  std::string s1, s2;  // for (so) / (o) replies
};

class Bus {
 public:
  explicit Bus(const std::string& address);
  sd_bus* get() const { return bus_.get(); }

  CallResult submit(const Dict& spec);
  std::string submit_ok(std::vector<std::string> argv, Dict extra = {});  // returns id
  CallResult stop(const std::string& job, const Dict& opts);
  CallResult remove(const std::string& job, const Dict& opts);
  CallResult get_job(const std::string& job);
  std::vector<std::vector<std::string>> list(const std::vector<std::string>& states = {});

  std::string prop_s(const std::string& id, const char* name);
  uint64_t prop_t(const std::string& id, const char* name);
  int64_t prop_i(const std::string& id, const char* name);  // i or u
  bool job_exists(const std::string& id);
  // ResourceDetails, every value as text.
  std::vector<std::map<std::string, std::string>> resource_details(const std::string& id);

  // Blocks until pred(properties) holds, driven by PropertiesChanged; fails the test on deadline.
  void wait_until(const std::string& id, const std::function<bool(Bus&)>& pred);
  void wait_state(const std::string& id, const std::string& state);
  void wait_terminal(const std::string& id);

 private:
  CallResult call(const char* path, const char* iface, const char* method, const std::string* arg, const Dict* dict);
  wire::Bus bus_;
};

class Daemon {
 public:
  // `before_start` runs once the directories are named, before the first start (to mount a
  // small tmpfs on the state dir, say).
  explicit Daemon(const std::string& extra_daemon_config = "", const std::function<void(Daemon&)>& before_start = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;

  std::string address() const { return "unix:path=" + runtime_dir + "/private"; }
  std::string cgroup_dir() const { return cgroup_fs_root; }
  // SIGTERM and wait; returns the exit status.
  int terminate();
  // Starts the daemon (again) on the same directories; `crash_at` sets REPVISOR_TEST_CRASH_AT.
  // Waits for READY=1; throws if it exits first (then exit_status() tells how).
  void start(const std::string& crash_at = "");
  // Waits for the daemon to exit by itself; 128 + signal for a signal.
  int wait_exit();
  // Starts the daemon expecting it to refuse: returns its exit status and what it printed.
  int start_expecting_failure(std::string* output);
  std::string log() const;

  pid_t pid = -1;
  std::string dir, state_dir, runtime_dir, cgroup_fs_root, config_path;

 private:
  pid_t spawn(const std::string& crash_at, int notify_fd_out[1]);
  std::string stderr_path_;
};

// A dbus-daemon configured like the system bus (deny by default, services bring their policy),
// with the shipped org.repvisor1.conf; started at construction.
class PrivateSystemBus {
 public:
  PrivateSystemBus();
  ~PrivateSystemBus();
  PrivateSystemBus(const PrivateSystemBus&) = delete;
  // --fork returns once the bus listens; --print-pid tells us whom to stop.
  void start();
  void stop();
  std::string address() const { return "unix:path=" + socket_; }

 private:
  std::string dir_, socket_, config_;
  pid_t pid_ = -1;
};

// Blocks until `name` has an owner on the bus at `address`, driven by NameOwnerChanged.
bool wait_for_owner(const std::string& address, const std::string& name);

// Processes that are children of `parent` and zombies.
std::vector<pid_t> zombie_children(pid_t parent);
// Every pid still in the cgroup subtree (recursively).
std::vector<pid_t> cgroup_pids(const std::string& dir);
// Job cgroups left under the root.
std::vector<std::string> child_cgroups(const std::string& dir);
// Event-driven: true once no cgroup is left under `dir` (false at the deadline).
bool wait_no_child_cgroups(const std::string& dir);
bool pid_alive(pid_t pid);

// A FIFO that a job writes to when it is ready (after installing its traps).
class ReadyFifo {
 public:
  explicit ReadyFifo(const std::string& dir);
  ~ReadyFifo();
  const std::string& path() const { return path_; }
  std::string wait_line();  // what the job wrote, once it wrote it

 private:
  std::string path_;
  int fd_ = -1;
};

// Jobs that say when they are ready (their traps installed): one ends on SIGTERM, one ignores it.
std::vector<std::string> polite(const ReadyFifo& f);
std::vector<std::string> stubborn(const ReadyFifo& f);
int pidfd_of(pid_t pid);    // for a process that is not our child
bool wait_gone(int pidfd);  // event-driven: true once it has ended

// Runs a command line through /bin/sh, returns exit status and output (stdout+stderr).
int run_command(const std::string& cmd, std::string* output);

std::string temp_dir();
// A datagram socket bound at `path` (replacing a stale one), as NOTIFY_SOCKET: throws if it cannot.
int bind_notify_socket(const std::string& path);

}  // namespace repvisor::test
