#include "sys/users.hpp"

#include <grp.h>
#include <pwd.h>

#include <vector>

namespace repvisor::sys {

gid_t group_id(const std::string& group) {
  struct group gr {};
  struct group* res = nullptr;
  std::vector<char> buf(16384);
  if (getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &res) != 0 || !res) return static_cast<gid_t>(-1);
  return gr.gr_gid;
}

bool uid_in_group(uid_t uid, const std::string& group) {
  const gid_t gid = group_id(group);
  if (gid == static_cast<gid_t>(-1)) return false;
  struct passwd pw {};
  struct passwd* res = nullptr;
  std::vector<char> buf(16384);
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) != 0 || !res) return false;
  if (pw.pw_gid == gid) return true;
  int n = 64;
  std::vector<gid_t> groups(static_cast<size_t>(n));
  while (getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) groups.resize(static_cast<size_t>(n));
  groups.resize(static_cast<size_t>(n));
  for (gid_t g : groups)
    if (g == gid) return true;
  return false;
}

}  // namespace repvisor::sys
