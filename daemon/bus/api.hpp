// The D-Bus API as a whole: the objects (bus/manager_object, bus/job_object, and on peer-to-peer
// connections bus/driver_object) served identically on every connection attached, who may call
// what, and what waits for the commit of a loop iteration: the replies to changes, then the
// signals, collected from the supervisor's reports and sent once by flush().
#pragma once
#include <systemd/sd-bus.h>

#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "bus/driver_object.hpp"
#include "bus/handles.hpp"
#include "supervisor/supervisor.hpp"
#include "util/uv.hpp"

namespace repvisor::bus {

class Api final : public SupervisorObserver {
 public:
  Api(Supervisor& sup, uv_loop_t* loop);
  ~Api() override;

  // Serves the objects on `bus`; throws. `peer_to_peer`: also the bus driver's, as there is no
  // bus daemon on a private socket.
  void attach(sd_bus* bus, bool peer_to_peer);
  // Unregisters everything attach() registered on `bus`.
  void detach(sd_bus* bus);
  // Sends what waited for the commit of this loop iteration (replies, then signals). With an
  // error, the commit failed: the waiting calls get that error instead of a success.
  void flush(const std::string& commit_error = {});
  // A reply to a call that changed state: held until the change is on disk.
  // `undo` runs instead when the commit fails (a submission that was never recorded is dropped).
  void reply_after_commit(sd_bus_message* call, MessagePtr reply, std::function<void()> undo = {});
  // A caller waits for a reply that is held for the commit.
  bool replies_waiting() const { return !pending_replies_.empty(); }

  Supervisor& supervisor() { return sup_; }

  // SupervisorObserver
  void job_added(const core::Job& job) override;
  void job_changed(const core::Job& job, uint32_t what) override;
  void job_removed(const std::string& id) override;
  void jobs_active_changed() override;
  void limits_changed() override;

  uint32_t caller_uid(sd_bus_message* m);
  Caller caller(sd_bus_message* m);
  // Admin: root, the daemon's own uid, or a member of [bus] admin_group. Root: those but the
  // group (submitting a command is running code as root). Throws AccessDenied, audited.
  enum class Privilege { Admin, Root };
  void require(sd_bus_message* m, Privilege level, const char* action);
  bool allowed(sd_bus_message* m, Privilege level);  // require() without the refusal

 private:
  static int on_message(sd_bus_message* m, void* userdata, sd_bus_error*);

  Supervisor& sup_;
  Driver driver_;
  // What each attached connection registered.
  std::unordered_map<sd_bus*, Slots> slots_;
  // Connections that get signals: only once they have sent something. A bus client's first
  // message is Hello, and sd-bus clients fail (EIO) on anything but its reply first.
  std::vector<sd_bus*> buses_;
  std::unordered_set<sd_bus*> attached_;
  // A peer-to-peer caller's command, read from /proc once per connection and PID (an open and
  // read per call was a measurable part of a stop's ~0.4 ms): the audit trail's "command" is
  // best effort anyway, the uid and PID are the kernel's word.
  std::unordered_map<sd_bus*, std::pair<pid_t, std::string>> peer_command_;
  struct Pending {
    CallRef call;
    MessagePtr reply;
    std::function<void()> undo;
  };
  std::vector<Pending> pending_replies_;
  // Signals for after the commit: InterfacesAdded/Removed, and each object's change bits.
  std::vector<std::string> added_, removed_;
  std::unordered_map<std::string, uint32_t> dirty_;
  uint32_t manager_dirty_ = 0;
  // Progress-only changes reach clients at most kProgressEvery apart per job; the timer wakes
  // the loop for what was held back.
  std::unordered_map<std::string, usec_t> last_progress_emit_;
  UvPtr<uv_timer_t> progress_timer_;
};

}  // namespace repvisor::bus
