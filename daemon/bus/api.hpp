// The D-Bus API: org.repvisor1.Manager at /org/repvisor1 and org.repvisor1.Job at
// /org/repvisor1/job/<id>, served identically on every connection attached to it. Property
// changes are collected per loop iteration and emitted once by flush().
#pragma once
#include <systemd/sd-bus.h>

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "supervisor/supervisor.hpp"
#include "util/uv.hpp"
#include "wire/names.hpp"

namespace repvisor::bus {

using wire::kJobInterface;
using wire::kJobPrefix;
using wire::kManagerInterface;
using wire::kManagerPath;

std::string job_path(const std::string& id);

class Api final : public SupervisorObserver {
 public:
  Api(Supervisor& sup, uv_loop_t* loop);
  ~Api() override;

  // Serves the objects on `bus`. `peer_to_peer`: also answer the org.freedesktop.DBus calls a
  // client sends to a bus (Hello, AddMatch), since there is no bus daemon on a private socket.
  void attach(sd_bus* bus, bool peer_to_peer);
  void detach(sd_bus* bus);
  // Sends what waited for the commit of this loop iteration (replies, then signals). With an
  // error, the commit failed: the waiting calls get that error instead of a success.
  void flush(const std::string& commit_error = {});
  // A reply to a call that changed state: held until the change is on disk.
  // `undo` runs instead when the commit fails (a submission that was never recorded is dropped).
  void reply_after_commit(sd_bus_message* call, sd_bus_message* reply, std::function<void()> undo = {});
  // A caller waits for a reply that is held for the commit.
  bool replies_waiting() const { return !pending_replies_.empty(); }

  Supervisor& supervisor() { return sup_; }

  // SupervisorObserver
  void job_added(const core::Job& job) override;
  void job_changed(const core::Job& job, uint32_t what) override;
  void job_removed(const std::string& id) override;
  void jobs_active_changed() override;
  void limits_changed() override;

  // Shared by Manager.StopJob and Job.Stop (and Delete likewise).
  int stop(sd_bus_message* m, core::Job& job, sd_bus_error* err);
  int remove(sd_bus_message* m, core::Job& job, sd_bus_error* err);
  int resume(sd_bus_message* m, core::Job& job, sd_bus_error* err);
  int retry_cleanup(sd_bus_message* m, core::Job& job, sd_bus_error* err);
  core::Job& job_from_path(const char* path);
  uint32_t caller_uid(sd_bus_message* m);
  Caller caller(sd_bus_message* m);
  // Admin: root, the daemon's own uid, or a member of [bus] admin_group. Root: those but the
  // group (submitting a command is running code as root). Throws AccessDenied, audited.
  enum class Privilege { Admin, Root };
  void require(sd_bus_message* m, Privilege level, const char* action);
  bool allowed(sd_bus_message* m, Privilege level);  // require() without the refusal

 private:
  static const sd_bus_vtable kManagerVtable[];
  static const sd_bus_vtable kJobVtable[];
  static const sd_bus_vtable kDriverVtable[];

  Supervisor& sup_;
  // Connections that get signals: only once they have sent something. A bus client's first
  // message is Hello, and sd-bus clients fail (EIO) on anything but its reply first.
  std::vector<sd_bus*> buses_;
  std::unordered_set<sd_bus*> attached_;
  // A peer-to-peer caller's command, read from /proc once per connection and PID (an open and
  // read per call was a measurable part of a stop's ~0.4 ms): the audit trail's "command" is
  // best effort anyway, the uid and PID are the kernel's word.
  std::unordered_map<sd_bus*, std::pair<pid_t, std::string>> peer_command_;
  static int on_message(sd_bus_message* m, void* userdata, sd_bus_error*);
  std::unordered_map<std::string, uint32_t> dirty_;
  struct Pending {
    std::shared_ptr<sd_bus_message> call, reply;
    std::function<void()> undo;
  };
  std::vector<std::string> added_, removed_;
  // Progress-only changes reach clients at most kProgressEvery apart per job; the timer wakes
  // the loop for what was held back.
  std::unordered_map<std::string, usec_t> last_progress_emit_;
  UvPtr<uv_timer_t> progress_timer_;  // InterfacesAdded/Removed, sent after the commit
  std::vector<Pending> pending_replies_;
  bool manager_dirty_ = false, limits_dirty_ = false;
  uint64_t next_peer_ = 1;

  friend struct ManagerMethods;
  friend struct JobMethods;
  friend struct DriverMethods;
};

}  // namespace repvisor::bus
