#include <gtest/gtest.h>

#include <set>

#include "config/logs.hpp"
#include "core/job.hpp"
#include "core/resource.hpp"
#include "util/id.hpp"
#include "util/string_table.hpp"
#include "util/text.hpp"

using namespace repvisor;

TEST(Text, EscapeKeepsPrintableUtf8AndEscapesControls) {
  EXPECT_EQ(escape("plain text, héllo, 日本"), "plain text, héllo, 日本");
  EXPECT_EQ(escape("a\nb\tc\\d"), "a\\nb\\tc\\\\d");
  EXPECT_EQ(escape("\x1b[2J\x07"), "\\x1b[2J\\x07");
  EXPECT_EQ(escape("del\x7f"), "del\\x7f");
  // C1 controls: U+009B is CSI to some terminals.
  EXPECT_EQ(escape("\xc2\x9b"
                   "31m"),
            "\\u009b31m");
  EXPECT_EQ(escape("\xc2\xa0"), "\xc2\xa0");  // U+00A0 is printable
}

TEST(Text, InvalidUtf8BecomesHexEscapes) {
  EXPECT_EQ(escape("\xff"), "\\xff");
  EXPECT_EQ(escape("h\xc3"), "h\\xc3");                           // a sequence cut short
  EXPECT_EQ(escape("\xc0\xaf"), "\\xc0\\xaf");                    // overlong '/'
  EXPECT_EQ(escape("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // a UTF-16 surrogate
  EXPECT_EQ(escape("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // past U+10FFFF
  EXPECT_EQ(valid_utf8("ok é \xff!"), "ok é \\xff!");
  EXPECT_EQ(valid_utf8("line\nnext"), "line\nnext");  // valid_utf8 leaves controls alone
}

TEST(Text, QuoteCutsLongInputAtACharacterAndSaysItsSize) {
  EXPECT_EQ(quote("x"), "'x'");
  EXPECT_EQ(quote(std::string(100000, 'n'), 4), "'nnnn…' (100000 bytes)");
  // Never half a character: the cut falls between whole UTF-8 sequences.
  EXPECT_EQ(quote("ééé", 2), "'éé…' (6 bytes)");
  EXPECT_EQ(quote("a\nb"), "'a\\nb'");
}

TEST(Text, AJobNameWithANonAsciiCharacterIsRefusedWithTheWholeCharacter) {
  const std::string why = check_job_name("héllo");
  EXPECT_NE(why.find("'é'"), std::string::npos) << why;
  EXPECT_EQ(valid_utf8(why), why);
}

// Every enum spelled on the bus, in the store or in the config reads back as itself.
template <class E, class Name, class Value>
void expect_round_trip(size_t n, Name name, Value value) {
  std::set<std::string> seen;
  for (size_t i = 0; i < n; ++i) {
    const auto e = static_cast<E>(i);
    const std::string s = name(e);
    EXPECT_TRUE(seen.insert(s).second) << "two values spelled '" << s << "'";
    if (s.empty()) continue;  // a "none" value is never read back
    E back{};
    ASSERT_TRUE(value(s, &back)) << s;
    EXPECT_EQ(back, e) << s;
  }
}

TEST(StringTable, EveryEnumRoundTrips) {
  expect_round_trip<core::JobState>(
      8, [](auto e) { return core::to_string(e); }, core::job_state_from_string);
  expect_round_trip<core::SubState>(
      9, [](auto e) { return core::to_string(e); }, core::sub_state_from_string);
  expect_round_trip<core::KillMode>(
      2, [](auto e) { return core::to_string(e); }, core::kill_mode_from_string);
  expect_round_trip<core::ProgressSource>(
      2, [](auto e) { return core::to_string(e); }, core::progress_source_from_string);
  expect_round_trip<core::ResourceKind>(
      4, [](auto e) { return core::to_string(e); }, core::resource_kind_from_string);
  expect_round_trip<core::NbdServerKind>(
      2, [](auto e) { return core::to_string(e); }, core::nbd_server_kind_from_string);
  expect_round_trip<core::ImageFormat>(
      2, [](auto e) { return core::to_string(e); }, core::image_format_from_string);
  expect_round_trip<core::OnStop>(
      2, [](auto e) { return core::to_string(e); }, core::on_stop_from_string);
  expect_round_trip<core::ResourceState>(
      7, [](auto e) { return core::to_string(e); }, core::resource_state_from_string);
  expect_round_trip<config::LogKeep>(
      3, [](auto e) { return config::to_string(e); }, config::log_keep_from_string);
}

TEST(StringTable, NamesValuesAndChoices) {
  enum class Colour { None, Red, Green };
  constexpr repvisor::StringTable<Colour, 3> table({"", "red", "green"});
  static_assert(std::string_view(table.name(Colour::Green)) == "green");
  EXPECT_STREQ(table.name(static_cast<Colour>(7)), "");
  EXPECT_EQ(table.value("red"), Colour::Red);
  EXPECT_EQ(table.value("blue"), std::nullopt);
  EXPECT_EQ(table.value("Red"), std::nullopt);  // names are exact
  EXPECT_EQ(table.choices(), "red, green");
}
