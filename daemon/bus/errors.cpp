#include "bus/errors.hpp"

namespace repvisor::bus {

const char* error_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::NoSuchJob:
      return kErrorNoSuchJob;
    case ErrorKind::JobActive:
      return kErrorJobActive;
    case ErrorKind::InvalidArgs:
      return SD_BUS_ERROR_INVALID_ARGS;
    case ErrorKind::AccessDenied:
      return SD_BUS_ERROR_ACCESS_DENIED;
    case ErrorKind::ShuttingDown:
      return kErrorShuttingDown;
    case ErrorKind::NotResumable:
      return kErrorNotResumable;
    case ErrorKind::CleanupFailed:
      return kErrorCleanupFailed;
    case ErrorKind::Failed:
      break;
  }
  return SD_BUS_ERROR_FAILED;
}

int set_error(sd_bus_error* err, const ApiError& e) { return sd_bus_error_set(err, error_name(e.kind()), e.what()); }

}  // namespace repvisor::bus
