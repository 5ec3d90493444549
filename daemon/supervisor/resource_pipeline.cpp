// The resource pipeline's setup half, its timer and what both halves share; the teardown's
// phases are in resource_teardown.cpp.
#include "supervisor/resource_pipeline.hpp"

#include <fmt/format.h>

namespace repvisor {

using core::ResourceKind;
using core::ResourceState;

const char* to_string(ResourcePhase p) {
  switch (p) {
    case ResourcePhase::None:
      return "none";
    case ResourcePhase::Setup:
      return "setup";
    case ResourcePhase::Sync:
      return "sync";
    case ResourcePhase::StopServers:
      return "stop-servers";
    case ResourcePhase::KillServers:
      return "kill-servers";
    case ResourcePhase::Devices:
      return "devices";
    case ResourcePhase::Detach:
      return "detach";
    case ResourcePhase::Discard:
      return "discard";
  }
  return "?";
}

ResourcePipeline::ResourcePipeline(core::Job& job, core::JobDriver& driver, ResourceSystem& sys,
                                   const config::Config& cfg)
    : job_(job), driver_(driver), sys_(sys), cfg_(cfg) {
  const auto& specs = job.spec().resources;
  for (size_t i = 0; i < specs.size(); ++i) res_.emplace_back(i, specs[i], job.resources.at(i));
  new_ticket();
}

// Its polls and timer close with it, their data cleared first (util/uv.hpp), and completions in
// flight find their ticket gone: nothing reaches a dead pipeline.
ResourcePipeline::~ResourcePipeline() = default;

void ResourcePipeline::changed() { driver_.changed(job_, core::kChangedResources); }

void ResourcePipeline::event(std::string_view type, const std::string& message) { driver_.event(job_, type, message); }

std::string ResourcePipeline::server_label(const JobResource& r) const {
  return fmt::format("nbd-server '{}' ({}{})", r.spec.name, core::to_string(r.spec.server),
                     r.record.pid ? fmt::format(", pid {}", r.record.pid) : std::string());
}

bool ResourcePipeline::any_pending() const {
  for (const auto& r : res_)
    if (r.pending) return true;
  return false;
}

void ResourcePipeline::arm_timer(usec_t after, usec_t repeat) {
  if (!timer_) timer_ = sys_.make_timer([this] { on_timer(); });
  timer_->arm(after, repeat);
}

void ResourcePipeline::disarm_timer() {
  if (timer_) timer_->disarm();
}

void ResourcePipeline::on_timer() {
  switch (phase_) {
    case ResourcePhase::Setup:
      return fail_setup(fmt::format("an NBD server did not answer within nbd.ready_timeout ({})",
                                    format_timespan(cfg_.nbd_ready_timeout)));
    case ResourcePhase::Sync:
      for (auto& r : res_)
        if (r.pending)
          teardown_failure(r, fmt::format("flushing volume '{}' took longer than volumes.sync_timeout ({})",
                                          r.spec.name, format_timespan(cfg_.sync_timeout)));
      return enter_stop_servers();
    case ResourcePhase::StopServers:
      return enter_kill_servers();
    case ResourcePhase::KillServers:
      for (auto& r : res_) {
        if (!r.pending) continue;
        sys_.abandon_server(r);
        teardown_failure(r, fmt::format("{} did not die after SIGKILL", server_label(r)));
      }
      return enter_disconnect_devices();
    case ResourcePhase::Detach:
      return poll_detach();
    default:
      return;
  }
}

std::function<void(const std::string&)> ResourcePipeline::exit_watch(JobResource& r) {
  // Not ticketed: a server's end matters in every phase. The watch is one of the resource's
  // handles, so it ends with the pipeline.
  return [this, rp = &r](const std::string& how) { on_server_exit(*rp, how); };
}

// ---- setup ----------------------------------------------------------------------------------

void ResourcePipeline::begin_setup() {
  for (auto& r : res_) {
    r.handles = ResourceHandles{};
    r.pending = false;
  }
  new_ticket();
  failed_ = false;
  // Set first, unlike the teardown's phases: any act of the setup may fail it at once, and a
  // failure is reported only while the setup is the phase (fail_setup).
  phase_ = ResourcePhase::Setup;
  if (std::string why; sys_.make_runtime_dir(job_, &why) < 0) return fail_setup(why);
  // Volumes first: a server may export one of them; devices last: they connect to servers.
  for (auto& r : res_)
    if (r.is_volume() && !setup_volume(r)) return;
  for (auto& r : res_)
    if (r.is(ResourceKind::NbdServer) && !start_server(r)) return;
  if (any_pending()) {
    arm_timer(cfg_.nbd_ready_timeout);
    return;
  }
  finish_setup();
}

bool ResourcePipeline::setup_failed(JobResource& r, const std::string& why) {
  r.record.state = ResourceState::Failed;
  r.record.error = why;
  changed();
  fail_setup(fmt::format("{} '{}': {}", core::to_string(r.spec.kind), r.spec.name, why));
  return false;
}

void ResourcePipeline::fail_setup(const std::string& why) {
  if (phase_ != ResourcePhase::Setup) return;
  abort_setup();
  job_.on_setup_done(false, why);  // last: the teardown may begin inside it
}

void ResourcePipeline::abort_setup() {
  if (phase_ != ResourcePhase::Setup) return;
  for (auto& r : res_) {
    sys_.stop_probe(r);
    r.pending = false;
  }
  new_ticket();
  disarm_timer();
  phase_ = ResourcePhase::None;
}

bool ResourcePipeline::setup_volume(JobResource& r) {
  core::Resource& rec = r.record;
  std::string why;
  bool created = false;
  // A resumed job finds the file it created on its first run: it stays "created" (its own).
  if (sys_.open_volume(r, &created, &why) < 0) return setup_failed(r, why);
  if (created) {
    rec.created = true;
    event("resource-created",
          fmt::format("volume '{}': created {} ({} bytes)", r.spec.name, r.spec.path, r.spec.size.value_or(0)));
  }
  rec.endpoint = r.spec.path;
  if (r.is(ResourceKind::Loop)) {
    std::string device;
    uint64_t dev = 0, ino = 0;
    if (sys_.attach_loop(r, &device, &dev, &ino, &why) < 0) return setup_failed(r, why);
    rec.device = rec.endpoint = device;
    rec.dev = dev;
    rec.inode = ino;
    event("resource-attached", fmt::format("volume '{}': {} attached to {}", r.spec.name, r.spec.path, device));
  }
  rec.state = ResourceState::Ready;
  rec.error.clear();
  changed();
  return true;
}

bool ResourcePipeline::start_server(JobResource& r) {
  core::Resource& rec = r.record;
  ResourceSystem::ServerStart started;
  std::string why;
  const int rc = sys_.start_server(job_, r, exit_watch(r), &started, &why);
  // A socket that was bound is the pipeline's to remove, whether or not the server started.
  if (!started.socket.empty()) rec.socket = started.socket;
  if (rc < 0) return setup_failed(r, why);
  rec.pid = started.pid;
  rec.start_time = started.start_time;
  rec.endpoint = "nbd+unix:///?socket=" + rec.socket;
  event("resource-started", fmt::format("{} started, serving {} on {}", server_label(r), r.spec.path, rec.socket));
  changed();
  // Ready when it completes an NBD handshake: the server has opened the image and serves it.
  auto done = ticketed(
      r, [](ResourcePipeline& p, JobResource& res, bool ok, const std::string& error) { p.on_probe(res, ok, error); });
  if (sys_.probe_server(r, done, &why) < 0) return setup_failed(r, why);
  r.pending = true;
  return true;
}

void ResourcePipeline::on_probe(JobResource& r, bool ok, const std::string& why) {
  if (phase_ != ResourcePhase::Setup) return;
  if (!ok)
    return fail_setup(
        fmt::format("nbd-server '{}' did not complete an NBD handshake: {} (see the job log)", r.spec.name, why));
  r.pending = false;
  r.record.state = ResourceState::Ready;
  changed();
  // Named with the process that serves, which for nbdkit is not the one started.
  event("resource-ready", fmt::format("{} answers on {}", server_label(r), r.record.socket));
  if (!any_pending()) finish_setup();
}

void ResourcePipeline::finish_setup() {
  for (auto& r : res_) {
    if (!r.is(ResourceKind::NbdDevice)) continue;
    if (std::string why; sys_.nbd_available(&why) < 0) {
      r.record.state = ResourceState::Unavailable;
      r.record.error = why;
      changed();
      return fail_setup(fmt::format("nbd-device '{}': {}", r.spec.name, why));
    }
    if (!connect_device(r)) return;
  }
  new_ticket();
  disarm_timer();
  phase_ = ResourcePhase::None;
  job_.on_setup_done(true, "");
}

bool ResourcePipeline::connect_device(JobResource& r) {
  const JobResource* server = &res_.front();
  for (const auto& s : res_)
    if (s.spec.name == r.spec.export_of) server = &s;
  std::string device, why;
  if (sys_.connect_device(r, server->record.socket, &device, &why) < 0) return setup_failed(r, why);
  r.record.device = r.record.endpoint = device;
  r.record.state = ResourceState::Ready;
  changed();
  event("resource-connected", fmt::format("nbd-device '{}': {} connected", r.spec.name, device));
  return true;
}

void ResourcePipeline::on_server_exit(JobResource& r, const std::string& how) {
  core::Resource& rec = r.record;
  const std::string label = server_label(r);
  release_server(r);
  switch (phase_) {
    case ResourcePhase::Setup:
      rec.state = ResourceState::Failed;
      rec.error = label + " " + how + " before serving";
      changed();
      return fail_setup(rec.error + " (see the job log)");
    case ResourcePhase::StopServers:
    case ResourcePhase::KillServers:
      event("resource-stopped", fmt::format("{} {}", label, how));
      rec.state = ResourceState::Released;
      changed();
      r.pending = false;
      if (!any_pending()) enter_disconnect_devices();
      return;
    default:
      // Died under a running job: the job cannot go on without its source.
      rec.state = ResourceState::Failed;
      rec.error = fmt::format("{} {} while the job ran", label, how);
      changed();
      event("resource-failed", rec.error);
      job_.on_resource_failed(rec.error);
      return;
  }
}

void ResourcePipeline::release_server(JobResource& r) {
  // Only once the server is dead (or was never recorded as started).
  sys_.release_server(job_, r);
  r.record.socket.clear();
  r.record.pid = 0;
  r.record.start_time = 0;
  r.record.endpoint.clear();
}

// ---- after a restart ------------------------------------------------------------------------

void ResourcePipeline::adopt() {
  for (auto& r : res_) {
    r.handles = ResourceHandles{};
    r.pending = false;
  }
  for (auto& r : res_) {
    core::Resource& rec = r.record;
    if (r.is(ResourceKind::NbdServer) && rec.pid > 0) {
      if (!sys_.hold_server(r, exit_watch(r))) {
        job_.on_resource_failed(fmt::format("{} was gone when the daemon restarted", server_label(r)));
        continue;
      }
    } else if (r.is(ResourceKind::Loop) && !rec.device.empty()) {
      if (std::string why; sys_.hold_loop(r, &why) < 0) {
        rec.device.clear();
        changed();
        job_.on_resource_failed(why);
      }
    }
    if (r.is_volume() && rec.state == ResourceState::Ready) sys_.hold_volume(r);
  }
}

}  // namespace repvisor
