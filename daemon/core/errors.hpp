// The documented outcomes of API calls, kept apart from fatal errors. The kinds and their D-Bus
// error names are listed once, in wire/errors.hpp, which the clients share.
#pragma once
#include <stdexcept>
#include <string>

#include "wire/errors.hpp"

namespace repvisor {

using ErrorKind = wire::ErrorKind;

class ApiError : public std::runtime_error {
 public:
  ApiError(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace repvisor
