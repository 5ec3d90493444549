// Notify datagrams: parsed or refused; what is accepted is within the documented bounds.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/notify.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  repvisor::core::NotifyMessage m;
  std::string error;
  if (repvisor::core::parse_notify(std::string_view(reinterpret_cast<const char*>(data), size), &m, &error)) {
    if (m.progress && (!std::isfinite(*m.progress) || *m.progress < 0 || *m.progress > 100)) __builtin_trap();
    if (m.status && (m.status->size() > 1024 || !repvisor::core::is_valid_utf8(*m.status))) __builtin_trap();
    if (m.phase && m.phase->size() > 64) __builtin_trap();
    if (m.checkpoint && m.checkpoint->size() > repvisor::core::kCheckpointMax) __builtin_trap();
  } else if (error.empty()) {
    __builtin_trap();  // a refusal always says why
  }
  return 0;
}
