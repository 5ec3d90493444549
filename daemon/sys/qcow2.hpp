// What a qcow2 image's header makes qemu open besides the image: its backing file and its
// external data file, both by the names stored in the header; and whether the image uses an
// incompatible feature this reader does not know, when it cannot tell what qemu would do. Pure:
// the header is read through a callback, so the fuzzer and the unit tests give it bytes. The
// header comes from a user's file: every offset and length in it is checked before it is used.
#pragma once
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace repvisor::sys {

inline constexpr std::string_view kQcow2Magic{"QFI\xfb", 4};

// Incompatible feature bits (version 3 header, bytes 72-79). A reader must refuse an image that
// sets one it does not know.
inline constexpr uint64_t kQcow2Dirty = uint64_t{1} << 0;
inline constexpr uint64_t kQcow2Corrupt = uint64_t{1} << 1;
inline constexpr uint64_t kQcow2ExternalDataFile = uint64_t{1} << 2;
inline constexpr uint64_t kQcow2CompressionType = uint64_t{1} << 3;
inline constexpr uint64_t kQcow2ExtendedL2 = uint64_t{1} << 4;
inline constexpr uint64_t kQcow2KnownIncompatible =
    kQcow2Dirty | kQcow2Corrupt | kQcow2ExternalDataFile | kQcow2CompressionType | kQcow2ExtendedL2;

// The longest names accepted: the spec's limit for a backing file (less where the first cluster
// ends sooner), and PATH_MAX less its NUL for a data file (no longer path can be opened).
inline constexpr size_t kQcow2BackingNameMax = 1023;
inline constexpr size_t kQcow2DataFileNameMax = 4095;

struct Qcow2Header {
  uint32_t version = 0;       // 2 or 3
  uint32_t cluster_bits = 0;  // 9 to 21: the cluster sizes qemu opens
  uint64_t incompatible = 0;  // only known bits; 0 for version 2
  std::string backing_file;   // as stored; "" when there is none
  // As stored; "" unless kQcow2ExternalDataFile is set (without it qemu ignores the name).
  std::string data_file;
};

// Reads up to `len` bytes at `offset` into `buf`: the count read (fewer only at the end of the
// file), or -errno.
using Qcow2ReadAt = std::function<ssize_t(uint64_t offset, void* buf, size_t len)>;

// "" with `out` filled, or what is wrong with the header: a sentence naming the field, offset or
// feature (not the file: the caller names it). `out` is changed only on success.
std::string parse_qcow2(const Qcow2ReadAt& read, Qcow2Header* out);
// The same over a file's bytes (its beginning suffices: the header, its extensions and the
// backing file name all lie in the first cluster).
std::string parse_qcow2(std::string_view file, Qcow2Header* out);

}  // namespace repvisor::sys
