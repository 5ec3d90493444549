// The pure parts of job resources: the spec checks, the volume-root rules against a real
// directory tree (symlinks included), and the netlink messages for the kernel NBD client.
#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/resource.hpp"
#include "sys/nbd_netlink.hpp"
#include "sys/volume.hpp"
#include "temp_dir.hpp"

using namespace repvisor;
using namespace repvisor::core;
namespace fs = std::filesystem;

namespace {
ResourceSpec file(const std::string& name, const std::string& path) {
  ResourceSpec r;
  r.kind = ResourceKind::File;
  r.name = name;
  r.path = path;
  return r;
}
}  // namespace

TEST(ResourceSpecCheck, AcceptsAReasonableJob) {
  ResourceSpec server;
  server.kind = ResourceKind::NbdServer;
  server.name = "src";
  server.path = "/v/src.qcow2";
  server.format = ImageFormat::Qcow2;
  ResourceSpec loop = file("dst-disk", "/v/dst.img");
  loop.kind = ResourceKind::Loop;
  loop.size = 1 << 20;
  loop.on_stop = OnStop::Discard;
  ResourceSpec dev;
  dev.kind = ResourceKind::NbdDevice;
  dev.name = "dev";
  dev.export_of = "src";
  EXPECT_EQ(check_resources({server, loop, dev}), "");
  EXPECT_EQ(resource_env_suffix("dst-disk"), "DST_DISK");
}

TEST(ResourceSpecCheck, EachMistakeIsNamed) {
  auto f = file("a", "/v/a.img");
  EXPECT_NE(check_resources({f, file("a", "/v/b.img")}).find("resources[1].name: 'a' is used twice"),
            std::string::npos);
  EXPECT_NE(check_resources({file("a-b", "/v/1"), file("a_b", "/v/2")}).find("same environment name"),
            std::string::npos);
  EXPECT_NE(check_resources({file("", "/v/a")}).find("resources[0].name: required"), std::string::npos);
  EXPECT_NE(check_resources({file("a", "v/a")}).find("is not an absolute path"), std::string::npos);
  EXPECT_NE(check_resources({file("a", "/v/../a")}).find("'.' or '..'"), std::string::npos);
  EXPECT_NE(check_resources({file("a", "/v//a")}).find("empty component"), std::string::npos);
  EXPECT_NE(check_resources({file("a", "/v/a/")}).find("empty component"), std::string::npos);
  EXPECT_NE(check_resources({file("a", "/v/a"), file("b", "/v/a")}).find("already a volume"), std::string::npos);
  auto big = file("a", "/v/a");
  big.size = 0;
  EXPECT_NE(check_resources({big}).find("resources[0].size: 0 is out of range"), std::string::npos);
  auto srv = file("s", "/v/s");
  srv.kind = ResourceKind::NbdServer;
  srv.on_stop = OnStop::Discard;
  EXPECT_NE(check_resources({srv}).find("resources[0].on_stop: only file and loop"), std::string::npos);
  auto q = file("a", "/v/a");
  q.format = ImageFormat::Qcow2;
  EXPECT_NE(check_resources({q}).find("resources[0].format: qcow2 is read only by an nbd-server"), std::string::npos);
  ResourceSpec dev;
  dev.kind = ResourceKind::NbdDevice;
  dev.name = "d";
  EXPECT_NE(check_resources({dev}).find("resources[0].export: required"), std::string::npos);
  dev.path = "/dev/sda";
  dev.export_of = "x";
  EXPECT_NE(check_resources({dev}).find("is not an NBD device"), std::string::npos);
  std::vector<ResourceSpec> many(17, f);
  EXPECT_NE(check_resources(many).find("at most 16"), std::string::npos);
}

struct VolumeRoot : ::testing::Test {
  repvisor::test::TempDir tmp{"vol"};
  const std::string& base = tmp.path();
  std::string root = base + "/root", outside = base + "/outside";
  sys::VolumePolicy policy{{base + "/root"}, {}};
  void SetUp() override {
    fs::create_directories(root + "/sub");
    fs::create_directories(outside);
    std::ofstream(outside + "/secret.img") << "secret";
    std::ofstream(root + "/sub/in.img") << "data";
    fs::create_symlink(outside, root + "/escape");                    // a directory link that leaves
    fs::create_symlink(outside + "/secret.img", root + "/link.img");  // a file link that leaves
    fs::create_symlink("sub", root + "/inside");                      // a link that stays inside
  }
};

