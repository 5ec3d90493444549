#include "util/id.hpp"

#include <systemd/sd-id128.h>

#include <stdexcept>

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
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.' || c == '@';
    if (!ok) return std::string("name contains '") + c + "' (allowed: letters, digits, '_', '-', '.', '@')";
  }
  if (all_lower_hex(s) && s.size() >= 4) return "name must not look like a job id (only hex digits)";
  return {};
}

}  // namespace repvisor
