// The notify sockets: sd_notify(3) datagrams from the jobs' processes.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "core/notify.hpp"
#include "supervisor/entry.hpp"
#include "sys/proc.hpp"
#include "util/log.hpp"

#include <fmt/format.h>

namespace repvisor {

namespace fs = std::filesystem;

// ---- the job's runtime directory (its notify socket, its servers' sockets) -----------------

int Supervisor::make_runtime_dir(Entry& e) {
  e.runtime_dir = true;
  return dirs_.make_job_runtime_dir(e.job->id());
}

void Supervisor::remove_runtime_dir(Entry& e) {
  // One rmdir on every end of a job that made one, none for a job that did not.
  if (e.runtime_dir && dirs_.remove_job_runtime_dir(e.job->id())) e.runtime_dir = false;
}

// ---- notify sockets -----------------------------------------------------------------------
//
// One socket for every job, as systemd has one for every unit: a start and an end cost no
// socket, bind, poll registration, unlink and directory of their own. A datagram's job is told
// by its sender (the kernel attaches its PID: SO_PASSCRED): a job's main process by its PID, any
// other process by its cgroup (or, without cgroups, by its session, whose id is the main PID).
// Jobs started by a daemon from before the shared socket keep their own: see recover_job().

namespace {
// A datagram socket bound at `path`, taking the kernel's sender credentials with each message.
int bind_notify(const std::string& path, Fd* out) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return -ENAMETOOLONG;
  memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  Fd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return -errno;
  ::unlink(path.c_str());
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) return -errno;
  int one = 1;
  if (setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0) return -errno;
  *out = std::move(fd);
  return 0;
}
}  // namespace

std::string Supervisor::notify_socket_path() const { return cfg_.runtime_dir + "/notify"; }

void Supervisor::open_notify_socket() {
  if (int r = bind_notify(notify_socket_path(), &notify_fd_); r < 0)
    throw std::runtime_error("notify socket " + notify_socket_path() + ": " + strerror(-r));
  notify_poll_ = make_uv<uv_poll_t>([&](uv_poll_t* p) { return uv_poll_init(loop_, p, notify_fd_.get()); }, this);
  uv_poll_start(notify_poll_.get(), UV_READABLE, [](uv_poll_t* p, int, int) {
    if (auto* self = static_cast<Supervisor*>(p->data)) self->on_notify(self->notify_fd_.get(), nullptr);
  });
  uv_unref(reinterpret_cast<uv_handle_t*>(notify_poll_.get()));
}

void Supervisor::drain_notify() {
  if (notify_fd_) on_notify(notify_fd_.get(), nullptr);
}

std::string Supervisor::job_notify_path(const std::string& id) const { return runtime_dir_of(id) + "/notify"; }

int Supervisor::open_job_notify_socket(Entry& e) {
  if (int r = bind_notify(job_notify_path(e.job->id()), &e.notify_fd); r < 0) return r;
  e.notify_poll = make_uv<uv_poll_t>([&](uv_poll_t* p) { return uv_poll_init(loop_, p, e.notify_fd.get()); }, &e);
  uv_poll_start(e.notify_poll.get(), UV_READABLE, [](uv_poll_t* p, int, int) {
    if (auto* en = static_cast<Entry*>(p->data)) en->owner->on_notify(en->notify_fd.get(), en);
  });
  return 0;
}

void Supervisor::close_job_notify_socket(Entry& e) {
  e.notify_poll.reset();
  if (e.notify_fd) {
    e.notify_fd.reset();
    ::unlink(job_notify_path(e.job->id()).c_str());
  }
}

void Supervisor::track_main(core::Job& job) { mains_[job.main_pid] = job.id(); }

void Supervisor::forget_main(const core::Job& job) {
  // A PID is ours to read only while its process is alive or a zombie: forgotten at the reap.
  auto it = mains_.find(job.main_pid);
  if (it != mains_.end() && it->second == job.id()) mains_.erase(it);
}

