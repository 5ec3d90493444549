// Daemon log lines: to stderr with a syslog priority prefix ("<4>"), which journald parses
// when we run under systemd and which a terminal shows plainly.
#pragma once
#include <fmt/format.h>

#include <string_view>

namespace repvisor::log {

enum Level { Err = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

void write(Level level, std::string_view msg);
void set_max_level(Level level);

template <typename... Args>
void err(fmt::format_string<Args...> f, Args&&... a) {
  write(Err, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void warning(fmt::format_string<Args...> f, Args&&... a) {
  write(Warning, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void notice(fmt::format_string<Args...> f, Args&&... a) {
  write(Notice, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... a) {
  write(Info, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... a) {
  write(Debug, fmt::format(f, std::forward<Args>(a)...));
}

}  // namespace repvisor::log
