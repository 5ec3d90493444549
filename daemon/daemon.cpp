#include "daemon.hpp"

#include <signal.h>

#include <systemd/sd-daemon.h>
#include <algorithm>

#include "util/log.hpp"

namespace repvisor {

config::Config ConfigSource::load(std::vector<std::string>* files) const {
  config::Config c = config::load_with_dropins(path, must_exist, files);
  if (!state_dir.empty()) c.state_dir = state_dir;
  if (!runtime_dir.empty()) c.runtime_dir = runtime_dir;
  return c;
}

Daemon::Daemon(config::Config cfg, ConfigSource source) : cfg_(std::move(cfg)), source_(std::move(source)) {
  if (int r = uv_loop_init(&loop_); r < 0) throw std::runtime_error(std::string("uv_loop_init: ") + uv_strerror(r));
}

Daemon::~Daemon() {
  system_bus_.reset();
  server_.reset();
  api_.reset();
  sup_.reset();
  prepare_.reset();
  retry_.reset();
  sync_hold_.reset();
  sigterm_.reset();
  sigint_.reset();
  sighup_.reset();
  watchdog_.reset();
  // Let the close callbacks run, then the loop must have nothing left.
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop_) != 0) log::err("event loop still has open handles at exit");
}

int Daemon::run() {
  signal(SIGPIPE, SIG_IGN);
  sup_ = std::make_unique<Supervisor>(&loop_, cfg_);
  sup_->init();
  api_ = std::make_unique<bus::Api>(*sup_, &loop_);
  server_ = std::make_unique<bus::PrivateServer>(&loop_, *api_, cfg_.runtime_dir + "/private");

  retry_ = make_uv<uv_timer_t>([&](uv_timer_t* t) { return uv_timer_init(&loop_, t); }, this);
  sync_hold_ = make_uv<uv_timer_t>([&](uv_timer_t* t) { return uv_timer_init(&loop_, t); }, this);
  prepare_ = make_uv<uv_prepare_t>([&](uv_prepare_t* p) { return uv_prepare_init(&loop_, p); }, this);
  uv_prepare_start(prepare_.get(), [](uv_prepare_t* p) {
    if (auto* d = static_cast<Daemon*>(p->data)) d->before_poll();
  });
  auto on_signal = [](uv_signal_t* s, int sig) {
    if (auto* d = static_cast<Daemon*>(s->data)) d->on_stop_signal(sig);
  };
  sigterm_ = make_uv<uv_signal_t>([&](uv_signal_t* s) { return uv_signal_init(&loop_, s); }, this);
  sigint_ = make_uv<uv_signal_t>([&](uv_signal_t* s) { return uv_signal_init(&loop_, s); }, this);
  uv_signal_start(sigterm_.get(), on_signal, SIGTERM);
  uv_signal_start(sigint_.get(), on_signal, SIGINT);
  sighup_ = make_uv<uv_signal_t>([&](uv_signal_t* s) { return uv_signal_init(&loop_, s); }, this);
  uv_signal_start(
      sighup_.get(),
      [](uv_signal_t* s, int) {
        if (auto* d = static_cast<Daemon*>(s->data)) d->reload();
      },
      SIGHUP);

  // Served last, once everything behind it is ready; the bus name is requested last of all.
  server_->listen(cfg_.admin_group);
  if (cfg_.bus_system != "no") {
    system_bus_ = std::make_unique<bus::SystemBus>(&loop_, *api_, cfg_.bus_system);
    system_bus_->start();
  }
  log::notice("repvisord {} ready (state {}, runtime {})", REPVISOR_VERSION, cfg_.state_dir, cfg_.runtime_dir);
  sd_notify(0, "READY=1\nSTATUS=serving");
  update_status();
  uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    // Pinged by a timer on the loop: a loop that stops turning stops the pings.
    watchdog_ = make_uv<uv_timer_t>([&](uv_timer_t* t) { return uv_timer_init(&loop_, t); }, this);
    const uint64_t every = std::max<uint64_t>(watchdog_usec / 2 / 1000, 1);
    uv_timer_start(
        watchdog_.get(), [](uv_timer_t*) { sd_notify(0, "WATCHDOG=1"); }, every, every);
    uv_unref(reinterpret_cast<uv_handle_t*>(watchdog_.get()));
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  log::notice("stopped");
  return 0;
}

