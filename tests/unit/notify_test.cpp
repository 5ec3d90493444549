#include <gtest/gtest.h>

#include "core/nbdcopy_progress.hpp"
#include "core/notify.hpp"

using namespace repvisor::core;

TEST(Notify, ParsesKnownFieldsAndIgnoresOthers) {
  NotifyMessage m;
  std::string err;
  ASSERT_TRUE(parse_notify("READY=1\nSTATUS=copying disk0\nPHASE=copy\nPROGRESS=42.5\nMAINPID=7\n", &m, &err)) << err;
  EXPECT_TRUE(m.ready);
  EXPECT_EQ(m.status, "copying disk0");
  EXPECT_EQ(m.phase, "copy");
  EXPECT_EQ(m.progress, 42.5);
  EXPECT_FALSE(m.stopping);
  ASSERT_TRUE(parse_notify("STOPPING=1\nBARRIER=1", &m, &err));
  EXPECT_TRUE(m.stopping);
  EXPECT_TRUE(m.barrier);
  EXPECT_FALSE(m.status);
}

TEST(Notify, RejectsMalformedMessagesWhole) {
  NotifyMessage m;
  std::string err;
  EXPECT_FALSE(parse_notify("PROGRESS=101", &m, &err));
  EXPECT_NE(err.find("PROGRESS"), std::string::npos);
  EXPECT_FALSE(parse_notify("PROGRESS=-1", &m, &err));
  EXPECT_FALSE(parse_notify("PROGRESS=nan", &m, &err));
  EXPECT_FALSE(parse_notify("PROGRESS=5x", &m, &err));
  EXPECT_FALSE(parse_notify("STATUS=ok\njunk", &m, &err));
  EXPECT_NE(err.find("line 2"), std::string::npos);
  EXPECT_FALSE(parse_notify("=x", &m, &err));
  EXPECT_FALSE(parse_notify("lower=x", &m, &err));
  EXPECT_FALSE(parse_notify("STATUS=\xff\xfe", &m, &err));
  EXPECT_FALSE(parse_notify("PHASE=" + std::string(65, 'p'), &m, &err));
  EXPECT_FALSE(parse_notify("STATUS=" + std::string(1025, 's'), &m, &err));
}

TEST(Utf8, Validation) {
  EXPECT_TRUE(is_valid_utf8("plain"));
  EXPECT_TRUE(
      is_valid_utf8("Gr\xc3\xbc\xc3\x9f"
                    "e \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xe2\x82"));          // truncated
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
}

TEST(Notify, ExitStatusIsANumberFrom0To255) {
  NotifyMessage m;
  std::string err;
  ASSERT_TRUE(parse_notify("EXIT_STATUS=0", &m, &err)) << err;
  EXPECT_EQ(m.exit_status, 0);
  ASSERT_TRUE(parse_notify("EXIT_STATUS=255\nSTATUS=done", &m, &err)) << err;
  EXPECT_EQ(m.exit_status, 255);
  EXPECT_FALSE(parse_notify("EXIT_STATUS=256", &m, &err));
  EXPECT_NE(err.find("EXIT_STATUS '256' is not a number from 0 to 255"), std::string::npos) << err;
  EXPECT_FALSE(parse_notify("EXIT_STATUS=-1", &m, &err));
  EXPECT_FALSE(parse_notify("EXIT_STATUS=", &m, &err));
}

// nbdcopy --progress=FD: "N/D" lines in pieces of any size; the last whole line counts.
TEST(NbdcopyProgress, WholeLinesInAnyPiecesAndTheLastCounts) {
  NbdcopyProgress p;
  EXPECT_EQ(p.feed("1/4"), std::nullopt) << "not a whole line yet";
  EXPECT_EQ(p.feed("\n"), 25.0);
  EXPECT_EQ(p.feed("2/4\n3/4\n"), 75.0);
  EXPECT_EQ(p.feed("4/"), std::nullopt);
  EXPECT_EQ(p.feed("4\n"), 100.0);
}

TEST(NbdcopyProgress, MalformedLinesAreIgnoredAndNoStreamGrowsItWithoutBound) {
  NbdcopyProgress p;
  EXPECT_EQ(p.feed("5/4\n"), std::nullopt) << "more than the whole";
  EXPECT_EQ(p.feed("1/0\n"), std::nullopt);
  EXPECT_EQ(p.feed("x/4\n"), std::nullopt);
  EXPECT_EQ(p.feed("1/4 \n"), std::nullopt);
  EXPECT_EQ(p.feed("\n"), std::nullopt);
  EXPECT_EQ(p.feed(std::string(1 << 20, '7')), std::nullopt);
  // What is kept of a line with no end is bounded; the next whole line still counts.
  EXPECT_EQ(p.feed("\n1/2\n"), 50.0);
}
