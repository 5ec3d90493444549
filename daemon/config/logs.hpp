// [logs]: how large a job's log may grow, what of it is kept, and how much all logs may take.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace repvisor::config {

inline constexpr uint64_t KiB = 1024, MiB = KiB * 1024, GiB = MiB * 1024, TiB = GiB * 1024;

enum class LogKeep { Head, Tail, Both };

const char* to_string(LogKeep k);
bool log_keep_from_string(std::string_view s, LogKeep* out);

struct LogLimits {
  // One job's log. Its first and last part by default: a replication job's start says what it
  // was asked and its end why it stopped; the middle is mostly repeated progress.
  uint64_t max_size = 64 * MiB;
  LogKeep keep = LogKeep::Both;
  // Every log together. A fixed size rather than a share of the file system: the state
  // directory also holds the job database, which must never be starved, and a share of a large
  // shared /var would still let logs take gigabytes from it.
  uint64_t max_total = 1 * GiB;
};

inline constexpr uint64_t kMinLogSize = 64 * KiB;  // room for a head, a marker and a tail

// "64MiB", "1G", "4096": bytes, or a number with K, M, G or T (powers of 1024, optionally
// followed by "iB"). False, with why, for anything else.
bool parse_size(const std::string& text, uint64_t* out, std::string* why);
// 2.4 GiB, 64 MiB, 512 B: for messages.
std::string format_size(uint64_t bytes);

}  // namespace repvisor::config
