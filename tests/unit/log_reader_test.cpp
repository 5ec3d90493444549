// Job.ReadLog's reader on files shaped by hand: every layout a cut leaves, including a head log
// that grew again after its last cut while the job runs (the integration tests see the layouts
// only once the job has ended), and what whole_lines does at each edge.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "supervisor/log_reader.hpp"
#include "sys/log_cut.hpp"
#include "temp_dir.hpp"
#include "util/fd.hpp"

namespace repvisor {
namespace {

using config::LogKeep;

struct File {
  test::TempDir dir{"log-reader"};
  Fd fd;
  explicit File(const std::string& content) {
    const std::string path = dir.path() + "/x.log";
    std::ofstream(path, std::ios::binary) << content;
    fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  }
};

LogRead read(const File& f, const LogShape& shape, uint64_t offset, uint64_t max, bool whole = false,
             bool growing = false, const std::vector<core::LogStamp>& stamps = {}) {
  return read_log(f.fd.get(), shape, stamps,
                  LogReadRequest{.offset = offset, .max_bytes = max, .whole_lines = whole, .growing = growing});
}

TEST(LogReader, AHeadLogThatGrewAfterItsCutReadsAsTwoRanges) {
  // Cut to 8 bytes ("aaa\nbbb\n") after 100 bytes were cut, then the job wrote "ccc\n" again.
  File f("aaa\nbbb\nccc\n");
  const LogShape shape{.cut = 100, .keep = LogKeep::Head, .head_end = 8};
  const auto pieces = log_pieces(shape, 12);
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[1].position, 108u);
  LogRead r = read(f, shape, 0, 100);
  EXPECT_EQ(r.data, "aaa\nbbb\n") << "a read stops where bytes were cut";
  EXPECT_EQ(r.end, 112u);
  r = read(f, shape, 8, 100);
  EXPECT_EQ(r.start, 108u) << "a cut position reads on from the first byte kept after it";
  EXPECT_EQ(r.data, "ccc\n");
  r = read(f, shape, 110, 100, true);
  EXPECT_EQ(r.data, "") << "within a line after a cut: on to the next line's start, none yet";
}

TEST(LogReader, BothSkipsTheMarkerAndASealedHeadEndsBeforeIt) {
  const uint64_t marker_end = 200;
  std::string head(marker_end - sys::kLogMarkerSize, 'h');
  head.back() = '\n';
  File f(head + sys::log_marker(1000) + "tail1\ntail2\n");
  const LogShape both{.cut = 1000, .keep = LogKeep::Both, .marker_end = marker_end};
  LogRead r = read(f, both, 0, 100000);
  EXPECT_EQ(r.data, head);
  EXPECT_EQ(r.kept.size(), 2u);
  r = read(f, both, r.start + r.data.size(), 100000);
  EXPECT_EQ(r.start, marker_end + 1000 - sys::kLogMarkerSize);
  EXPECT_EQ(r.data, "tail1\ntail2\n");
  EXPECT_EQ(r.end, r.start + 12);

  File sealed("one\ntwo\n" + sys::log_marker(50));
  const LogShape head_shape{.cut = 50, .keep = LogKeep::Head, .sealed = true};
  r = read(sealed, head_shape, 0, 1000);
  EXPECT_EQ(r.data, "one\ntwo\n");
  EXPECT_EQ(r.end, 58u);
  r = read(sealed, head_shape, 8, 1000);
  EXPECT_EQ(r.data, "");
  EXPECT_EQ(r.start, 58u) << "the rest was cut: nothing more, at the end";
}

TEST(LogReader, WholeLinesAndTheStampsThatDateThem) {
  File f("one\ntwo\nthr");
  const LogShape never_cut{};
  const std::vector<core::LogStamp> stamps = {{100, 4}, {200, 8}, {300, 11}};
  LogRead r = read(f, never_cut, 2, 100, true, true, stamps);
  EXPECT_EQ(r.start, 4u) << "started within 'one': on from 'two'";
  EXPECT_EQ(r.data, "two\n") << "'thr' waits for its newline while the job may write it";
  ASSERT_EQ(r.stamps.size(), 1u);
  EXPECT_EQ(r.stamps[0].usec, 200u);
  r = read(f, never_cut, 8, 100, true, false, stamps);
  EXPECT_EQ(r.data, "thr") << "the job ended: its last line as it is";
  r = read(f, never_cut, 0, 2, true, true, stamps);
  EXPECT_EQ(r.data, "on") << "a line longer than max_bytes comes in parts";
  r = read(f, never_cut, 0, 100, false, false, stamps);
  EXPECT_EQ(r.stamps.size(), 3u);
}

}  // namespace
}  // namespace repvisor
