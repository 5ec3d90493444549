// The cuts that bound a job's log, on real files in /tmp (a file system with
// FALLOC_FL_COLLAPSE_RANGE: ext4 here; the tests say so and skip where it is not).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>

#include <fmt/format.h>

#include "core/log_index.hpp"
#include "sys/log_cut.hpp"
#include "temp_dir.hpp"

using namespace repvisor;

namespace {

constexpr uint64_t KiB = 1024;

// Bytes that differ everywhere: a byte out of place shows.
std::string content(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>('a' + gen() % 26);
  return s;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void append(const std::string& path, const std::string& data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ::close(fd);
}

struct LogCut : ::testing::Test {
  test::TempDir dir{"log-cut"};
  std::string path = dir.path() + "/job.log";
  int fd = -1;
  uint64_t block = 0;

  void SetUp() override {
    append(path, "");
    fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    block = sys::log_block_size(fd);
    ASSERT_GT(block, 0u);
    // Whether this file system can collapse at all: a one-block probe on a spare file.
    const std::string probe = dir.path() + "/probe";
    append(probe, std::string(3 * block, 'x'));
    const int p = ::open(probe.c_str(), O_RDWR | O_CLOEXEC);
    const int64_t r = sys::cut_log_tail(p, block, block);
    ::close(p);
    if (r == -EOPNOTSUPP) GTEST_SKIP() << dir.path() << ": no FALLOC_FL_COLLAPSE_RANGE on this file system";
    ASSERT_EQ(r, static_cast<int64_t>(2 * block));
  }
  void TearDown() override {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

TEST_F(LogCut, TailKeepsTheLastBytesExactly) {
  const std::string orig = content(1024 * KiB + 12345, 1);
  append(path, orig);
  const uint64_t limit = 256 * KiB;
  const int64_t cut = sys::cut_log_tail(fd, limit, block);
  ASSERT_GT(cut, 0);
  EXPECT_EQ(cut % static_cast<int64_t>(block), 0);
  const std::string now = read_all(path);
  EXPECT_GE(now.size(), limit);
  EXPECT_LT(now.size(), limit + block);
  EXPECT_TRUE(now == orig.substr(static_cast<size_t>(cut))) << "not the file's last bytes";
  EXPECT_EQ(sys::cut_log_tail(fd, limit, block), 0) << "cut again with nothing over the limit";
}

TEST_F(LogCut, TheJobsAppendsLandAtTheEndAfterACut) {
  const std::string orig = content(600 * KiB, 2);
  append(path, orig);
  const int64_t cut = sys::cut_log_tail(fd, 100 * KiB, block);
  ASSERT_GT(cut, 0);
  const std::string more = content(5000, 3);
  append(path, more);  // O_APPEND, as the job's stdout
  EXPECT_TRUE(read_all(path) == orig.substr(static_cast<size_t>(cut)) + more);
}

TEST_F(LogCut, BothKeepsTheHeadAMarkerAndTheTail) {
  const std::string orig = content(1024 * KiB + 777, 4);
  append(path, orig);
  const uint64_t limit = 256 * KiB;
  const int64_t r = sys::cut_log_both(fd, limit, limit, block, 0);
  ASSERT_GT(r, 0);
  const uint64_t head = (limit / 2) / block * block;
  const uint64_t tail_start = head + block;
  const uint64_t kept_head = tail_start - sys::kLogMarkerSize;
  const uint64_t collapsed = static_cast<uint64_t>(r) - sys::kLogMarkerSize;
  std::string now = read_all(path);
  ASSERT_GT(now.size(), tail_start);
  EXPECT_TRUE(now.substr(0, kept_head) == orig.substr(0, kept_head)) << "the head changed";
  EXPECT_EQ(now.substr(kept_head, sys::kLogMarkerSize), sys::log_marker(static_cast<uint64_t>(r)));
  EXPECT_TRUE(now.substr(tail_start) == orig.substr(tail_start + collapsed)) << "not the file's last bytes";
  EXPECT_LT(now.size(), limit + block);
  // Written on: the next cut keeps the same head, counts on in the same marker.
  const std::string more = content(300 * KiB, 5);
  append(path, more);
  const int64_t r2 = sys::cut_log_both(fd, limit, limit, block, static_cast<uint64_t>(r));
  ASSERT_GT(r2, 0);
  now = read_all(path);
  const std::string all_tail = orig.substr(tail_start + collapsed) + more;
  EXPECT_TRUE(now.substr(0, kept_head) == orig.substr(0, kept_head));
  EXPECT_EQ(now.substr(kept_head, sys::kLogMarkerSize), sys::log_marker(static_cast<uint64_t>(r + r2)));
  EXPECT_TRUE(now.substr(tail_start) == all_tail.substr(static_cast<size_t>(r2)));
  EXPECT_EQ(orig.size() + more.size() - now.size(), static_cast<uint64_t>(r + r2) - sys::kLogMarkerSize)
      << "bytes cut: all but what the file holds, the marker's place counted once";
}

TEST_F(LogCut, HeadKeepsTheHeadAndIsSealedWithTheMarker) {
  const std::string orig = content(300 * KiB + 5, 6);
  append(path, orig);
  const uint64_t limit = 128 * KiB;
  const int64_t r = sys::cut_log_head(fd, limit);
  EXPECT_EQ(r, static_cast<int64_t>(orig.size() - limit));
  EXPECT_TRUE(read_all(path) == orig.substr(0, limit));
  append(path, "written after the cut");
  const int64_t sealed = sys::seal_log_head(fd, limit, static_cast<uint64_t>(r), false);
  ASSERT_GT(sealed, 0);
  const std::string now = read_all(path);
  ASSERT_EQ(now.size(), limit);
  const uint64_t total = static_cast<uint64_t>(r + sealed);
  EXPECT_EQ(total, orig.size() + 21 - (limit - sys::kLogMarkerSize));
  EXPECT_TRUE(now == orig.substr(0, limit - sys::kLogMarkerSize) + sys::log_marker(total));
  // A sealed log is left as it is.
  EXPECT_EQ(sys::seal_log_head(fd, limit, total, true), 0);
  EXPECT_EQ(read_all(path).size(), limit);
}

TEST_F(LogCut, ALogUnderItsLimitIsLeftAlone) {
  const std::string orig = content(50 * KiB, 7);
  append(path, orig);
  EXPECT_EQ(sys::cut_log_tail(fd, 64 * KiB, block), 0);
  EXPECT_EQ(sys::cut_log_both(fd, 64 * KiB, 64 * KiB, block, 0), 0);
  EXPECT_EQ(sys::cut_log_head(fd, 64 * KiB), 0);
  EXPECT_EQ(sys::seal_log_head(fd, 64 * KiB, 0, false), 0);
  EXPECT_TRUE(read_all(path) == orig);
}

TEST(LogCutMarker, IsOneLineOfFixedSizeNamingTheBytes) {
  const std::string m = sys::log_marker(2516582400);
  EXPECT_EQ(m.size(), sys::kLogMarkerSize);
  EXPECT_EQ(m.front(), '\n');
  EXPECT_EQ(m.back(), '\n');
  EXPECT_NE(m.find("2516582400 bytes"), std::string::npos);
  EXPECT_EQ(sys::log_marker(UINT64_MAX).size(), sys::kLogMarkerSize);
}

TEST(LogCutTmpfs, CollapseIsRefusedSoTheLimiterKeepsTheHead) {
  // tmpfs has no FALLOC_FL_COLLAPSE_RANGE: the limiter falls back to head on it.
  struct statfs sf {};
  if (statfs("/dev/shm", &sf) < 0 || sf.f_type != 0x01021994 /* TMPFS_MAGIC */) GTEST_SKIP() << "no tmpfs at /dev/shm";
  char tmpl[] = "/dev/shm/repvisor-log-cut-XXXXXX";
  const int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  unlink(tmpl);
  const std::string data = content(512 * KiB, 8);
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(sys::cut_log_tail(fd, 128 * KiB, 4096), -EOPNOTSUPP);
  ::close(fd);
}

// ---- the index of when the bytes were written (core/log_index.hpp) ----

TEST(LogIndex, StampsRoundTripAndATornLastOneIsLeftOut) {
  std::string data = core::encode({100, 10}) + core::encode({200, 25});
  data += core::encode({300, 40}).substr(0, 7);  // a crash in the middle of a write
  const auto stamps = core::decode_log_index(data);
  ASSERT_EQ(stamps.size(), 2u);
  EXPECT_EQ(stamps[1].usec, 200u);
  EXPECT_EQ(stamps[1].written, 25u);
  EXPECT_EQ(core::log_index_path("/s/logs/ab.log"), "/s/logs/ab.idx");
}

TEST(LogIndex, ByteTimesAndTheFirstByteSinceATime) {
  const std::vector<core::LogStamp> stamps{{100, 10}, {200, 25}, {300, 40}};
  EXPECT_EQ(core::written_by(stamps, 0), 100u);
  EXPECT_EQ(core::written_by(stamps, 9), 100u);
  EXPECT_EQ(core::written_by(stamps, 10), 200u) << "byte 10 is the 11th: after the first look";
  EXPECT_EQ(core::written_by(stamps, 39), 300u);
  EXPECT_EQ(core::written_by(stamps, 40), std::nullopt) << "not seen by a look yet";
  EXPECT_EQ(core::first_written_since(stamps, 50), 0u);
  EXPECT_EQ(core::first_written_since(stamps, 100), 0u) << "bytes seen at 100 may have been written at 100";
  EXPECT_EQ(core::first_written_since(stamps, 150), 10u);
  EXPECT_EQ(core::first_written_since(stamps, 300), 25u);
  EXPECT_EQ(core::first_written_since(stamps, 301), 40u);
}

TEST(LogIndex, ThinningHalvesAndKeepsTheLastStamp) {
  std::vector<core::LogStamp> stamps;
  for (uint64_t i = 1; i <= 2 * core::kLogStampsMax + 1; ++i) stamps.push_back({i * 10, i * 100});
  auto thinned = core::thin(stamps);
  EXPECT_LE(thinned.size(), core::kLogStampsMax + 1);
  EXPECT_EQ(thinned.back().written, stamps.back().written);
  for (size_t i = 1; i < thinned.size(); ++i) EXPECT_LT(thinned[i - 1].written, thinned[i].written);
}

// Each line of the stream names its own position in it: after a real cut, every line of the
// file read back through the layout must land where it says it was written.
std::string numbered_stream(size_t lines) {
  std::string s;
  for (size_t i = 0; i < lines; ++i) s += fmt::format("{:015}\n", s.size());
  return s;
}

void expect_layout_maps_lines(const std::string& file, const core::LogLayout& layout) {
  size_t checked = 0;
  for (size_t at = 0; at < file.size();) {
    const size_t nl = file.find('\n', at);
    if (nl == std::string::npos) break;
    const std::string line = file.substr(at, nl - at);
    const bool whole = line.size() == 15 && line.find_first_not_of("0123456789") == std::string::npos;
    const auto written = layout.written_at(at);
    if (whole && written && layout.written_at(nl)) {
      EXPECT_EQ(*written, std::stoull(line)) << "file offset " << at;
      EXPECT_EQ(layout.offset_of(*written), at);
      ++checked;
    }
    at = nl + 1;
  }
  EXPECT_GT(checked, 1000u);
}

TEST_F(LogCut, TheLayoutMapsTheFileOfATailCutToTheBytesWritten) {
  const std::string stream = numbered_stream(size_t{64} * 1024);
  append(path, stream);
  const int64_t cut = sys::cut_log_tail(fd, 256 * KiB, block);
  ASSERT_GT(cut, 0);
  expect_layout_maps_lines(read_all(path), {.keep = "tail", .cut = static_cast<uint64_t>(cut)});
}

TEST_F(LogCut, TheLayoutMapsTheFileOfABothCutToTheBytesWritten) {
  const std::string stream = numbered_stream(size_t{64} * 1024);
  append(path, stream);
  const uint64_t limit = 256 * KiB;
  const int64_t cut = sys::cut_log_both(fd, limit, limit, block, 0);
  ASSERT_GT(cut, 0);
  const uint64_t marker_end = (limit / 2) / block * block + block;
  const core::LogLayout layout{
      .keep = "both", .cut = static_cast<uint64_t>(cut), .marker_end = marker_end, .marker_size = sys::kLogMarkerSize};
  expect_layout_maps_lines(read_all(path), layout);
  EXPECT_EQ(layout.written_at(marker_end - 1), std::nullopt) << "the marker is the daemon's";
  EXPECT_EQ(layout.offset_of(marker_end - sys::kLogMarkerSize + 1), marker_end) << "a cut byte: the first kept after";
}
