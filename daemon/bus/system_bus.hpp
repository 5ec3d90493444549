// The daemon on the system bus: the same objects as on the private socket, under the well-known
// name org.repvisor1, requested only once the objects are served. When the bus goes away (the
// bus daemon restarted) the connection is dropped and made again, backing off up to 10 s.
#pragma once
#include <uv.h>

#include <memory>
#include <string>

#include "bus/api.hpp"
#include "bus/connection.hpp"
#include "wire/names.hpp"

namespace repvisor::bus {

using wire::kBusName;

class SystemBus {
 public:
  // mode: "auto" (serve it when it can be reached, else go on without), "yes" (required at
  // start-up: throws), "no" (never constructed).
  SystemBus(uv_loop_t* loop, Api& api, std::string mode);
  ~SystemBus();
  // Connects, serves, requests the name. Throws in mode "yes" when that fails.
  void start();
  void update();
  void close();
  bool connected() const { return conn_ != nullptr; }

 private:
  int try_connect(std::string* why);
  void on_closed();
  void schedule_retry();

  uv_loop_t* loop_;
  Api& api_;
  std::string mode_;
  std::unique_ptr<Connection> conn_;
  UvPtr<uv_timer_t> retry_;
  uint64_t backoff_ms_ = 100;
  bool closing_ = false;
};

}  // namespace repvisor::bus
