// Time stamps and systemd-style time spans ("500ms", "1min 30s", "2h").
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace repvisor {

using usec_t = uint64_t;
inline constexpr usec_t USEC_PER_MSEC = 1000;
inline constexpr usec_t USEC_PER_SEC = 1000 * USEC_PER_MSEC;
inline constexpr usec_t USEC_INFINITY = UINT64_MAX;

usec_t now_realtime();
usec_t now_monotonic();

// Parses a time span in systemd's syntax. A bare number means seconds, "infinity" is
// USEC_INFINITY. Returns nullopt and sets *error to a sentence on bad input.
std::optional<usec_t> parse_timespan(std::string_view text, std::string* error = nullptr);

// "1min 30s", "500ms", "0", "infinity": the inverse of parse_timespan.
std::string format_timespan(usec_t usec);

}  // namespace repvisor
