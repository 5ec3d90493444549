// A job's resources: set up before its command starts (volumes, then NBD servers, then NBD
// devices), torn down after its last process is gone, in the order that keeps data safe:
// flush volumes, stop NBD servers, disconnect NBD devices, detach loop devices, discard what the
// policy says. Every step works from the job's record (not from open handles), so the same code
// finishes a teardown after a daemon crash, and runs again on RetryCleanup.
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
#include "sys/libnbd.hpp"
#include "sys/loop.hpp"
#include "sys/nbd_netlink.hpp"
#include "sys/pidfd.hpp"
#include "sys/proc.hpp"
#include "sys/spawn.hpp"
#include "sys/volume.hpp"
#include "util/log.hpp"

namespace repvisor {

namespace fs = std::filesystem;
using core::ResourceKind;
using core::ResourceState;

namespace {
constexpr uint64_t kDetachPollMs = 20;  // sysfs has no event for a loop device's unbinding

bool is_volume(ResourceKind k) { return k == ResourceKind::File || k == ResourceKind::Loop; }

std::string server_label(const core::ResourceSpec& s, const core::Resource& r) {
  return fmt::format("nbd-server '{}' ({}{})", s.name, core::to_string(s.server),
                     r.pid ? fmt::format(", pid {}", r.pid) : std::string());
}

std::string exit_text(const siginfo_t& si) {
  if (si.si_code == CLD_EXITED) return fmt::format("exited with status {}", si.si_status);
  const char* abbrev = sigabbrev_np(si.si_status);
  return fmt::format("was killed by {}", abbrev ? std::string("SIG") + abbrev : std::to_string(si.si_status));
}

void close_probe(ResourceHandles& h) {
  h.probe_poll.reset();
  if (h.probe) {
    sys::libnbd(nullptr)->close(h.probe);  // a probe exists only once the library is loaded
    h.probe = nullptr;
  }
}

// An fsync running in the thread pool. It owns a duplicate of the descriptor: a timed-out flush
// may outlive the handles of its job, and must never flush a reused descriptor number.
struct FsyncReq {
  uv_fs_t req{};
  Supervisor* sup = nullptr;
  std::string job_id;
  uint64_t generation = 0;
  size_t index = 0;
  Fd fd;
};
}  // namespace

bool Supervisor::resource_setup_failed(Entry& e, size_t i, const std::string& why) {
  core::Job& job = *e.job;
  job.resources[i].state = ResourceState::Failed;
  job.resources[i].error = why;
  changed(job, core::kChangedResources);
  const auto& spec = job.spec().resources[i];
  fail_setup(e, fmt::format("{} '{}': {}", core::to_string(spec.kind), spec.name, why));
  return false;
}

sys::VolumePolicy Supervisor::volume_policy() const { return {cfg_.volume_roots, cfg_.volume_devices}; }

std::string Supervisor::server_cgroup(const core::Job& job, size_t i) const {
  return fmt::format("srv-{}-{}", job.id(), i);
}

std::string Supervisor::server_socket(const core::Job& job, size_t i) const {
  return fmt::format("{}/nbd-{}.sock", runtime_dir_of(job.id()), i);
}

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

std::string Supervisor::check_qcow2_image(int fd, const std::string& path, int image_fd, std::vector<Fd>* files,
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

// ---- setup ----------------------------------------------------------------------------------

void Supervisor::begin_setup(core::Job& job) {
  Entry& e = entry(job);
  e.res.clear();
  e.res.resize(job.resources.size());
  e.phase = ResourcePhase::Setup;
  ++e.generation;
  e.cleanup_failed = false;
  if (int r = make_runtime_dir(e); r < 0)
    return fail_setup(e, fmt::format("cannot create {}: {}", runtime_dir_of(job.id()), strerror(-r)));
  const auto& specs = job.spec().resources;
  // Volumes first: a server may export one of them; devices last: they connect to servers.
  for (size_t i = 0; i < specs.size(); ++i)
    if (is_volume(specs[i].kind) && !setup_volume(e, i)) return;
  for (size_t i = 0; i < specs.size(); ++i)
    if (specs[i].kind == ResourceKind::NbdServer && !start_server(e, i)) return;
  if (e.pending_ops > 0) {
    uv_update_time(loop_);
    uv_timer_start(
        e.res_timer.get(),
        [](uv_timer_t* t) {
          auto* en = static_cast<Entry*>(t->data);
          if (!en || en->phase != ResourcePhase::Setup) return;
          en->owner->fail_setup(*en, fmt::format("an NBD server did not answer within nbd.ready_timeout ({})",
                                                 format_timespan(en->owner->cfg_.nbd_ready_timeout)));
        },
        (cfg_.nbd_ready_timeout + USEC_PER_MSEC - 1) / USEC_PER_MSEC, 0);
    return;
  }
  finish_setup(e);
}

bool Supervisor::setup_volume(Entry& e, size_t i) {
  core::Job& job = *e.job;
  const auto& spec = job.spec().resources[i];
  core::Resource& r = job.resources[i];
  ResourceHandles& h = e.res[i];
  sys::Opened opened;
  std::string why;
  // A resumed job finds the file it created on its first run: it stays "created" (its own).
  if (sys::open_volume(volume_policy(), spec.path, true, spec.size.value_or(0), &opened, &why) < 0) {
    return resource_setup_failed(e, i, why);
  }
  if (opened.created) {
    r.created = true;
    event(job, "resource-created", fmt::format("volume '{}': created {} ({} bytes)", spec.name, spec.path, *spec.size));
  }
  h.file = std::move(opened.fd);
  r.endpoint = spec.path;
  if (spec.kind == ResourceKind::Loop) {
    struct stat st {};
    fstat(h.file.get(), &st);
    sys::LoopDevice dev;
    if (int rc = sys::loop_attach(h.file.get(), false, &dev); rc < 0) {
      return resource_setup_failed(e, i, fmt::format("cannot attach a loop device: {}", strerror(-rc)));
    }
    r.device = r.endpoint = dev.path;
    r.dev = st.st_dev;
    r.inode = st.st_ino;
    h.loop = std::move(dev.fd);
    event(job, "resource-attached", fmt::format("volume '{}': {} attached to {}", spec.name, spec.path, dev.path));
  }
  r.state = ResourceState::Ready;
  r.error.clear();
  changed(job, core::kChangedResources);
  return true;
}

bool Supervisor::start_server(Entry& e, size_t i) {
  core::Job& job = *e.job;
  const auto& spec = job.spec().resources[i];
  core::Resource& r = job.resources[i];
  ResourceHandles& h = e.res[i];
  auto fail = [&](const std::string& why) { return resource_setup_failed(e, i, why); };
  // The export is opened here, under the volume rules, and handed over as a descriptor: the
  // server reads exactly what was checked, whatever happens to the path meanwhile.
  sys::Opened src;
  std::string why;
  if (sys::open_volume(volume_policy(), spec.path, false, 0, &src, &why) < 0) return fail(why);
  // The image is descriptor 4 of the server (see pass_fds), the files a qcow2 image names follow.
  constexpr int kImageFd = 4;
  std::vector<Fd> image_files;
  std::string image_opts;
  if (spec.format == core::ImageFormat::Qcow2)
    if (auto refused = check_qcow2_image(src.fd.get(), spec.path, kImageFd, &image_files, &image_opts);
        !refused.empty())
      return fail(refused);

  // Socket activation: the daemon binds the socket, so it is accepting before the server runs,
  // a stale socket file is never in the way, and the path is the daemon's to remove.
  const std::string sock = server_socket(job, i);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (sock.size() >= sizeof sa.sun_path) return fail("socket path " + sock + " is too long (runtime_dir)");
  memcpy(sa.sun_path, sock.c_str(), sock.size() + 1);
  Fd listen_fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_fd) return fail(fmt::format("socket: {}", strerror(errno)));
  ::unlink(sock.c_str());
  if (bind(listen_fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 || listen(listen_fd.get(), 64) < 0)
    return fail(fmt::format("cannot listen on {}: {}", sock, strerror(errno)));
  chmod(sock.c_str(), 0600);
  r.socket = sock;

  sys::SpawnRequest req;
  int err = 0;
  const char* prog = spec.server == core::NbdServerKind::QemuNbd ? "qemu-nbd" : "nbdkit";
  req.executable = sys::find_executable(prog, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", &err);
  if (req.executable.empty()) return fail(fmt::format("{} is not installed: {}", prog, strerror(err)));
  // The server opens /dev/fd/4, the file checked here.
  const std::string image = fmt::format("/dev/fd/{}", kImageFd);
  if (spec.server == core::NbdServerKind::QemuNbd && spec.format == core::ImageFormat::Qcow2) {
    req.argv = {prog, "--read-only", "--persistent", "--shared=0", "--image-opts", image_opts};
  } else if (spec.server == core::NbdServerKind::QemuNbd) {
    req.argv = {prog, "--read-only", "--persistent", "--shared=0", "--format=raw", image};
  } else {
    req.argv = {prog, "--foreground", "--readonly", "file", "file=" + image};
  }
  req.env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  req.working_directory = "/";
  req.pass_fds = {listen_fd.get(), src.fd.get()};
  for (const auto& f : image_files) req.pass_fds.push_back(f.get());
  req.listen_fds = 1;  // descriptor 3 is the listening socket; 4, the image, is not one
  const int log_fd = logs_->open_append(log_path(job));
  if (log_fd < 0) return fail(fmt::format("cannot open the job log: {}", strerror(-log_fd)));
  Fd out(log_fd);
  req.output_fd = out.get();
  Fd cg;
  if (cgroups_) {
    if (int rc = cgroups_->create(server_cgroup(job, i), &cg); rc < 0)
      return fail(fmt::format("cannot create cgroup {}: {}", server_cgroup(job, i), strerror(-rc)));
    req.cgroup_fd = cg.get();
  }
  sys::Spawned child;
  if (int rc = spawner_->spawn(req, &child); rc < 0) {
    if (cgroups_) cgroups_->remove(server_cgroup(job, i));
    return fail(fmt::format("cannot start {}: {}", prog, strerror(-rc)));
  }
  crash_point("server-spawned");  // running in its cgroup, not yet recorded
  r.pid = child.pid;
  r.start_time = child.start_time;
  r.endpoint = "nbd+unix:///?socket=" + sock;
  h.listen = std::move(listen_fd);
  h.pidfd = std::move(child.pidfd);
  h.server_is_child = true;
  watch_server(e, i);
  event(job, "resource-started", fmt::format("{} started, serving {} on {}", server_label(spec, r), spec.path, sock));
  changed(job, core::kChangedResources);

  // Ready when it completes an NBD handshake: the server has opened the image and serves it.
  std::string no_lib;
  const sys::LibNbd* nbd = sys::libnbd(&no_lib);
  if (!nbd) return fail(no_lib);
  h.probe = nbd->create();
  if (!h.probe) return fail(fmt::format("libnbd: {}", nbd->error()));
  if (nbd->aio_connect_unix(h.probe, sock.c_str()) < 0) return fail(fmt::format("libnbd: {}", nbd->error()));
  ++e.pending_ops;
  const int fd = nbd->aio_get_fd(h.probe);
  h.probe_poll = make_uv<uv_poll_t>([&](uv_poll_t* p) { return uv_poll_init(loop_, p, fd); }, &e);
  h.probe_poll->data = &e;
  probe_step(e, i);
  return true;
}

void Supervisor::probe_step(Entry& e, size_t i) {
  ResourceHandles& h = e.res[i];
  if (!h.probe) return;
  const sys::LibNbd* nbd = sys::libnbd(nullptr);  // loaded: there is a probe
  if (nbd->aio_is_ready(h.probe) > 0) {
    close_probe(h);
    core::Job& job = *e.job;
    job.resources[i].state = ResourceState::Ready;
    changed(job, core::kChangedResources);
    event(job, "resource-ready",
          fmt::format("nbd-server '{}' answers on {}", job.spec().resources[i].name, job.resources[i].socket));
    if (--e.pending_ops == 0 && e.phase == ResourcePhase::Setup) finish_setup(e);
    return;
  }
  if (nbd->aio_is_dead(h.probe) > 0 || nbd->aio_is_closed(h.probe) > 0) {
    const std::string why = nbd->get_error() ? nbd->get_error() : "connection closed";
    close_probe(h);
    fail_setup(e, fmt::format("nbd-server '{}' did not complete an NBD handshake: {} (see the job log)",
                              e.job->spec().resources[i].name, why));
    return;
  }
  const unsigned dir = nbd->aio_get_direction(h.probe);
  int events = 0;
  if (dir & LIBNBD_AIO_DIRECTION_READ) events |= UV_READABLE;
  if (dir & LIBNBD_AIO_DIRECTION_WRITE) events |= UV_WRITABLE;
  // The poll handle's data is the entry; the resource index rides in the handle's own slot.
  h.probe_events = events;
  uv_poll_start(h.probe_poll.get(), events, [](uv_poll_t* p, int status, int revents) {
    auto* en = static_cast<Entry*>(p->data);
    if (!en) return;
    for (size_t k = 0; k < en->res.size(); ++k) {
      ResourceHandles& rh = en->res[k];
      if (rh.probe_poll.get() != p || !rh.probe) continue;
      if (status < 0 || (revents & UV_READABLE)) sys::libnbd(nullptr)->aio_notify_read(rh.probe);
      if (rh.probe && (revents & UV_WRITABLE)) sys::libnbd(nullptr)->aio_notify_write(rh.probe);
      en->owner->probe_step(*en, k);
      return;
    }
  });
}

void Supervisor::watch_server(Entry& e, size_t i) {
  ResourceHandles& h = e.res[i];
  h.pid_poll = make_uv<uv_poll_t>([&](uv_poll_t* p) { return uv_poll_init(loop_, p, h.pidfd.get()); }, &e);
  uv_poll_start(h.pid_poll.get(), UV_READABLE, [](uv_poll_t* p, int, int) {
    auto* en = static_cast<Entry*>(p->data);
    if (!en) return;
    for (size_t k = 0; k < en->res.size(); ++k)
      if (en->res[k].pid_poll.get() == p) return en->owner->on_server_exit(*en, k);
  });
}

void Supervisor::on_server_exit(Entry& e, size_t i) {
  core::Job& job = *e.job;
  ResourceHandles& h = e.res[i];
  core::Resource& r = job.resources[i];
  const auto& spec = job.spec().resources[i];
  std::string how = "ended";
  if (h.server_is_child && h.pidfd) {
    siginfo_t si{};
    if (waitid(P_PIDFD, static_cast<id_t>(h.pidfd.get()), &si, WEXITED | WNOHANG) < 0) {
      if (errno != ECHILD) return;
      how = "ended (exit status unknown)";  // not ours to reap after all: it is gone all the same
    } else if (si.si_pid == 0) {
      return;  // not yet
    } else {
      how = exit_text(si);
    }
  }
  const std::string label = server_label(spec, r);
  h.pid_poll.reset();
  h.pidfd.reset();
  close_probe(h);
  release_server(e, i);
  if (e.phase == ResourcePhase::Setup) {
    --e.pending_ops;
    r.state = ResourceState::Failed;
    r.error = label + " " + how + " before serving";
    changed(job, core::kChangedResources);
    fail_setup(e, r.error + " (see the job log)");
    return;
  }
  if (e.phase == ResourcePhase::StopServers) {
    event(job, "resource-stopped", fmt::format("{} {}", label, how));
    r.state = ResourceState::Released;
    changed(job, core::kChangedResources);
    op_done(e);
    return;
  }
  // Died under a running job: the job cannot go on without its source.
  r.state = ResourceState::Failed;
  r.error = fmt::format("{} {} while the job ran", label, how);
  changed(job, core::kChangedResources);
  event(job, "resource-failed", r.error);
  job.on_resource_failed(r.error);
}

void Supervisor::release_server(Entry& e, size_t i) {
  // Only once the server is dead: its cgroup (with anything it started), then its socket.
  core::Job& job = *e.job;
  core::Resource& r = job.resources[i];
  if (cgroups_) {
    const std::string cg = server_cgroup(job, i);
    if (cgroups_->populated(cg)) cgroups_->kill(cg);
    reap_exiting_orphans({cgroups_->cgroup_of(cg)});
    if (cgroups_->remove(cg) < 0) watch_stray(cg);
  }
  if (!r.socket.empty()) ::unlink(r.socket.c_str());
  r.socket.clear();
  e.res[i].listen.reset();
  r.pid = 0;
  r.start_time = 0;
  r.endpoint.clear();
}

void Supervisor::finish_setup(Entry& e) {
  core::Job& job = *e.job;
  const auto& specs = job.spec().resources;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].kind != ResourceKind::NbdDevice) continue;
    std::string why;
    uint16_t family = 0;
    if (sys::nbd_family(&family, &why) < 0) {
      job.resources[i].state = ResourceState::Unavailable;
      job.resources[i].error = why;
      changed(job, core::kChangedResources);
      return fail_setup(e, fmt::format("nbd-device '{}': {}", specs[i].name, why));
    }
    if (!connect_device(e, i)) return;
  }
  e.phase = ResourcePhase::None;
  uv_timer_stop(e.res_timer.get());
  job.on_setup_done(true, "");
}

