#include "output.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include <cmath>
#include <cstdlib>
#include <iterator>

#include "util/time.hpp"

namespace repvisor::ctl {

static bool use_colour = false;

void set_colour(bool on) { use_colour = on && getenv("NO_COLOR") == nullptr; }
bool colour() { return use_colour; }

static std::string paint(const std::string& s, const char* code) {
  return use_colour ? fmt::format("\x1b[{}m{}\x1b[0m", code, s) : s;
}

std::string coloured_state(const std::string& state) {
  if (state == "running") return paint(state, "1;32");
  if (state == "completed") return paint(state, "32");
  if (state == "failed") return paint(state, "1;31");
  if (state == "cancelled") return paint(state, "33");
  if (state == "stopping" || state == "cleaning") return paint(state, "1;33");
  if (state == "pending") return paint(state, "36");
  return state;
}

std::string bold(const std::string& s) { return paint(s, "1"); }
std::string dim(const std::string& s) { return paint(s, "2"); }

std::string format_time(uint64_t usec) {
  if (usec == 0) return "-";
  time_t t = static_cast<time_t>(usec / USEC_PER_SEC);
  tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %Z", &tm);
  return buf;
}

std::string format_ago(uint64_t usec, uint64_t now) {
  if (usec == 0) return "";
  if (now <= usec) return "just now";
  usec_t d = now - usec;
  if (d >= USEC_PER_SEC)
    d -= d % USEC_PER_SEC;  // whole seconds are enough to read
  else
    d -= d % USEC_PER_MSEC;
  return format_timespan(d) + " ago";
}

std::string progress_bar(double progress, int width) {
  if (progress < 0 || std::isnan(progress)) return std::string(width + 7, ' ');
  if (progress > 100) progress = 100;
  int filled = static_cast<int>(std::lround(progress * width / 100));
  return fmt::format("[{}{}] {:3.0f}%", std::string(filled, '#'), std::string(width - filled, ' '), progress);
}

std::string short_id(const std::string& id) { return id.substr(0, 12); }

std::string format_bytes(uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes) / 1024;
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(kUnits)) v /= 1024, ++u;
  return fmt::format("{:.1f} {}", v, kUnits[u]);
}

std::string signal_name(int sig) {
  const char* a = sigabbrev_np(sig);
  return a ? std::string("SIG") + a : std::to_string(sig);
}

int parse_signal(const std::string& s) {
  char* end;
  long n = strtol(s.c_str(), &end, 10);
  if (!s.empty() && *end == 0) return n > 0 && n < NSIG ? static_cast<int>(n) : -1;
  std::string name = s.rfind("SIG", 0) == 0 ? s.substr(3) : s;
  for (int i = 1; i < NSIG; ++i)
    if (const char* a = sigabbrev_np(i); a && name == a) return i;
  return -1;
}

}  // namespace repvisor::ctl
