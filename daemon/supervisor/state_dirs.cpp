#include "supervisor/state_dirs.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "util/log.hpp"

namespace repvisor {

namespace fs = std::filesystem;

namespace {
// Whether `pid` is a live repvisord (the holder of a lock we cannot get).
bool is_live_repvisord(pid_t pid) {
  if (pid <= 0 || kill(pid, 0) < 0) return false;
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  return name == "repvisord";
}

void on_alarm(int) {}
}  // namespace

void StateDirs::create_and_lock() {
  std::error_code ec;
  for (const auto& dir : {cfg_.state_dir, cfg_.state_dir + "/logs", cfg_.runtime_dir}) {
    fs::create_directories(dir, ec);
    if (ec) throw std::runtime_error("cannot create " + dir + ": " + ec.message());
  }
  chmod(cfg_.runtime_dir.c_str(), 0755);
  for (const auto& root : cfg_.volume_roots) {
    // Volumes hold replicated disks: root-only, like the state dir.
    if (!fs::exists(root, ec) && fs::create_directories(root, ec))
      chmod(root.c_str(), 0700);
    else if (ec)
      log::warning("volume root {}: {}", root, ec.message());
  }
  lock();
}

void StateDirs::lock() {
  const std::string path = cfg_.state_dir + "/lock";
  lock_fd_.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock_fd_) throw std::runtime_error("cannot open " + path + ": " + strerror(errno));
  if (flock(lock_fd_.get(), LOCK_EX | LOCK_NB) < 0) {
    char buf[32] = {};
    ssize_t n = pread(lock_fd_.get(), buf, sizeof buf - 1, 0);
    const pid_t holder = n > 0 ? static_cast<pid_t>(strtol(buf, nullptr, 10)) : 0;
    if (is_live_repvisord(holder))
      throw std::runtime_error("another repvisord (pid " + std::to_string(holder) + ") is using the state directory " +
                               cfg_.state_dir);
    // The daemon that held it is gone; a job it was starting (between clone and exec) still has
    // the lock for a moment. Wait for it, a bounded time.
    log::notice("state directory lock still held after repvisord {} ended: waiting for it", holder);
    struct sigaction sa {
    }, old{};
    sa.sa_handler = on_alarm;  // no SA_RESTART: the alarm interrupts flock()
    sigaction(SIGALRM, &sa, &old);
    alarm(10);
    const int r = flock(lock_fd_.get(), LOCK_EX);
    const int saved = errno;
    alarm(0);
    sigaction(SIGALRM, &old, nullptr);
    if (r < 0)
      throw std::runtime_error("the state directory " + cfg_.state_dir + " stayed locked (" + strerror(saved) +
                               "); is another repvisord using it?");
  }
  const std::string pid = std::to_string(getpid());
  if (ftruncate(lock_fd_.get(), 0) == 0 && pwrite(lock_fd_.get(), pid.data(), pid.size(), 0) < 0)
    log::warning("cannot write pid to {}: {}", path, strerror(errno));
}

int StateDirs::make_job_runtime_dir(const std::string& id) const {
  const std::string dir = job_runtime_dir(id);
  if (::mkdir(dir.c_str(), 0777) == 0 || errno == EEXIST) return 0;
  std::error_code ec;
  fs::create_directories(dir, ec);
  return ec ? -ec.value() : 0;
}

bool StateDirs::remove_job_runtime_dir(const std::string& id) const {
  // Normally empty by now (the sockets are unlinked as they close): one rmdir.
  const std::string dir = job_runtime_dir(id);
  if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return true;
  std::error_code ec;
  fs::remove_all(dir, ec);
  return !ec;
}

}  // namespace repvisor
