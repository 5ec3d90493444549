// One job's resources from setup to teardown, as a state machine of its own. Setup: volumes,
// then NBD servers (ready once they answer a handshake), then NBD devices. Teardown, once the
// job's processes are gone, in the order that keeps data safe: flush volumes, stop NBD servers
// (SIGTERM, then SIGKILL), disconnect NBD devices, detach loop devices, discard what the policy
// says. As in systemd's service.c, each enter_<phase>() acts, arms the timer, then sets the
// phase; a phase with nothing to wait for moves on at once. Every step works from the job's
// record, not from what is held open, so the same teardown finishes one cut short by a daemon
// crash, and runs again on RetryCleanup. It acts only through a ResourceSystem.
#pragma once
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/job.hpp"
#include "supervisor/resource_system.hpp"

namespace repvisor {

enum class ResourcePhase { None, Setup, Sync, StopServers, KillServers, Devices, Detach, Discard };
const char* to_string(ResourcePhase p);

class ResourcePipeline {
 public:
  // `job` outlives the pipeline, and its resource records are never reallocated (one per spec,
  // made with the job). `cfg` is read at each use: a reload applies to the next timeout.
  ResourcePipeline(core::Job& job, core::JobDriver& driver, ResourceSystem& sys, const config::Config& cfg);
  ~ResourcePipeline();
  ResourcePipeline(const ResourcePipeline&) = delete;
  ResourcePipeline& operator=(const ResourcePipeline&) = delete;

  ResourcePhase phase() const { return phase_; }
  std::deque<JobResource>& resources() { return res_; }  // in the job's order

  // Sets up every resource; reports with job.on_setup_done(), possibly before it returns.
  void begin_setup();
  // A stop during setup: what is in flight is abandoned (the teardown takes down what was made).
  void abort_setup();
  // recovery = "adopt": the job runs on, so its resources are held and watched again. What is
  // gone fails the job (job.on_resource_failed).
  void adopt();

  // Tears everything down. `for_job`: the state machine waits for it (job.on_cleanup_done()),
  // else it is a retry. `earlier_error`: the teardown's first part (the job's cgroup) failed.
  void begin_teardown(bool for_job, const std::string& earlier_error = "");
  // Called once with whether the teardown in progress (or the next one) left nothing behind.
  void when_torn_down(std::function<void(bool ok)> fn) { waiters_.push_back(std::move(fn)); }
  // The volumes a deleted job created go (whatever their policy): false and why if one cannot.
  bool discard_volumes(std::string* why);

 private:
  // Each phase entered takes a new ticket; the completions it started carry a weak hold on it.
  // A completion whose ticket is gone belongs to a phase that was abandoned (a flush that
  // outlived its timeout) or to a pipeline that no longer exists (the job was deleted), and is
  // dropped: a late completion can never act on a later phase.
  using Ticket = std::shared_ptr<ResourcePipeline*>;
  void new_ticket() { ticket_ = std::make_shared<ResourcePipeline*>(this); }
  template <class F>
  auto ticketed(JobResource& r, F f) {
    return [hold = std::weak_ptr<ResourcePipeline*>(ticket_), rp = &r, f](auto&&... args) {
      if (auto t = hold.lock()) f(**t, *rp, std::forward<decltype(args)>(args)...);
    };
  }
  std::function<void(const std::string&)> exit_watch(JobResource& r);

  // Setup (resource_pipeline.cpp).
  bool setup_volume(JobResource& r);
  bool start_server(JobResource& r);
  void on_probe(JobResource& r, bool ok, const std::string& why);
  void finish_setup();
  bool connect_device(JobResource& r);
  bool setup_failed(JobResource& r, const std::string& why);  // the resource's failure: false
  void fail_setup(const std::string& why);
  void on_server_exit(JobResource& r, const std::string& how);
  void release_server(JobResource& r);

  // Teardown (resource_teardown.cpp), in this order.
  void enter_sync();
  void enter_stop_servers();
  void enter_kill_servers();
  void enter_disconnect_devices();
  void enter_detach();
  void enter_discard();
  void finish_teardown();
  void on_flushed(JobResource& r, int error);
  void poll_detach();
  void loop_detached(JobResource& r);
  bool discard(JobResource& r, std::string* why);
  void teardown_failure(JobResource& r, const std::string& why);

  void on_timer();
  void arm_timer(usec_t after, usec_t repeat = 0);
  void disarm_timer();
  bool any_pending() const;
  void changed();
  void event(std::string_view type, const std::string& message);
  std::string server_label(const JobResource& r) const;

  core::Job& job_;
  core::JobDriver& driver_;
  ResourceSystem& sys_;
  const config::Config& cfg_;
  std::deque<JobResource> res_;  // one per spec().resources, same order; never moved
  ResourcePhase phase_ = ResourcePhase::None;
  Ticket ticket_;
  std::unique_ptr<ResourceSystem::Timer> timer_;  // made on first use: most jobs have no resources
  usec_t detach_deadline_ = 0;
  bool failed_ = false;   // this teardown failed somewhere (the job's cleanup_error says first where)
  bool for_job_ = false;  // the state machine waits for this teardown (else it is a retry)
  std::vector<std::function<void(bool ok)>> waiters_;
};

}  // namespace repvisor
