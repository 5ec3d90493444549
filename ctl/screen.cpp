#include "screen.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <vector>

#include "output.hpp"

namespace repvisor::ctl {

namespace {

volatile sig_atomic_t resized = 0;  // SIGWINCH: watch redraws for the new size

// Display columns of UTF-8 text without escape sequences: one a character.
size_t columns(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// The first `width` columns of s, cut between characters.
std::string fit(const std::string& s, size_t width) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && n++ == width) return s.substr(0, i);
  return s;
}

}  // namespace

void start_screen() {
  struct sigaction sa {};
  sa.sa_handler = [](int) { resized = 1; };
  sigaction(SIGWINCH, &sa, nullptr);
  fmt::print("\x1b[2J");  // once: later frames overwrite in place, without a flash
}

bool take_resize() {
  if (!resized) return false;
  resized = 0;
  return true;
}

void draw_table(const std::map<std::string, Props>& jobs) {
  winsize ws{};
  size_t height = 24, width = 80;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
    height = ws.ws_row, width = ws.ws_col;
  std::string frame = "\x1b[H";
  size_t lines = 0;
  // The last line of the screen stays empty: a newline there would scroll the table.
  auto put = [&](const std::string& plain, const std::string& painted) {
    if (lines + 1 >= height) return;
    frame += (colour() && columns(plain) <= width ? painted : fit(plain, width)) + "\x1b[K\n";
    ++lines;
  };
  const std::string title = fmt::format("repvisor — {} job(s)   (Ctrl-C to quit)", jobs.size());
  put(title, bold(title));
  put("", "");
  const std::string head = fmt::format("{:<12}  {:<18}  {:<10}  {:<13}  {:<18} {}", "ID", "NAME", "STATE", "SUBSTATE",
                                       "PROGRESS", "PHASE / STATUS");
  put(head, bold(head));
  std::vector<const Props*> order;
  for (const auto& [path, p] : jobs) order.push_back(&p);
  std::sort(order.begin(), order.end(),
            [](const Props* x, const Props* y) { return get_t(*x, "CreatedUSec") < get_t(*y, "CreatedUSec"); });
  const size_t room = height > lines + 1 ? height - lines - 1 : 0;
  const size_t shown_rows = order.size() <= room ? order.size() : (room > 0 ? room - 1 : 0);
  for (size_t i = 0; i < shown_rows; ++i) {
    const Props p = for_terminal(*order[i]);
    const std::string st = get_s(p, "State");
    std::string info = get_s(p, "Phase");
    if (!get_s(p, "StatusText").empty()) info += (info.empty() ? "" : " — ") + get_s(p, "StatusText");
    const std::string left =
        fmt::format("{:<12}  {:<18}  ", short_id(get_s(p, "Id")), get_s(p, "Name").empty() ? "-" : get_s(p, "Name"));
    const std::string right =
        fmt::format("  {:<13}  {:<18} {}", get_s(p, "SubState"), progress_bar(get_d(p, "Progress"), 10), info);
    const std::string pad(st.size() < 10 ? 10 - st.size() : 0, ' ');
    put(left + st + pad + right, left + coloured_state(st) + pad + right);
  }
  if (shown_rows < order.size()) {
    const std::string more = fmt::format("+{} more", order.size() - shown_rows);
    put(more, dim(more));
  }
  frame += "\x1b[J";
  fmt::print("{}", frame);
  fflush(stdout);
}

}  // namespace repvisor::ctl