bool Supervisor::connect_device(Entry& e, size_t i) {
  // The kernel takes a socket that has finished the NBD handshake (without structured replies,
  // which the kernel client does not speak) and the export's size and flags.
  core::Job& job = *e.job;
  const auto& spec = job.spec().resources[i];
  core::Resource& r = job.resources[i];
  size_t server = 0;
  for (size_t k = 0; k < job.spec().resources.size(); ++k)
    if (job.spec().resources[k].name == spec.export_of) server = k;
  auto fail = [&](const std::string& why) { return resource_setup_failed(e, i, why); };
  std::string no_lib;
  const sys::LibNbd* lib = sys::libnbd(&no_lib);
  if (!lib) return fail(no_lib);
  nbd_handle* nbd = lib->create();
  if (!nbd) return fail(lib->error());
  lib->set_request_structured_replies(nbd, false);
  if (lib->connect_unix(nbd, job.resources[server].socket.c_str()) < 0) {
    std::string why = lib->error();
    lib->close(nbd);
    return fail(why);
  }
  sys::NbdConnect c;
  if (spec.path.size() > 8) c.index = static_cast<int>(strtol(spec.path.c_str() + 8, nullptr, 10));
  c.size_bytes = static_cast<uint64_t>(lib->get_size(nbd));
  c.server_flags = 1 /* HAS_FLAGS */ | (lib->is_read_only(nbd) > 0 ? 2 : 0) | (lib->can_flush(nbd) > 0 ? 4 : 0) |
                   (lib->can_fua(nbd) > 0 ? 8 : 0) | (lib->can_trim(nbd) > 0 ? 32 : 0) |
                   (lib->can_multi_conn(nbd) > 0 ? 256 : 0);
  Fd sock(fcntl(lib->aio_get_fd(nbd), F_DUPFD_CLOEXEC, 3));
  lib->close(nbd);  // closes libnbd's copy only: the kernel gets ours, still in transmission
  c.sockets = {sock.get()};
  uint32_t index = 0;
  std::string why;
  if (sys::nbd_connect(c, &index, &why) < 0) return fail(why);
  r.device = r.endpoint = fmt::format("/dev/nbd{}", index);
  r.state = ResourceState::Ready;
  changed(job, core::kChangedResources);
  event(job, "resource-connected", fmt::format("nbd-device '{}': {} connected", spec.name, r.device));
  return true;
}

