#include "core/nbdcopy_progress.hpp"

#include <charconv>
#include <cstdint>

namespace repvisor::core {

std::optional<double> NbdcopyProgress::feed(std::string_view bytes) {
  buf_.append(bytes);
  if (buf_.size() > 4096) buf_.erase(0, buf_.size() - 64);
  const size_t end = buf_.rfind('\n');
  if (end == std::string::npos) return std::nullopt;
  size_t start = end == 0 ? std::string::npos : buf_.rfind('\n', end - 1);
  start = start == std::string::npos ? 0 : start + 1;
  const std::string line = buf_.substr(start, end - start);
  buf_.erase(0, end + 1);
  // "N/D": a chunk started (not written: never a checkpoint).
  uint64_t num = 0, den = 0;
  const char* p = line.data();
  const char* end_p = line.data() + line.size();
  auto r1 = std::from_chars(p, end_p, num);
  if (r1.ec != std::errc() || r1.ptr == end_p || *r1.ptr != '/') return std::nullopt;
  auto r2 = std::from_chars(r1.ptr + 1, end_p, den);
  if (r2.ec != std::errc() || r2.ptr != end_p || den == 0 || num > den) return std::nullopt;
  return 100.0 * static_cast<double>(num) / static_cast<double>(den);
}

}  // namespace repvisor::core
