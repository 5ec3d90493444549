// TOML job files for `repvisorctl submit --file`: the same keys as the Submit spec, with
// durations and signals written the way people write them ("2min", "SIGINT").
#include <fmt/format.h>

#include <toml++/toml.h>
#include <cstring>
#include <fstream>
#include <sstream>

#include "output.hpp"
#include "util/time.hpp"
#include "verbs.hpp"

namespace repvisor::ctl {

namespace {
[[noreturn]] void fail(const std::string& file, const toml::node& n, const std::string& key, const std::string& what) {
  throw CtlError(kExitUsage,
                 fmt::format("{}:{}:{}: {}: {}", file, n.source().begin.line, n.source().begin.column, key, what));
}
std::string str(const std::string& file, const toml::node& n, const std::string& key) {
  if (!n.is_string()) fail(file, n, key, "expected a string");
  return *n.value<std::string>();
}
// Bytes: an integer, or a string with a binary suffix ("10G" = 10 GiB, "512M", "4096").
uint64_t size_value(const std::string& file, const toml::node& n, const std::string& key) {
  if (n.is_integer()) {
    const int64_t v = *n.value<int64_t>();
    if (v <= 0) fail(file, n, key, "must be greater than 0");
    return static_cast<uint64_t>(v);
  }
  const std::string s = str(file, n, key);
  size_t used = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(s, &used);
  } catch (const std::exception&) {
    fail(file, n, key, "'" + s + "' is not a size (bytes, or a number with K, M, G or T)");
  }
  const std::string unit = s.substr(used);
  int shift = 0;
  if (unit.empty() || unit == "B")
    shift = 0;
  else if (unit == "K" || unit == "KiB")
    shift = 10;
  else if (unit == "M" || unit == "MiB")
    shift = 20;
  else if (unit == "G" || unit == "GiB")
    shift = 30;
  else if (unit == "T" || unit == "TiB")
    shift = 40;
  else
    fail(file, n, key, "'" + s + "': unknown unit '" + unit + "' (K, M, G or T: powers of 1024)");
  if (v == 0 || v > (UINT64_MAX >> shift)) fail(file, n, key, "'" + s + "' is out of range");
  return static_cast<uint64_t>(v) << shift;
}

DictList resources_value(const std::string& file, const toml::node& n) {
  const auto* arr = n.as_array();
  if (!arr) fail(file, n, "resources", "expected [[resources]] tables");
  DictList out;
  for (size_t i = 0; i < arr->size(); ++i) {
    const auto& el = *arr->get(i);
    const std::string at = fmt::format("resources[{}]", i);
    const auto* t = el.as_table();
    if (!t) fail(file, el, at, "expected a table");
    Dict d;
    for (const auto& [k, v] : *t) {
      const std::string key(k.str());
      if (key == "size")
        d[key] = size_value(file, v, at + ".size");
      else if (key == "kind" || key == "name" || key == "path" || key == "server" || key == "format" ||
               key == "on_stop" || key == "export")
        d[key] = str(file, v, at + "." + key);
      else
        fail(file, v, at + "." + key, "unknown key");
    }
    out.push_back(std::move(d));
  }
  return out;
}
}  // namespace

Options load_job_file(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw CtlError(kExitUsage, fmt::format("{}: cannot read: {}", file, strerror(errno)));
  std::stringstream text;
  text << in.rdbuf();
  return parse_job_file(text.str(), file);
}

Options parse_job_file(std::string_view text, const std::string& file) {
  toml::table t;
  try {
    t = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    throw CtlError(kExitUsage,
                   fmt::format("{}:{}:{}: {}", file, e.source().begin.line, e.source().begin.column, e.description()));
  }
  Options spec;
  for (const auto& [k, n] : t) {
    const std::string key(k.str());
    if (key == "argv") {
      const auto* arr = n.as_array();
      if (!arr || arr->empty()) fail(file, n, key, "expected a non-empty array of strings");
      std::vector<std::string> argv;
      for (const auto& el : *arr) argv.push_back(str(file, el, key));
      spec[key] = argv;
    } else if (key == "resources") {
      spec[key] = resources_value(file, n);
    } else if (key == "name" || key == "working_directory" || key == "kill_mode" || key == "progress") {
      spec[key] = str(file, n, key);
    } else if (key == "stop_signal") {
      int sig = n.is_integer() ? static_cast<int>(*n.value<int64_t>()) : parse_signal(str(file, n, key));
      if (sig <= 0) fail(file, n, key, "not a signal name or number");
      spec[key] = static_cast<int32_t>(sig);
    } else if (key == "tasks_max") {
      if (!n.is_integer() || *n.value<int64_t>() < 1 || *n.value<int64_t>() > 4194304)
        fail(file, n, key, "expected a number of tasks from 1 to 4194304");
      spec[key] = static_cast<uint64_t>(*n.value<int64_t>());
    } else if (key == "stop_timeout") {
      std::string err;
      auto v = parse_timespan(str(file, n, key), &err);
      if (!v) fail(file, n, key, err);
      spec["stop_timeout_usec"] = *v;
    } else if (key == "env") {
      const auto* tbl = n.as_table();
      if (!tbl) fail(file, n, key, "expected a table of strings");
      StringMap env;
      for (const auto& [ek, ev] : *tbl) env[std::string(ek.str())] = str(file, ev, "env." + std::string(ek.str()));
      spec[key] = env;
    } else {
      fail(file, n, key, "unknown key");
    }
  }
  return spec;
}

}  // namespace repvisor::ctl
