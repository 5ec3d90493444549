#include "source.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <vector>

namespace repvisor::worker {

Source::Source(const std::string& uri) : uri_(uri) {
  h_ = nbd_create();
  if (!h_) throw std::runtime_error(fmt::format("libnbd: {}", nbd_get_error()));
  // Zero and hole extents need not be read: ask the server where they are.
  if (nbd_add_meta_context(h_, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0) fail("requesting block status");
  // Read buffers are not cleared: every read checks that the server covered it whole (covered()).
  if (nbd_set_pread_initialize(h_, false) < 0) fail("setting up reads");
  if (nbd_connect_uri(h_, uri.c_str()) < 0) fail("cannot connect");
  const int64_t size = nbd_get_size(h_);
  if (size < 0) fail("cannot get the export size");
  size_ = static_cast<uint64_t>(size);
  block_status_ = nbd_can_meta_context(h_, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
}

Source::~Source() {
  if (h_) {
    nbd_shutdown(h_, 0);
    nbd_close(h_);
  }
}

void Source::fail(const std::string& what) const {
  throw std::runtime_error(fmt::format("{}: {}: {}", uri_, what, nbd_get_error()));
}

void Source::read(void* buf, size_t len, uint64_t offset) {
  PendingRead r{.buf = static_cast<char*>(buf), .offset = offset, .len = len};
  auto chunk = [](void* user, const void*, size_t count, uint64_t o, unsigned status, int*) -> int {
    if ((status == LIBNBD_READ_DATA || status == LIBNBD_READ_HOLE) && count > 0)
      static_cast<PendingRead*>(user)->filled.emplace_back(o, count);
    return 0;
  };
  if (nbd_pread_structured(h_, buf, len, offset, {.callback = chunk, .user_data = &r, .free = nullptr}, 0) < 0)
    fail(fmt::format("read of {} bytes at {}", len, offset));
  if (!covered(r))
    throw std::runtime_error(
        fmt::format("{}: read of {} bytes at {}: the server's reply left bytes out", uri_, len, offset));
}

void Source::start_read(PendingRead* r) {
  r->filled.clear();
  auto chunk = [](void* user, const void*, size_t count, uint64_t offset, unsigned status, int*) -> int {
    if ((status == LIBNBD_READ_DATA || status == LIBNBD_READ_HOLE) && count > 0)
      static_cast<PendingRead*>(user)->filled.emplace_back(offset, count);
    return 0;
  };
  auto complete = [](void* user, int* error) -> int {
    auto* r = static_cast<PendingRead*>(user);
    int e = *error;
    if (e == 0 && !covered(*r)) e = EPROTO;
    (*r->done)(e);
    return 1;  // retire the command
  };
  if (nbd_aio_pread_structured(h_, r->buf, r->len, r->offset, {.callback = chunk, .user_data = r, .free = nullptr},
                               {.callback = complete, .user_data = r, .free = nullptr}, 0) < 0)
    fail(fmt::format("read of {} bytes at {}", r->len, r->offset));
}

bool Source::covered(PendingRead& r) {
  // The protocol forbids overlapping chunks and a success that leaves bytes out; libnbd checks
  // neither, and an uncleared buffer would then hold a previous chunk's bytes.
  std::sort(r.filled.begin(), r.filled.end());
  uint64_t at = r.offset;
  for (const auto& [o, l] : r.filled) {
    if (o != at) return false;
    at += l;
  }
  return at == r.offset + r.len;
}

void Source::poll() {
  if (nbd_poll(h_, -1) < 0) fail("waiting for replies");
}

void Source::extents(uint64_t offset, uint64_t len, const std::function<void(uint64_t, uint64_t, bool)>& fn) {
  if (!block_status_) {
    fn(offset, len, false);
    return;
  }
  uint64_t pos = offset;
  const uint64_t end = offset + len;
  while (pos < end) {
    struct Ctx {
      std::vector<std::pair<uint64_t, bool>> entries;
    } ctx;
    auto cb = [](void* user, const char* metacontext, uint64_t, uint32_t* entries, size_t n, int*) -> int {
      auto* c = static_cast<Ctx*>(user);
      if (std::string_view(metacontext) != LIBNBD_CONTEXT_BASE_ALLOCATION) return 0;
      for (size_t i = 0; i + 1 < n; i += 2)
        c->entries.emplace_back(entries[i], (entries[i + 1] & LIBNBD_STATE_ZERO) != 0);
      return 0;
    };
    nbd_extent_callback callback{.callback = cb, .user_data = &ctx, .free = nullptr};
    if (nbd_block_status(h_, end - pos, pos, callback, 0) < 0) fail(fmt::format("block status at {}", pos));
    if (ctx.entries.empty()) fail(fmt::format("block status at {} returned nothing", pos));
    for (const auto& [length, zero] : ctx.entries) {
      if (pos >= end || length == 0) break;
      const uint64_t n = std::min(length, end - pos);
      fn(pos, n, zero);
      pos += n;
    }
  }
}

}  // namespace repvisor::worker
