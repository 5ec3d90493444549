// HostResources' NBD servers: a job's qemu-nbd or nbdkit started on a socket the daemon bound,
// serving a descriptor the daemon opened under the volume rules (a qcow2 image's backing and data
// files too); its readiness probed with a libnbd handshake; watched through its pidfd; stopped,
// killed by its cgroup, and released.
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "supervisor/entry.hpp"
#include "supervisor/host_resources.hpp"
#include "sys/libnbd.hpp"
#include "sys/pidfd.hpp"
#include "sys/proc.hpp"
#include "sys/spawn.hpp"

namespace repvisor {

namespace fs = std::filesystem;

void NbdCloser::operator()(nbd_handle* h) const {
  sys::libnbd(nullptr)->close(h);  // a handle exists only once the library is loaded
}

namespace {
std::string exit_text(int code, int status) {
  if (code == CLD_EXITED) return fmt::format("exited with status {}", status);
  const char* abbrev = sigabbrev_np(status);
  return fmt::format("was killed by {}", abbrev ? std::string("SIG") + abbrev : std::to_string(status));
}
}  // namespace

std::string HostResources::server_cgroup(const core::Job& job, const JobResource& r) const {
  return fmt::format("srv-{}-{}", job.id(), r.number);
}

std::string HostResources::server_socket(const core::Job& job, const JobResource& r) const {
  return fmt::format("{}/nbd-{}.sock", sup_.runtime_dir_of(job.id()), r.number);
}

int HostResources::start_server(const core::Job& job, JobResource& r, std::function<void(const std::string&)> on_exit,
                                ServerStart* out, std::string* why) {
  const core::ResourceSpec& spec = r.spec;
  auto fail = [&](std::string reason, int error = -EINVAL) {
    *why = std::move(reason);
    return error;
  };
  // The export is opened here, under the volume rules, and handed over as a descriptor: the
  // server reads exactly what was checked, whatever happens to the path meanwhile.
  sys::Opened src;
  if (int rc = sys::open_volume(volume_policy(), spec.path, false, 0, &src, why); rc < 0) return rc;
  // qemu-nbd's image is its descriptor 4 (see pass_fds), the files a qcow2 image names follow
  // (nbdkit here serves raw images only: core/resource.cpp).
  constexpr int kImageFd = 4;
  std::vector<Fd> image_files;
  std::string image_opts;
  if (spec.format == core::ImageFormat::Qcow2)
    if (auto refused = check_qcow2_image(src.fd.get(), spec.path, kImageFd, &image_files, &image_opts);
        !refused.empty())
      return fail(refused);

  const bool nbdkit = spec.server == core::NbdServerKind::Nbdkit;
  const std::string sock = server_socket(job, r);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (sock.size() >= sizeof sa.sun_path) return fail("socket path " + sock + " is too long (runtime_dir)");
  memcpy(sa.sun_path, sock.c_str(), sock.size() + 1);
  ::unlink(sock.c_str());  // a stale one is never in the way; the path is the daemon's to remove
  Fd listen_fd;
  if (nbdkit) {
    out->socket = sock;  // nbdkit binds it (below)
  } else {
    // Socket activation: the daemon binds the socket, so it is accepting before the server runs.
    listen_fd.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!listen_fd) return fail(fmt::format("socket: {}", strerror(errno)), -errno);
    if (bind(listen_fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 || listen(listen_fd.get(), 64) < 0)
      return fail(fmt::format("cannot listen on {}: {}", sock, strerror(errno)), -errno);
    chmod(sock.c_str(), 0600);
    out->socket = sock;
  }

  sys::SpawnRequest req{.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, .working_directory = "/"};
  int err = 0;
  const char* prog = nbdkit ? "nbdkit" : "qemu-nbd";
  req.executable = sys::find_executable(prog, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", &err);
  if (req.executable.empty()) return fail(fmt::format("{} is not installed: {}", prog, strerror(err)), -err);
  if (nbdkit) {
    // In the background, on a socket of its own (-U: a Unix socket only, no TCP). nbdkit 1.32
    // asks the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG) however it is started:
    // since 1.32.2 its --exit-with-parent code runs whether or not the option was given (a
    // backported refactoring dropped the test). Its parent is the daemon, so in the foreground
    // (or socket-activated, which implies it) it dies with the daemon, and a job adopted after a
    // restart or an upgrade loses its source. In the background the process started binds the
    // socket, forks the server and exits: the fork clears the death signal, and the server lives
    // on, as qemu-nbd does. It serves /dev/fd/3, the file checked here; its messages once it
    // serves go to syslog (in the background its stderr is /dev/null), its start's to the job log.
    req.argv = {prog, "--readonly", "-U", sock, "file", "file=/dev/fd/3"};
    req.pass_fds = {src.fd.get()};
  } else {
    // The server opens /dev/fd/4, the file checked here (3 is the listening socket).
    if (spec.format == core::ImageFormat::Qcow2)
      req.argv = {prog, "--read-only", "--persistent", "--shared=0", "--image-opts", image_opts};
    else
      req.argv = {prog,         "--read-only",  "--persistent",
                  "--shared=0", "--format=raw", fmt::format("/dev/fd/{}", kImageFd)};
    req.pass_fds = {listen_fd.get(), src.fd.get()};
    for (const auto& f : image_files) req.pass_fds.push_back(f.get());
    req.listen_fds = 1;  // descriptor 3 is the listening socket; 4, the image, is not one
  }
  const int log_fd = sup_.logs_->open_append(sup_.log_path(job));
  if (log_fd < 0) return fail(fmt::format("cannot open the job log: {}", strerror(-log_fd)), log_fd);
  Fd output(log_fd);
  req.output_fd = output.get();
  Fd cg;
  if (sup_.cgroups_) {
    if (int rc = sup_.cgroups_->create(server_cgroup(job, r), &cg); rc < 0)
      return fail(fmt::format("cannot create cgroup {}: {}", server_cgroup(job, r), strerror(-rc)), rc);
    req.cgroup_fd = cg.get();
  }
  sys::Spawned child;
  if (int rc = sup_.spawner_->spawn(req, &child); rc < 0) {
    if (sup_.cgroups_) sup_.cgroups_->remove(server_cgroup(job, r));
    return fail(fmt::format("cannot start {}: {}", prog, strerror(-rc)), rc);
  }
  sup_.crash_point("server-spawned");  // running in its cgroup, not yet recorded
  out->pid = child.pid;
  out->start_time = child.start_time;
  ResourceHandles& h = r.handles;
  h.listen = std::move(listen_fd);
  h.pidfd = std::move(child.pidfd);
  h.server_is_child = true;
  h.launcher = nbdkit ? child.pid : 0;
  h.on_exit = std::move(on_exit);
  watch_server(sup_.loop_, r);
  return 0;
}

std::string HostResources::check_qcow2_image(int fd, const std::string& path, int image_fd, std::vector<Fd>* files,
                                             std::string* opts) const {
  // qemu-nbd would open a qcow2 image's backing file and external data file (and theirs) by the
  // names in the headers: each must be a plain path that passes the same volume rules, and is
  // then opened here and handed over as a descriptor like the image itself, spelled out in the
  // options, so qemu reads exactly the files that were checked and looks up no name.
  const auto policy = volume_policy();
  const size_t max_files = sys::kMaxPassFds - (image_fd - 2);  // descriptors 3 .. image_fd are taken
  std::string current = path, prefix;
  *opts = fmt::format("driver=qcow2,file.driver=file,file.filename=/dev/fd/{}", image_fd);
  // Opens a checked file into the next descriptor: its /dev/fd name in the server, or "" and `why`.
  auto hand_over = [&](const std::string& resolved, std::string* why) -> std::string {
    if (files->size() == max_files) {
      *why = fmt::format("{}: its backing chain and data files are more than the {} files a server can be given", path,
                         max_files);
      return "";
    }
    sys::Opened o;
    if (sys::open_volume(policy, resolved, false, 0, &o, why) < 0) return "";
    files->push_back(std::move(o.fd));
    return fmt::format("/dev/fd/{}", image_fd + static_cast<int>(files->size()));
  };
  for (int depth = 0; depth < 8; ++depth) {
    sys::Qcow2Header header;
    if (auto why = sys::read_qcow2_header(fd, &header); !why.empty()) return fmt::format("{}: {}", current, why);
    if (const std::string& data = header.data_file; !data.empty()) {
      if (data.find(':') != std::string::npos)
        return fmt::format("{} has the external data file '{}': only plain paths are allowed, not protocols", current,
                           data);
      // Unlike a backing file's, a relative data file name is resolved by qemu against its own
      // working directory, not the image's: which file it means depends on where qemu runs.
      if (data[0] != '/')
        return fmt::format(
            "{} names its external data file '{}' by a relative path, which qemu would resolve "
            "against its working directory: give the image an absolute one (qemu-img amend -o "
            "data_file=PATH)",
            current, data);
      const std::string resolved = fs::path(data).lexically_normal().string();
      if (auto why = sys::check_volume(policy, resolved, false); !why.empty())
        return fmt::format("{} has the external data file '{}', refused: {}", current, data, why);
      std::string why;
      const std::string name = hand_over(resolved, &why);
      if (name.empty()) return why;
      *opts += fmt::format(",{0}data-file.driver=file,{0}data-file.filename={1}", prefix, name);
    }
    const std::string& backing = header.backing_file;
    if (backing.empty()) return "";
    if (backing.find(':') != std::string::npos)
      return fmt::format("{} has the backing file '{}': only plain paths are allowed, not protocols", current, backing);
    fs::path p = backing[0] == '/' ? fs::path(backing) : fs::path(current).parent_path() / backing;
    const std::string resolved = p.lexically_normal().string();
    if (auto why = sys::check_volume(policy, resolved, false); !why.empty())
      return fmt::format("{} has the backing file '{}', refused: {}", current, backing, why);
    std::string why;
    const std::string name = hand_over(resolved, &why);
    if (name.empty()) return why;
    fd = files->back().get();
    char magic[4] = {};
    const bool qcow2 = pread(fd, magic, sizeof magic, 0) == sizeof magic &&
                       memcmp(magic, sys::kQcow2Magic.data(), sys::kQcow2Magic.size()) == 0;
    prefix += "backing.";
    *opts +=
        fmt::format(",{0}driver={1},{0}file.driver=file,{0}file.filename={2}", prefix, qcow2 ? "qcow2" : "raw", name);
    current = resolved;
    if (!qcow2) return "";
  }
  return fmt::format("{}: a backing chain deeper than 8", path);
}

// ---- readiness --------------------------------------------------------------------------------

int HostResources::probe_server(JobResource& r, std::function<void(bool ok, const std::string& why)> done,
                                std::string* why) {
  ResourceHandles& h = r.handles;
  if (!sys::libnbd(why)) return -ENOPKG;
  h.on_probe = std::move(done);
  // nbdkit's socket is there once its starting process has ended: probed then (take_forked_server).
  if (h.launcher) return 0;
  if (int rc = connect_probe(sup_.loop_, r, why); rc < 0) {
    h.on_probe = nullptr;
    return rc;
  }
  return 0;
}

int HostResources::connect_probe(uv_loop_t* loop, JobResource& r, std::string* why) {
  ResourceHandles& h = r.handles;
  const sys::LibNbd* nbd = sys::libnbd(why);
  if (!nbd) return -ENOPKG;
  h.probe.reset(nbd->create());
  if (!h.probe) {
    *why = fmt::format("libnbd: {}", nbd->error());
    return -ENOMEM;
  }
  if (nbd->aio_connect_unix(h.probe.get(), r.record.socket.c_str()) < 0) {
    *why = fmt::format("libnbd: {}", nbd->error());
    h.probe.reset();
    return -ECONNREFUSED;
  }
  const int fd = nbd->aio_get_fd(h.probe.get());
  h.probe_poll = make_uv<uv_poll_t>([&](uv_poll_t* p) { return uv_poll_init(loop, p, fd); }, &r);
  probe_step(r);
  return 0;
}

void HostResources::probe_step(JobResource& r) {
  ResourceHandles& h = r.handles;
  const sys::LibNbd* nbd = sys::libnbd(nullptr);  // loaded: there is a probe
  nbd_handle* probe = h.probe.get();
  // Each outcome is reported from a poll callback, never from probe_server itself: the server
  // cannot have answered before the loop ran.
  const bool ready = nbd->aio_is_ready(probe) > 0;
  if (ready || nbd->aio_is_dead(probe) > 0 || nbd->aio_is_closed(probe) > 0) {
    if (!uv_is_active(reinterpret_cast<uv_handle_t*>(h.probe_poll.get()))) {
      // Settled at once (a dead connection): said from the loop's next look at the socket.
      uv_poll_start(h.probe_poll.get(), UV_READABLE | UV_WRITABLE | UV_DISCONNECT, [](uv_poll_t* p, int, int) {
        if (auto* res = static_cast<JobResource*>(p->data)) probe_step(*res);
      });
      return;
    }
    const std::string why = ready ? "" : nbd->get_error() ? nbd->get_error() : "connection closed";
    h.probe_poll.reset();
    h.probe.reset();
    auto done = std::move(h.on_probe);
    h.on_probe = nullptr;
    if (done) done(ready, why);
    return;
  }
  const unsigned dir = nbd->aio_get_direction(probe);
  int events = 0;
  if (dir & LIBNBD_AIO_DIRECTION_READ) events |= UV_READABLE;
  if (dir & LIBNBD_AIO_DIRECTION_WRITE) events |= UV_WRITABLE;
  uv_poll_start(h.probe_poll.get(), events, [](uv_poll_t* p, int status, int revents) {
    auto* res = static_cast<JobResource*>(p->data);
    if (!res || !res->handles.probe) return;
    const sys::LibNbd* lib = sys::libnbd(nullptr);
    if (status < 0 || (revents & UV_READABLE)) lib->aio_notify_read(res->handles.probe.get());
    if (res->handles.probe && (revents & UV_WRITABLE)) lib->aio_notify_write(res->handles.probe.get());
    probe_step(*res);
  });
}

void HostResources::stop_probe(JobResource& r) {
  ResourceHandles& h = r.handles;
  h.on_probe = nullptr;
  h.probe_poll.reset();
  h.probe.reset();
}

// ---- watching and stopping ------------------------------------------------------------------

void HostResources::watch_server(uv_loop_t* loop, JobResource& r) {
  ResourceHandles& h = r.handles;
  h.pid_poll = make_uv<uv_poll_t>([&](uv_poll_t* p) { return uv_poll_init(loop, p, h.pidfd.get()); }, &r);
  uv_poll_start(h.pid_poll.get(), UV_READABLE, [](uv_poll_t* p, int, int) {
    auto* res = static_cast<JobResource*>(p->data);
    if (!res) return;
    ResourceHandles& rh = res->handles;
    std::string how = "ended";
    if (rh.server_is_child && rh.pidfd) {
      siginfo_t si{};
      if (waitid(P_PIDFD, static_cast<id_t>(rh.pidfd.get()), &si, WEXITED | WNOHANG) < 0) {
        if (errno != ECHILD) return;
        // Reaped meanwhile as one of the orphans the daemon reaps (nbdkit's forked server is
        // one): the kernel tells a pidfd's holder how it ended (Linux 6.15), or nothing does.
        int code = 0, status = 0;
        how = sys::pidfd_exit_status(rh.pidfd.get(), &code, &status) == 0 ? exit_text(code, status)
                                                                          : "ended (exit status unknown)";
      } else if (si.si_pid == 0) {
        return;  // not yet
      } else {
        how = exit_text(si.si_code, si.si_status);
      }
    }
    if (rh.launcher && take_forked_server(p->loop, *res)) return;
    auto on_exit = std::move(rh.on_exit);
    rh.on_exit = nullptr;
    rh.on_probe = nullptr;
    rh.probe_poll.reset();
    rh.probe.reset();
    rh.pid_poll.reset();
    rh.pidfd.reset();
    if (on_exit) on_exit(how);
  });
}

bool HostResources::take_forked_server(uv_loop_t* loop, JobResource& r) {
  ResourceHandles& h = r.handles;
  const pid_t launcher = h.launcher;
  h.launcher = 0;
  h.pid_poll.reset();
  h.pidfd.reset();  // reaped by the watch
  // nbdkit's starting process has ended; normally with status 0, once it has bound the socket
  // and forked the server. An orphan now, the server was handed to the daemon (child subreaper:
  // to its first thread, this one, before its parent could be reaped): it is the child of ours
  // in the starting process's session (the spawn made one; nbdkit makes no other). Without it,
  // whatever the starting process said is the server's end.
  pid_t server = 0;
  for (pid_t pid : sys::thread_children())
    if (sys::process_session(pid) == launcher) server = pid;
  if (server <= 0) return false;
  h.pidfd.reset(sys::pidfd_open(server, 0));
  if (!h.pidfd) return false;
  h.server_is_child = true;
  r.record.pid = server;
  r.record.start_time = sys::process_start_time(server);
  // nbdkit made the socket with its umask, 022: only root could connect already (connect(2)
  // needs write permission); 0600, as the daemon makes qemu-nbd's.
  chmod(r.record.socket.c_str(), 0600);
  // A stop, or a kill, sent to the starting process is the server's too.
  if (h.signalled) sys::pidfd_send_signal(h.pidfd.get(), h.signalled, nullptr, 0);
  watch_server(loop, r);
  // The socket is bound and listening: the server's readiness is its handshake, as qemu-nbd's.
  if (std::string why; h.on_probe && connect_probe(loop, r, &why) < 0) {
    auto done = std::move(h.on_probe);
    h.on_probe = nullptr;
    done(false, why);
  }
  return true;
}

bool HostResources::hold_server(JobResource& r, std::function<void(const std::string&)> on_exit) {
  ResourceHandles& h = r.handles;
  if (h.pidfd) return true;
  // After a daemon restart: the recorded server, if it is still that process.
  const core::Resource& rec = r.record;
  if (rec.pid <= 0 || rec.start_time == 0 || sys::process_start_time(rec.pid) != rec.start_time) return false;
  h.pidfd.reset(sys::pidfd_open(rec.pid, 0));
  if (!h.pidfd) return false;
  h.server_is_child = false;
  h.on_exit = std::move(on_exit);
  watch_server(sup_.loop_, r);
  return true;
}

void HostResources::signal_server(JobResource& r, int sig) {
  r.handles.signalled = sig;
  if (r.handles.pidfd) sys::pidfd_send_signal(r.handles.pidfd.get(), sig, nullptr, 0);
}

void HostResources::kill_server(const core::Job& job, JobResource& r) {
  if (sup_.cgroups_)
    sup_.cgroups_->kill(server_cgroup(job, r));
  else
    signal_server(r, SIGKILL);
}

void HostResources::abandon_server(JobResource& r) {
  ResourceHandles& h = r.handles;
  h.on_exit = nullptr;
  h.pid_poll.reset();
  if (h.server_is_child && h.pidfd) sup_.reap_when_gone(std::move(h.pidfd));
  h.pidfd.reset();
}

void HostResources::release_server(const core::Job& job, JobResource& r) {
  // Only once the server is dead: its cgroup (with anything it started), then its socket.
  if (sup_.cgroups_) {
    const std::string cg = server_cgroup(job, r);
    if (sup_.cgroups_->populated(cg)) sup_.cgroups_->kill(cg);
    sup_.reap_exiting_orphans({sup_.cgroups_->cgroup_of(cg)});
    if (sup_.cgroups_->remove(cg) < 0) sup_.watch_stray(cg);
  }
  if (!r.record.socket.empty()) ::unlink(r.record.socket.c_str());
  r.handles.listen.reset();
}

}  // namespace repvisor
