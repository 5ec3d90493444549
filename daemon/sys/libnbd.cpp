#include "sys/libnbd.hpp"

#include <dlfcn.h>

namespace repvisor::sys {

namespace {
struct Loaded {
  LibNbd lib{};
  std::string error;  // empty: loaded
};

template <typename F>
bool resolve(void* handle, const char* name, F* fn, std::string* error) {
  *fn = reinterpret_cast<F>(dlsym(handle, name));
  if (!*fn && error->empty()) *error = std::string("libnbd.so.0 has no ") + name;
  return *fn != nullptr;
}

Loaded load() {
  Loaded l;
  // Never closed: handles made by it may live as long as the daemon.
  void* h = dlopen("libnbd.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    l.error = std::string("cannot load libnbd (package libnbd0): ") + (e ? e : "dlopen failed");
    return l;
  }
  LibNbd& n = l.lib;
  std::string& e = l.error;
  resolve(h, "nbd_create", &n.create, &e);
  resolve(h, "nbd_close", &n.close, &e);
  resolve(h, "nbd_get_error", &n.get_error, &e);
  resolve(h, "nbd_set_request_structured_replies", &n.set_request_structured_replies, &e);
  resolve(h, "nbd_connect_unix", &n.connect_unix, &e);
  resolve(h, "nbd_get_size", &n.get_size, &e);
  resolve(h, "nbd_is_read_only", &n.is_read_only, &e);
  resolve(h, "nbd_can_flush", &n.can_flush, &e);
  resolve(h, "nbd_can_fua", &n.can_fua, &e);
  resolve(h, "nbd_can_trim", &n.can_trim, &e);
  resolve(h, "nbd_can_multi_conn", &n.can_multi_conn, &e);
  resolve(h, "nbd_aio_connect_unix", &n.aio_connect_unix, &e);
  resolve(h, "nbd_aio_get_fd", &n.aio_get_fd, &e);
  resolve(h, "nbd_aio_get_direction", &n.aio_get_direction, &e);
  resolve(h, "nbd_aio_notify_read", &n.aio_notify_read, &e);
  resolve(h, "nbd_aio_notify_write", &n.aio_notify_write, &e);
  resolve(h, "nbd_aio_is_ready", &n.aio_is_ready, &e);
  resolve(h, "nbd_aio_is_dead", &n.aio_is_dead, &e);
  resolve(h, "nbd_aio_is_closed", &n.aio_is_closed, &e);
  return l;
}
}  // namespace

const LibNbd* libnbd(std::string* why) {
  static const Loaded loaded = load();  // the loop's thread only; once
  if (!loaded.error.empty()) {
    if (why) *why = loaded.error;
    return nullptr;
  }
  return &loaded.lib;
}

}  // namespace repvisor::sys
