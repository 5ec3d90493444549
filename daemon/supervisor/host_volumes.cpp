// HostResources' volumes, loop devices and NBD devices: opened, attached, flushed in the thread
// pool, detached and removed on this host; and the pipeline's timer and runtime directory.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "supervisor/entry.hpp"
#include "supervisor/host_resources.hpp"
#include "sys/libnbd.hpp"
#include "sys/loop.hpp"
#include "sys/nbd_netlink.hpp"

namespace repvisor {

namespace {

uint64_t ceil_ms(usec_t usec) { return (usec + USEC_PER_MSEC - 1) / USEC_PER_MSEC; }

class UvTimer final : public ResourceSystem::Timer {
 public:
  UvTimer(uv_loop_t* loop, std::function<void()> fire)
      : timer_(make_uv<uv_timer_t>([&](uv_timer_t* t) { return uv_timer_init(loop, t); }, this)),
        fire_(std::move(fire)) {}
  void arm(usec_t after, usec_t repeat) override {
    // libuv counts from its cached clock: refreshed first, so the timeout is never short.
    uv_update_time(uv_handle_get_loop(reinterpret_cast<uv_handle_t*>(timer_.get())));
    uv_timer_start(
        timer_.get(),
        [](uv_timer_t* t) {
          if (auto* self = static_cast<UvTimer*>(t->data)) self->fire_();
        },
        ceil_ms(after), ceil_ms(repeat));
  }
  void disarm() override { uv_timer_stop(timer_.get()); }

