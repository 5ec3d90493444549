#include "core/log_index.hpp"

#include <endian.h>

#include <algorithm>
#include <cstring>

namespace repvisor::core {

namespace {
void put64(char* p, uint64_t v) {
  v = htole64(v);
  memcpy(p, &v, sizeof v);
}
uint64_t get64(const char* p) {
  uint64_t v = 0;
  memcpy(&v, p, sizeof v);
  return le64toh(v);
}
}  // namespace

std::string log_index_path(const std::string& log_path) {
  std::string_view base = log_path;
  if (base.ends_with(".log")) base.remove_suffix(4);
  return std::string(base) + ".idx";
}

std::string encode(const LogStamp& s) {
  std::string out(kLogStampSize, '\0');
  put64(out.data(), s.usec);
  put64(out.data() + 8, s.written);
  return out;
}

std::vector<LogStamp> decode_log_index(std::string_view data) {
  std::vector<LogStamp> out;
  out.reserve(data.size() / kLogStampSize);
  for (size_t at = 0; at + kLogStampSize <= data.size(); at += kLogStampSize)
    out.push_back({get64(data.data() + at), get64(data.data() + at + 8)});
  return out;
}

std::vector<LogStamp> thin(const std::vector<LogStamp>& stamps) {
  std::vector<LogStamp> out;
  out.reserve(stamps.size() / 2 + 1);
  for (size_t i = 0; i < stamps.size(); ++i)
    if (i % 2 == 1 || i + 1 == stamps.size()) out.push_back(stamps[i]);
  return out;
}

std::optional<usec_t> written_by(const std::vector<LogStamp>& stamps, uint64_t byte) {
  auto it =
      std::upper_bound(stamps.begin(), stamps.end(), byte, [](uint64_t b, const LogStamp& s) { return b < s.written; });
  if (it == stamps.end()) return std::nullopt;
  return it->usec;
}

uint64_t first_written_since(const std::vector<LogStamp>& stamps, usec_t since) {
  // The stamps' times only grow (one clock, one writer), as their counts do.
  auto it =
      std::lower_bound(stamps.begin(), stamps.end(), since, [](const LogStamp& s, usec_t t) { return s.usec < t; });
  return it == stamps.begin() ? 0 : std::prev(it)->written;
}

std::optional<uint64_t> LogLayout::written_at(uint64_t offset) const {
  if (keep == "tail") return offset + cut;
  if (keep == "both") {
    if (offset + marker_size < marker_end) return offset;  // the head, and its block before the marker
    if (offset < marker_end) return std::nullopt;
    return offset + cut - marker_size;
  }
  return offset;  // never cut, or head: the file is the first bytes written
}

uint64_t LogLayout::offset_of(uint64_t byte) const {
  if (keep == "tail") return byte > cut ? byte - cut : 0;
  if (keep == "both") {
    const uint64_t head_end = marker_end - marker_size;
    if (byte < head_end) return byte;
    const uint64_t tail_first = marker_end + cut - marker_size;  // the first written byte kept after it
    return byte < tail_first ? marker_end : byte - cut + marker_size;
  }
  return byte;
}

}  // namespace repvisor::core
