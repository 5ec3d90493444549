#include "sys/nbd_netlink.hpp"

#include <fmt/format.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/nbd-netlink.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace repvisor::sys {

namespace {
constexpr size_t kBuf = 8192;

nlmsghdr* put_header(void* buf, size_t len, uint16_t type, uint16_t flags, uint32_t seq, uint8_t cmd, uint8_t version) {
  if (len < MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(genlmsghdr))) return nullptr;
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = flags;
  nlh->nlmsg_seq = seq;
  auto* genl = static_cast<genlmsghdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(genlmsghdr)));
  genl->cmd = cmd;
  genl->version = version;
  return nlh;
}

struct SocketCloser {
  void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};
using Socket = std::unique_ptr<mnl_socket, SocketCloser>;

Socket open_socket(std::string* why) {
  Socket nl(mnl_socket_open2(NETLINK_GENERIC, SOCK_CLOEXEC));
  if (!nl || mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    *why = fmt::format("generic netlink socket: {}", strerror(errno));
    return nullptr;
  }
  return nl;
}

// Sends one request and runs `cb` over the answer until the kernel's ACK. 0 or -errno.
int transact(mnl_socket* nl, nlmsghdr* req, mnl_cb_t cb, void* data) {
  if (mnl_socket_sendto(nl, req, req->nlmsg_len) < 0) return -errno;
  char buf[kBuf];
  const unsigned portid = mnl_socket_get_portid(nl);
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof buf);
    if (n < 0) return -errno;
    const int r = mnl_cb_run(buf, static_cast<size_t>(n), req->nlmsg_seq, portid, cb, data);
    if (r < 0) return -errno;
    if (r == MNL_CB_STOP) return 0;
  }
}

int family_attr(const nlattr* a, void* data) {
  if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID && mnl_attr_validate(a, MNL_TYPE_U16) >= 0)
    *static_cast<uint16_t*>(data) = mnl_attr_get_u16(a);
  return MNL_CB_OK;
}
int family_cb(const nlmsghdr* nlh, void* data) {
  mnl_attr_parse(nlh, sizeof(genlmsghdr), family_attr, data);
  return MNL_CB_OK;
}

int index_attr(const nlattr* a, void* data) {
  if (mnl_attr_get_type(a) == NBD_ATTR_INDEX && mnl_attr_validate(a, MNL_TYPE_U32) >= 0)
    *static_cast<uint32_t*>(data) = mnl_attr_get_u32(a);
  return MNL_CB_OK;
}
int index_cb(const nlmsghdr* nlh, void* data) {
  mnl_attr_parse(nlh, sizeof(genlmsghdr), index_attr, data);
  return MNL_CB_OK;
}
}  // namespace

size_t nbd_build_get_family(void* buf, size_t len, uint32_t seq) {
  nlmsghdr* nlh = put_header(buf, len, GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK, seq, CTRL_CMD_GETFAMILY, 1);
  if (!nlh || !mnl_attr_put_strz_check(nlh, len, CTRL_ATTR_FAMILY_NAME, NBD_GENL_FAMILY_NAME)) return 0;
  return nlh->nlmsg_len;
}

