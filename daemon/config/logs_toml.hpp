// Parsing of the [logs] table (config.cpp calls it), apart from LogLimits so that users of the
// limits need not include toml++.
#pragma once
#include <toml++/toml.h>

#include <string>

#include "config/logs.hpp"

namespace repvisor::config {

// Applies the keys of `t` over `into`; throws ConfigError naming file:line:column, key and value.
void parse_logs(const std::string& source, const toml::table& t, LogLimits& into);
// The [logs] table as TOML, for the effective configuration.
std::string logs_to_toml(const LogLimits& l);

}  // namespace repvisor::config
