#include "bus/system_bus.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "util/log.hpp"

namespace repvisor::bus {

SystemBus::SystemBus(uv_loop_t* loop, Api& api, std::string mode) : loop_(loop), api_(api), mode_(std::move(mode)) {
  retry_ = make_uv<uv_timer_t>([&](uv_timer_t* t) { return uv_timer_init(loop_, t); }, this);
}

SystemBus::~SystemBus() { close(); }

int SystemBus::try_connect(std::string* why) {
  sd_bus* raw = nullptr;
  // sd-bus honours DBUS_SYSTEM_BUS_ADDRESS, like every other client on the machine.
  int r = sd_bus_open_system(&raw);
  if (r < 0) {
    *why = fmt::format("cannot connect to the system bus: {}", strerror(-r));
    return r;
  }
  BusPtr bus(raw);
  try {
    api_.attach(raw, false);
  } catch (const std::exception& e) {
    api_.detach(raw);
    *why = e.what();
    return -EIO;
  }
  // Last: a client that sees the name can use everything behind it.
  r = sd_bus_request_name(raw, kBusName, 0);
  if (r < 0) {
    api_.detach(raw);
    *why = fmt::format("cannot own {} on the system bus: {}{}", kBusName, strerror(-r),
                       r == -EACCES || r == -EPERM ? " (is the D-Bus policy file org.repvisor1.conf installed?)"
                       : r == -EEXIST              ? " (another repvisord owns it)"
                                                   : "");
    return r;
  }
  conn_ = std::make_unique<Connection>(loop_, std::move(bus), [this](Connection&) { on_closed(); });
  backoff_ms_ = 100;
  log::notice("serving {} on the system bus", kBusName);
  return 0;
}

void SystemBus::start() {
  std::string why;
  if (try_connect(&why) >= 0) return;
  if (mode_ == "yes") throw std::runtime_error(why + " ([bus] system = \"yes\")");
  log::notice("{}: serving the private socket only ([bus] system = \"auto\"); retrying in the background", why);
  schedule_retry();
}

void SystemBus::on_closed() {
  // Called by the connection as its last act: destroying it here is allowed.
  if (!conn_) return;
  api_.detach(conn_->bus());
  conn_.reset();
  log::warning("lost the system bus connection: reconnecting");
  backoff_ms_ = 100;
  schedule_retry();
}

void SystemBus::schedule_retry() {
  if (closing_) return;
  uv_timer_start(
      retry_.get(),
      [](uv_timer_t* t) {
        auto* s = static_cast<SystemBus*>(t->data);
        if (!s || s->closing_) return;
        std::string why;
        if (s->try_connect(&why) < 0) {
          log::debug("{}", why);
          s->schedule_retry();
        }
      },
      backoff_ms_, 0);
  backoff_ms_ = std::min<uint64_t>(backoff_ms_ * 2, 10'000);
}

void SystemBus::update() {
  if (conn_) conn_->update();
}

void SystemBus::close() {
  closing_ = true;
  retry_.reset();
  if (conn_) {
    api_.detach(conn_->bus());
    sd_bus_release_name(conn_->bus(), kBusName);
    conn_.reset();
  }
}

}  // namespace repvisor::bus
