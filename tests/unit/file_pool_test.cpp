// The log-file pool on a real directory: files are reused (same inode, emptied), an existing
// file is never replaced, the pool is bounded, and a new pool takes over what an old one left.
#include "sys/file_pool.hpp"

#include "temp_dir.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

namespace fs = std::filesystem;

class FilePoolTest : public ::testing::Test {
 protected:
  std::string file(const std::string& name, const std::string& content) {
    std::string path = root_ + "/" + name;
    std::ofstream(path) << content;
    return path;
  }
  static ino_t inode(const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
  }
  static std::string read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static void write_fd(int fd, const std::string& s) { ASSERT_EQ(::write(fd, s.data(), s.size()), ssize_t(s.size())); }
  std::string pool_dir() const { return root_ + "/.pool"; }
  repvisor::test::TempDir tmp_{"pool"};
  const std::string& root_ = tmp_.path();
};

TEST_F(FilePoolTest, AReleasedFileIsEmptiedAndBecomesTheNextNewFile) {
  repvisor::sys::FilePool pool(pool_dir(), 4);
  const std::string old_log = file("a.log", "the old job's output\n");
  ASSERT_EQ(chmod(old_log.c_str(), 0666), 0);  // shared by hand once
  const ino_t ino = inode(old_log);
  ASSERT_EQ(pool.release(old_log), 0);
  EXPECT_FALSE(fs::exists(old_log));
  EXPECT_EQ(pool.size(), 1u);
  EXPECT_EQ(fs::file_size(pool_dir() + "/a.log"), 0u) << "kept with its data";

  const std::string new_log = root_ + "/b.log";
  const int fd = pool.open_append(new_log);
  ASSERT_GE(fd, 0) << strerror(-fd);
  write_fd(fd, "new\n");
  close(fd);
  EXPECT_EQ(inode(new_log), ino) << "a new inode was allocated";
  struct stat st {};
  ASSERT_EQ(stat(new_log.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(read(new_log), "new\n");
  EXPECT_EQ(pool.size(), 0u);
  EXPECT_TRUE(fs::is_empty(pool_dir()));
}

TEST_F(FilePoolTest, AFileTamperedWithInThePoolIsTakenAsANewFileWouldBe) {
  // Only what differs from a new file is changed (sys/file_pool.cpp): each part is checked here.
  repvisor::sys::FilePool pool(pool_dir(), 4);
  ASSERT_EQ(pool.release(file("a.log", "old")), 0);
  const std::string kept = pool_dir() + "/a.log";
  std::ofstream(kept) << "written into the pool by hand\n";
  ASSERT_EQ(chown(kept.c_str(), 65534, 65534), 0) << strerror(errno);
  ASSERT_EQ(chmod(kept.c_str(), 02666), 0);
  const timespec long_ago[2] = {{1, 0}, {1, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, kept.c_str(), long_ago, 0), 0);
  const time_t before = time(nullptr);

  const std::string new_log = root_ + "/b.log";
  const int fd = pool.open_append(new_log);
  ASSERT_GE(fd, 0) << strerror(-fd);
  close(fd);
  struct stat st {};
  ASSERT_EQ(stat(new_log.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(st.st_uid, geteuid());
  EXPECT_EQ(st.st_gid, getegid());
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_GE(st.st_mtime, before);
  EXPECT_GE(st.st_atime, before);
}

TEST_F(FilePoolTest, AnExistingFileIsOpenedAsItIsAndTheKeptOnesStay) {
  repvisor::sys::FilePool pool(pool_dir(), 4);
  ASSERT_EQ(pool.release(file("a.log", "x")), 0);
  const std::string resumed = file("b.log", "first run\n");
  const ino_t ino = inode(resumed);
  const int fd = pool.open_append(resumed);
  ASSERT_GE(fd, 0);
  write_fd(fd, "second run\n");
  close(fd);
  EXPECT_EQ(inode(resumed), ino);
  EXPECT_EQ(read(resumed), "first run\nsecond run\n");
  EXPECT_EQ(pool.size(), 1u);
}

TEST_F(FilePoolTest, AnEmptyPoolCreatesAndAFullOneRemoves) {
  repvisor::sys::FilePool pool(pool_dir(), 2);
  const int fd = pool.open_append(root_ + "/new.log");
  ASSERT_GE(fd, 0);
  close(fd);
  EXPECT_TRUE(fs::exists(root_ + "/new.log"));
  for (int i = 0; i < 3; ++i) ASSERT_EQ(pool.release(file(std::to_string(i) + ".log", "data")), 0);
  EXPECT_EQ(pool.size(), 2u);
  EXPECT_FALSE(fs::exists(root_ + "/2.log")) << "released beyond the capacity, yet still there";
  EXPECT_EQ(std::distance(fs::directory_iterator(pool_dir()), {}), 2);
  EXPECT_EQ(pool.release(root_ + "/never-made.log"), 0);
  EXPECT_EQ(pool.size(), 2u);
}

TEST_F(FilePoolTest, ANewPoolTakesOverWhatTheLastOneKeptUpToItsCapacity) {
  {
    repvisor::sys::FilePool pool(pool_dir(), 8);
    for (int i = 0; i < 5; ++i) ASSERT_EQ(pool.release(file(std::to_string(i) + ".log", "data")), 0);
  }
  repvisor::sys::FilePool pool(pool_dir(), 3);
  EXPECT_EQ(pool.size(), 3u);
  EXPECT_EQ(std::distance(fs::directory_iterator(pool_dir()), {}), 3);
  for (int i = 0; i < 3; ++i) {
    const int fd = pool.open_append(root_ + "/n" + std::to_string(i));
    ASSERT_GE(fd, 0);
    close(fd);
  }
  EXPECT_EQ(pool.size(), 0u);
  EXPECT_TRUE(fs::is_empty(pool_dir()));
}

TEST_F(FilePoolTest, AFileThatCannotBeOpenedGivesItsError) {
  repvisor::sys::FilePool pool(pool_dir(), 2);
  EXPECT_EQ(pool.open_append(root_ + "/no-such-dir/x.log"), -ENOENT);
  ASSERT_EQ(pool.release(file("a.log", "x")), 0);
  // The kept file cannot be renamed there either: the error, and the file stays kept.
  EXPECT_EQ(pool.open_append(root_ + "/no-such-dir/x.log"), -ENOENT);
  EXPECT_EQ(pool.size(), 1u);
  const int fd = pool.open_append(root_ + "/b.log");
  ASSERT_GE(fd, 0);
  close(fd);
  EXPECT_EQ(pool.size(), 0u);
  // One removed from the pool behind its back is skipped.
  ASSERT_EQ(pool.release(file("c.log", "x")), 0);
  ASSERT_EQ(pool.release(file("d.log", "x")), 0);
  ASSERT_EQ(unlink((pool_dir() + "/d.log").c_str()), 0);
  const ino_t kept = inode(pool_dir() + "/c.log");
  const int fd2 = pool.open_append(root_ + "/e.log");
  ASSERT_GE(fd2, 0);
  close(fd2);
  EXPECT_EQ(inode(root_ + "/e.log"), kept);
  EXPECT_EQ(pool.size(), 0u);
}

}  // namespace
