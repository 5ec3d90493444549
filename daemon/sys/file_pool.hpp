// Emptied files kept for reuse: a new file is made by a rename, without allocating an inode.
//
// Why: ext4 without a journal does not reuse an inode freed in the last 60 s (360 s while its
// inode table block is dirty), and scans past every such inode for each new file
// (recently_deleted() in find_inode_bit). Each job has a log file in the state directory; after
// a thousand jobs were deleted, each new log cost ~1 ms of the loop's CPU and starting 1,000
// jobs took 1.2-1.4 s instead of ~0.5 (bench/README.md). A deleted job's log is emptied here
// (its data freed at once, as an unlink frees it) and renamed into the pool; a new job's log is
// renamed out of it. On other file systems a rename costs what a create and an unlink cost.
//
// Files in the pool are always empty: one is truncated before it is renamed in. One taken is
// made what a new file would be (emptied if someone wrote into it meanwhile, given a new file's
// owner, mode and times). A crash between the truncation and the rename leaves an empty file
// under its old name.
#pragma once
#include <sys/types.h>

#include <string>
#include <vector>

namespace repvisor::sys {

class FilePool {
 public:
  // `dir` (made if missing) must be on the files' file system. Takes over the files an earlier
  // pool left there, up to `capacity`; the rest are removed. Throws when `dir` cannot be made.
  FilePool(std::string dir, size_t capacity);
  FilePool(const FilePool&) = delete;
  FilePool& operator=(const FilePool&) = delete;

  // Opens `path` (O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY, mode 0640 if made): an existing
  // file as it is; a missing one from the pool when it has a file, else created. fd or -errno.
  int open_append(const std::string& path);
  // Empties `path` and keeps it, or removes it when the pool is full. 0 (also when `path` does
  // not exist) or -errno, and then `path` is left as it was. One thread for both.
  int release(const std::string& path);

  size_t size() const { return names_.size(); }

 private:
  int renew(int fd) const;  // a file taken from the pool made as a new one would be; 0 or -errno

  std::string dir_;
  size_t capacity_;
  uid_t uid_;  // a new file's owner: ours
  gid_t gid_;
  std::vector<std::string> names_;  // the files in dir_
};

}  // namespace repvisor::sys
