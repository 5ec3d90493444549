#include <gtest/gtest.h>

#include "util/time.hpp"

using namespace repvisor;

TEST(Timespan, ParsesSystemdSyntax) {
  EXPECT_EQ(parse_timespan("30"), 30 * USEC_PER_SEC);
  EXPECT_EQ(parse_timespan("30s"), 30 * USEC_PER_SEC);
  EXPECT_EQ(parse_timespan("500ms"), 500 * USEC_PER_MSEC);
  EXPECT_EQ(parse_timespan("1min 30s"), 90 * USEC_PER_SEC);
  EXPECT_EQ(parse_timespan("1min30s"), 90 * USEC_PER_SEC);
  EXPECT_EQ(parse_timespan("2h"), 7200 * USEC_PER_SEC);
  EXPECT_EQ(parse_timespan("1.5s"), 1500 * USEC_PER_MSEC);
  EXPECT_EQ(parse_timespan(" 10us "), 10u);
  EXPECT_EQ(parse_timespan("1d"), 86400 * USEC_PER_SEC);
  EXPECT_EQ(parse_timespan("infinity"), USEC_INFINITY);
  EXPECT_EQ(parse_timespan("0"), 0u);
}

TEST(Timespan, RejectsGarbageWithAReason) {
  std::string err;
  EXPECT_FALSE(parse_timespan("", &err));
  EXPECT_NE(err.find("empty"), std::string::npos);
  EXPECT_FALSE(parse_timespan("5 parsecs", &err));
  EXPECT_NE(err.find("parsecs"), std::string::npos);
  EXPECT_FALSE(parse_timespan("s", &err));
  EXPECT_FALSE(parse_timespan("-5s", &err));
  EXPECT_FALSE(parse_timespan("99999999999999999999w", &err));
}

TEST(Timespan, FormatsRoundTrip) {
  EXPECT_EQ(format_timespan(90 * USEC_PER_SEC), "1min 30s");
  EXPECT_EQ(format_timespan(500 * USEC_PER_MSEC), "500ms");
  EXPECT_EQ(format_timespan(0), "0");
  EXPECT_EQ(format_timespan(USEC_INFINITY), "infinity");
  for (usec_t v : {1ull, 999ull, 1000ull, 61'000'001ull, 3'600'000'000ull, 90'061'000'000ull})
    EXPECT_EQ(parse_timespan(format_timespan(v)), v) << v;
}
