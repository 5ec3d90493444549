// libuv handles owned by std::unique_ptr: the deleter closes the handle and the memory is freed
// only in the close callback, as libuv requires. `data` is cleared first so that nothing fires
// into an owner that is going away.
#pragma once
#include <uv.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace repvisor {

template <class H>
struct UvCloser {
  void operator()(H* h) const {
    h->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* x) { delete reinterpret_cast<H*>(x); });
  }
};

template <class H>
using UvPtr = std::unique_ptr<H, UvCloser<H>>;

// Allocates and initialises a handle; init is e.g. [&](uv_timer_t* t){ return uv_timer_init(loop, t); }.
template <class H, class Init>
UvPtr<H> make_uv(Init&& init, void* data) {
  auto* h = new H{};
  if (int r = init(h); r < 0) {
    delete h;
    throw std::runtime_error(std::string("libuv: ") + uv_strerror(r));
  }
  h->data = data;
  return UvPtr<H>(h);
}

}  // namespace repvisor
