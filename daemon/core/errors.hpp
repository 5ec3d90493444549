// The documented outcomes of API calls, kept apart from fatal errors. The bus layer maps each
// kind to its D-Bus error name in one place (bus/errors.cpp).
#pragma once
#include <stdexcept>
#include <string>

namespace repvisor {

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

class ApiError : public std::runtime_error {
 public:
  ApiError(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace repvisor
