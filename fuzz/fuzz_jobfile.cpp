// repvisorctl's TOML job files: parsed into Submit options or refused with a CtlError naming
// file:line:column and the key.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "verbs.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto spec = repvisor::ctl::parse_job_file(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.toml");
    if (auto it = spec.find("argv"); it != spec.end() && std::get<std::vector<std::string>>(it->second).empty())
      __builtin_trap();
  } catch (const repvisor::ctl::CtlError& e) {
    if (e.exit_code != repvisor::ctl::kExitUsage) __builtin_trap();
  }
  return 0;
}
