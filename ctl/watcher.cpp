#include "watcher.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <csignal>
#include <cstring>

#include "job_view.hpp"
#include "wire/names.hpp"

namespace repvisor::ctl {

namespace {

volatile sig_atomic_t interrupted_flag = 0;

}  // namespace

bool interrupted() { return interrupted_flag != 0; }

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = [](int) { interrupted_flag = 1; };
  sigaction(SIGINT, &sa, nullptr);
}

Watcher::Watcher(Client& c, const std::string& path, OnChange on_change, OnRemoved on_removed)
    : on_change_(std::move(on_change)), on_removed_(std::move(on_removed)) {
  const std::string where = path.empty() ? "path_namespace='/org/repvisor1'" : "path='" + path + "'";
  const std::string rule =
      "type='signal',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'," + where;
  sd_bus_slot* slot = nullptr;
  if (int r = sd_bus_add_match(c.bus(), &slot, rule.c_str(), on_signal, this); r < 0)
    throw CtlError(kExitFailure, fmt::format("cannot watch job changes: {}", strerror(-r)));
  slot_.reset(slot);
  const std::string removed = "type='signal',interface='org.freedesktop.DBus.ObjectManager',member='InterfacesRemoved'";
  if (int r = sd_bus_add_match(c.bus(), &slot, removed.c_str(), on_removed_signal, this); r < 0)
    throw CtlError(kExitFailure, fmt::format("cannot watch job removal: {}", strerror(-r)));
  removed_slot_.reset(slot);
}

int Watcher::on_signal(sd_bus_message* m, void* userdata, sd_bus_error*) {
  auto* w = static_cast<Watcher*>(userdata);
  const char* iface = nullptr;
  if (sd_bus_message_read(m, "s", &iface) < 0 || std::string_view(iface) != wire::kJobInterface) return 0;
  try {
    w->on_change_(sd_bus_message_get_path(m), read_props(m));
  } catch (const CtlError&) {
  }
  return 0;
}

int Watcher::on_removed_signal(sd_bus_message* m, void* userdata, sd_bus_error*) {
  auto* w = static_cast<Watcher*>(userdata);
  const char* path = nullptr;
  if (w->on_removed_ && sd_bus_message_read(m, "o", &path) >= 0) w->on_removed_(path);
  return 0;
}

// SIGINT is let through only inside ppoll: one that came between the check of `interrupted`
// and a plain wait would be noticed only at the next message, perhaps never.
void run_until(Client& c, const std::function<bool()>& done, usec_t tick_usec, const std::function<void()>& tick) {
  sigset_t block, old, waiting;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &old);
  waiting = old;
  sigdelset(&waiting, SIGINT);
  struct Restore {
    const sigset_t& mask;
    ~Restore() { sigprocmask(SIG_SETMASK, &mask, nullptr); }
  } restore{old};
  while (!done() && !interrupted()) {
    int r = sd_bus_process(c.bus(), nullptr);
    if (r < 0) throw CtlError(kExitUnreachable, fmt::format("lost the connection to repvisord: {}", strerror(-r)));
    if (r > 0) continue;
    if (done()) break;
    // Wake for the bus, its own timeout (absolute, CLOCK_MONOTONIC) or our tick, whichever first.
    uint64_t wait_usec = tick_usec;
    if (uint64_t at = 0; sd_bus_get_timeout(c.bus(), &at) >= 0 && at != UINT64_MAX) {
      timespec now{};
      clock_gettime(CLOCK_MONOTONIC, &now);
      const uint64_t now_usec =
          static_cast<uint64_t>(now.tv_sec) * USEC_PER_SEC + static_cast<uint64_t>(now.tv_nsec) / 1000;
      wait_usec = std::min<uint64_t>(wait_usec, at > now_usec ? at - now_usec : 0);
    }
    timespec ts{static_cast<time_t>(wait_usec / USEC_PER_SEC), static_cast<long>((wait_usec % USEC_PER_SEC) * 1000)};
    pollfd p{sd_bus_get_fd(c.bus()), static_cast<short>(sd_bus_get_events(c.bus())), 0};
    if (ppoll(&p, 1, wait_usec == USEC_INFINITY ? nullptr : &ts, &waiting) < 0 && errno != EINTR)
      throw CtlError(kExitUnreachable, fmt::format("waiting on repvisord: {}", strerror(errno)));
    if (tick) tick();
  }
  if (interrupted()) throw CtlError(130, "interrupted");
}

void merge(Props& into, const Props& changed) {
  for (const auto& [k, v] : changed) into[k] = v;
}

Props wait_terminal(Client& c, const std::string& path, const std::function<void(const Props&)>& on_update) {
  Props p;
  bool gone = false;
  Watcher w(
      c, path,
      [&](const std::string&, const Props& changed) {
        merge(p, changed);
        if (on_update) on_update(p);
      },
      [&](const std::string& removed) { gone |= removed == path; });
  merge(p, c.job_properties(path));
  if (on_update) on_update(p);
  run_until(c, [&] { return gone || is_terminal(get_s(p, "State")); });
  if (gone && !is_terminal(get_s(p, "State"))) throw CtlError(kExitNoSuchJob, "the job was deleted");
  return p;
}

}  // namespace repvisor::ctl