Supervisor::Entry* Supervisor::notify_sender(pid_t pid) {
  if (pid <= 0) return nullptr;
  auto by_id = [&](const std::string& id) -> Entry* {
    auto it = entries_.find(id);
    return it == entries_.end() ? nullptr : it->second.get();
  };
  if (auto it = mains_.find(pid); it != mains_.end()) return by_id(it->second);
  if (cgroups_) {
    // <root>/job-<id>[/...]: the job's cgroup, or one the job made below it.
    const std::string cg = sys::process_cgroup(pid), root = cgroups_->cgroup_of("job-");
    if (cg.compare(0, root.size(), root) == 0) {
      Entry* e = by_id(cg.substr(root.size(), cg.find('/', root.size()) - root.size()));
      if (e && e->in_cgroup) return e;
    }
  }
  // Without a cgroup, a job is the session its main process leads (reaped or not).
  if (!sessions_.empty()) {
    const pid_t sid = sys::process_session(pid);
    for (const auto& id : sessions_) {
      Entry* e = by_id(id);
      if (e && sid > 0 && e->job->main_pid == sid) return e;
    }
  }
  return nullptr;
}

namespace {
constexpr usec_t kRejectWindow = 10 * USEC_PER_SEC;
constexpr unsigned kRejectsLogged = 5;
}  // namespace

void Supervisor::reject_notify(RejectLog& rl, const std::string& who, const std::string& why) {
  const usec_t t = now_monotonic();
  if (t - rl.window_start >= kRejectWindow) {
    if (rl.suppressed) log::warning("{}: {} more notify messages were dropped", who, rl.suppressed);
    rl.window_start = t;
    rl.in_window = rl.suppressed = 0;
  }
  if (rl.in_window++ < kRejectsLogged)
    log::warning("{}: {}", who, why);
  else
    ++rl.suppressed;
}

void Supervisor::on_notify(int fd, Entry* own) {
  for (;;) {
    char buf[core::kNotifyMaxMessage + 1];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 8)];
    iovec iov{buf, sizeof buf};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    const ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
    if (n < 0) return;  // EAGAIN: drained
    const ucred* cred = nullptr;
    std::vector<Fd> fds;  // BARRIER=1 passes an fd; closing it tells the sender we got here
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_SOCKET) continue;
      if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len == CMSG_LEN(sizeof(ucred)))
        cred = reinterpret_cast<const ucred*>(CMSG_DATA(c));
      else if (c->cmsg_type == SCM_RIGHTS)
        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i)
          fds.emplace_back(reinterpret_cast<const int*>(CMSG_DATA(c))[i]);
    }
    const pid_t pid = cred ? cred->pid : 0;
    // On a job's own socket too, the sender must be one of that job's processes.
    Entry* e = notify_sender(pid);
    if (own && e != own) e = nullptr;
    if (!e) {
      if (own)
        reject_notify(own->rejects, "job " + own->job->id(),
                      fmt::format("notify message from pid {} outside the job dropped", pid));
      else
        reject_notify(unknown_rejects_, notify_socket_path(),
                      fmt::format("notify message from pid {}, a process of no job, dropped", pid));
      continue;
    }
    core::Job& job = *e->job;
    auto reject = [&](const std::string& why) { reject_notify(e->rejects, "job " + job.id(), why); };
    if (static_cast<size_t>(n) > core::kNotifyMaxMessage || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
      reject(fmt::format("notify message from pid {} too large ({} bytes) dropped", pid, n));
      continue;
    }
    core::NotifyMessage msg;
    std::string error;
    if (!core::parse_notify(std::string_view(buf, static_cast<size_t>(n)), &msg, &error)) {
      reject(fmt::format("malformed notify message from pid {} dropped: {}", pid, error));
      continue;
    }
    if (msg.checkpoint && !core::is_valid_utf8(*msg.checkpoint)) {
      reject(fmt::format("checkpoint from pid {} is not UTF-8 text; dropped", pid));
      msg.checkpoint.reset();
    }
    if (msg.status) job.set_status_text(*msg.status);
    if (msg.exit_status) job.set_reported_exit_status(*msg.exit_status);
    if (msg.bytes_done || msg.bytes_total) job.set_bytes(msg.bytes_done, msg.bytes_total);
    if (msg.checkpoint) job.set_checkpoint(*msg.checkpoint);
    if (msg.extend_timeout_usec) job.extend_stop_timeout(*msg.extend_timeout_usec, cfg_.max_stop_extension);
    if (msg.phase || msg.progress)
      job.set_progress(msg.phase ? *msg.phase : job.phase, msg.progress ? *msg.progress : job.progress);
    if (msg.ready) event(job, "ready", "the job reported READY=1");
    if (msg.stopping) event(job, "stopping", msg.status ? *msg.status : "the job reported STOPPING=1");
  }
}

}  // namespace repvisor
