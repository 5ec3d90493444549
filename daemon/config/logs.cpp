#include "config/logs.hpp"

#include <fmt/format.h>

#include <charconv>

#include "config/config.hpp"
#include "config/logs_toml.hpp"
#include "util/string_table.hpp"

namespace repvisor::config {

namespace {
constexpr StringTable<LogKeep, 3> kKeeps({"head", "tail", "both"});
}  // namespace

const char* to_string(LogKeep k) { return kKeeps.name(k); }
bool log_keep_from_string(std::string_view s, LogKeep* out) { return kKeeps.value(s, out); }

bool parse_size(const std::string& text, uint64_t* out, std::string* why) {
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec == std::errc::result_out_of_range) {
    *why = fmt::format("'{}' is out of range", text);
    return false;
  }
  if (ec != std::errc()) {
    *why = fmt::format("'{}' is not a size such as \"64MiB\" or \"1G\"", text);
    return false;
  }
  std::string unit(p, end);
  if (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);  // "64 MiB" as well
  int shift = -1;
  if (unit.empty() || unit == "B") shift = 0;
  for (auto [letter, s] : {std::pair{'K', 10}, {'M', 20}, {'G', 30}, {'T', 40}})
    if (unit == std::string(1, letter) || unit == std::string(1, letter) + "iB") shift = s;
  if (shift < 0) {
    *why = fmt::format("'{}': unknown unit '{}' (K, M, G or T, powers of 1024)", text, unit);
    return false;
  }
  if (v > (UINT64_MAX >> shift)) {
    *why = fmt::format("'{}' is out of range", text);
    return false;
  }
  *out = v << shift;
  return true;
}

std::string format_size(uint64_t bytes) {
  if (bytes < KiB) return fmt::format("{} B", bytes);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes) / KiB;
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  // Whole numbers as such ("64 MiB"), others with one decimal ("2.4 GiB").
  if (v == static_cast<double>(static_cast<uint64_t>(v)))
    return fmt::format("{} {}", static_cast<uint64_t>(v), units[u]);
  return fmt::format("{:.1f} {}", v, units[u]);
}

namespace {

[[noreturn]] void fail(const std::string& source, const toml::node& node, const std::string& key,
                       const std::string& what) {
  const auto& at = node.source().begin;
  throw ConfigError(fmt::format("{}:{}:{}: {}: {}", source, at.line, at.column, key, what));
}

uint64_t get_size(const std::string& source, const toml::node& node, const std::string& key) {
  uint64_t v = 0;
  if (node.is_integer()) {
    const int64_t i = *node.value<int64_t>();
    if (i < 0) fail(source, node, key, fmt::format("{} must not be negative", i));
    v = static_cast<uint64_t>(i);
  } else if (node.is_string()) {
    std::string why;
    if (!parse_size(*node.value<std::string>(), &v, &why)) fail(source, node, key, why);
  } else {
    fail(source, node, key, "expected a size such as \"64MiB\" or a number of bytes");
  }
  if (v < kMinLogSize || v > 16 * TiB)
    fail(source, node, key, fmt::format("{} is out of range (64KiB..16TiB)", format_size(v)));
  return v;
}

}  // namespace

void parse_logs(const std::string& source, const toml::table& t, LogLimits& into) {
  LogLimits l = into;
  for (const auto& [k, node] : t) {
    const std::string key = "logs." + std::string(k.str());
    if (k == "max_size") {
      l.max_size = get_size(source, node, key);
    } else if (k == "max_total") {
      l.max_total = get_size(source, node, key);
    } else if (k == "keep") {
      if (!node.is_string()) fail(source, node, key, "expected a string");
      const std::string v = *node.value<std::string>();
      if (!kKeeps.value(v, &l.keep))
        fail(source, node, key, fmt::format("'{}' is not \"head\", \"tail\" or \"both\"", v));
    } else {
      fail(source, node, key, "unknown key");
    }
  }
  // One log alone may not be allowed more than all of them.
  if (l.max_total < l.max_size) {
    const toml::node* at = t.get("max_total");
    const char* key = "logs.max_total";
    if (!at) {
      at = t.get("max_size");
      key = "logs.max_size";
    }
    fail(
        source, at ? *at : t, key,
        fmt::format("max_total ({}) is smaller than max_size ({})", format_size(l.max_total), format_size(l.max_size)));
  }
  into = l;
}

std::string logs_to_toml(const LogLimits& l) {
  return fmt::format("\n[logs]\nmax_size = {}\nkeep = \"{}\"\nmax_total = {}\n", l.max_size, to_string(l.keep),
                     l.max_total);
}

}  // namespace repvisor::config
