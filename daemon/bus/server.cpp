#include "bus/server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sys/users.hpp"
#include "util/log.hpp"

namespace repvisor::bus {

PrivateServer::PrivateServer(uv_loop_t* loop, Api& api, std::string path)
    : loop_(loop), api_(api), path_(std::move(path)) {
  sd_id128_randomize(&server_id_);
}

PrivateServer::~PrivateServer() { close(); }

void PrivateServer::set_group(const std::string& group) {
  // root:GROUP 0660, the group set before the mode opens: the admin group may connect (reading
  // is open to all on the system bus; on this socket, to the admins). No such group: 0600.
  const gid_t gid = sys::group_id(group);
  if (gid == static_cast<gid_t>(-1)) {
    chmod(path_.c_str(), 0600);
    log::info("{}: no group '{}': the socket is root-only (0600)", path_, group);
    return;
  }
  if (chown(path_.c_str(), 0, gid) < 0 || chmod(path_.c_str(), 0660) < 0)
    log::warning("{}: cannot give it to group '{}': {}", path_, group, strerror(errno));
}

void PrivateServer::listen(const std::string& group) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path_.size() >= sizeof sa.sun_path) throw std::runtime_error("socket path too long: " + path_);
  memcpy(sa.sun_path, path_.c_str(), path_.size() + 1);
  fd_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd_) throw std::runtime_error(std::string("socket: ") + strerror(errno));
  ::unlink(path_.c_str());  // a stale socket of an earlier run; the state-dir lock keeps us unique
  // Created 0600 from the start: no window in which another user could connect.
  mode_t old = umask(0077);
  int r = bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  umask(old);
  if (r < 0) throw std::runtime_error("cannot bind " + path_ + ": " + strerror(errno));
  set_group(group);
  if (::listen(fd_.get(), SOMAXCONN) < 0) throw std::runtime_error(std::string("listen: ") + strerror(errno));
  poll_ = make_uv<uv_poll_t>([&](uv_poll_t* p) { return uv_poll_init(loop_, p, fd_.get()); }, this);
  uv_poll_start(poll_.get(), UV_READABLE, [](uv_poll_t* p, int, int) {
    if (auto* s = static_cast<PrivateServer*>(p->data)) s->on_accept();
  });
  log::info("listening on {}", path_);
}

void PrivateServer::on_accept() {
  for (;;) {
    Fd conn(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) {
      if (errno != EAGAIN && errno != EINTR) log::warning("accept on {}: {}", path_, strerror(errno));
      return;
    }
    sd_bus* raw = nullptr;
    if (sd_bus_new(&raw) < 0) return;
    BusPtr bus(raw);
    int r = sd_bus_set_fd(raw, conn.get(), conn.get());
    if (r >= 0) conn.release();
    if (r >= 0) r = sd_bus_set_server(raw, 1, server_id_);
    if (r >= 0) r = sd_bus_negotiate_fds(raw, false);
    if (r >= 0) r = sd_bus_start(raw);
    if (r < 0) {
      log::warning("cannot set up a connection on {}: {}", path_, strerror(-r));
      continue;
    }
    try {
      api_.attach(raw, true);
      auto* c = new Connection(loop_, std::move(bus), [this](Connection& closed) {
        api_.detach(closed.bus());
        connections_.remove_if([&](const auto& p) { return p.get() == &closed; });
      });
      connections_.emplace_back(c);
    } catch (const std::exception& e) {
      api_.detach(raw);
      log::warning("cannot serve a connection on {}: {}", path_, e.what());
    }
  }
}

void PrivateServer::update() {
  for (auto& c : connections_) c->update();
}

void PrivateServer::close() {
  poll_.reset();
  if (fd_) {
    fd_.reset();
    ::unlink(path_.c_str());
  }
  for (auto& c : connections_) api_.detach(c->bus());
  connections_.clear();
}

}  // namespace repvisor::bus
