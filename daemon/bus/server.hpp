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
  void listen();  // throws
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
