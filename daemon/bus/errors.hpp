// D-Bus errors set from ErrorKind (the names are in wire/errors.hpp, shared with the clients), and
// the trampoline that keeps exceptions from ever crossing sd-bus's C callbacks.
#pragma once
#include <systemd/sd-bus.h>

#include <exception>
#include <new>
#include <string>
#include <string_view>

#include "core/errors.hpp"

namespace repvisor::bus {

inline constexpr const char* kErrorNoSuchJob = wire::error_name(ErrorKind::NoSuchJob);
inline constexpr const char* kErrorJobActive = wire::error_name(ErrorKind::JobActive);
inline constexpr const char* kErrorShuttingDown = wire::error_name(ErrorKind::ShuttingDown);
inline constexpr const char* kErrorNotResumable = wire::error_name(ErrorKind::NotResumable);
inline constexpr const char* kErrorCleanupFailed = wire::error_name(ErrorKind::CleanupFailed);

using wire::error_name;
// An error's text as it may go on the bus: valid UTF-8 (sd-bus will not send anything else, and
// the caller would wait for a reply that never comes) and at most 4 KiB.
std::string bus_message(std::string_view text);
int set_error(sd_bus_error* err, const char* name, std::string_view text);
int set_error(sd_bus_error* err, const ApiError& e);
// The error reply to a call answered later, outside the trampoline.
void reply_error(sd_bus_message* call, const char* name, std::string_view text);

// Runs fn(); converts whatever it throws into a D-Bus error (or -ENOMEM).
template <class Fn>
int guarded(sd_bus_error* err, Fn&& fn) noexcept {
  try {
    return fn();
  } catch (const ApiError& e) {
    return set_error(err, e);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  } catch (const std::exception& e) {
    return set_error(err, SD_BUS_ERROR_FAILED, e.what());
  } catch (...) {
    return sd_bus_error_set(err, SD_BUS_ERROR_FAILED, "internal error");
  }
}

}  // namespace repvisor::bus