void Supervisor::fail_setup(Entry& e, const std::string& why) {
  if (e.phase != ResourcePhase::Setup) return;
  abort_setup(*e.job);
  e.job->on_setup_done(false, why);
}

void Supervisor::abort_setup(core::Job& job) {
  Entry& e = entry(job);
  if (e.phase != ResourcePhase::Setup) return;
  for (auto& h : e.res) close_probe(h);
  e.pending_ops = 0;
  ++e.generation;
  e.phase = ResourcePhase::None;
  uv_timer_stop(e.res_timer.get());
}

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

// ---- cleanup --------------------------------------------------------------------------------

void Supervisor::start_resource_cleanup(Entry& e, bool for_job, const std::string& earlier_error) {
  core::Job& job = *e.job;
  e.cleanup_for_job = for_job;
  e.cleanup_failed = false;
  if (e.res.size() != job.resources.size()) {
    e.res.clear();
    e.res.resize(job.resources.size());
  }
  for (size_t i = 0; i < job.resources.size(); ++i) {
    core::Resource& r = job.resources[i];
    if (!r.teardown_failed) continue;
    // Failed in an earlier teardown: this one takes it from where it was.
    r.teardown_failed = false;
    r.error.clear();
    r.state = is_volume(job.spec().resources[i].kind) ? ResourceState::Ready : ResourceState::Pending;
  }
  job.cleanup_state = "running";
  job.cleanup_error = earlier_error;
  e.cleanup_failed = !earlier_error.empty();
  changed(job, core::kChangedResources);
  enter_phase(e, ResourcePhase::Sync);
}

