// The system calls that bound one log file, on a descriptor of the daemon's own (read-write,
// not O_APPEND: the marker goes at a chosen offset). The job keeps writing through its O_APPEND
// descriptor meanwhile; nothing here reads or copies the log's bytes.
//
// Layouts, with B the file system's block size:
//  - tail: whole blocks are removed from the front (FALLOC_FL_COLLAPSE_RANGE); what is left is
//    the file's last bytes, at least `limit` of them and less than `limit` + B.
//  - both: the first H = max_size/2 bytes rounded down to a block stay; the block after them,
//    [H, H+B), is kept too but ends with the marker line; whole blocks after it are removed,
//    so that the rest is the file's last bytes, as for tail.
//  - head: the file is truncated to `limit`; once the job has ended, sealed: cut to
//    `limit` - kMarkerSize and the marker appended, so the file ends exactly at `limit`.
// The job's O_APPEND writes land at the end whatever was removed before it (the kernel takes
// the inode lock for both), so nothing the job writes after a cut is lost to it.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>

namespace repvisor::sys {

inline constexpr size_t kLogMarkerSize = 96;

// The marker line: starts a new line, names the bytes cut, is kLogMarkerSize bytes long.
std::string log_marker(uint64_t cut);

// The block size that collapses must be aligned to; 0 with errno set on failure.
uint64_t log_block_size(int fd);

// Each returns the bytes it removed (0: nothing to do) or -errno. -EOPNOTSUPP (or -EINVAL from
// a file system that cannot collapse this file) means the caller must fall back to head.
int64_t cut_log_tail(int fd, uint64_t limit, uint64_t block);
// `layout`: the limit the head and the marker's place are taken from (the log's max_size);
// `limit` may be smaller (the total cap), but never below the head, the marker's block and one
// block of tail. `cut_so_far`: bytes this log lost before; the marker is (re)written with the
// new total, and the first time also counts the head's bytes it overwrites.
int64_t cut_log_both(int fd, uint64_t layout, uint64_t limit, uint64_t block, uint64_t cut_so_far);
int64_t cut_log_head(int fd, uint64_t limit);
// Once the job has ended: the head cut exactly, with the marker. `cut_so_far` > 0 or a file over
// `limit` seals it; else nothing is done. `sealed`: the file already ends with a marker (a
// smaller limit for a finished log). Returns the bytes removed now.
int64_t seal_log_head(int fd, uint64_t limit, uint64_t cut_so_far, bool sealed);

}  // namespace repvisor::sys
