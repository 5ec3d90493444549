// qcow2 headers (the input is the image file's beginning): parsed or refused, never read out of
// bounds; what is accepted holds the promises the daemon's checks rely on, and a reader that
// returns a few bytes at a time reads the same header.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "sys/qcow2.hpp"

using repvisor::sys::Qcow2Header;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view file(reinterpret_cast<const char*>(data), size);
  Qcow2Header h;
  const std::string error = repvisor::sys::parse_qcow2(file, &h);
  if (!error.empty()) {
    if (h.version != 0 || !h.backing_file.empty() || !h.data_file.empty()) __builtin_trap();  // changed on error
  } else {
    if (h.version != 2 && h.version != 3) __builtin_trap();
    if (h.version == 2 && h.incompatible != 0) __builtin_trap();
    if (h.incompatible & ~repvisor::sys::kQcow2KnownIncompatible) __builtin_trap();
    // A data file is named exactly when the image says it has one.
    if (h.data_file.empty() == bool(h.incompatible & repvisor::sys::kQcow2ExternalDataFile)) __builtin_trap();
    if (h.data_file.size() > repvisor::sys::kQcow2DataFileNameMax) __builtin_trap();
    if (h.backing_file.size() > repvisor::sys::kQcow2BackingNameMax) __builtin_trap();
    if (h.data_file.find('\0') != std::string::npos || h.backing_file.find('\0') != std::string::npos) __builtin_trap();
  }
  const auto trickle = [&](uint64_t offset, void* buf, size_t len) -> ssize_t {
    if (offset >= file.size()) return 0;
    const size_t n = std::min<uint64_t>({len, file.size() - offset, 3});
    memcpy(buf, file.data() + offset, n);
    return static_cast<ssize_t>(n);
  };
  Qcow2Header again;
  if (repvisor::sys::parse_qcow2(trickle, &again) != error) __builtin_trap();
  if (again.incompatible != h.incompatible || again.backing_file != h.backing_file || again.data_file != h.data_file)
    __builtin_trap();
  return 0;
}
