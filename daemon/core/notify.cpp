#include "core/notify.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>

namespace repvisor::core {

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past Unicode are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
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
    if (!valid_utf8(value)) {
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
