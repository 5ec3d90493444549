// Human output: colours only on a terminal (and never with NO_COLOR), times, progress bars.
#pragma once
#include <cstdint>
#include <string>

namespace repvisor::ctl {

void set_colour(bool on);
bool colour();
std::string coloured_state(const std::string& state);
std::string bold(const std::string& s);
std::string dim(const std::string& s);
std::string format_time(uint64_t realtime_usec);  // "2026-11-22 18:40:53", "-" for 0
std::string format_ago(uint64_t realtime_usec, uint64_t now);
std::string progress_bar(double progress, int width);  // "[#####     ]  50%", blank when unknown
std::string short_id(const std::string& id);
std::string format_bytes(uint64_t bytes);  // "512 B", "1.5 MiB"
std::string signal_name(int sig);
int parse_signal(const std::string& s);  // "TERM", "SIGTERM", "15"; -1 when unknown

}  // namespace repvisor::ctl
