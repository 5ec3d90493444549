// How every method call is answered, at once or later. A handler reads its arguments, acts and
// sends or queues its reply; to fail it throws. guarded() (bus/errors.hpp), the one trampoline,
// turns whatever it throws into the error reply: for a handler sd-bus sends it, for a reply made
// later (a Stop that waits, a Delete, a RetryCleanup, a reply held for a commit that failed)
// answer() does. No handler sends an error reply itself: the shape of sdbus-c++ and sdbusplus.
#pragma once
#include <systemd/sd-bus.h>

#include <utility>

#include "bus/errors.hpp"
#include "bus/handles.hpp"

namespace repvisor::bus {

// Throws (a plain failure, org.freedesktop.DBus.Error.Failed) when an sd-bus call failed.
void check(int r, const char* what = "building reply");

// The method return for `call`, to fill in; throws when it cannot be made.
MessagePtr new_reply(sd_bus_message* call);
// Sends a reply now: what sd_bus_send() returns, for the handler to return.
int send(const MessagePtr& reply);

// A method handler of an object of type Object, behind the trampoline: in a vtable,
// method<Api, submit> calls submit(api, call).
template <class Object, int (*Handler)(Object&, sd_bus_message*)>
int method(sd_bus_message* call, void* userdata, sd_bus_error* err) noexcept {
  return guarded(err, [&] { return Handler(*static_cast<Object*>(userdata), call); });
}

// Answers `call` outside its handler: fn sends or queues the reply and returns >= 0, or throws,
// and what it throws becomes the error reply, exactly as for a handler. The caller may be gone by
// now: a reply that cannot be sent then is dropped, as sd-bus drops it.
template <class Fn>
void answer(sd_bus_message* call, Fn&& fn) noexcept {
  ErrorBuffer err;
  if (const int r = guarded(err.get(), std::forward<Fn>(fn)); r < 0) sd_bus_reply_method_errno(call, r, err.get());
}

// Writes an a{sv} into a message: open, add..., close.
class DictWriter {
 public:
  explicit DictWriter(sd_bus_message* m) : m_(m) { check(sd_bus_message_open_container(m_, 'a', "{sv}")); }
  template <class T>
  DictWriter& add(const char* key, const char* sig, T value) {
    check(sd_bus_message_append(m_, "{sv}", key, sig, value));
    return *this;
  }
  void close() { check(sd_bus_message_close_container(m_)); }

 private:
  sd_bus_message* m_;
};

}  // namespace repvisor::bus