void Supervisor::cleanup_failure(Entry& e, size_t i, const std::string& why) {
  core::Job& job = *e.job;
  e.cleanup_failed = true;
  job.resources[i].state = ResourceState::Failed;
  job.resources[i].error = why;
  job.resources[i].teardown_failed = true;
  if (job.cleanup_error.empty()) job.cleanup_error = why;
  changed(job, core::kChangedResources);
  event(job, "cleanup-failed", why);
}

void Supervisor::op_done(Entry& e) {
  if (e.pending_ops > 0 && --e.pending_ops == 0) next_phase(e);
}

void Supervisor::next_phase(Entry& e) {
  uv_timer_stop(e.res_timer.get());
  switch (e.phase) {
    case ResourcePhase::Sync:
      return enter_phase(e, ResourcePhase::StopServers);
    case ResourcePhase::StopServers:
      return enter_phase(e, ResourcePhase::Devices);
    case ResourcePhase::Devices:
      return enter_phase(e, ResourcePhase::Detach);
    case ResourcePhase::Detach:
      return enter_phase(e, ResourcePhase::Discard);
    default:
      return;
  }
}

void Supervisor::arm_res_timer(Entry& e, usec_t after, uint64_t repeat_ms) {
  uv_update_time(loop_);
  uv_timer_start(
      e.res_timer.get(),
      [](uv_timer_t* t) {
        if (auto* en = static_cast<Entry*>(t->data)) en->owner->on_res_timer(*en);
      },
      (after + USEC_PER_MSEC - 1) / USEC_PER_MSEC, repeat_ms);
}

