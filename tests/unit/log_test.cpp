// The journal entry an audit event becomes under journald: its fields, which
// `journalctl REPVISOR_JOB_ID=...` and the system tests go by.
#include "util/log.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace {

using repvisor::log::event_fields;

bool has(const std::vector<std::string>& fields, const std::string& f) {
  return std::find(fields.begin(), fields.end(), f) != fields.end();
}

TEST(Log, AJobsEventNamesTheJobAndTheEventInFieldsOfTheirOwn) {
  const auto f = event_fields(repvisor::log::Info, "0123abcd", "nightly", "submitted", "sh submitted by uid 0");
  EXPECT_TRUE(has(f, "MESSAGE=job 0123abcd nightly: submitted: sh submitted by uid 0")) << ::testing::PrintToString(f);
  EXPECT_TRUE(has(f, "REPVISOR_JOB_ID=0123abcd"));
  EXPECT_TRUE(has(f, "REPVISOR_EVENT=submitted"));
  EXPECT_TRUE(has(f, "PRIORITY=6"));
  EXPECT_TRUE(has(f, "SYSLOG_IDENTIFIER=repvisord"));
}

TEST(Log, TheDaemonsOwnEventsHaveNoJobField) {
  const auto f = event_fields(repvisor::log::Notice, "", "", "access-denied", "uid 1000 may not stop");
  EXPECT_TRUE(has(f, "MESSAGE=access-denied: uid 1000 may not stop")) << ::testing::PrintToString(f);
  EXPECT_TRUE(has(f, "REPVISOR_EVENT=access-denied"));
  EXPECT_TRUE(has(f, "PRIORITY=5"));
  EXPECT_TRUE(
      std::none_of(f.begin(), f.end(), [](const std::string& x) { return x.rfind("REPVISOR_JOB_ID=", 0) == 0; }));
}

}  // namespace
