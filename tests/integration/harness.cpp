#include "harness.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "sys/cgroup.hpp"
#include "wire/client.hpp"
#include "wire/names.hpp"

namespace repvisor::test {

namespace fs = std::filesystem;

namespace {

uint64_t mono_usec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

std::string read_file(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string temp_dir() {
  char tmpl[] = "/tmp/repvisor-test-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
  return tmpl;
}

// ---- Bus ----------------------------------------------------------------------------------

Bus::Bus(const std::string& address) {
  if (int r = wire::connect(address, &bus_); r < 0)
    throw std::runtime_error("cannot connect to " + address + ": " + strerror(-r));
}

CallResult Bus::call(const char* path, const char* iface, const char* method, const std::string* arg,
                     const Dict* dict) {
  wire::Message m;
  wire::new_call(get(), path, iface, method, &m);
  if (arg) sd_bus_message_append_basic(m.get(), 's', arg->c_str());
  if (dict) wire::append_dict(m.get(), *dict);
  CallResult res;
  wire::Error err;
  wire::Message reply;
  if (int r = wire::call(get(), m.get(), kDeadlineUsec, &err, &reply); r < 0) {
    res.error_name = err.name();
    res.error_message = err.get()->message ? err.get()->message : strerror(-r);
    return res;
  }
  res.ok = true;
  const std::string_view sig = sd_bus_message_get_signature(reply.get(), 1);
  if (sig == "a{sv}") {
    wire::read_dict(reply.get(), &res.dict);
  } else if (sig == "so") {
    const char *a, *b;
    sd_bus_message_read(reply.get(), "so", &a, &b);
    res.s1 = a;
    res.s2 = b;
  } else if (sig == "o") {
    const char* a;
    sd_bus_message_read(reply.get(), "o", &a);
    res.s1 = a;
  }
  return res;
}

CallResult Bus::submit(const Dict& spec) {
  return call(wire::kManagerPath, wire::kManagerInterface, "Submit", nullptr, &spec);
}

std::string Bus::submit_ok(std::vector<std::string> argv, Dict extra) {
  extra["argv"] = std::move(argv);
  auto r = submit(extra);
  EXPECT_TRUE(r.ok) << r.error_name << ": " << r.error_message;
  return r.s1;
}

CallResult Bus::stop(const std::string& job, const Dict& opts) {
  return call(wire::kManagerPath, wire::kManagerInterface, "StopJob", &job, &opts);
}
CallResult Bus::remove(const std::string& job, const Dict& opts) {
  return call(wire::kManagerPath, wire::kManagerInterface, "DeleteJob", &job, &opts);
}
CallResult Bus::get_job(const std::string& job) {
  return call(wire::kManagerPath, wire::kManagerInterface, "GetJob", &job, nullptr);
}

std::vector<std::vector<std::string>> Bus::list(const std::vector<std::string>& states) {
  Dict filter;
  if (!states.empty()) filter["states"] = states;
  wire::Message m;
  wire::new_call(get(), wire::kManagerPath, wire::kManagerInterface, "List", &m);
  wire::append_dict(m.get(), filter);
  wire::Error err;
  wire::Message reply;
  std::vector<std::vector<std::string>> rows;
  if (wire::call(get(), m.get(), kDeadlineUsec, &err, &reply) < 0) {
    ADD_FAILURE() << "List: " << err.message();
    return rows;
  }
  std::vector<wire::JobRow> jobs;
  wire::read_job_rows(reply.get(), &jobs);
  for (const auto& j : jobs) rows.push_back({j.id, j.name, j.state, j.phase, j.path});
  return rows;
}

std::string Bus::prop_s(const std::string& id, const char* name) {
  std::string out;
  if (int r = wire::get_property(get(), wire::job_path(id).c_str(), wire::kJobInterface, name, &out); r < 0)
    return "<error: " + std::string(strerror(-r)) + ">";
  return out;
}

std::vector<std::map<std::string, std::string>> Bus::resource_details(const std::string& id) {
  std::vector<std::map<std::string, std::string>> out;
  wire::Records records;
  if (wire::get_property(get(), wire::job_path(id).c_str(), wire::kJobInterface, "ResourceDetails", &records) < 0)
    return out;
  for (const auto& record : records) {
    std::map<std::string, std::string> d;
    for (const auto& [k, v] : record) {
      if (const auto* s = std::get_if<std::string>(&v))
        d[k] = *s;
      else if (const auto* b = std::get_if<bool>(&v))
        d[k] = *b ? "true" : "false";
      else
        d[k] = std::to_string(std::get<uint64_t>(v));
    }
    out.push_back(std::move(d));
  }
  return out;
}

uint64_t Bus::prop_t(const std::string& id, const char* name) {
  uint64_t v = 0;
  wire::get_property(get(), wire::job_path(id).c_str(), wire::kJobInterface, name, &v);
  return v;
}

int64_t Bus::prop_i(const std::string& id, const char* name) {
  // The unsigned ones are PIDs and UIDs; the rest are signed.
  const std::string_view n(name);
  const std::string path = wire::job_path(id);
  if (n == "MainPID" || n == "RequestedByUID" || n == "Runs") {
    uint32_t u = 0;
    return wire::get_property(get(), path.c_str(), wire::kJobInterface, name, &u) < 0 ? INT64_MIN : u;
  }
  int32_t i = 0;
  return wire::get_property(get(), path.c_str(), wire::kJobInterface, name, &i) < 0 ? INT64_MIN : i;
}

bool Bus::job_exists(const std::string& id) { return get_job(id).ok; }

void Bus::wait_until(const std::string& id, const std::function<bool(Bus&)>& pred) {
  sd_bus_slot* raw = nullptr;
  const std::string rule =
      "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged',path='" +
      wire::job_path(id) + "'";
  sd_bus_add_match(get(), &raw, rule.c_str(), nullptr, nullptr);
  const wire::Slot slot(raw);
  const uint64_t deadline = mono_usec() + kDeadlineUsec;
  while (!pred(*this)) {
    const uint64_t now = mono_usec();
    if (now >= deadline) {
      ADD_FAILURE() << "timed out waiting on job " << id << " (state " << prop_s(id, "State") << "/"
                    << prop_s(id, "SubState") << ")";
      break;
    }
    int r = sd_bus_process(get(), nullptr);
    if (r < 0) {
      ADD_FAILURE() << "bus: " << strerror(-r);
      break;
    }
    if (r == 0) sd_bus_wait(get(), deadline - now);
  }
}

void Bus::wait_state(const std::string& id, const std::string& state) {
  wait_until(id, [&](Bus& b) { return b.prop_s(id, "State") == state; });
}

void Bus::wait_terminal(const std::string& id) {
  wait_until(id, [&](Bus& b) {
    auto s = b.prop_s(id, "State");
    return s == "completed" || s == "failed" || s == "cancelled";
  });
}

// ---- Daemon -------------------------------------------------------------------------------

Daemon::Daemon(const std::string& extra, const std::function<void(Daemon&)>& before_start) {
  dir = temp_dir();
  state_dir = dir + "/state";
  runtime_dir = dir + "/run";
  const std::string mount = sys::find_cgroup2_mount();
  if (mount.empty()) throw std::runtime_error("no cgroup2 mount");
  const std::string cg = "/" + fs::path(dir).filename().string();
  cgroup_fs_root = mount + cg;
  config_path = dir + "/repvisord.toml";
  std::ofstream conf(config_path);
  // Defaults first: `extra` may open further tables ([volumes]) after its [daemon] keys.
  conf << "[daemon]\n";
  if (extra.find("final_kill_timeout") == std::string::npos) conf << "final_kill_timeout = \"5s\"\n";
  if (extra.find("shutdown_timeout") == std::string::npos) conf << "shutdown_timeout = \"20s\"\n";
  if (extra.find("cgroup_root") == std::string::npos) conf << "cgroup_root = \"" << cg << "\"\n";
  conf << extra << "\n";
  if (extra.find("[volumes]") == std::string::npos) conf << "[volumes]\nroots = [\"" << dir << "/volumes\"]\n";
  // Never the machine's own system bus: tests that want a bus start a private one.
  if (extra.find("[bus]") == std::string::npos) conf << "[bus]\nsystem = \"no\"\n";
  conf.close();
  stderr_path_ = dir + "/daemon.log";
  if (before_start) before_start(*this);
  start();
}

std::string Daemon::log() const { return read_file(stderr_path_); }

int bind_notify_socket(const std::string& path) {
  int nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  strcpy(sa.sun_path, path.c_str());
  unlink(path.c_str());
  if (bind(nfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0)
    throw std::runtime_error("cannot bind " + path + ": " + strerror(errno));
  return nfd;
}

pid_t Daemon::spawn(const std::string& crash_at, int notify_fd_out[1]) {
  // Readiness comes as sd_notify READY=1 on a socket of ours, as systemd would see it.
  const std::string npath = dir + "/notify";
  notify_fd_out[0] = bind_notify_socket(npath);
  pid_t child = fork();
  if (child == 0) {
    // Both output streams to the log: a daemon left running by a killed test must not hold the
    // test's stdout open (whoever reads it would wait for its end as long as the daemon lives).
    int log = open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(log, 1);
    dup2(log, 2);
    setenv("NOTIFY_SOCKET", npath.c_str(), 1);
    if (!crash_at.empty()) setenv("REPVISOR_TEST_CRASH_AT", crash_at.c_str(), 1);
    // Start the daemon with the usual low soft limit, as a shell or systemd would.
    rlimit nofile{};
    getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = std::min<rlim_t>(1024, nofile.rlim_max);
    setrlimit(RLIMIT_NOFILE, &nofile);
    execl(REPVISORD_PATH, "repvisord", "--config", config_path.c_str(), "--state-dir", state_dir.c_str(),
          "--runtime-dir", runtime_dir.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return child;
}

void Daemon::start(const std::string& crash_at) {
  int nfd = -1;
  pid = spawn(crash_at, &nfd);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  const uint64_t deadline = mono_usec() + kDeadlineUsec;
  std::string got;
  bool exited = false;
  while (got.find("READY=1") == std::string::npos) {
    pollfd p[2] = {{nfd, POLLIN, 0}, {pidfd, POLLIN, 0}};
    const uint64_t now = mono_usec();
    if (now >= deadline || poll(p, 2, static_cast<int>((deadline - now) / 1000)) <= 0) break;
    if (p[0].revents & POLLIN) {
      char buf[4096];
      ssize_t n = recv(nfd, buf, sizeof buf, 0);
      if (n > 0) got.assign(buf, static_cast<size_t>(n));
    } else if (p[1].revents & POLLIN) {
      exited = true;
      break;
    }
  }
  close(nfd);
  close(pidfd);
  if (got.find("READY=1") == std::string::npos) {
    if (!exited) kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    pid = -1;
    throw std::runtime_error("repvisord did not become ready: " + log());
  }
}

int Daemon::start_expecting_failure(std::string* output) {
  const size_t before = log().size();
  int nfd = -1;
  pid_t child = spawn("", &nfd);
  close(nfd);
  int status = 0;
  waitpid(child, &status, 0);  // a refusing daemon exits at once; a hang fails the test by its timeout
  *output = log().substr(before);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int Daemon::wait_exit() {
  int status = 0;
  waitpid(pid, &status, 0);
  pid = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int Daemon::terminate() {
  if (pid <= 0) return -1;
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  kill(pid, SIGTERM);
  pollfd p{pidfd, POLLIN, 0};
  poll(&p, 1, static_cast<int>(kDeadlineUsec / 1000));
  close(pidfd);
  int status = 0;
  if (waitpid(pid, &status, WNOHANG) != pid) {
    ADD_FAILURE() << "repvisord did not exit on SIGTERM";
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  pid = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Daemon::~Daemon() {
  if (pid > 0) {
    EXPECT_EQ(terminate(), 0) << read_file(stderr_path_);
  }
  EXPECT_EQ(cgroup_pids(cgroup_fs_root).size(), 0u) << "processes left in " << cgroup_fs_root;
  EXPECT_EQ(child_cgroups(cgroup_fs_root).size(), 0u) << "job cgroups left in " << cgroup_fs_root;
  rmdir(cgroup_fs_root.c_str());
  if (!::testing::Test::HasFailure()) {
    std::error_code ec;
    fs::remove_all(dir, ec);
  } else {
    fprintf(stderr, "daemon log kept in %s:\n%s\n", stderr_path_.c_str(), read_file(stderr_path_).c_str());
  }
}

// ---- PrivateSystemBus ------------------------------------------------------------------------

PrivateSystemBus::PrivateSystemBus() {
  dir_ = temp_dir();
  chmod(dir_.c_str(), 0755);  // unprivileged test users connect too
  socket_ = dir_ + "/system_bus_socket";
  config_ = dir_ + "/system.conf";
  std::ofstream(config_) << R"(<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=)" << socket_
                         << R"(</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>)" << SOURCE_DIR
                         << R"(/systemd/org.repvisor1.conf</include>
</busconfig>
)";
  start();
}

PrivateSystemBus::~PrivateSystemBus() {
  stop();
  fs::remove_all(dir_);
}

void PrivateSystemBus::start() {
  std::string out;
  if (run_command("dbus-daemon --config-file=" + config_ + " --fork --print-pid --nosyslog", &out) != 0)
    throw std::runtime_error("dbus-daemon: " + out);
  pid_ = static_cast<pid_t>(std::stol(out));
}

void PrivateSystemBus::stop() {
  if (pid_ <= 0) return;
  const int fd = pidfd_of(pid_);
  kill(pid_, SIGTERM);
  if (fd >= 0) {
    wait_gone(fd);
    close(fd);
  }
  pid_ = -1;
}

bool wait_for_owner(const std::string& address, const std::string& name) {
  sd_bus* bus = nullptr;
  if (sd_bus_new(&bus) < 0) return false;
  sd_bus_set_address(bus, address.c_str());
  sd_bus_set_bus_client(bus, 1);
  if (sd_bus_start(bus) < 0) {
    sd_bus_unref(bus);
    return false;
  }
  bool owned = false;
  const std::string rule = "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" + name + "'";
  sd_bus_add_match(
      bus, nullptr, rule.c_str(),
      [](sd_bus_message* m, void* userdata, sd_bus_error*) {
        const char *n, *old_owner, *new_owner;
        if (sd_bus_message_read(m, "sss", &n, &old_owner, &new_owner) >= 0 && *new_owner)
          *static_cast<bool*>(userdata) = true;
        return 0;
      },
      &owned);
  // Asked after the match is in place: an owner that came meanwhile is seen either way.
  sd_bus_error err = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  if (sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetNameOwner",
                         &err, &reply, "s", name.c_str()) >= 0)
    owned = true;
  sd_bus_message_unref(reply);
  sd_bus_error_free(&err);
  const uint64_t deadline = kDeadlineUsec;
  uint64_t waited = 0;
  while (!owned && waited < deadline) {
    if (sd_bus_process(bus, nullptr) > 0) continue;
    sd_bus_wait(bus, 100'000);
    waited += 100'000;  // a bound for a hung test, not a poll: the wait ends on the signal
  }
  sd_bus_flush_close_unref(bus);
  return owned;
}

// ---- process inspection ---------------------------------------------------------------------

std::vector<pid_t> zombie_children(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    char* end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 0) continue;
    std::string stat = read_file("/proc/" + std::string(e->d_name) + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(stat.substr(close + 2));
    char st = 0;
    pid_t ppid = 0;
    if ((fields >> st >> ppid) && st == 'Z' && ppid == parent) out.push_back(static_cast<pid_t>(pid));
  }
  closedir(d);
  return out;
}

std::vector<pid_t> cgroup_pids(const std::string& dir) {
  std::vector<pid_t> out;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return out;
  std::istringstream procs(read_file(dir + "/cgroup.procs"));
  pid_t p;
  while (procs >> p) out.push_back(p);
  for (const auto& child : child_cgroups(dir)) {
    auto sub = cgroup_pids(dir + "/" + child);
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<std::string> child_cgroups(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_directory()) out.push_back(e.path().filename());
  return out;
}

bool wait_no_child_cgroups(const std::string& dir) {
  // A cgroup's removal is an IN_DELETE on its parent: watched before the first look, so that a
  // removal between the look and the wait is not missed.
  const int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0 || inotify_add_watch(fd, dir.c_str(), IN_DELETE) < 0) {
    if (fd >= 0) close(fd);
    return child_cgroups(dir).empty();
  }
  const uint64_t deadline = mono_usec() + kDeadlineUsec;
  bool empty;
  while (!(empty = child_cgroups(dir).empty())) {
    const uint64_t now = mono_usec();
    if (now >= deadline) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>((deadline - now) / 1000) + 1) <= 0) continue;
    char buf[4096];
    while (read(fd, buf, sizeof buf) > 0) {
    }
  }
  close(fd);
  return empty;
}

bool pid_alive(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close != std::string::npos && stat[close + 2] != 'Z';
}

// ---- helpers ------------------------------------------------------------------------------

ReadyFifo::ReadyFifo(const std::string& dir)
    : path_(dir + "/ready-" + std::to_string(getpid()) + "-" + std::to_string(rand())) {
  mkfifo(path_.c_str(), 0600);
  // Non-blocking open for reading succeeds without a writer; poll reports POLLIN once one writes.
  fd_ = open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
}

ReadyFifo::~ReadyFifo() {
  close(fd_);
  unlink(path_.c_str());
}

std::string ReadyFifo::wait_line() {
  std::string out;
  const uint64_t deadline = mono_usec() + kDeadlineUsec;
  while (out.find('\n') == std::string::npos) {
    pollfd p{fd_, POLLIN, 0};
    const uint64_t now = mono_usec();
    if (now >= deadline) {
      ADD_FAILURE() << "job never signalled readiness on " << path_;
      return out;
    }
    if (poll(&p, 1, static_cast<int>((deadline - now) / 1000)) <= 0) continue;
    char buf[256];
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  }
  return out.substr(0, out.find('\n'));
}

std::vector<std::string> polite(const ReadyFifo& f) {
  return {"sh", "-c", "echo ready > " + f.path() + "; exec sleep 1000"};
}

std::vector<std::string> stubborn(const ReadyFifo& f) {
  return {"sh", "-c", "trap '' TERM; echo ready > " + f.path() + "; exec sleep 1000"};
}

int pidfd_of(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

bool wait_gone(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return poll(&p, 1, static_cast<int>(kDeadlineUsec / 1000)) == 1;
}

int run_command(const std::string& cmd, std::string* output) {
  std::string full = cmd + " 2>&1";
  FILE* f = popen(full.c_str(), "r");
  if (!f) return -1;
  char buf[4096];
  size_t n;
  output->clear();
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) output->append(buf, n);
  int status = pclose(f);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace repvisor::test
