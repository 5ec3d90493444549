#include "util/id.hpp"

#include <systemd/sd-id128.h>

#include <algorithm>
#include <stdexcept>

#include "util/text.hpp"

namespace repvisor {

std::string new_job_id() {
  sd_id128_t id;
  if (int r = sd_id128_randomize(&id); r < 0) throw std::runtime_error("cannot generate a random job id");
  char buf[SD_ID128_STRING_MAX];
  return sd_id128_to_string(id, buf);
}

static bool all_lower_hex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool is_job_id(std::string_view s) { return s.size() == 32 && all_lower_hex(s); }
bool is_job_id_prefix(std::string_view s) { return s.size() >= 4 && s.size() <= 32 && all_lower_hex(s); }

std::string check_job_name(std::string_view s) {
  if (s.empty()) return "name is empty";
  if (s.size() > 64) return "name is longer than 64 characters";
  if (s.front() == '-' || s.front() == '.') return "name must not start with '-' or '.'";
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.' || c == '@';
    // The whole character, never half of a UTF-8 sequence: the reason goes back over D-Bus.
    const size_t n = std::max<size_t>(utf8_sequence(s, i), 1);
    if (!ok) return "name contains " + quote(s.substr(i, n)) + " (allowed: letters, digits, '_', '-', '.', '@')";
  }
  if (all_lower_hex(s) && s.size() >= 4) return "name must not look like a job id (only hex digits)";
  return {};
}

}  // namespace repvisor