size_t nbd_build_connect(void* buf, size_t len, uint16_t family, uint32_t seq, const NbdConnect& c) {
  nlmsghdr* nlh = put_header(buf, len, family, NLM_F_REQUEST | NLM_F_ACK, seq, NBD_CMD_CONNECT, NBD_GENL_VERSION);
  if (!nlh) return 0;
  bool ok = true;
  if (c.index >= 0) ok &= mnl_attr_put_u32_check(nlh, len, NBD_ATTR_INDEX, static_cast<uint32_t>(c.index));
  ok &= mnl_attr_put_u64_check(nlh, len, NBD_ATTR_SIZE_BYTES, c.size_bytes);
  ok &= mnl_attr_put_u64_check(nlh, len, NBD_ATTR_BLOCK_SIZE_BYTES, c.block_size);
  ok &= mnl_attr_put_u64_check(nlh, len, NBD_ATTR_SERVER_FLAGS, c.server_flags);
  if (c.timeout_sec) ok &= mnl_attr_put_u64_check(nlh, len, NBD_ATTR_TIMEOUT, c.timeout_sec);
  if (!ok) return 0;
  nlattr* socks = mnl_attr_nest_start_check(nlh, len, NBD_ATTR_SOCKETS);
  if (!socks) return 0;
  for (int fd : c.sockets) {
    nlattr* item = mnl_attr_nest_start_check(nlh, len, NBD_SOCK_ITEM);
    if (!item || !mnl_attr_put_u32_check(nlh, len, NBD_SOCK_FD, static_cast<uint32_t>(fd))) return 0;
    mnl_attr_nest_end(nlh, item);
  }
  mnl_attr_nest_end(nlh, socks);
  return nlh->nlmsg_len;
}

size_t nbd_build_disconnect(void* buf, size_t len, uint16_t family, uint32_t seq, uint32_t index) {
  nlmsghdr* nlh = put_header(buf, len, family, NLM_F_REQUEST | NLM_F_ACK, seq, NBD_CMD_DISCONNECT, NBD_GENL_VERSION);
  if (!nlh || !mnl_attr_put_u32_check(nlh, len, NBD_ATTR_INDEX, index)) return 0;
  return nlh->nlmsg_len;
}

int nbd_family(uint16_t* family, std::string* why) {
  Socket nl = open_socket(why);
  if (!nl) return -EIO;
  char buf[kBuf];
  const size_t n = nbd_build_get_family(buf, sizeof buf, 1);
  if (n == 0) return -EMSGSIZE;
  *family = 0;
  int r = transact(nl.get(), static_cast<nlmsghdr*>(static_cast<void*>(buf)), family_cb, family);
  if (r == -ENOENT || (r == 0 && *family == 0)) {
    *why =
        "the kernel NBD client is not available: no generic netlink family \"nbd\" (is the nbd module "
        "loaded? try `modprobe nbd`)";
    return -ENOENT;
  }
  if (r < 0) *why = fmt::format("looking up the nbd netlink family: {}", strerror(-r));
  return r;
}

int nbd_connect(const NbdConnect& c, uint32_t* index, std::string* why) {
  uint16_t family = 0;
  if (int r = nbd_family(&family, why); r < 0) return r;
  Socket nl = open_socket(why);
  if (!nl) return -EIO;
  char buf[kBuf];
  if (nbd_build_connect(buf, sizeof buf, family, 2, c) == 0) return -EMSGSIZE;
  uint32_t got = UINT32_MAX;
  int r = transact(nl.get(), static_cast<nlmsghdr*>(static_cast<void*>(buf)), index_cb, &got);
  if (r < 0) {
    *why = fmt::format("NBD_CMD_CONNECT: {}", strerror(-r));
    return r;
  }
  if (got == UINT32_MAX) {
    *why = "NBD_CMD_CONNECT: the kernel did not say which device it used";
    return -EPROTO;
  }
  *index = got;
  return 0;
}

int nbd_disconnect(uint32_t index, std::string* why) {
  uint16_t family = 0;
  if (int r = nbd_family(&family, why); r < 0) return r;
  Socket nl = open_socket(why);
  if (!nl) return -EIO;
  char buf[kBuf];
  if (nbd_build_disconnect(buf, sizeof buf, family, 3, index) == 0) return -EMSGSIZE;
  int r = transact(nl.get(), static_cast<nlmsghdr*>(static_cast<void*>(buf)), nullptr, nullptr);
  if (r < 0) *why = fmt::format("NBD_CMD_DISCONNECT /dev/nbd{}: {}", index, strerror(-r));
  return r;
}

}  // namespace repvisor::sys