void Supervisor::enter_phase(Entry& e, ResourcePhase phase) {
  core::Job& job = *e.job;
  const auto& specs = job.spec().resources;
  e.phase = phase;
  ++e.generation;
  e.pending_ops = 0;
  switch (phase) {
    case ResourcePhase::Sync: {
      // Every writer is gone (the state machine gets here only once the job's cgroup is empty):
      // what they wrote goes to stable storage before anything is detached or reported kept.
      for (size_t i = 0; i < specs.size(); ++i) {
        core::Resource& r = job.resources[i];
        // Only volumes that were set up (or whose last teardown failed: reset to ready): one that
        // failed its setup was never written.
        if (!is_volume(specs[i].kind) || r.state != ResourceState::Ready) continue;
        std::vector<Fd> fds;
        if (e.res[i].loop) fds.emplace_back(fcntl(e.res[i].loop.get(), F_DUPFD_CLOEXEC, 3));
        if (e.res[i].file) {
          fds.emplace_back(fcntl(e.res[i].file.get(), F_DUPFD_CLOEXEC, 3));
        } else {
          sys::Opened o;
          std::string why;
          if (int rc = sys::open_volume(volume_policy(), specs[i].path, false, 0, &o, &why); rc == -ENOENT) {
            // Gone: nothing to flush, and nothing of it can be attached. Either a teardown cut
            // short after the discard (the crash came before it was recorded), or someone
            // removed it. Not a cleanup failure: a retry could never succeed.
            if (specs[i].on_stop == core::OnStop::Discard && r.created) {
              r.state = ResourceState::Discarded;
              r.endpoint.clear();
              event(job, "resource-discarded",
                    fmt::format("volume '{}': {} is already gone", specs[i].name, specs[i].path));
            } else {
              r.state = ResourceState::Failed;
              r.error = fmt::format("{} has disappeared: its data is lost", specs[i].path);
              event(job, "resource-missing", fmt::format("volume '{}': {}", specs[i].name, r.error));
            }
            changed(job, core::kChangedResources);
            continue;
          } else if (rc < 0) {
            cleanup_failure(e, i, "flushing: " + why);
            continue;
          }
          fds.push_back(std::move(o.fd));
        }
        for (auto& fd : fds) {
          auto* req = new FsyncReq;
          req->sup = this;
          req->job_id = job.id();
          req->generation = e.generation;
          req->index = i;
          req->fd = std::move(fd);
          req->req.data = req;
          const int rc = uv_fs_fsync(loop_, &req->req, req->fd.get(), [](uv_fs_t* q) {
            auto* fr = static_cast<FsyncReq*>(q->data);
            const auto result = q->result;
            uv_fs_req_cleanup(q);
            std::unique_ptr<FsyncReq> owned(fr);
            auto it = fr->sup->entries_.find(fr->job_id);
            if (it == fr->sup->entries_.end()) return;
            Entry& en = *it->second;
            if (en.generation != fr->generation || en.phase != ResourcePhase::Sync) return;
            const auto& name = en.job->spec().resources[fr->index].name;
            if (result < 0)
              fr->sup->cleanup_failure(
                  en, fr->index, fmt::format("flushing volume '{}': {}", name, uv_strerror(static_cast<int>(result))));
            else
              fr->sup->event(*en.job, "resource-synced", fmt::format("volume '{}': flushed to stable storage", name));
            fr->sup->op_done(en);
          });
          if (rc < 0) {
            delete req;
            cleanup_failure(e, i, fmt::format("flushing: {}", uv_strerror(rc)));
            continue;
          }
          ++e.pending_ops;
        }
      }
      if (e.pending_ops > 0) {
        arm_res_timer(e, cfg_.sync_timeout, 0);
        return;
      }
      return next_phase(e);
    }
    case ResourcePhase::StopServers: {
      crash_point("resource-stop");
      for (size_t i = 0; i < specs.size(); ++i) {
        core::Resource& r = job.resources[i];
        if (specs[i].kind != ResourceKind::NbdServer) continue;
        ResourceHandles& h = e.res[i];
        close_probe(h);
        if (!h.pidfd && r.pid > 0) {
          // After a daemon restart: the recorded server, if it is still that process.
          if (r.start_time != 0 && sys::process_start_time(r.pid) == r.start_time) {
            h.pidfd.reset(sys::pidfd_open(r.pid, 0));
            h.server_is_child = false;
            if (h.pidfd) watch_server(e, i);
          }
        }
        if (!h.pidfd) {
          // Gone already, or never recorded as started. Its cgroup goes either way: a daemon
          // killed between starting a server and recording it leaves one that nothing on record
          // names, perhaps with the server still in it. A server that died under the job keeps
          // its "failed" (and why).
          const bool recorded = r.pid > 0 || !r.socket.empty();
          release_server(e, i);
          if (recorded) {
            event(job, "resource-stopped", fmt::format("nbd-server '{}' was already gone", specs[i].name));
            r.state = ResourceState::Released;
          } else if (r.state != ResourceState::Failed) {
            r.state = ResourceState::Released;
          }
          changed(job, core::kChangedResources);
          continue;
        }
        // SIGTERM first, always: qemu-nbd serving qcow2 must close the image cleanly.
        sys::pidfd_send_signal(h.pidfd.get(), SIGTERM, nullptr, 0);
        event(job, "signal", fmt::format("SIGTERM sent to {}", server_label(specs[i], r)));
        ++e.pending_ops;
      }
      if (e.pending_ops > 0) {
        e.servers_killed = false;
        arm_res_timer(e, cfg_.nbd_stop_timeout, 0);
        return;
      }
      return next_phase(e);
    }
    case ResourcePhase::Devices: {
      for (size_t i = 0; i < specs.size(); ++i) {
        core::Resource& r = job.resources[i];
        if (specs[i].kind != ResourceKind::NbdDevice || r.device.empty()) continue;
        // The ioctl disconnect does not flush: the device is synced first, netlink then lets go.
        Fd dev(::open(r.device.c_str(), O_RDONLY | O_CLOEXEC));
        if (dev) fsync(dev.get());
        dev.reset();
        std::string why;
        const uint32_t index = static_cast<uint32_t>(strtoul(r.device.c_str() + 8, nullptr, 10));
        if (sys::nbd_disconnect(index, &why) < 0) {
          cleanup_failure(e, i, fmt::format("disconnecting {}: {}", r.device, why));
          continue;
        }
        event(job, "resource-disconnected", fmt::format("nbd-device '{}': {} disconnected", specs[i].name, r.device));
        r.device.clear();
        r.state = ResourceState::Released;
        changed(job, core::kChangedResources);
      }
      return next_phase(e);
    }
    case ResourcePhase::Detach: {
      bool waiting = false;
      for (size_t i = 0; i < specs.size(); ++i) {
        core::Resource& r = job.resources[i];
        if (specs[i].kind != ResourceKind::Loop || r.device.empty()) continue;
        e.res[i].loop.reset();  // our hold: with autoclear this alone detaches an unused device
        uint64_t dev = 0, ino = 0;
        const int rc = sys::loop_backing(r.device, &dev, &ino);
        if (rc == 0 && (dev != r.dev || ino != r.inode)) {
          loop_detached(e, i);  // now someone else's: not ours to touch
          continue;
        }
        if (rc == -ENXIO || rc == -ENOENT) {
          // Unbound, or being unbound: the kernel finishes an autoclear detach asynchronously,
          // and only sysfs says when it is done.
          if (!sys::loop_bound(r.device))
            loop_detached(e, i);
          else
            waiting = true;
          continue;
        }
        if (rc < 0) {
          cleanup_failure(e, i, fmt::format("reading {}: {}", r.device, strerror(-rc)));
          continue;
        }
        if (int d = sys::loop_detach(r.device); d < 0) {
          cleanup_failure(e, i, fmt::format("detaching {}: {}", r.device, strerror(-d)));
          continue;
        }
        if (!sys::loop_bound(r.device))
          loop_detached(e, i);
        else
          waiting = true;
      }
      if (waiting) {
        // Still open somewhere (detach only marked it autoclear): watch sysfs until it is unbound.
        e.detach_deadline = now_monotonic() + cfg_.detach_timeout;
        arm_res_timer(e, kDetachPollMs * USEC_PER_MSEC, kDetachPollMs);
        return;
      }
      return next_phase(e);
    }
    case ResourcePhase::Discard: {
      for (size_t i = 0; i < specs.size(); ++i) {
        core::Resource& r = job.resources[i];
        if (!is_volume(specs[i].kind)) continue;
        e.res[i].file.reset();
        if (r.state == ResourceState::Failed || r.state == ResourceState::Discarded ||
            r.state == ResourceState::Pending)
          continue;
        if (specs[i].on_stop == core::OnStop::Discard) {
          if (job.delete_requested && job.delete_keep_data) {
            // The delete that stopped the job said keep: an explicit request wins over the policy.
            event(job, "resource-kept",
                  fmt::format("volume '{}': {} kept although on_stop = \"discard\": the delete asked to keep data",
                              specs[i].name, specs[i].path));
          } else if (!r.created) {
            event(job, "resource-kept",
                  fmt::format("volume '{}': {} kept although on_stop = \"discard\": the job was given it, it did "
                              "not create it",
                              specs[i].name, specs[i].path));
          } else if (std::string why; !discard_volume(job, i, &why)) {
            cleanup_failure(e, i, why);
            continue;
          } else {
            crash_point("resource-discarded");  // removed, not yet recorded
            continue;
          }
        }
        r.state = ResourceState::Kept;
        r.endpoint = specs[i].path;
        changed(job, core::kChangedResources);
      }
      return finish_resource_cleanup(e);
    }
    default:
      return;
  }
}

