// The names of repvisord's D-Bus API: its bus name, its objects and their interfaces
// (docs/dbus-api.md describes them).
#pragma once
#include <string>
#include <string_view>

namespace repvisor::wire {

inline constexpr const char* kBusName = "org.repvisor1";
inline constexpr const char* kManagerPath = "/org/repvisor1";
inline constexpr const char* kManagerInterface = "org.repvisor1.Manager";
inline constexpr const char* kJobPrefix = "/org/repvisor1/job";
inline constexpr const char* kJobInterface = "org.repvisor1.Job";

// A job's object path, from its id.
inline std::string job_path(std::string_view id) { return std::string(kJobPrefix) + "/" + std::string(id); }

}  // namespace repvisor::wire
