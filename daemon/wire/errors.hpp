// The errors of repvisord's D-Bus API, listed once: each outcome a caller can be told and its
// D-Bus name. The daemon answers with these names (bus/errors.cpp); clients map a name back to
// its kind (repvisorctl to its exit codes). docs/dbus-api.md lists the same names for people,
// and a unit test holds the two together.
#pragma once
#include <cstddef>
#include <optional>
#include <string_view>

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

struct ErrorName {
  ErrorKind kind;
  const char* name;
};

// In the order of ErrorKind: the kind is the index.
inline constexpr ErrorName kErrorNames[] = {
    {ErrorKind::NoSuchJob, "org.repvisor1.Error.NoSuchJob"},
    {ErrorKind::JobActive, "org.repvisor1.Error.JobActive"},
    {ErrorKind::InvalidArgs, "org.freedesktop.DBus.Error.InvalidArgs"},
    {ErrorKind::AccessDenied, "org.freedesktop.DBus.Error.AccessDenied"},
    {ErrorKind::ShuttingDown, "org.repvisor1.Error.ShuttingDown"},
    {ErrorKind::NotResumable, "org.repvisor1.Error.NotResumable"},
    {ErrorKind::CleanupFailed, "org.repvisor1.Error.CleanupFailed"},
    {ErrorKind::Failed, "org.freedesktop.DBus.Error.Failed"},
};

constexpr bool error_names_in_order() {
  for (size_t i = 0; i < std::size(kErrorNames); ++i)
    if (static_cast<size_t>(kErrorNames[i].kind) != i) return false;
  return std::size(kErrorNames) == static_cast<size_t>(ErrorKind::Failed) + 1;
}
static_assert(error_names_in_order(), "kErrorNames: one row for every ErrorKind, in its order");

constexpr const char* error_name(ErrorKind kind) { return kErrorNames[static_cast<size_t>(kind)].name; }

// The kind of an error the API sends; none for any other name (sd-bus's own: NoReply, say).
constexpr std::optional<ErrorKind> error_kind(std::string_view name) {
  for (const auto& e : kErrorNames)
    if (name == e.name) return e.kind;
  return std::nullopt;
}

}  // namespace repvisor::wire
