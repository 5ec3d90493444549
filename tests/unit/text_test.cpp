#include <gtest/gtest.h>

#include "util/id.hpp"
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