TEST_F(VolumeRoot, PathsResolveOnlyBeneathTheRoot) {
  EXPECT_EQ(sys::check_volume(policy, root + "/sub/in.img", false), "");
  EXPECT_EQ(sys::check_volume(policy, root + "/new.img", true), "");
  EXPECT_EQ(sys::check_volume(policy, root + "/inside/in.img", false), "") << "a link inside the root is fine";
  EXPECT_NE(sys::check_volume(policy, root + "/escape/secret.img", false).find("leads out of the volume root"),
            std::string::npos);
  EXPECT_NE(sys::check_volume(policy, root + "/link.img", false).find("is a symbolic link"), std::string::npos);
  EXPECT_NE(sys::check_volume(policy, root + "/escape/new.img", true).find("leads out"), std::string::npos);
  EXPECT_NE(sys::check_volume(policy, outside + "/secret.img", false).find("outside the volume roots"),
            std::string::npos);
  EXPECT_NE(sys::check_volume(policy, root + "rooted.img", true).find("outside"), std::string::npos)
      << "a sibling sharing the root's name as a prefix is not under it";
  EXPECT_NE(sys::check_volume(policy, root + "/missing.img", false).find("does not exist"), std::string::npos);
  EXPECT_NE(sys::check_volume(policy, "/dev/null", false).find("outside"), std::string::npos);
}

TEST_F(VolumeRoot, CreatingAndRemovingStayBeneathTheRoot) {
  sys::Opened o;
  std::string why;
  ASSERT_EQ(sys::open_volume(policy, root + "/sub/new.img", true, 1 << 20, &o, &why), 0) << why;
  EXPECT_TRUE(o.created);
  EXPECT_EQ(fs::file_size(root + "/sub/new.img"), 1u << 20);
  sys::Opened again;
  ASSERT_EQ(sys::open_volume(policy, root + "/sub/new.img", true, 1 << 20, &again, &why), 0) << why;
  EXPECT_FALSE(again.created) << "an existing file is never called created";
  EXPECT_LT(sys::open_volume(policy, root + "/escape/made.img", true, 4096, &o, &why), 0);
  EXPECT_FALSE(fs::exists(outside + "/made.img"));
  EXPECT_LT(sys::open_volume(policy, root + "/link.img", true, 0, &o, &why), 0);
  EXPECT_EQ(sys::remove_volume(root, root + "/sub/new.img"), 0);
  EXPECT_FALSE(fs::exists(root + "/sub/new.img"));
  EXPECT_LT(sys::remove_volume(root, root + "/escape/secret.img"), 0);
  EXPECT_TRUE(fs::exists(outside + "/secret.img"));
  EXPECT_LT(sys::remove_volume(root, root + "/link.img"), 0) << "a link is not a volume";
  EXPECT_TRUE(fs::exists(outside + "/secret.img"));
}

TEST(VolumeDevices, OnlyListedBlockDevices) {
  sys::VolumePolicy p{{}, {"/dev/loop*", "/dev/null"}};
  EXPECT_TRUE(sys::device_allowed(p, "/dev/loop3"));
  EXPECT_FALSE(sys::device_allowed(p, "/dev/sda"));
  EXPECT_NE(sys::check_volume(p, "/dev/null", false).find("not a block device"), std::string::npos);
}

namespace {
struct Attrs {
  std::map<uint16_t, const nlattr*> top;
};
int collect(const nlattr* a, void* data) {
  static_cast<Attrs*>(data)->top[mnl_attr_get_type(a)] = a;
  return MNL_CB_OK;
}
int collect_nested(const nlattr* a, void* data) {
  static_cast<std::vector<const nlattr*>*>(data)->push_back(a);
  return MNL_CB_OK;
}
}  // namespace

