#include "bus/call.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

namespace repvisor::bus {

void check(int r, const char* what) {
  if (r < 0) throw std::runtime_error(std::string(what) + ": " + strerror(-r));
}

MessagePtr new_reply(sd_bus_message* call) {
  sd_bus_message* reply = nullptr;
  check(sd_bus_message_new_method_return(call, &reply));
  return MessagePtr(reply);
}

int send(const MessagePtr& reply) { return sd_bus_send(nullptr, reply.get(), nullptr); }

}  // namespace repvisor::bus
