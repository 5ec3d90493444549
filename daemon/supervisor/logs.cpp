// The supervisor's side of the bound on job logs: which logs the limiter watches, and the bytes
// it cut brought back to the jobs' records and properties.
#include "supervisor/entry.hpp"
#include "supervisor/log_limiter.hpp"

namespace repvisor {

namespace {
config::LogKeep keep_of(const core::Job& job) {
  auto keep = config::LogKeep::Both;
  config::log_keep_from_string(job.log_keep, &keep);
  return keep;
}
}  // namespace

void Supervisor::start_log_limiter() {
  log_limiter_ = std::make_unique<LogLimiter>(
      loop_, cfg_.logs, [this](const std::vector<LogCutReport>& reports) { on_log_cuts(reports); });
}

void Supervisor::track_log(const core::Job& job, bool running) {
  log_limiter_->track(job.id(), log_path(job), running, job.finished_usec, job.log_bytes_cut, keep_of(job));
}

void Supervisor::track_logs() {
  // Adopted jobs are watched again (and jobs being stopped, until their cleanup says they
  // ended: log_ended); the others' logs, if they have one, count towards max_total.
  for (const auto& [id, e] : entries_) {
    const core::Job& job = *e->job;
    track_log(job, job.state() == core::JobState::Running || job.state() == core::JobState::Stopping);
  }
}

void Supervisor::log_ended(const core::Job& job) { log_limiter_->finished(job.id(), now()); }

void Supervisor::on_log_cuts(const std::vector<LogCutReport>& reports) {
  for (const auto& r : reports) {
    core::Job* job = find_by_id(r.id);
    if (!job) continue;
    if (r.written && *r.written != job->log_written) {
      job->log_written = *r.written;
      if (observer_) observer_->job_changed(*job, core::kChangedLogWritten);
    }
    if (!r.cut_changed) continue;
    job->log_bytes_cut = r.cut;
    job->log_keep = config::to_string(r.keep);
    job->log_limit = r.limit;
    // Like progress, a running job's count is written with its next durable change, not each
    // time (a flood would cost a commit every report); a finished job's at once.
    if (r.final || core::is_terminal(job->state())) store_->save(*job);
    if (observer_) observer_->job_changed(*job, core::kChangedLog);
  }
}

}  // namespace repvisor
