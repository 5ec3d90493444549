// The user database, for the admin group check.
#pragma once
#include <sys/types.h>

#include <string>

namespace repvisor::sys {

// Whether the user `uid` belongs to `group` (primary or supplementary), by the user database.
bool uid_in_group(uid_t uid, const std::string& group);
// The group's gid, or -1 when there is no such group.
gid_t group_id(const std::string& group);

}  // namespace repvisor::sys
