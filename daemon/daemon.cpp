#include "daemon.hpp"

#include <signal.h>
#include <systemd/sd-daemon.h>

#include "util/log.hpp"

namespace repvisor {

Daemon::Daemon(config::Config cfg) : cfg_(std::move(cfg)) {
  if (int r = uv_loop_init(&loop_); r < 0) throw std::runtime_error(std::string("uv_loop_init: ") + uv_strerror(r));
}

Daemon::~Daemon() {
  server_.reset();
  api_.reset();
  sup_.reset();
  prepare_.reset();
  retry_.reset();
  sigterm_.reset();
  sigint_.reset();
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

  // Served last, once everything behind it is ready.
  server_->listen();
  log::notice("repvisord {} ready (state {}, runtime {})", REPVISOR_VERSION, cfg_.state_dir, cfg_.runtime_dir);
  sd_notify(0, "READY=1\nSTATUS=serving");
  uv_run(&loop_, UV_RUN_DEFAULT);
  log::notice("stopped");
  return 0;
}

void Daemon::before_poll() {
  // Record, then act on what was recorded (start queued jobs, answer waiters), until nothing is
  // left to record; only then tell clients: a reply never acknowledges what a crash could undo.
  std::string error;
  for (;;) {
    try {
      sup_->commit();
    } catch (const std::exception& e) {
      error = e.what();
      break;
    }
    if (!sup_->run_deferred() && !sup_->store_dirty()) break;
  }
  if (!error.empty()) {
    log::err("cannot record state: {}", error);
    // Try again soon; nothing else would wake us for it.
    uv_timer_start(
        retry_.get(), [](uv_timer_t*) {}, 1000, 0);
  }
  api_->flush(error);
  if (server_) server_->update();
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
    try {
      sup_->commit();
    } catch (const std::exception& e) {
      error = e.what();
      log::err("cannot record the final state: {}", error);
    }
    api_->flush(error);
    server_->update();
    server_->close();
    prepare_.reset();
    retry_.reset();
    sigterm_.reset();
    sigint_.reset();
    uv_stop(&loop_);
  });
}

}  // namespace repvisor
