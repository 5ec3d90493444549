// The resource pipeline's teardown: one enter_<phase>() per step, in the order that keeps data
// safe. Each acts on every resource the step concerns, marks those it must wait for pending,
// arms the timer and sets the phase; a phase that waits for nothing moves on at once. Timeouts
// and failures are recorded on the resource (teardown_failed: a retry starts it over) and never
// stop the later steps, which may still release the rest.
#include <fmt/format.h>
#include <signal.h>

#include <cerrno>
#include <cstring>

#include "supervisor/resource_pipeline.hpp"

namespace repvisor {

using core::ResourceKind;
using core::ResourceState;

namespace {
constexpr usec_t kDetachPoll = 20 * USEC_PER_MSEC;  // sysfs has no event for a loop device's unbinding
}

void ResourcePipeline::begin_teardown(bool for_job, const std::string& earlier_error) {
  abort_setup();  // the state machine has done so already; a teardown never runs beside a setup
  for_job_ = for_job;
  for (auto& r : res_) {
    r.pending = false;
    core::Resource& rec = r.record;
    if (!rec.teardown_failed) continue;
    // Failed in an earlier teardown: this one takes it from where it was.
    rec.teardown_failed = false;
    rec.error.clear();
    rec.state = r.is_volume() ? ResourceState::Ready : ResourceState::Pending;
  }
  job_.cleanup_state = "running";
  job_.cleanup_error = earlier_error;
  failed_ = !earlier_error.empty();
  changed();
  enter_sync();
}

void ResourcePipeline::teardown_failure(JobResource& r, const std::string& why) {
  failed_ = true;
  r.pending = false;
  r.record.state = ResourceState::Failed;
  r.record.error = why;
  r.record.teardown_failed = true;
  if (job_.cleanup_error.empty()) job_.cleanup_error = why;
  changed();
  event("cleanup-failed", why);
}

void ResourcePipeline::enter_sync() {
  // Every writer is gone (the state machine gets here only once the job's cgroup is empty): what
  // they wrote goes to stable storage before anything is detached or reported kept.
  new_ticket();
  for (auto& r : res_) {
    core::Resource& rec = r.record;
    // Only volumes that were set up (or whose last teardown failed: reset to ready): one that
    // failed its setup was never written.
    if (!r.is_volume() || rec.state != ResourceState::Ready) continue;
    auto done = ticketed(r, [](ResourcePipeline& p, JobResource& res, int error) { p.on_flushed(res, error); });
    std::string why;
    const int rc = sys_.flush_volume(r, done, &why);
    if (rc == -ENOENT) {
      // Gone: nothing to flush, and nothing of it can be attached. Either a teardown cut short
      // after the discard (the crash came before it was recorded), or someone removed it. Not
      // a cleanup failure: a retry could never succeed.
      if (r.spec.on_stop == core::OnStop::Discard && rec.created) {
        rec.state = ResourceState::Discarded;
        rec.endpoint.clear();
        event("resource-discarded", fmt::format("volume '{}': {} is already gone", r.spec.name, r.spec.path));
      } else {
        rec.state = ResourceState::Failed;
        rec.error = fmt::format("{} has disappeared: its data is lost", r.spec.path);
        event("resource-missing", fmt::format("volume '{}': {}", r.spec.name, rec.error));
      }
      changed();
    } else if (rc < 0) {
      teardown_failure(r, "flushing: " + why);
    } else {
      r.pending = true;
    }
  }
  if (any_pending()) {
    arm_timer(cfg_.sync_timeout);
    phase_ = ResourcePhase::Sync;
    return;
  }
  phase_ = ResourcePhase::Sync;
  enter_stop_servers();
}

void ResourcePipeline::on_flushed(JobResource& r, int error) {
  if (phase_ != ResourcePhase::Sync || !r.pending) return;
  if (error < 0)
    teardown_failure(r, fmt::format("flushing volume '{}': {}", r.spec.name, strerror(-error)));
  else
    event("resource-synced", fmt::format("volume '{}': flushed to stable storage", r.spec.name));
  r.pending = false;
  if (!any_pending()) enter_stop_servers();
}

void ResourcePipeline::enter_stop_servers() {
  new_ticket();
  sys_.crash_point("resource-stop");
  for (auto& r : res_) {
    if (!r.is(ResourceKind::NbdServer)) continue;
    core::Resource& rec = r.record;
    sys_.stop_probe(r);
    if (!sys_.hold_server(r, exit_watch(r))) {
      // Gone already, or never recorded as started. Its cgroup goes either way: a daemon killed
      // between starting a server and recording it leaves one that nothing on record names,
      // perhaps with the server still in it. A server that died under the job keeps its
      // "failed" (and why).
      const bool recorded = rec.pid > 0 || !rec.socket.empty();
      release_server(r);
      if (recorded) {
        event("resource-stopped", fmt::format("nbd-server '{}' was already gone", r.spec.name));
        rec.state = ResourceState::Released;
      } else if (rec.state != ResourceState::Failed) {
        rec.state = ResourceState::Released;
      }
      changed();
      continue;
    }
    // SIGTERM first, always: qemu-nbd serving qcow2 must close the image cleanly.
    sys_.signal_server(r, SIGTERM);
    event("signal", fmt::format("SIGTERM sent to {}", server_label(r)));
    r.pending = true;
  }
  if (any_pending()) {
    arm_timer(cfg_.nbd_stop_timeout);
    phase_ = ResourcePhase::StopServers;
    return;
  }
  phase_ = ResourcePhase::StopServers;
  enter_disconnect_devices();
}

void ResourcePipeline::enter_kill_servers() {
  new_ticket();
  for (auto& r : res_) {
    if (!r.pending) continue;
    event("stop-timeout", fmt::format("{} still running after nbd.stop_timeout ({}): SIGKILL", server_label(r),
                                      format_timespan(cfg_.nbd_stop_timeout)));
    sys_.kill_server(job_, r);
  }
  arm_timer(cfg_.final_kill_timeout);
  phase_ = ResourcePhase::KillServers;
}

void ResourcePipeline::enter_disconnect_devices() {
  new_ticket();
  disarm_timer();
  for (auto& r : res_) {
    core::Resource& rec = r.record;
    if (!r.is(ResourceKind::NbdDevice) || rec.device.empty()) continue;
    if (std::string why; sys_.disconnect_device(r, &why) < 0) {
      teardown_failure(r, fmt::format("disconnecting {}: {}", rec.device, why));
      continue;
    }
    event("resource-disconnected", fmt::format("nbd-device '{}': {} disconnected", r.spec.name, rec.device));
    rec.device.clear();
    rec.state = ResourceState::Released;
    changed();
  }
  phase_ = ResourcePhase::Devices;
  enter_detach();
}

void ResourcePipeline::enter_detach() {
  new_ticket();
  for (auto& r : res_) {
    core::Resource& rec = r.record;
    if (!r.is(ResourceKind::Loop) || rec.device.empty()) continue;
    std::string why;
    const int rc = sys_.detach_loop(r, &why);
    if (rc < 0)
      teardown_failure(r, why);
    else if (rc > 0)
      loop_detached(r);
    else
      r.pending = true;  // still open somewhere: it goes when the last holder closes it
  }
  if (any_pending()) {
    detach_deadline_ = sys_.now() + cfg_.detach_timeout;
    arm_timer(kDetachPoll, kDetachPoll);
    phase_ = ResourcePhase::Detach;
    return;
  }
  phase_ = ResourcePhase::Detach;
  enter_discard();
}

void ResourcePipeline::poll_detach() {
  for (auto& r : res_)
    if (r.pending && sys_.loop_released(r)) {
      r.pending = false;
      loop_detached(r);
    }
  if (!any_pending()) return enter_discard();
  if (sys_.now() < detach_deadline_) return;
  for (auto& r : res_)
    if (r.pending)
      teardown_failure(r, fmt::format("{} is still attached after volumes.detach_timeout ({}): something holds it open",
                                      r.record.device, format_timespan(cfg_.detach_timeout)));
  enter_discard();
}

void ResourcePipeline::loop_detached(JobResource& r) {
  event("resource-detached", fmt::format("volume '{}': {} detached", r.spec.name, r.record.device));
  r.record.device.clear();
  r.record.endpoint = r.spec.path;
  changed();
}

void ResourcePipeline::enter_discard() {
  new_ticket();
  disarm_timer();
  for (auto& r : res_) {
    if (!r.is_volume()) continue;
    core::Resource& rec = r.record;
    sys_.close_volume(r);
    if (rec.state == ResourceState::Failed || rec.state == ResourceState::Discarded ||
        rec.state == ResourceState::Pending)
      continue;
    if (r.spec.on_stop == core::OnStop::Discard) {
      if (job_.delete_requested && job_.delete_keep_data) {
        // The delete that stopped the job said keep: an explicit request wins over the policy.
        event("resource-kept",
              fmt::format("volume '{}': {} kept although on_stop = \"discard\": the delete asked to keep data",
                          r.spec.name, r.spec.path));
      } else if (!rec.created) {
        event("resource-kept",
              fmt::format("volume '{}': {} kept although on_stop = \"discard\": the job was given it, it did "
                          "not create it",
                          r.spec.name, r.spec.path));
      } else if (std::string why; !discard(r, &why)) {
        teardown_failure(r, why);
        continue;
      } else {
        sys_.crash_point("resource-discarded");  // removed, not yet recorded
        continue;
      }
    }
    rec.state = ResourceState::Kept;
    rec.endpoint = r.spec.path;
    changed();
  }
  phase_ = ResourcePhase::Discard;
  finish_teardown();
}

bool ResourcePipeline::discard(JobResource& r, std::string* why) {
  core::Resource& rec = r.record;
  if (!rec.created || rec.state == ResourceState::Discarded) return true;
  if (std::string error; sys_.remove_volume(r, &error) < 0) {
    *why = fmt::format("volume '{}': {}", r.spec.name, error);
    return false;
  }
  rec.state = ResourceState::Discarded;
  rec.endpoint.clear();
  changed();
  event("resource-discarded", fmt::format("volume '{}': {} removed", r.spec.name, r.spec.path));
  return true;
}

bool ResourcePipeline::discard_volumes(std::string* why) {
  for (auto& r : res_)
    if (r.is_volume() && !discard(r, why)) return false;
  return true;
}

void ResourcePipeline::finish_teardown() {
  new_ticket();
  disarm_timer();
  phase_ = ResourcePhase::None;
  const bool ok = !failed_;
  if (ok) sys_.remove_runtime_dir(job_);
  job_.cleanup_state = ok ? "done" : "failed";
  if (ok) job_.cleanup_error.clear();
  changed();
  auto waiters = std::move(waiters_);
  waiters_.clear();
  if (for_job_) {
    for_job_ = false;
    // A failure is reported by the state machine (its "cleanup-failed" event), once.
    if (ok && !res_.empty()) event("cleanup", "resources released");
    job_.on_cleanup_done(ok, job_.cleanup_error);
  } else {
    event(ok ? "cleanup" : "cleanup-failed",
          ok ? "cleanup retried: resources released" : "cleanup retried and failed: " + job_.cleanup_error);
  }
  for (auto& w : waiters) w(ok);
}

}  // namespace repvisor