void Supervisor::on_res_timer(Entry& e) {
  core::Job& job = *e.job;
  const auto& specs = job.spec().resources;
  switch (e.phase) {
    case ResourcePhase::Sync:
      for (size_t i = 0; i < specs.size(); ++i)
        if (is_volume(specs[i].kind) && job.resources[i].state == ResourceState::Ready)
          cleanup_failure(e, i,
                          fmt::format("flushing volume '{}' took longer than volumes.sync_timeout ({})", specs[i].name,
                                      format_timespan(cfg_.sync_timeout)));
      return next_phase(e);
    case ResourcePhase::StopServers:
      if (!e.servers_killed) {
        e.servers_killed = true;
        for (size_t i = 0; i < specs.size(); ++i) {
          ResourceHandles& h = e.res[i];
          if (specs[i].kind != ResourceKind::NbdServer || !h.pidfd) continue;
          event(job, "stop-timeout",
                fmt::format("{} still running after nbd.stop_timeout ({}): SIGKILL",
                            server_label(specs[i], job.resources[i]), format_timespan(cfg_.nbd_stop_timeout)));
          if (cgroups_)
            cgroups_->kill(server_cgroup(job, i));
          else
            sys::pidfd_send_signal(h.pidfd.get(), SIGKILL, nullptr, 0);
        }
        arm_res_timer(e, cfg_.final_kill_timeout, 0);
        return;
      }
      for (size_t i = 0; i < specs.size(); ++i) {
        ResourceHandles& h = e.res[i];
        if (specs[i].kind != ResourceKind::NbdServer || !h.pidfd) continue;
        h.pid_poll.reset();
        if (h.server_is_child) reap_when_gone(std::move(h.pidfd));
        h.pidfd.reset();
        cleanup_failure(e, i, fmt::format("{} did not die after SIGKILL", server_label(specs[i], job.resources[i])));
      }
      return next_phase(e);
    case ResourcePhase::Detach: {
      bool waiting = false;
      for (size_t i = 0; i < specs.size(); ++i) {
        core::Resource& r = job.resources[i];
        if (specs[i].kind != ResourceKind::Loop || r.device.empty() || r.state == ResourceState::Failed) continue;
        uint64_t dev = 0, ino = 0;
        const bool foreign = sys::loop_backing(r.device, &dev, &ino) == 0 && (dev != r.dev || ino != r.inode);
        if (foreign || !sys::loop_bound(r.device))
          loop_detached(e, i);
        else
          waiting = true;
      }
      if (!waiting) return next_phase(e);
      if (now_monotonic() < e.detach_deadline) return;
      for (size_t i = 0; i < specs.size(); ++i) {
        core::Resource& r = job.resources[i];
        if (specs[i].kind != ResourceKind::Loop || r.device.empty() || r.state == ResourceState::Failed) continue;
        cleanup_failure(e, i,
                        fmt::format("{} is still attached after volumes.detach_timeout ({}): something holds it "
                                    "open",
                                    r.device, format_timespan(cfg_.detach_timeout)));
      }
      return next_phase(e);
    }
    default:
      return;
  }
}

