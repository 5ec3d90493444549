// The small parsers of outside text: time spans, job ids and names, worker checkpoints; and the
// escaping that makes outside text safe to show.
#include <cstddef>
#include <cstdint>
#include <string>

#include "checkpoint.hpp"
#include "util/id.hpp"
#include "util/text.hpp"
#include "util/time.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::string error;
  if (auto v = repvisor::parse_timespan(text, &error)) {
    // Whatever parses formats back to the same value.
    if (repvisor::parse_timespan(repvisor::format_timespan(*v)) != v) __builtin_trap();
  } else if (error.empty()) {
    __builtin_trap();
  }
  if (repvisor::check_job_name(text).empty() && repvisor::is_job_id_prefix(text)) __builtin_trap();
  if (repvisor::is_job_id(text) && !repvisor::is_job_id_prefix(text)) __builtin_trap();
  if (auto c = repvisor::worker::parse_checkpoint(text, &error)) {
    if (c->done > c->size) __builtin_trap();
    auto again = repvisor::worker::parse_checkpoint(repvisor::worker::format_checkpoint(*c), &error);
    if (!again || again->done != c->done || again->size != c->size) __builtin_trap();
  }
  // Escaped text is valid UTF-8 without a control character; valid UTF-8 is left as it is.
  const std::string escaped = repvisor::escape(text), quoted = repvisor::quote(text, 16);
  for (const std::string* e : {&escaped, &quoted}) {
    if (repvisor::valid_utf8(*e) != *e) __builtin_trap();
    for (unsigned char c : *e)
      if (c < 0x20 || c == 0x7F) __builtin_trap();
  }
  if (repvisor::valid_utf8(repvisor::valid_utf8(text)) != repvisor::valid_utf8(text)) __builtin_trap();
  return 0;
}
