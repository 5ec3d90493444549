// The per-job notify socket: sd_notify(3) datagrams from the job's processes.
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

std::string Supervisor::runtime_dir_of(const std::string& id) const { return cfg_.runtime_dir + "/jobs/" + id; }

int Supervisor::make_runtime_dir(const std::string& id) {
  // One mkdir on every start; the parents only when they are missing (removed under us).
  const std::string dir = runtime_dir_of(id);
  if (::mkdir(dir.c_str(), 0777) == 0 || errno == EEXIST) return 0;
  std::error_code ec;
  fs::create_directories(dir, ec);
  return ec ? -ec.value() : 0;
}

void Supervisor::remove_runtime_dir(const std::string& id) {
  // Normally empty by now (the sockets are unlinked as they close): one rmdir on every job end.
  const std::string dir = runtime_dir_of(id);
  if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
  std::error_code ec;
  fs::remove_all(dir, ec);
}

// ---- notify socket ------------------------------------------------------------------------

std::string Supervisor::notify_path(const core::Job& job) const { return runtime_dir_of(job.id()) + "/notify"; }

int Supervisor::open_notify_socket(Entry& e) {
  if (int r = make_runtime_dir(e.job->id()); r < 0) return r;
  const std::string path = notify_path(*e.job);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return -ENAMETOOLONG;
  memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  Fd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return -errno;
  ::unlink(path.c_str());
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) return -errno;
  // The kernel attaches the sender's pid/uid to every datagram: we check the pid is the job's.
  int one = 1;
  if (setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0) return -errno;
  e.notify_fd = std::move(fd);
  e.notify_poll = make_uv<uv_poll_t>([&](uv_poll_t* p) { return uv_poll_init(loop_, p, e.notify_fd.get()); }, &e);
  uv_poll_start(e.notify_poll.get(), UV_READABLE, [](uv_poll_t* p, int, int) {
    if (auto* en = static_cast<Entry*>(p->data)) en->owner->on_notify(*en);
  });
  return 0;
}

void Supervisor::close_notify_socket(Entry& e) {
  e.notify_poll.reset();
  if (e.notify_fd) {
    e.notify_fd.reset();
    ::unlink(notify_path(*e.job).c_str());
  }
}

namespace {
constexpr usec_t kRejectWindow = 10 * USEC_PER_SEC;
constexpr unsigned kRejectsLogged = 5;
}  // namespace

void Supervisor::reject_notify(Entry& e, const std::string& why) {
  const usec_t t = now_monotonic();
  if (t - e.reject_window_start >= kRejectWindow) {
    if (e.rejects_suppressed)
      log::warning("job {}: {} more notify messages were dropped", e.job->id(), e.rejects_suppressed);
    e.reject_window_start = t;
    e.rejects_in_window = e.rejects_suppressed = 0;
  }
  if (e.rejects_in_window++ < kRejectsLogged)
    log::warning("job {}: {}", e.job->id(), why);
  else
    ++e.rejects_suppressed;
}

bool Supervisor::sender_belongs_to(Entry& e, pid_t pid) {
  if (pid <= 0) return false;
  if (e.in_cgroup) {
    const std::string rel = cgroups_->cgroup_of(cgroup_name(*e.job));
    const std::string cg = sys::process_cgroup(pid);
    return cg == rel || cg.rfind(rel + "/", 0) == 0;
  }
  return pid == e.job->main_pid || sys::process_session(pid) == e.job->main_pid;
}

void Supervisor::on_notify(Entry& e) {
  core::Job& job = *e.job;
  for (;;) {
    char buf[core::kNotifyMaxMessage + 1];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 8)];
    iovec iov{buf, sizeof buf};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    const ssize_t n = recvmsg(e.notify_fd.get(), &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
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
    if (!cred || !sender_belongs_to(e, cred->pid)) {
      reject_notify(e, fmt::format("notify message from pid {} outside the job dropped", cred ? cred->pid : 0));
      continue;
    }
    if (static_cast<size_t>(n) > core::kNotifyMaxMessage || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
      reject_notify(e, fmt::format("notify message from pid {} too large ({} bytes) dropped", cred->pid, n));
      continue;
    }
    core::NotifyMessage msg;
    std::string error;
    if (!core::parse_notify(std::string_view(buf, static_cast<size_t>(n)), &msg, &error)) {
      reject_notify(e, fmt::format("malformed notify message from pid {} dropped: {}", cred->pid, error));
      continue;
    }
    if (msg.checkpoint && !core::valid_utf8(*msg.checkpoint)) {
      reject_notify(e, fmt::format("checkpoint from pid {} is not UTF-8 text; dropped", cred->pid));
      msg.checkpoint.reset();
    }
    if (msg.status) job.set_status_text(*msg.status);
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
