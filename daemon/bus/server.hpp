// The private socket: a Unix stream socket on which each accepted peer gets its own sd-bus
// server connection, serving the same objects as the system bus will.
#pragma once
#include <systemd/sd-id128.h>
#include <uv.h>

#include <list>
#include <memory>
#include <string>

#include "bus/api.hpp"
#include "bus/connection.hpp"
#include "util/fd.hpp"

namespace repvisor::bus {

class PrivateServer {
 public:
  PrivateServer(uv_loop_t* loop, Api& api, std::string path);
  ~PrivateServer();
  // Throws. The socket belongs to root:group, mode 0660 (0600 when the group does not exist).
  void listen(const std::string& group);
  // Again on reload, when the admin group changed.
  void set_group(const std::string& group);
  void update();  // before the loop blocks: flush output, re-arm timeouts
  void close();
  const std::string& path() const { return path_; }

 private:
  void on_accept();
  uv_loop_t* loop_;
  Api& api_;
  std::string path_;
  Fd fd_;
  UvPtr<uv_poll_t> poll_;
  std::list<std::unique_ptr<Connection>> connections_;
  sd_id128_t server_id_{};
};

}  // namespace repvisor::bus
