#include <gtest/gtest.h>

#include <set>

#include "util/id.hpp"

using namespace repvisor;

TEST(JobId, NewIdsAre32LowercaseHexAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto id = new_job_id();
    EXPECT_TRUE(is_job_id(id)) << id;
    EXPECT_TRUE(seen.insert(id).second);
  }
}

TEST(JobId, Prefixes) {
  EXPECT_TRUE(is_job_id_prefix("abcd"));
  EXPECT_FALSE(is_job_id_prefix("abc"));
  EXPECT_FALSE(is_job_id_prefix("ABCD"));
  EXPECT_FALSE(is_job_id_prefix("abcg"));
  EXPECT_FALSE(is_job_id_prefix(std::string(33, 'a')));
}

TEST(JobName, RulesAndReasons) {
  EXPECT_EQ(check_job_name("vm1-disk0"), "");
  EXPECT_EQ(check_job_name("backup@host.example"), "");
  EXPECT_NE(check_job_name(""), "");
  EXPECT_NE(check_job_name("-x"), "");
  EXPECT_NE(check_job_name("a b"), "");
  EXPECT_NE(check_job_name("a/b"), "");
  EXPECT_NE(check_job_name(std::string(65, 'x')), "");
  // Would be ambiguous with an id prefix.
  EXPECT_NE(check_job_name("beef"), "");
  EXPECT_EQ(check_job_name("bee"), "");
}
