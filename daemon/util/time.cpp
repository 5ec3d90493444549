#include "util/time.hpp"

#include <time.h>

#include <array>
#include <cctype>
#include <cmath>

#include "util/text.hpp"

namespace repvisor {

namespace {

usec_t clock_usec(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<usec_t>(ts.tv_sec) * USEC_PER_SEC + static_cast<usec_t>(ts.tv_nsec) / 1000;
}

struct Unit {
  std::string_view suffix;
  usec_t usec;
};

// Longest suffixes first where one is a prefix of another ("ms" before "m", "min" before "m").
constexpr std::array<Unit, 26> kUnits{{
    {"seconds", USEC_PER_SEC},
    {"second", USEC_PER_SEC},
    {"sec", USEC_PER_SEC},
    {"s", USEC_PER_SEC},
    {"minutes", 60 * USEC_PER_SEC},
    {"minute", 60 * USEC_PER_SEC},
    {"min", 60 * USEC_PER_SEC},
    {"msec", USEC_PER_MSEC},
    {"ms", USEC_PER_MSEC},
    {"m", 60 * USEC_PER_SEC},
    {"hours", 3600 * USEC_PER_SEC},
    {"hour", 3600 * USEC_PER_SEC},
    {"hr", 3600 * USEC_PER_SEC},
    {"h", 3600 * USEC_PER_SEC},
    {"days", 86400 * USEC_PER_SEC},
    {"day", 86400 * USEC_PER_SEC},
    {"d", 86400 * USEC_PER_SEC},
    {"weeks", 604800 * USEC_PER_SEC},
    {"week", 604800 * USEC_PER_SEC},
    {"w", 604800 * USEC_PER_SEC},
    {"usec", 1},
    {"us", 1},
    {"µs", 1},
    {"nsec", 0},
    {"ns", 0},
    {"", USEC_PER_SEC},
}};

bool fail(std::string* error, std::string msg) {
  if (error) *error = std::move(msg);
  return false;
}

}  // namespace

usec_t now_realtime() { return clock_usec(CLOCK_REALTIME); }
usec_t now_monotonic() { return clock_usec(CLOCK_MONOTONIC); }

std::optional<usec_t> parse_timespan(std::string_view text, std::string* error) {
  auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  if (text.empty()) {
    fail(error, "empty time span");
    return std::nullopt;
  }
  if (text == "infinity") return USEC_INFINITY;

  const std::string original(text);
  long double total = 0;
  while (!text.empty()) {
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    if (text.empty()) break;
    size_t n = 0;
    bool dot = false;
    while (n < text.size() && (std::isdigit(static_cast<unsigned char>(text[n])) || (text[n] == '.' && !dot))) {
      dot |= text[n] == '.';
      ++n;
    }
    if (n == 0 || (n == 1 && dot)) {
      fail(error, "invalid time span " + quote(original) + ": expected a number at " + quote(text));
      return std::nullopt;
    }
    const long double value = std::stold(std::string(text.substr(0, n)));
    text.remove_prefix(n);
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    size_t ulen = 0;
    while (ulen < text.size() && !std::isdigit(static_cast<unsigned char>(text[ulen])) && text[ulen] != '.' &&
           !is_space(text[ulen]))
      ++ulen;
    const std::string_view unit = text.substr(0, ulen);
    const Unit* found = nullptr;
    for (const auto& u : kUnits)
      if (u.suffix == unit) {
        found = &u;
        break;
      }
    if (!found) {
      fail(error,
           "invalid time span " + quote(original) + ": unknown unit " + quote(unit) + " (use us, ms, s, min, h, d, w)");
      return std::nullopt;
    }
    text.remove_prefix(ulen);
    total += found->suffix == "nsec" || found->suffix == "ns" ? value / 1000 : value * found->usec;
    if (total >= static_cast<long double>(USEC_INFINITY)) {
      fail(error, "time span " + quote(original) + " is too large");
      return std::nullopt;
    }
  }
  return static_cast<usec_t>(std::llround(total));
}

std::string format_timespan(usec_t usec) {
  if (usec == USEC_INFINITY) return "infinity";
  if (usec == 0) return "0";
  static constexpr std::array<std::pair<const char*, usec_t>, 7> table{{
      {"w", 604800 * USEC_PER_SEC},
      {"d", 86400 * USEC_PER_SEC},
      {"h", 3600 * USEC_PER_SEC},
      {"min", 60 * USEC_PER_SEC},
      {"s", USEC_PER_SEC},
      {"ms", USEC_PER_MSEC},
      {"us", 1},
  }};
  std::string out;
  for (const auto& [name, size] : table) {
    if (usec < size) continue;
    if (!out.empty()) out += ' ';
    out += std::to_string(usec / size) + name;
    usec %= size;
  }
  return out;
}

}  // namespace repvisor