 private:
  UvPtr<uv_timer_t> timer_;
  std::function<void()> fire_;
};

// The flushes of one volume (its loop device and its file), reported as one when the last ends.
struct FlushJoin {
  std::function<void(int error)> done;
  unsigned left = 0;
  int error = 0;
};

// An fsync running in the thread pool. It owns a duplicate of the descriptor: a timed-out flush
// may outlive the handles of its job, and must never flush a reused descriptor number.
struct FsyncReq {
  uv_fs_t req{};
  std::shared_ptr<FlushJoin> join;
  Fd fd;
};

}  // namespace

std::unique_ptr<ResourceSystem::Timer> HostResources::make_timer(std::function<void()> fire) {
  return std::make_unique<UvTimer>(sup_.loop_, std::move(fire));
}

void HostResources::crash_point(const char* name) { sup_.crash_point(name); }

int HostResources::make_runtime_dir(const core::Job& job, std::string* why) {
  const int r = sup_.make_runtime_dir(sup_.entry(job));
  if (r < 0) *why = fmt::format("cannot create {}: {}", sup_.runtime_dir_of(job.id()), strerror(-r));
  return r;
}

void HostResources::remove_runtime_dir(const core::Job& job) { sup_.remove_runtime_dir(sup_.entry(job)); }

sys::VolumePolicy HostResources::volume_policy() const { return sup_.volume_policy(); }

int HostResources::open_volume(JobResource& r, bool* created, std::string* why) {
  sys::Opened opened;
  const int rc = sys::open_volume(volume_policy(), r.spec.path, true, r.spec.size.value_or(0), &opened, why);
  if (rc < 0) return rc;
  *created = opened.created;
  r.handles.file = std::move(opened.fd);
  return 0;
}

int HostResources::attach_loop(JobResource& r, std::string* device, uint64_t* dev, uint64_t* ino, std::string* why) {
  struct stat st {};
  fstat(r.handles.file.get(), &st);
  sys::LoopDevice loop;
  if (int rc = sys::loop_attach(r.handles.file.get(), false, &loop); rc < 0) {
    *why = fmt::format("cannot attach a loop device: {}", strerror(-rc));
    return rc;
  }
  *device = loop.path;
  *dev = st.st_dev;
  *ino = st.st_ino;
  r.handles.loop = std::move(loop.fd);
  return 0;
}

void HostResources::hold_volume(JobResource& r) {
  sys::Opened o;
  std::string why;
  if (sys::open_volume(volume_policy(), r.spec.path, false, 0, &o, &why) == 0) r.handles.file = std::move(o.fd);
}

int HostResources::hold_loop(JobResource& r, std::string* why) {
  const core::Resource& rec = r.record;
  uint64_t dev = 0, ino = 0;
  const int rc = sys::loop_backing(rec.device, &dev, &ino);
  if (rc == 0 && dev == rec.dev && ino == rec.inode) {
    r.handles.loop.reset(::open(rec.device.c_str(), O_RDWR | O_CLOEXEC));
    return 0;
  }
  // The job was given a path that no longer leads to its volume. Said as the kernel tells it:
  // unbound (the daemon's hold ended with it, nothing of the job held the device, and autoclear
  // detached it), bound to another file, or unreadable.
  if (rc == -ENXIO) {
    *why = fmt::format("loop device {} of volume '{}' was detached while the daemon was down (nothing held it open)",
                       rec.device, r.spec.name);
  } else if (rc == 0) {
    *why = fmt::format(
        "loop device {} of volume '{}' now backs another file: it was detached and reused while the daemon was down",
        rec.device, r.spec.name);
  } else {
    *why = fmt::format("loop device {} of volume '{}': cannot read its backing file: {}", rec.device, r.spec.name,
                       strerror(-rc));
  }
  return rc < 0 ? rc : -EBUSY;
}

int HostResources::flush_volume(JobResource& r, std::function<void(int error)> done, std::string* why) {
  ResourceHandles& h = r.handles;
  std::vector<Fd> fds;
  if (h.loop) fds.emplace_back(fcntl(h.loop.get(), F_DUPFD_CLOEXEC, 3));
  if (h.file) {
    fds.emplace_back(fcntl(h.file.get(), F_DUPFD_CLOEXEC, 3));
  } else {
    sys::Opened o;
    if (int rc = sys::open_volume(volume_policy(), r.spec.path, false, 0, &o, why); rc < 0) return rc;
    fds.push_back(std::move(o.fd));
  }
  auto join = std::make_shared<FlushJoin>();
  join->done = std::move(done);
  for (auto& fd : fds) {
    auto* req = new FsyncReq;
    req->join = join;
    req->fd = std::move(fd);
    req->req.data = req;
    const int rc = uv_fs_fsync(sup_.loop_, &req->req, req->fd.get(), [](uv_fs_t* q) {
      std::unique_ptr<FsyncReq> owned(static_cast<FsyncReq*>(q->data));
      const auto result = q->result;
      uv_fs_req_cleanup(q);
      FlushJoin& j = *owned->join;
      if (result < 0 && j.error == 0) j.error = static_cast<int>(result);
      if (--j.left == 0) j.done(j.error);
    });
    if (rc < 0) {
      delete req;
      if (join->error == 0) join->error = rc;
      *why = uv_strerror(rc);
      continue;
    }
    ++join->left;
  }
  return join->left > 0 ? 0 : join->error;
}

int HostResources::detach_loop(JobResource& r, std::string* why) {
  const core::Resource& rec = r.record;
  r.handles.loop.reset();  // our hold: with autoclear this alone detaches an unused device
  uint64_t dev = 0, ino = 0;
  const int rc = sys::loop_backing(rec.device, &dev, &ino);
  if (rc == 0 && (dev != rec.dev || ino != rec.inode)) return 1;  // now someone else's: not ours to touch
  // Unbound, or being unbound: the kernel finishes an autoclear detach asynchronously, and only
  // sysfs says when it is done.
  if (rc == -ENXIO || rc == -ENOENT) return sys::loop_bound(rec.device) ? 0 : 1;
  if (rc < 0) {
    *why = fmt::format("reading {}: {}", rec.device, strerror(-rc));
    return rc;
  }
  if (int d = sys::loop_detach(rec.device); d < 0) {
    *why = fmt::format("detaching {}: {}", rec.device, strerror(-d));
    return d;
  }
  // Still open somewhere, detach only marked it autoclear: it goes with the last close.
  return sys::loop_bound(rec.device) ? 0 : 1;
}

bool HostResources::loop_released(JobResource& r) {
  const core::Resource& rec = r.record;
  uint64_t dev = 0, ino = 0;
  const bool foreign = sys::loop_backing(rec.device, &dev, &ino) == 0 && (dev != rec.dev || ino != rec.inode);
  return foreign || !sys::loop_bound(rec.device);
}

int HostResources::remove_volume(JobResource& r, std::string* why) {
  // Resolved below the root, like every other access: a path swapped for a symbolic link since
  // the job ran cannot make us remove something else.
  const std::string root = sys::root_of(volume_policy(), r.spec.path);
  if (root.empty()) {
    *why = fmt::format("{} is no longer under a volume root; not removed", r.spec.path);
    return -EXDEV;
  }
  if (int rc = sys::remove_volume(root, r.spec.path); rc < 0 && rc != -ENOENT) {
    *why = fmt::format("removing {}: {}", r.spec.path, strerror(-rc));
    return rc;
  }
  return 0;
}

int HostResources::nbd_available(std::string* why) {
  uint16_t family = 0;
  return sys::nbd_family(&family, why);
}

int HostResources::connect_device(JobResource& r, const std::string& socket, std::string* device, std::string* why) {
  // The kernel takes a socket that has finished the NBD handshake (without structured replies,
  // which the kernel client does not speak) and the export's size and flags.
  const sys::LibNbd* lib = sys::libnbd(why);
  if (!lib) return -ENOPKG;
  NbdPtr nbd(lib->create());
  if (!nbd) {
    *why = lib->error();
    return -ENOMEM;
  }
  lib->set_request_structured_replies(nbd.get(), false);
  if (lib->connect_unix(nbd.get(), socket.c_str()) < 0) {
    *why = lib->error();
    return -ECONNREFUSED;
  }
  sys::NbdConnect c;
  if (r.spec.path.size() > 8) c.index = static_cast<int>(strtol(r.spec.path.c_str() + 8, nullptr, 10));
  c.size_bytes = static_cast<uint64_t>(lib->get_size(nbd.get()));
  c.server_flags = 1 /* HAS_FLAGS */ | (lib->is_read_only(nbd.get()) > 0 ? 2 : 0) |
                   (lib->can_flush(nbd.get()) > 0 ? 4 : 0) | (lib->can_fua(nbd.get()) > 0 ? 8 : 0) |
                   (lib->can_trim(nbd.get()) > 0 ? 32 : 0) | (lib->can_multi_conn(nbd.get()) > 0 ? 256 : 0);
  Fd sock(fcntl(lib->aio_get_fd(nbd.get()), F_DUPFD_CLOEXEC, 3));
  nbd.reset();  // closes libnbd's copy only: the kernel gets ours, still in transmission
  c.sockets = {sock.get()};
  uint32_t index = 0;
  if (int rc = sys::nbd_connect(c, &index, why); rc < 0) return rc;
  *device = fmt::format("/dev/nbd{}", index);
  return 0;
}

int HostResources::disconnect_device(JobResource& r, std::string* why) {
  const std::string& device = r.record.device;
  // The ioctl disconnect does not flush: the device is synced first, netlink then lets go.
  if (Fd dev(::open(device.c_str(), O_RDONLY | O_CLOEXEC)); dev) fsync(dev.get());
  const auto index = static_cast<uint32_t>(strtoul(device.c_str() + 8, nullptr, 10));
  return sys::nbd_disconnect(index, why);
}

}  // namespace repvisor
