#include "util/log.hpp"

#include <unistd.h>

#include <string>

namespace repvisor::log {

static Level max_level = Info;

void set_max_level(Level level) { max_level = level; }

void write(Level level, std::string_view msg) {
  if (level > max_level) return;
  std::string line = "<" + std::to_string(static_cast<int>(level)) + ">repvisord: ";
  line += msg;
  line += '\n';
  // One write(2) per line so lines from concurrent writers never interleave.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace repvisor::log
