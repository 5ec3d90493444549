// Job ids (32 lowercase hex characters, sd_id128 style) and job names.
#pragma once
#include <string>
#include <string_view>

namespace repvisor {

std::string new_job_id();
bool is_job_id(std::string_view s);
// A usable id prefix for lookups: 4 to 32 lowercase hex characters.
bool is_job_id_prefix(std::string_view s);
// Names: 1..64 characters of [A-Za-z0-9_.-@], not starting with '-' or '.', and never
// something that would read as an id prefix. Returns an empty string when fine, else why not.
std::string check_job_name(std::string_view s);

}  // namespace repvisor
