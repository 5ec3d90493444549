#include <gtest/gtest.h>

#include "config/config.hpp"

using namespace repvisor;
using config::ConfigError;
using config::GiB;
using config::KiB;
using config::MiB;

namespace {
std::string error_of(const std::string& text) {
  try {
    config::parse(text, "test.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(LogsConfig, Defaults) {
  const auto c = config::parse("", "x");
  EXPECT_EQ(c.logs.max_size, 64 * MiB);
  EXPECT_EQ(c.logs.keep, config::LogKeep::Both);
  EXPECT_EQ(c.logs.max_total, 1 * GiB);
}

TEST(LogsConfig, ReadsEveryKey) {
  const auto c = config::parse("[logs]\nmax_size = \"1MiB\"\nkeep = \"tail\"\nmax_total = \"3G\"\n", "x");
  EXPECT_EQ(c.logs.max_size, 1 * MiB);
  EXPECT_EQ(c.logs.keep, config::LogKeep::Tail);
  EXPECT_EQ(c.logs.max_total, 3 * GiB);
  EXPECT_EQ(config::parse("[logs]\nmax_size = 131072\nkeep = \"head\"", "x").logs.max_size, 128 * KiB);
  EXPECT_EQ(config::parse("[logs]\nmax_size = \"512 K\"", "x").logs.max_size, 512 * KiB);
}

TEST(LogsConfig, BadValuesNameTheKeyTheValueAndTheLine) {
  std::string e = error_of("[logs]\nmax_size = \"12XB\"\n");
  EXPECT_NE(e.find("test.toml:2:"), std::string::npos) << e;
  EXPECT_NE(e.find("logs.max_size"), std::string::npos) << e;
  EXPECT_NE(e.find("'12XB'"), std::string::npos) << e;

  e = error_of("[logs]\n\nkeep = \"middle\"\n");
  EXPECT_NE(e.find("test.toml:3:"), std::string::npos) << e;
  EXPECT_NE(e.find("logs.keep"), std::string::npos) << e;
  EXPECT_NE(e.find("'middle'"), std::string::npos) << e;

  e = error_of("[logs]\nmax_size = 1000\n");
  EXPECT_NE(e.find("logs.max_size"), std::string::npos) << e;
  EXPECT_NE(e.find("1000 B is out of range"), std::string::npos) << e;

  e = error_of("[logs]\nmax_total = -5\n");
  EXPECT_NE(e.find("logs.max_total"), std::string::npos) << e;
  EXPECT_NE(e.find("-5"), std::string::npos) << e;

  e = error_of("[logs]\nmax_size = \"2G\"\nmax_total = \"1G\"\n");
  EXPECT_NE(e.find("test.toml:3:"), std::string::npos) << e;
  EXPECT_NE(e.find("logs.max_total"), std::string::npos) << e;
  EXPECT_NE(e.find("1 GiB"), std::string::npos) << e;
  EXPECT_NE(e.find("2 GiB"), std::string::npos) << e;

  e = error_of("[logs]\nmax_size = \"99999999999999999999\"\n");
  EXPECT_NE(e.find("out of range"), std::string::npos) << e;

  e = error_of("[logs]\nsize = 5\n");
  EXPECT_NE(e.find("logs.size: unknown key"), std::string::npos) << e;

  e = error_of("logs = 5\n");
  EXPECT_NE(e.find("logs: expected a table [logs]"), std::string::npos) << e;
}

TEST(LogsConfig, TheEffectiveConfigurationReadsBackTheSame) {
  const auto c = config::parse("[logs]\nmax_size = \"3MiB\"\nkeep = \"head\"\nmax_total = \"10MiB\"\n", "x");
  const auto again = config::parse(config::to_toml(c), "y");
  EXPECT_EQ(again.logs.max_size, c.logs.max_size);
  EXPECT_EQ(again.logs.keep, c.logs.keep);
  EXPECT_EQ(again.logs.max_total, c.logs.max_total);
}

TEST(LogsConfig, SizesAreFormattedForPeople) {
  EXPECT_EQ(config::format_size(512), "512 B");
  EXPECT_EQ(config::format_size(64 * MiB), "64 MiB");
  EXPECT_EQ(config::format_size(2516582400), "2.3 GiB");
}
