// The worker's checkpoint: the text it reports (CHECKPOINT=) and resumes from (--resume-from).
// It names only the prefix of the target that is written and flushed.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace repvisor::worker {

struct Checkpoint {
  uint64_t done = 0;  // bytes [0, done) of the target are written and fsync'ed
  uint64_t size = 0;  // the source's size when it was taken: resuming a different source is refused
};

std::string format_checkpoint(const Checkpoint& c);  // "repvisor-copy/1 done=N size=M"
// nullopt with *error when the text is not a checkpoint of ours or is inconsistent.
std::optional<Checkpoint> parse_checkpoint(std::string_view text, std::string* error);

}  // namespace repvisor::worker
