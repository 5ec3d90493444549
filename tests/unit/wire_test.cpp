// The D-Bus message module shared by the daemon's clients: a{sv} written and read back the same,
// one key found without reading the rest, and the one table of error names (docs included).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "wire/errors.hpp"
#include "wire/handles.hpp"
#include "wire/values.hpp"

using namespace repvisor::wire;

namespace {

// A connection that never talks: enough to build messages on, which sd-bus refuses without one.
class Messages : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds_), 0);
    sd_bus* raw = nullptr;
    ASSERT_GE(sd_bus_new(&raw), 0);
    bus_.reset(raw);
    ASSERT_GE(sd_bus_set_fd(raw, fds_[0], fds_[0]), 0);
    ASSERT_GE(sd_bus_start(raw), 0);
  }
  void TearDown() override { close(fds_[1]); }

  Message call() {
    sd_bus_message* m = nullptr;
    EXPECT_GE(sd_bus_message_new_method_call(bus_.get(), &m, "org.repvisor1", "/org/repvisor1", "org.repvisor1.Manager",
                                             "Submit"),
              0);
    return Message(m);
  }
  // Seals `m` and goes back to its start, as a received message is read.
  static void reread(const Message& m) {
    ASSERT_GE(sd_bus_message_seal(m.get(), 1, 0), 0);
    ASSERT_GE(sd_bus_message_rewind(m.get(), true), 0);
  }

  int fds_[2] = {-1, -1};
  Bus bus_;
};

}  // namespace

TEST_F(Messages, EveryKindOfValueComesBackAsItWasWritten) {
  const Dict sent = {
      {"s", std::string("text é")},
      {"b", true},
      {"t", uint64_t{1} << 40},
      {"x", int64_t{-5}},
      {"i", int32_t{-7}},
      {"u", uint32_t{7}},
      {"d", 0.25},
      {"as", std::vector<std::string>{"a", "", "c"}},
      {"au", std::vector<uint32_t>{1, 2, 3}},
      {"a{ss}", StringMap{{"K", "V"}, {"empty", ""}}},
      {"aa{sv}", Records{{{"kind", std::string("file")}, {"size", uint64_t{4096}}, {"created", false}}, {}}},
      {"empty as", std::vector<std::string>{}},
  };
  const Message m = call();
  ASSERT_GE(append_dict(m.get(), sent), 0);
  reread(m);
  Dict got;
  ASSERT_GE(read_dict(m.get(), &got), 0);
  EXPECT_EQ(got, sent);
}

TEST_F(Messages, ValuesOfOtherTypesAreSkippedAndObjectPathsReadAsStrings) {
  const Message m = call();
  ASSERT_GE(sd_bus_message_append(m.get(), "a{sv}", 3, "pair", "(ii)", 1, 2, "path", "o", "/org/repvisor1/job/x",
                                  "after", "s", "still read"),
            0);
  reread(m);
  Dict got;
  ASSERT_GE(read_dict(m.get(), &got), 0);
  EXPECT_EQ(got, (Dict{{"path", std::string("/org/repvisor1/job/x")}, {"after", std::string("still read")}}));
}

TEST_F(Messages, ARecordKeepsStringsFlagsAndUnsignedNumbersOnly) {
  const Message m = call();
  ASSERT_GE(sd_bus_message_append(m.get(), "aa{sv}", 1, 4, "port", "u", 10809u, "name", "s", "src", "ok", "b", 1,
                                  "delta", "i", -1),
            0);
  reread(m);
  Records got;
  ASSERT_GE(read_records(m.get(), &got), 0);
  EXPECT_EQ(got, (Records{{{"port", uint64_t{10809}}, {"name", std::string("src")}, {"ok", true}}}));
}

TEST_F(Messages, SeekKeyStopsAtTheValueOfTheKeyAndSaysWhenThereIsNone) {
  const Message m = call();
  ASSERT_GE(
      sd_bus_message_append(m.get(), "a{sv}", 3, "Phase", "s", "copy", "State", "s", "running", "Progress", "d", 0.5),
      0);
  reread(m);
  ASSERT_EQ(seek_key(m.get(), "State"), 1);
  const char* state = nullptr;
  ASSERT_GE(sd_bus_message_read(m.get(), "v", "s", &state), 0);
  EXPECT_STREQ(state, "running");

  ASSERT_GE(sd_bus_message_rewind(m.get(), true), 0);
  EXPECT_EQ(seek_key(m.get(), "MainPID"), 0);
}

TEST(ErrorNames, EachKindHasOneNameAndTheNameGivesTheKindBack) {
  for (size_t i = 0; i < kErrorNames.size(); ++i) {
    const auto kind = static_cast<ErrorKind>(i);
    EXPECT_EQ(error_kind(error_name(kind)), kind) << error_name(kind);
  }
  EXPECT_EQ(error_kind("org.repvisor1.Error.NotResumable"), ErrorKind::NotResumable);
  EXPECT_EQ(error_kind("org.freedesktop.DBus.Error.NoReply"), std::nullopt);
  EXPECT_EQ(error_kind(""), std::nullopt);
}

TEST(ErrorNames, TheApiDocumentListsEveryNameInItsErrorTable) {
  std::ifstream in(std::string(SOURCE_DIR) + "/docs/dbus-api.md");
  std::stringstream doc;
  doc << in.rdbuf();
  const std::string text = doc.str();
  const size_t table = text.find("\n## Errors\n");
  ASSERT_NE(table, std::string::npos) << "docs/dbus-api.md has no Errors section";
  const std::string section = text.substr(table, text.find("\n## ", table + 1) - table);
  for (size_t i = 0; i < kErrorNames.size(); ++i) {
    const std::string name = error_name(static_cast<ErrorKind>(i));
    EXPECT_NE(section.find("| `" + name + "` |"), std::string::npos)
        << name << " is missing from the Errors table of docs/dbus-api.md";
  }
}
