#include "sys/qcow2.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>

// The layout is qemu's docs/interop/qcow2.txt; where a header is ambiguous this reads it as
// qemu's qcow2 driver does (which extensions it reads, where that area ends), or refuses it:
// the names found here must be the names qemu would open, never fewer.
namespace repvisor::sys {

namespace {
constexpr uint32_t kExtEnd = 0;
constexpr uint32_t kExtDataFile = 0x44415441;  // "DATA"
constexpr size_t kV2HeaderLength = 72;
constexpr size_t kV3HeaderMin = 104;  // through header_length
constexpr uint32_t kMinClusterBits = 9;
constexpr uint32_t kMaxClusterBits = 21;

uint64_t big_endian(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

// Reads up to `len` bytes at `offset`, short only at the end of the file: "" or why not.
std::string read_upto(const Qcow2ReadAt& read, uint64_t offset, void* buf, size_t len, std::string_view what,
                      size_t* got) {
  auto* p = static_cast<unsigned char*>(buf);
  *got = 0;
  while (*got < len) {
    const ssize_t n = read(offset + *got, p + *got, len - *got);
    if (n < 0) return fmt::format("reading {} at offset {}: {}", what, offset, strerror(static_cast<int>(-n)));
    if (n == 0) break;
    if (static_cast<size_t>(n) > len - *got)
      return fmt::format("reading {} at offset {}: more bytes came back than were asked for", what, offset);
    *got += static_cast<size_t>(n);
  }
  return "";
}

std::string read_exact(const Qcow2ReadAt& read, uint64_t offset, void* buf, size_t len, std::string_view what) {
  size_t got = 0;
  if (auto why = read_upto(read, offset, buf, len, what, &got); !why.empty()) return why;
  if (got < len)
    return fmt::format("the file ends at offset {}, inside {} ({} bytes at offset {})", offset + got, what, len,
                       offset);
  return "";
}

std::string bit_list(uint64_t bits) {
  std::string out;
  for (int b = 0; b < 64; ++b)
    if (bits & (uint64_t{1} << b)) out += fmt::format("{}{}", out.empty() ? "" : ", ", b);
  return out;
}
}  // namespace

std::string parse_qcow2(const Qcow2ReadAt& read, Qcow2Header* out) {
  Qcow2Header h;
  unsigned char head[kV3HeaderMin] = {};
  size_t got = 0;
  if (auto why = read_upto(read, 0, head, kV2HeaderLength, "the header", &got); !why.empty()) return why;
  if (got < kQcow2Magic.size() || memcmp(head, kQcow2Magic.data(), kQcow2Magic.size()) != 0)
    return "not a qcow2 image (it does not begin with the qcow2 magic \"QFI\\xfb\")";
  if (got < kV2HeaderLength)
    return fmt::format("the header is cut short: the file ends at offset {}, a qcow2 header has {} bytes at least", got,
                       kV2HeaderLength);
  h.version = static_cast<uint32_t>(big_endian(head + 4, 4));
  if (h.version != 2 && h.version != 3)
    return fmt::format("qcow2 version {} is not supported (versions 2 and 3 are)", h.version);
  const uint64_t backing_offset = big_endian(head + 8, 8);
  const auto backing_size = static_cast<uint32_t>(big_endian(head + 16, 4));
  h.cluster_bits = static_cast<uint32_t>(big_endian(head + 20, 4));
  if (h.cluster_bits < kMinClusterBits || h.cluster_bits > kMaxClusterBits)
    return fmt::format("cluster_bits is {}: qemu opens only {} to {} (clusters of 512 bytes to 2 MiB)", h.cluster_bits,
                       kMinClusterBits, kMaxClusterBits);
  const uint64_t cluster_size = uint64_t{1} << h.cluster_bits;

  uint64_t header_length = kV2HeaderLength;  // version 2: fixed, and no feature bits
  if (h.version == 3) {
    if (auto why = read_exact(read, kV2HeaderLength, head + kV2HeaderLength, kV3HeaderMin - kV2HeaderLength,
                              "the version 3 header fields");
        !why.empty())
      return why;
    h.incompatible = big_endian(head + 72, 8);
    header_length = big_endian(head + 100, 4);
    if (header_length < kV3HeaderMin)
      return fmt::format("header_length is {}, less than the {} bytes of a version 3 header", header_length,
                         kV3HeaderMin);
    if (header_length > cluster_size)
      return fmt::format("header_length {} exceeds the cluster size ({} bytes)", header_length, cluster_size);
  }
  // An unknown incompatible feature may change what the rest of the header means.
  if (const uint64_t unknown = h.incompatible & ~kQcow2KnownIncompatible; unknown != 0)
    return fmt::format(
        "incompatible feature bit{} {} {} set: unknown to repvisord, which cannot tell what qemu would "
        "make of the image",
        std::popcount(unknown) > 1 ? "s" : "", bit_list(unknown), std::popcount(unknown) > 1 ? "are" : "is");
  if (backing_offset > cluster_size)
    return fmt::format("backing_file_offset {} lies past the first cluster ({} bytes)", backing_offset, cluster_size);

  // The extensions fill the space from the end of the header to the backing file name, or to
  // the end of the first cluster; an end marker may close them sooner.
  const uint64_t ext_end = backing_offset != 0 ? backing_offset : cluster_size;
  std::string data_file;
  uint64_t data_file_at = 0;
  bool has_data_file = false;
  for (uint64_t at = header_length; at < ext_end;) {
    unsigned char ext[8];
    if (auto why = read_exact(read, at, ext, sizeof ext, "a header extension"); !why.empty()) return why;
    const auto type = static_cast<uint32_t>(big_endian(ext, 4));
    const auto len = static_cast<uint32_t>(big_endian(ext + 4, 4));
    const uint64_t data = at + sizeof ext;
    if (data > ext_end || len > ext_end - data)
      return fmt::format(
          "header extension 0x{:08x} at offset {} ({} bytes) runs past the end of the extension area at offset {}",
          type, at, len, ext_end);
    if (type == kExtEnd) break;
    if (type == kExtDataFile) {
      // qemu would take the last one: two names are two answers to one question.
      if (has_data_file)
        return fmt::format("two external data file name extensions, at offsets {} and {}", data_file_at, at);
      has_data_file = true;
      data_file_at = at;
      if (len > kQcow2DataFileNameMax)
        return fmt::format("the external data file name at offset {} is {} bytes long, more than {}", data, len,
                           kQcow2DataFileNameMax);
      data_file.resize(len);
      if (auto why = read_exact(read, data, data_file.data(), len, "the external data file name"); !why.empty())
        return why;
      // qemu would stop at a NUL: the name checked must be the whole name.
      if (data_file.find('\0') != std::string::npos)
        return fmt::format("the external data file name at offset {} contains a NUL byte", data);
    }
    at = data + ((uint64_t{len} + 7) & ~uint64_t{7});
  }
  if (h.incompatible & kQcow2ExternalDataFile) {
    if (!has_data_file)
      return "the external data file bit is set but no header extension names the data file (qemu would need it "
             "named on its command line)";
    if (data_file.empty()) return fmt::format("the external data file name at offset {} is empty", data_file_at + 8);
    h.data_file = std::move(data_file);
  }

  if (backing_offset != 0 && backing_size != 0) {
    const uint64_t max = std::min<uint64_t>(kQcow2BackingNameMax, cluster_size - backing_offset);
    if (backing_size > max)
      return fmt::format("the backing file name at offset {} is {} bytes long, more than the {} allowed there",
                         backing_offset, backing_size, max);
    h.backing_file.resize(backing_size);
    if (auto why = read_exact(read, backing_offset, h.backing_file.data(), backing_size, "the backing file name");
        !why.empty())
      return why;
    if (h.backing_file.find('\0') != std::string::npos)
      return fmt::format("the backing file name at offset {} contains a NUL byte", backing_offset);
  }
  *out = std::move(h);
  return "";
}

std::string parse_qcow2(std::string_view file, Qcow2Header* out) {
  return parse_qcow2(
      [file](uint64_t offset, void* buf, size_t len) -> ssize_t {
        if (offset >= file.size()) return 0;
        const size_t n = std::min<uint64_t>(len, file.size() - offset);
        memcpy(buf, file.data() + offset, n);
        return static_cast<ssize_t>(n);
      },
      out);
}

}  // namespace repvisor::sys
