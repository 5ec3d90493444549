// repvisord.toml: any text either parses or is refused with a ConfigError; nothing else.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto c = repvisor::config::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.toml");
    if (c.max_concurrent_jobs == 0 || c.max_concurrent_jobs > 100000) __builtin_trap();
  } catch (const repvisor::config::ConfigError&) {
  }
  return 0;
}
