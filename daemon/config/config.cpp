#include "config/config.hpp"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace repvisor::config {

namespace {

std::string where(const std::string& source, const toml::source_region& r) {
  return fmt::format("{}:{}:{}", source, r.begin.line, r.begin.column);
}

[[noreturn]] void fail(const std::string& source, const toml::node& node, const std::string& key,
                       const std::string& what) {
  throw ConfigError(fmt::format("{}: {}: {}", where(source, node.source()), key, what));
}

usec_t get_timespan(const std::string& source, const toml::node& node, const std::string& key) {
  if (auto s = node.value<std::string>()) {
    std::string error;
    if (auto v = parse_timespan(*s, &error)) return *v;
    fail(source, node, key, error);
  }
  if (auto i = node.value<int64_t>(); i && node.is_integer()) {
    if (*i < 0) fail(source, node, key, "must not be negative");
    return static_cast<usec_t>(*i) * USEC_PER_SEC;
  }
  fail(source, node, key, "expected a time span such as \"30s\" or \"1min 30s\"");
}

std::string get_string(const std::string& source, const toml::node& node, const std::string& key) {
  if (!node.is_string()) fail(source, node, key, "expected a string");
  return *node.value<std::string>();
}

void parse_daemon(const std::string& source, const toml::table& t, Config& c) {
  for (const auto& [k, node] : t) {
    const std::string key = "daemon." + std::string(k.str());
    if (k == "max_concurrent_jobs") {
      if (!node.is_integer()) fail(source, node, key, "expected an integer");
      int64_t v = *node.value<int64_t>();
      if (v < 1 || v > 100000) fail(source, node, key, fmt::format("{} is out of range (1..100000)", v));
      c.max_concurrent_jobs = static_cast<unsigned>(v);
    } else if (k == "stop_timeout") {
      c.stop_timeout = get_timespan(source, node, key);
    } else if (k == "final_kill_timeout") {
      c.final_kill_timeout = get_timespan(source, node, key);
    } else if (k == "max_stop_extension") {
      c.max_stop_extension = get_timespan(source, node, key);
    } else if (k == "shutdown_timeout") {
      c.shutdown_timeout = get_timespan(source, node, key);
    } else if (k == "cgroup_root") {
      std::string v = get_string(source, node, key);
      if (v != "auto" && v != "none" && (v.empty() || v[0] != '/'))
        fail(source, node, key, fmt::format("'{}' is not \"auto\", \"none\" or an absolute path", v));
      c.cgroup_root = v;
    } else if (k == "recovery") {
      std::string v = get_string(source, node, key);
      if (v != "stop" && v != "adopt") fail(source, node, key, fmt::format("'{}' is not \"stop\" or \"adopt\"", v));
      c.recovery = v;
    } else if (k == "state_dir" || k == "runtime_dir") {
      std::string v = get_string(source, node, key);
      if (v.empty() || v[0] != '/') fail(source, node, key, fmt::format("'{}' is not an absolute path", v));
      (k == "state_dir" ? c.state_dir : c.runtime_dir) = v;
    } else {
      fail(source, node, key, "unknown key");
    }
  }
}

}  // namespace

Config parse(std::string_view text, const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    throw ConfigError(fmt::format("{}: {}", where(source, e.source()), e.description()));
  }
  Config c;
  for (const auto& [k, node] : root) {
    if (k == "daemon") {
      if (!node.is_table()) fail(source, node, "daemon", "expected a table [daemon]");
      parse_daemon(source, *node.as_table(), c);
    } else {
      fail(source, node, std::string(k.str()), "unknown section or key");
    }
  }
  return c;
}

Config load(const std::string& path, bool must_exist) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!must_exist && !std::filesystem::exists(path)) return Config{};
    throw ConfigError(fmt::format("{}: cannot read: {}", path, strerror(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

}  // namespace repvisor::config
