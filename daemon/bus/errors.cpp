#include "bus/errors.hpp"

#include <fmt/format.h>

#include "util/text.hpp"

namespace repvisor::bus {

std::string bus_message(std::string_view text) {
  constexpr size_t kMax = 4096;
  std::string out = valid_utf8(text.substr(0, kMax));
  if (text.size() > kMax) out += fmt::format("… ({} bytes in all)", text.size());
  return out;
}

int set_error(sd_bus_error* err, const char* name, std::string_view text) {
  return sd_bus_error_set(err, name, bus_message(text).c_str());
}

int set_error(sd_bus_error* err, const ApiError& e) { return set_error(err, error_name(e.kind()), e.what()); }

void reply_error(sd_bus_message* call, const char* name, std::string_view text) {
  sd_bus_reply_method_errorf(call, name, "%s", bus_message(text).c_str());
}

}  // namespace repvisor::bus
