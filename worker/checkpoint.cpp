#include "checkpoint.hpp"

#include <fmt/format.h>

#include <charconv>

namespace repvisor::worker {

namespace {
constexpr std::string_view kTag = "repvisor-copy/1";

bool read_field(std::string_view& s, std::string_view name, uint64_t* out) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  if (s.substr(0, name.size()) != name || s.size() <= name.size() || s[name.size()] != '=') return false;
  s.remove_prefix(name.size() + 1);
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec != std::errc() || ptr == s.data()) return false;
  s.remove_prefix(static_cast<size_t>(ptr - s.data()));
  return true;
}
}  // namespace

std::string format_checkpoint(const Checkpoint& c) { return fmt::format("{} done={} size={}", kTag, c.done, c.size); }

std::optional<Checkpoint> parse_checkpoint(std::string_view text, std::string* error) {
  Checkpoint c;
  std::string_view s = text;
  if (s.substr(0, kTag.size()) != kTag) {
    *error = fmt::format("not a repvisor-copy checkpoint (expected it to start with '{}')", kTag);
    return std::nullopt;
  }
  s.remove_prefix(kTag.size());
  if (!read_field(s, "done", &c.done) || !read_field(s, "size", &c.size)) {
    *error = "malformed checkpoint: expected 'done=BYTES size=BYTES'";
    return std::nullopt;
  }
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n')) s.remove_prefix(1);
  if (!s.empty()) {
    *error = fmt::format("malformed checkpoint: unexpected '{}'", s);
    return std::nullopt;
  }
  if (c.done > c.size) {
    *error = fmt::format("inconsistent checkpoint: done={} is past size={}", c.done, c.size);
    return std::nullopt;
  }
  return c;
}

}  // namespace repvisor::worker