void Daemon::before_poll() {
  // Record, then act on what was recorded (start queued jobs, answer waiters), until nothing is
  // left to record; only then tell clients: a reply never acknowledges what a crash could undo.
  std::string error;
  for (;;) {
    sup_->end_cgroups();
    try {
      sup_->commit();
    } catch (const std::exception& e) {
      error = e.what();
      break;
    }
    // A caller waits for what is now committed (a Submit: the job is recorded, which is all its
    // reply says): it is told before the deferred work runs, as systemd answers StartUnit once
    // the job is queued. The jobs it queued still start in this iteration, before any other
    // request is read, so nothing else can see the difference; their start is recorded by the
    // next commit and made durable with the next sync.
    if (api_->replies_waiting()) {
      if (!sync_now(&error)) break;
      api_->flush("");
    }
    if (!sup_->run_deferred() && !sup_->store_dirty()) break;
  }
  // Commits reach the WAL at once; making them durable costs an fsync, paid once for all of
  // them and before anything is told. A caller waiting for a reply gets it now. When only
  // signals wait, the sync waits too, at most kSyncHoldMsec: a stop's request and its end
  // (usually a fraction of a millisecond apart) then share one fsync instead of two.
  bool hold = false;
  if (error.empty() && sup_->store_unsynced()) {
    hold = !api_->replies_waiting() && !sync_due_ && !stopping_;
    if (hold && !sync_held_) {
      sync_held_ = true;
      uv_timer_start(
          sync_hold_.get(),
          [](uv_timer_t* t) {
            if (auto* d = static_cast<Daemon*>(t->data)) d->sync_due_ = true;
          },
          sync_failed_ ? 1000 : kSyncHoldMsec, 0);  // a failing disk is retried each second
    }
    if (!hold) sync_now(&error);
  }
  if (!error.empty()) {
    log::err("cannot record state: {}", error);
    // Try again soon; nothing else would wake us for it.
    uv_timer_start(
        retry_.get(), [](uv_timer_t*) {}, 1000, 0);
  }
  if (!hold) api_->flush(error);  // held: nothing is told before the sync
  if (server_) server_->update();
  if (system_bus_) system_bus_->update();
  if (!hold && !stopping_) update_status();
}

bool Daemon::sync_now(std::string* error) {
  uv_timer_stop(sync_hold_.get());
  sync_held_ = sync_due_ = false;
  if (!sup_->store_unsynced()) return true;
  try {
    sup_->sync();
    sync_failed_ = false;
    return true;
  } catch (const std::exception& e) {
    *error = e.what();
    sync_failed_ = true;
    return false;
  }
}

void Daemon::update_status() {
  // systemctl status shows it: what the daemon carries, when that changes.
  const unsigned active = sup_->jobs_active();
  const size_t total = sup_->job_count();
  if (active == status_active_ && total == status_total_) return;
  status_active_ = active;
  status_total_ = total;
  sd_notifyf(0, "STATUS=serving: %u job(s) active, %zu recorded", active, total);
}

void Daemon::reload() {
  sd_notify(0, "RELOADING=1\nSTATUS=reloading the configuration");
  try {
    config::Config wanted = source_.load();
    for (const auto& key : config::keys_needing_restart(cfg_, wanted))
      log::warning("reload: {} changed; it takes effect only after a restart", key);
    wanted.cgroup_root = cfg_.cgroup_root;
    wanted.state_dir = cfg_.state_dir;
    wanted.runtime_dir = cfg_.runtime_dir;
    sup_->reconfigure(wanted);
    if (wanted.admin_group != cfg_.admin_group) server_->set_group(wanted.admin_group);
    wanted.bus_system = cfg_.bus_system;
    cfg_ = wanted;
    log::notice("configuration reloaded from {}", source_.path);
  } catch (const config::ConfigError& e) {
    // A bad file changes nothing: the daemon keeps running on what it had.
    log::err("reload refused, keeping the running configuration: {}", e.what());
  }
  sd_notify(0, "READY=1\nSTATUS=serving");
  status_active_ = ~0u;  // the job counts again at the next iteration
}

void Daemon::on_stop_signal(int sig) {
  if (stopping_) {
    log::notice("{} received again: already stopping", strsignal(sig));
    return;
  }
  stopping_ = true;
  log::notice("{} received: stopping all jobs", strsignal(sig));
  sd_notify(0, "STOPPING=1\nSTATUS=stopping all jobs");
  sup_->shutdown([this] {
    // Every job is terminal: record it, answer what is pending, then let the loop run dry.
    std::string error;
    sup_->end_cgroups();
    try {
      sup_->commit();
      sup_->sync();
    } catch (const std::exception& e) {
      error = e.what();
      log::err("cannot record the final state: {}", error);
    }
    api_->flush(error);
    server_->update();
    if (system_bus_) {
      system_bus_->update();
      system_bus_->close();
    }
    server_->close();
    prepare_.reset();
    retry_.reset();
    sync_hold_.reset();
    sigterm_.reset();
    sigint_.reset();
    sighup_.reset();
    watchdog_.reset();
    uv_stop(&loop_);
  });
}

}  // namespace repvisor
