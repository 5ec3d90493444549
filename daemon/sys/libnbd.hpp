// libnbd, loaded when a job first needs it (an nbd-server resource's readiness probe, the size
// and flags of an NBD device). Linked, it brings GnuTLS, libxml2, ICU and p11-kit into every
// daemon from start-up, NBD or not: ~3 MiB of its memory (of ~21 MiB with 1,000 jobs). As
// systemd does for its optional libraries: dlopen() on first use, every symbol resolved then.
#pragma once
#include <libnbd.h>

#include <string>

namespace repvisor::sys {

struct LibNbd {
  decltype(&::nbd_create) create;
  decltype(&::nbd_close) close;
  decltype(&::nbd_get_error) get_error;
  decltype(&::nbd_set_request_structured_replies) set_request_structured_replies;
  decltype(&::nbd_connect_unix) connect_unix;
  decltype(&::nbd_get_size) get_size;
  decltype(&::nbd_is_read_only) is_read_only;
  decltype(&::nbd_can_flush) can_flush;
  decltype(&::nbd_can_fua) can_fua;
  decltype(&::nbd_can_trim) can_trim;
  decltype(&::nbd_can_multi_conn) can_multi_conn;
  decltype(&::nbd_aio_connect_unix) aio_connect_unix;
  decltype(&::nbd_aio_get_fd) aio_get_fd;
  decltype(&::nbd_aio_get_direction) aio_get_direction;
  decltype(&::nbd_aio_notify_read) aio_notify_read;
  decltype(&::nbd_aio_notify_write) aio_notify_write;
  decltype(&::nbd_aio_is_ready) aio_is_ready;
  decltype(&::nbd_aio_is_dead) aio_is_dead;
  decltype(&::nbd_aio_is_closed) aio_is_closed;

  // The error of the last call on this thread, never null.
  const char* error() const {
    const char* e = get_error();
    return e ? e : "unknown error";
  }
};

// The library, loaded on the first call and kept; nullptr when it cannot be, with the reason
// in *why (the same on every later call).
const LibNbd* libnbd(std::string* why);

}  // namespace repvisor::sys