void Supervisor::loop_detached(Entry& e, size_t i) {
  core::Job& job = *e.job;
  core::Resource& r = job.resources[i];
  event(job, "resource-detached", fmt::format("volume '{}': {} detached", job.spec().resources[i].name, r.device));
  r.device.clear();
  r.endpoint = job.spec().resources[i].path;
  changed(job, core::kChangedResources);
}

bool Supervisor::discard_volume(core::Job& job, size_t i, std::string* why) {
  const auto& spec = job.spec().resources[i];
  core::Resource& r = job.resources[i];
  if (!r.created || r.state == ResourceState::Discarded) return true;
  // Resolved below the root, like every other access: a path swapped for a symbolic link since
  // the job ran cannot make us remove something else.
  const auto policy = volume_policy();
  const std::string root = sys::root_of(policy, spec.path);
  if (root.empty()) {
    *why = fmt::format("volume '{}': {} is no longer under a volume root; not removed", spec.name, spec.path);
    return false;
  }
  if (int rc = sys::remove_volume(root, spec.path); rc < 0 && rc != -ENOENT) {
    *why = fmt::format("volume '{}': removing {}: {}", spec.name, spec.path, strerror(-rc));
    return false;
  }
  r.state = ResourceState::Discarded;
  r.endpoint.clear();
  changed(job, core::kChangedResources);
  event(job, "resource-discarded", fmt::format("volume '{}': {} removed", spec.name, spec.path));
  return true;
}

