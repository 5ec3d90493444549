#include "bus/api.hpp"

#include <algorithm>
#include <fstream>

#include <fmt/format.h>

#include "bus/call.hpp"
#include "bus/errors.hpp"
#include "bus/job_object.hpp"
#include "bus/manager_object.hpp"
#include "sys/users.hpp"

namespace repvisor::bus {

namespace {
constexpr usec_t kProgressEvery = 100 * USEC_PER_MSEC;
// What changes often: a job's progress and its log's growth share one budget of signals (a job
// that logs and reports progress costs no more signals than one that only reports progress).
constexpr uint32_t kFrequent = core::kChangedProgress | core::kChangedLogWritten;
}  // namespace

Api::Api(Supervisor& sup, uv_loop_t* loop) : sup_(sup) {
  sup_.set_observer(this);
  progress_timer_ = make_uv<uv_timer_t>([&](uv_timer_t* t) { return uv_timer_init(loop, t); }, this);
}

Api::~Api() { sup_.set_observer(nullptr); }

void Api::attach(sd_bus* bus, bool peer_to_peer) {
  Slots& slots = slots_[bus];
  if (peer_to_peer) driver_.serve(bus, slots);
  serve_manager(bus, *this, slots);
  serve_jobs(bus, *this, slots);
  if (peer_to_peer) {
    slots.add("message filter", [&](sd_bus_slot** s) { return sd_bus_add_filter(bus, s, on_message, this); });
    attached_.insert(bus);
  } else {
    buses_.push_back(bus);
  }
}

int Api::on_message(sd_bus_message* m, void* userdata, sd_bus_error*) {
  auto* api = static_cast<Api*>(userdata);
  sd_bus* bus = sd_bus_message_get_bus(m);
  if (api->attached_.erase(bus)) api->buses_.push_back(bus);  // first message: from now on it gets signals
  return 0;                                                   // and the message goes on to its handler
}

void Api::detach(sd_bus* bus) {
  slots_.erase(bus);
  attached_.erase(bus);
  peer_command_.erase(bus);
  buses_.erase(std::remove(buses_.begin(), buses_.end(), bus), buses_.end());
}

uint32_t Api::caller_uid(sd_bus_message* m) {
  uid_t uid = static_cast<uid_t>(-1);
  // On a bus the sender's credentials; on a peer-to-peer socket sd-bus answers with the peer's
  // SO_PEERCRED, which the kernel vouches for.
  if (sd_bus_creds* raw = nullptr; sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &raw) >= 0) {
    const CredsPtr creds(raw);
    if (sd_bus_creds_get_euid(creds.get(), &uid) < 0) uid = static_cast<uid_t>(-1);
  }
  if (uid == static_cast<uid_t>(-1)) {
    if (sd_bus_creds* raw = nullptr; sd_bus_get_owner_creds(sd_bus_message_get_bus(m), SD_BUS_CREDS_EUID, &raw) >= 0) {
      const CredsPtr creds(raw);
      if (sd_bus_creds_get_euid(creds.get(), &uid) < 0) uid = static_cast<uid_t>(-1);
    }
  }
  return uid;
}

Caller Api::caller(sd_bus_message* m) {
  Caller c;
  c.uid = caller_uid(m);
  constexpr uint64_t kWanted = SD_BUS_CREDS_PID | SD_BUS_CREDS_COMM | SD_BUS_CREDS_AUGMENT;
  sd_bus_creds* raw = nullptr;
  CredsPtr creds;
  if (sd_bus_query_sender_creds(m, kWanted, &raw) >= 0) creds.reset(raw);
  raw = nullptr;
  if (!creds && sd_bus_get_owner_creds(sd_bus_message_get_bus(m), kWanted, &raw) >= 0) creds.reset(raw);
  if (creds) {
    pid_t pid = 0;
    if (sd_bus_creds_get_pid(creds.get(), &pid) >= 0) c.pid = pid;
    const char* comm = nullptr;
    if (sd_bus_creds_get_comm(creds.get(), &comm) >= 0 && comm) c.command = comm;
  }
  if (c.command.empty() && c.pid > 0) {
    // Peer-to-peer there is no bus to tell us: ask /proc (best effort, for the audit trail).
    auto& [pid, command] = peer_command_[sd_bus_message_get_bus(m)];
    if (pid != c.pid) {
      std::ifstream in("/proc/" + std::to_string(c.pid) + "/comm");
      command.clear();
      std::getline(in, command);
      pid = c.pid;
    }
    c.command = command;
  }
  return c;
}

