// The errors of repvisord's D-Bus API, listed once: each outcome a caller can be told and its
// D-Bus name. The daemon answers with these names (bus/errors.cpp); clients map a name back to
// its kind (repvisorctl to its exit codes). docs/dbus-api.md lists the same names for people,
// and a unit test holds the two together.
#pragma once
#include <cstddef>
#include <optional>
#include <string_view>

#include "util/string_table.hpp"

namespace repvisor::wire {

enum class ErrorKind {
  NoSuchJob,
  JobActive,
  InvalidArgs,
  AccessDenied,
  ShuttingDown,
  NotResumable,
  CleanupFailed,
  Failed
};

// In the order of ErrorKind.
inline constexpr StringTable<ErrorKind, 8> kErrorNames({
    "org.repvisor1.Error.NoSuchJob",
    "org.repvisor1.Error.JobActive",
    "org.freedesktop.DBus.Error.InvalidArgs",
    "org.freedesktop.DBus.Error.AccessDenied",
    "org.repvisor1.Error.ShuttingDown",
    "org.repvisor1.Error.NotResumable",
    "org.repvisor1.Error.CleanupFailed",
    "org.freedesktop.DBus.Error.Failed",
});
static_assert(kErrorNames.size() == static_cast<size_t>(ErrorKind::Failed) + 1, "kErrorNames: a name for every kind");

constexpr const char* error_name(ErrorKind kind) { return kErrorNames.name(kind); }

// The kind of an error the API sends; none for any other name (sd-bus's own: NoReply, say).
inline std::optional<ErrorKind> error_kind(std::string_view name) { return kErrorNames.value(name); }

}  // namespace repvisor::wire