TEST(NbdNetlink, ConnectMessageCarriesSizeFlagsAndSockets) {
  char buf[4096];
  sys::NbdConnect c;
  c.index = 3;
  c.sockets = {7, 9};
  c.size_bytes = 10ull << 30;
  c.server_flags = 1 | 4;
  const size_t n = sys::nbd_build_connect(buf, sizeof buf, 0x42, 17, c);
  ASSERT_GT(n, 0u);
  auto* nlh = reinterpret_cast<nlmsghdr*>(buf);
  EXPECT_EQ(nlh->nlmsg_len, n);
  EXPECT_EQ(nlh->nlmsg_type, 0x42);
  EXPECT_EQ(nlh->nlmsg_seq, 17u);
  EXPECT_TRUE(nlh->nlmsg_flags & NLM_F_ACK);
  auto* genl = static_cast<genlmsghdr*>(mnl_nlmsg_get_payload(nlh));
  EXPECT_EQ(genl->cmd, NBD_CMD_CONNECT);
  Attrs a;
  ASSERT_GE(mnl_attr_parse(nlh, sizeof(genlmsghdr), collect, &a), 0);
  EXPECT_EQ(mnl_attr_get_u32(a.top.at(NBD_ATTR_INDEX)), 3u);
  EXPECT_EQ(mnl_attr_get_u64(a.top.at(NBD_ATTR_SIZE_BYTES)), 10ull << 30);
  EXPECT_EQ(mnl_attr_get_u64(a.top.at(NBD_ATTR_BLOCK_SIZE_BYTES)), 512u);
  EXPECT_EQ(mnl_attr_get_u64(a.top.at(NBD_ATTR_SERVER_FLAGS)), 5u);
  EXPECT_EQ(a.top.count(NBD_ATTR_TIMEOUT), 0u);
  std::vector<const nlattr*> items;
  ASSERT_GE(mnl_attr_parse_nested(a.top.at(NBD_ATTR_SOCKETS), collect_nested, &items), 0);
  ASSERT_EQ(items.size(), 2u);
  std::vector<uint32_t> fds;
  for (const auto* item : items) {
    EXPECT_EQ(mnl_attr_get_type(item), NBD_SOCK_ITEM);
    std::vector<const nlattr*> inner;
    mnl_attr_parse_nested(item, collect_nested, &inner);
    ASSERT_EQ(inner.size(), 1u);
    EXPECT_EQ(mnl_attr_get_type(inner[0]), NBD_SOCK_FD);
    fds.push_back(mnl_attr_get_u32(inner[0]));
  }
  EXPECT_EQ(fds, (std::vector<uint32_t>{7, 9}));
  // Any device: no index attribute.
  c.index = -1;
  ASSERT_GT(sys::nbd_build_connect(buf, sizeof buf, 0x42, 18, c), 0u);
  Attrs b;
  mnl_attr_parse(reinterpret_cast<nlmsghdr*>(buf), sizeof(genlmsghdr), collect, &b);
  EXPECT_EQ(b.top.count(NBD_ATTR_INDEX), 0u);
  // Too small a buffer is refused, not overrun.
  EXPECT_EQ(sys::nbd_build_connect(buf, 40, 0x42, 19, c), 0u);
}

TEST(NbdNetlink, DisconnectAndFamilyLookup) {
  char buf[256];
  const size_t n = sys::nbd_build_disconnect(buf, sizeof buf, 0x42, 5, 2);
  ASSERT_GT(n, 0u);
  auto* nlh = reinterpret_cast<nlmsghdr*>(buf);
  EXPECT_EQ(static_cast<genlmsghdr*>(mnl_nlmsg_get_payload(nlh))->cmd, NBD_CMD_DISCONNECT);
  Attrs a;
  mnl_attr_parse(nlh, sizeof(genlmsghdr), collect, &a);
  EXPECT_EQ(mnl_attr_get_u32(a.top.at(NBD_ATTR_INDEX)), 2u);
  ASSERT_GT(sys::nbd_build_get_family(buf, sizeof buf, 1), 0u);
  Attrs f;
  mnl_attr_parse(reinterpret_cast<nlmsghdr*>(buf), sizeof(genlmsghdr), collect, &f);
  EXPECT_STREQ(mnl_attr_get_str(f.top.at(CTRL_ATTR_FAMILY_NAME)), "nbd");
}

TEST(NbdNetlink, TheKernelAnswersTheFamilyLookup) {
  // A real round trip to the kernel: the family is found exactly when the module is loaded.
  uint16_t family = 0;
  std::string why;
  const int r = sys::nbd_family(&family, &why);
  if (fs::exists("/sys/module/nbd")) {
    EXPECT_EQ(r, 0) << why;
    EXPECT_NE(family, 0);
  } else {
    EXPECT_EQ(r, -ENOENT);
    EXPECT_NE(why.find("modprobe nbd"), std::string::npos) << why;
    uint32_t index = 0;
    EXPECT_EQ(sys::nbd_connect(sys::NbdConnect{}, &index, &why), -ENOENT);
  }
}
