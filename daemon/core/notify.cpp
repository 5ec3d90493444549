#include "core/notify.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>

#include "util/text.hpp"

namespace repvisor::core {

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

bool parse_notify(std::string_view data, NotifyMessage* out, std::string* error) {
  NotifyMessage m;
  size_t line_no = 0;
  while (!data.empty()) {
    ++line_no;
    const size_t nl = data.find('\n');
    std::string_view line = data.substr(0, nl);
    data.remove_prefix(nl == std::string_view::npos ? data.size() : nl + 1);
    if (line.empty()) continue;
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      *error = fmt::format("line {}: not KEY=VALUE", line_no);
      return false;
    }
    const std::string_view key = line.substr(0, eq), value = line.substr(eq + 1);
    for (char c : key)
      if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
        *error = fmt::format("line {}: invalid key", line_no);
        return false;
      }
    if (!is_valid_utf8(value)) {
      *error = fmt::format("line {} ({}): value is not valid UTF-8", line_no, key);
      return false;
    }
    if (key == "READY") {
      m.ready = value == "1";
    } else if (key == "STOPPING") {
      m.stopping = value == "1";
    } else if (key == "BARRIER") {
      m.barrier = value == "1";
    } else if (key == "STATUS") {
      if (value.size() > 1024) {
        *error = fmt::format("line {}: STATUS longer than 1024 bytes", line_no);
        return false;
      }
      m.status = std::string(value);
    } else if (key == "PHASE") {
      if (value.size() > 64) {
        *error = fmt::format("line {}: PHASE longer than 64 bytes", line_no);
        return false;
      }
      m.phase = std::string(value);
    } else if (key == "BYTES_DONE" || key == "BYTES_TOTAL" || key == "EXTEND_TIMEOUT_USEC") {
      uint64_t v = 0;
      const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc() || ptr != value.data() + value.size() || value.empty()) {
        *error = fmt::format("line {}: {} '{}' is not an unsigned integer", line_no, key, value);
        return false;
      }
      (key == "BYTES_DONE" ? m.bytes_done : key == "BYTES_TOTAL" ? m.bytes_total : m.extend_timeout_usec) = v;
    } else if (key == "EXIT_STATUS") {
      unsigned v = 0;
      const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc() || ptr != value.data() + value.size() || value.empty() || v > 255) {
        *error = fmt::format("line {}: EXIT_STATUS '{}' is not a number from 0 to 255", line_no, value);
        return false;
      }
      m.exit_status = static_cast<int>(v);
    } else if (key == "CHECKPOINT") {
      if (value.size() > kCheckpointMax) {
        *error = fmt::format("line {}: CHECKPOINT longer than {} bytes", line_no, kCheckpointMax);
        return false;
      }
      m.checkpoint = std::string(value);
    } else if (key == "PROGRESS") {
      double p = 0;
      const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), p);
      if (ec != std::errc() || ptr != value.data() + value.size() || !std::isfinite(p) || p < 0 || p > 100) {
        *error = fmt::format("line {}: PROGRESS '{}' is not a number from 0 to 100", line_no, value);
        return false;
      }
      m.progress = p;
    }
  }
  *out = std::move(m);
  return true;
}

}  // namespace repvisor::core