bool Api::allowed(sd_bus_message* m, Privilege level) {
  const uint32_t uid = caller_uid(m);
  if (uid == 0 || uid == geteuid()) return true;
  // Membership by the user database (the uid is the kernel's word): no race with a process that
  // changes its groups, and the same answer for the bus and the private socket.
  return level == Privilege::Admin && sys::uid_in_group(uid, sup_.config().admin_group);
}

void Api::require(sd_bus_message* m, Privilege level, const char* action) {
  if (allowed(m, level)) return;
  const uint32_t uid = caller_uid(m);
  const std::string& group = sup_.config().admin_group;
  const Caller c = caller(m);
  const std::string rule = level == Privilege::Admin ? fmt::format("only root and members of group '{}' may", group)
                                                     : std::string("only root may");
  sup_.audit("", "access-denied", fmt::format("uid {} may not {}", uid, action), &c);
  throw ApiError(ErrorKind::AccessDenied, fmt::format("uid {} may not {} ({} {})", uid, action, rule, action));
}

// ---- change notification -------------------------------------------------------------------

void Api::job_added(const core::Job& job) { added_.push_back(job.id()); }

void Api::job_changed(const core::Job& job, uint32_t what) { dirty_[job.id()] |= what; }

void Api::job_removed(const std::string& id) {
  dirty_.erase(id);
  last_progress_emit_.erase(id);
  // Never announced (its submission was not recorded, or it went in the same iteration): say nothing.
  if (auto it = std::find(added_.begin(), added_.end(), id); it != added_.end()) {
    added_.erase(it);
    return;
  }
  removed_.push_back(id);
}

void Api::jobs_active_changed() { manager_dirty_ |= kManagerChangedJobsActive; }
void Api::limits_changed() { manager_dirty_ |= kManagerChangedLimits; }

void Api::reply_after_commit(sd_bus_message* call, MessagePtr reply, std::function<void()> undo) {
  pending_replies_.push_back({ref(call), std::move(reply), std::move(undo)});
}

void Api::flush(const std::string& commit_error) {
  auto pending = std::move(pending_replies_);
  pending_replies_.clear();
  for (auto& p : pending) {
    if (commit_error.empty()) {
      sd_bus_send(nullptr, p.reply.get(), nullptr);  // the caller may be gone: nothing to do then
      continue;
    }
    answer(p.call.get(), [&]() -> int {
      if (p.undo) {
        p.undo();
        throw ApiError(ErrorKind::Failed, "nothing was done: cannot record it (" + commit_error + ")");
      }
      throw ApiError(ErrorKind::Failed, "the change took effect but could not be recorded yet (" + commit_error +
                                            "); the daemon keeps trying to record it");
    });
  }
  if (!commit_error.empty()) return;  // signals wait for the state to be on disk too
  for (const auto& id : added_) {
    if (!sup_.find_by_id(id)) continue;
    const std::string path = job_path(id);
    for (sd_bus* b : buses_) sd_bus_emit_interfaces_added(b, path.c_str(), kJobInterface, nullptr);
  }
  added_.clear();
  for (const auto& id : removed_) {
    const std::string path = job_path(id);
    for (sd_bus* b : buses_) sd_bus_emit_interfaces_removed(b, path.c_str(), kJobInterface, nullptr);
  }
  removed_.clear();
  if (manager_dirty_) {
    auto names = manager_properties_changed(manager_dirty_);
    manager_dirty_ = 0;
    for (sd_bus* b : buses_)
      sd_bus_emit_properties_changed_strv(b, kManagerPath, kManagerInterface, const_cast<char**>(names.data()));
  }
  if (dirty_.empty()) return;
  const usec_t now = now_monotonic();
  usec_t hold_for = 0;
  for (auto it = dirty_.begin(); it != dirty_.end();) {
    const auto& [id, what] = *it;
    usec_t& last = last_progress_emit_[id];
    if ((what & ~kFrequent) == 0 && now < last + kProgressEvery) {
      // Only progress or log growth, and too soon after the last: held back, the latest values
      // go out later.
      const usec_t wait = last + kProgressEvery - now;
      hold_for = hold_for ? std::min(hold_for, wait) : wait;
      ++it;
      continue;
    }
    if (what & kFrequent) last = now;
    auto names = job_properties_changed(what);
    const std::string path = job_path(id);
    for (sd_bus* b : buses_)
      sd_bus_emit_properties_changed_strv(b, path.c_str(), kJobInterface, const_cast<char**>(names.data()));
    it = dirty_.erase(it);
  }
  if (hold_for)
    uv_timer_start(
        progress_timer_.get(), [](uv_timer_t*) {}, (hold_for + 999) / 1000, 0);
}

}  // namespace repvisor::bus