void Supervisor::finish_resource_cleanup(Entry& e) {
  core::Job& job = *e.job;
  e.phase = ResourcePhase::None;
  uv_timer_stop(e.res_timer.get());
  if (!e.cleanup_failed) remove_runtime_dir(e);
  job.cleanup_state = e.cleanup_failed ? "failed" : "done";
  if (!e.cleanup_failed) job.cleanup_error.clear();
  changed(job, core::kChangedResources);
  auto waiters = std::move(e.cleanup_waiters);
  const bool ok = !e.cleanup_failed;
  if (e.cleanup_for_job) {
    e.cleanup_for_job = false;
    // A failure is reported by the state machine (its "cleanup-failed" event), once.
    if (ok && !job.resources.empty()) event(job, "cleanup", "resources released");
    job.on_cleanup_done(ok, job.cleanup_error);
  } else {
    event(job, ok ? "cleanup" : "cleanup-failed",
          ok ? "cleanup retried: resources released" : "cleanup retried and failed: " + job.cleanup_error);
  }
  for (auto& w : waiters) w(ok);
}

void Supervisor::retry_cleanup(core::Job& job, const Caller* caller, std::function<void(bool ok)> done) {
  CallerScope scope(caller_, caller);
  Entry& e = entry(job);
  if (!core::is_terminal(job.state()))
    throw ApiError(ErrorKind::JobActive,
                   fmt::format("job {} is {}: its cleanup runs when it ends", job.id(), core::to_string(job.state())));
  e.cleanup_waiters.push_back(std::move(done));
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

// ---- delete and recovery --------------------------------------------------------------------

bool Supervisor::discard_for_delete(core::Job& job, std::string* why) {
  if (job.cleanup_state == "failed" || job.cleanup_state == "running") {
    *why = fmt::format(
        "job {}: its cleanup {} ({}); a job is deleted only once nothing of it is left (retry with "
        "RetryCleanup)",
        job.id(), job.cleanup_state == "failed" ? "failed" : "is running", job.cleanup_error);
    return false;
  }
  for (size_t i = 0; i < job.resources.size(); ++i)
    if (is_volume(job.spec().resources[i].kind) && !discard_volume(job, i, why)) return false;
  return true;
}

void Supervisor::adopt_resources(Entry& e) {
  // recovery = "adopt": the job runs on, so its resources must be held and watched again.
  core::Job& job = *e.job;
  const auto& specs = job.spec().resources;
  e.res.clear();
  e.res.resize(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    core::Resource& r = job.resources[i];
    ResourceHandles& h = e.res[i];
    if (specs[i].kind == ResourceKind::NbdServer && r.pid > 0) {
      if (r.start_time != 0 && sys::process_start_time(r.pid) == r.start_time) h.pidfd.reset(sys::pidfd_open(r.pid, 0));
      if (!h.pidfd) {
        job.on_resource_failed(fmt::format("{} was gone when the daemon restarted", server_label(specs[i], r)));
        continue;
      }
      h.server_is_child = false;
      watch_server(e, i);
    } else if (specs[i].kind == ResourceKind::Loop && !r.device.empty()) {
      uint64_t dev = 0, ino = 0;
      const int rc = sys::loop_backing(r.device, &dev, &ino);
      if (rc == 0 && dev == r.dev && ino == r.inode) {
        h.loop.reset(::open(r.device.c_str(), O_RDWR | O_CLOEXEC));
      } else {
        // The job was given a path that no longer leads to its volume. Said as the kernel tells
        // it: unbound (the daemon's hold ended with it, nothing of the job held the device, and
        // autoclear detached it), bound to another file, or unreadable.
        const std::string why =
            rc == -ENXIO ? fmt::format(
                               "loop device {} of volume '{}' was detached while the daemon was down (nothing "
                               "held it open)",
                               r.device, specs[i].name)
            : rc == 0 ? fmt::format(
                            "loop device {} of volume '{}' now backs another file: it was detached and "
                            "reused while the daemon was down",
                            r.device, specs[i].name)
                      : fmt::format("loop device {} of volume '{}': cannot read its backing file: {}", r.device,
                                    specs[i].name, strerror(-rc));
        r.device.clear();
        changed(job, core::kChangedResources);
        job.on_resource_failed(why);
      }
    }
    if (is_volume(specs[i].kind) && r.state == ResourceState::Ready) {
      sys::Opened o;
      std::string why;
      if (sys::open_volume(volume_policy(), specs[i].path, false, 0, &o, &why) == 0) h.file = std::move(o.fd);
    }
  }
}

}  // namespace repvisor
