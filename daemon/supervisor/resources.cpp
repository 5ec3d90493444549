// The supervisor's side of job resources: the checks of a submitted spec against this host,
// what a job's command is given (environment, placeholders), RetryCleanup, Resume and a delete's
// discard, and the JobDriver calls that hand setup and teardown to the job's ResourcePipeline
// (supervisor/resource_pipeline.hpp).
#include <fmt/format.h>

#include "supervisor/entry.hpp"
#include "sys/volume.hpp"

namespace repvisor {

using core::ResourceKind;
using core::ResourceState;

namespace {
bool is_volume(ResourceKind k) { return k == ResourceKind::File || k == ResourceKind::Loop; }
}  // namespace

sys::VolumePolicy Supervisor::volume_policy() const { return {cfg_.volume_roots, cfg_.volume_devices}; }

void Supervisor::check_resources_here(const core::JobSpec& spec) const {
  // A limit that would not be enforced is refused, never dropped silently.
  if (spec.tasks_max) {
    if (!cgroups_)
      throw ApiError(ErrorKind::InvalidArgs,
                     "tasks_max: jobs run without cgroups here (cgroup_root), so no task "
                     "limit can be enforced");
    if (!cgroups_->pids_unavailable().empty())
      throw ApiError(ErrorKind::InvalidArgs, "tasks_max: " + cgroups_->pids_unavailable());
  }
  const auto policy = volume_policy();
  for (size_t i = 0; i < spec.resources.size(); ++i) {
    const auto& r = spec.resources[i];
    if (r.kind == ResourceKind::NbdDevice) continue;
    const bool may_create = is_volume(r.kind) && r.size.has_value();
    if (auto why = sys::check_volume(policy, r.path, may_create); !why.empty())
      throw ApiError(ErrorKind::InvalidArgs, fmt::format("resources[{}].path: {}", i, why));
  }
}

void Supervisor::begin_setup(core::Job& job) { entry(job).resources->begin_setup(); }

void Supervisor::abort_setup(core::Job& job) { entry(job).resources->abort_setup(); }

void Supervisor::start_resource_cleanup(Entry& e, bool for_job, const std::string& earlier_error) {
  e.resources->begin_teardown(for_job, earlier_error);
}

void Supervisor::adopt_resources(Entry& e) { e.resources->adopt(); }

void Supervisor::add_resource_env(Entry& e, std::map<std::string, std::string>& env, std::vector<std::string>& argv) {
  const core::Job& job = *e.job;
  const auto& specs = job.spec().resources;
  for (size_t i = 0; i < specs.size(); ++i) {
    const std::string suffix = core::resource_env_suffix(specs[i].name);
    const std::string& ep = job.resources[i].endpoint;
    const bool nbd = specs[i].kind == ResourceKind::NbdServer;
    env[(nbd ? "REPVISOR_NBD_" : "REPVISOR_VOLUME_") + suffix] = ep;
    const std::string placeholder = fmt::format("{{{}.{}}}", nbd ? "nbd" : "volume", specs[i].name);
    for (auto& a : argv)
      for (size_t at = a.find(placeholder); at != std::string::npos; at = a.find(placeholder, at + ep.size()))
        a.replace(at, placeholder.size(), ep);
  }
  if (!job.checkpoint.empty()) env["REPVISOR_CHECKPOINT"] = job.checkpoint;
}

void Supervisor::retry_cleanup(core::Job& job, const Caller* caller, std::function<void(bool ok)> done) {
  CallerScope scope(caller_, caller);
  Entry& e = entry(job);
  if (!core::is_terminal(job.state()))
    throw ApiError(ErrorKind::JobActive,
                   fmt::format("job {} is {}: its cleanup runs when it ends", job.id(), core::to_string(job.state())));
  e.resources->when_torn_down(std::move(done));
  if (job.cleanup_state == "running") return;  // joins the run in progress
  event(job, "cleanup-retry", "cleanup started again on request");
  start_resource_cleanup(e, false);
}

void Supervisor::resume(core::Job& job, const Caller* caller) {
  CallerScope scope(caller_, caller);
  Entry& e = entry(job);
  if (shutting_down_) throw ApiError(ErrorKind::ShuttingDown, "the daemon is shutting down");
  const std::string id = job.id();
  if (!core::is_terminal(job.state()))
    throw ApiError(ErrorKind::JobActive, fmt::format("job {} is {}: only a stopped or failed job can be resumed", id,
                                                     core::to_string(job.state())));
  if (job.state() == core::JobState::Completed)
    throw ApiError(ErrorKind::NotResumable, fmt::format("job {} completed: there is nothing left to resume", id));
  if (e.deleting || job.delete_requested)
    throw ApiError(ErrorKind::NotResumable, fmt::format("job {} is being deleted", id));
  if (job.cleanup_state == "failed")
    throw ApiError(ErrorKind::NotResumable,
                   fmt::format("job {}: its cleanup failed ({}); run RetryCleanup first", id, job.cleanup_error));
  if (job.cleanup_state == "running")
    throw ApiError(ErrorKind::JobActive, fmt::format("job {} is still being cleaned up", id));
  const auto& specs = job.spec().resources;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!is_volume(specs[i].kind)) continue;
    if (job.resources[i].state == ResourceState::Discarded)
      throw ApiError(ErrorKind::NotResumable,
                     fmt::format("job {}: volume '{}' ({}) was discarded; the data to resume from is gone", id,
                                 specs[i].name, specs[i].path));
    const bool must_exist = job.resources[i].created || !specs[i].size;
    if (auto why = sys::check_volume(volume_policy(), specs[i].path, !must_exist); !why.empty())
      throw ApiError(ErrorKind::NotResumable, fmt::format("job {}: volume '{}': {}", id, specs[i].name, why));
  }
  const uint32_t run = job.runs + 1;
  event(job, "resumed",
        fmt::format("run {} queued{}", run,
                    job.checkpoint.empty() ? std::string(", no checkpoint") : ", from checkpoint " + job.checkpoint));
  for (auto& r : job.resources) {
    const bool created = r.created;
    r = core::Resource{};
    r.created = created;
  }
  job.reset_for_resume();
  queue_.push_back(id);
  update_active();
}

bool Supervisor::discard_for_delete(core::Job& job, std::string* why) {
  if (job.cleanup_state == "failed" || job.cleanup_state == "running") {
    *why = fmt::format(
        "job {}: its cleanup {} ({}); a job is deleted only once nothing of it is left (retry with "
        "RetryCleanup)",
        job.id(), job.cleanup_state == "failed" ? "failed" : "is running", job.cleanup_error);
    return false;
  }
  return entry(job).resources->discard_volumes(why);
}

}  // namespace repvisor
