#include <gtest/gtest.h>

#include "checkpoint.hpp"

using namespace repvisor::worker;

TEST(Checkpoint, RoundTrips) {
  const Checkpoint c{.done = 1048576, .size = 4294967296};
  const std::string text = format_checkpoint(c);
  EXPECT_EQ(text, "repvisor-copy/1 done=1048576 size=4294967296");
  std::string err;
  auto back = parse_checkpoint(text, &err);
  ASSERT_TRUE(back) << err;
  EXPECT_EQ(back->done, c.done);
  EXPECT_EQ(back->size, c.size);
}

TEST(Checkpoint, RefusesWhatIsNotOurs) {
  std::string err;
  EXPECT_FALSE(parse_checkpoint("", &err));
  EXPECT_FALSE(parse_checkpoint("nbdcopy done=1 size=2", &err));
  EXPECT_NE(err.find("not a repvisor-copy checkpoint"), std::string::npos);
  EXPECT_FALSE(parse_checkpoint("repvisor-copy/1 done=5 size=4", &err));
  EXPECT_NE(err.find("past size"), std::string::npos);
  EXPECT_FALSE(parse_checkpoint("repvisor-copy/1 done=x size=4", &err));
  EXPECT_FALSE(parse_checkpoint("repvisor-copy/1 done=1 size=4 extra", &err));
  EXPECT_FALSE(parse_checkpoint("repvisor-copy/1 done=1", &err));
  EXPECT_FALSE(parse_checkpoint("repvisor-copy/1 done=99999999999999999999999 size=4", &err));
}
