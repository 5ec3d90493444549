// The narrow seam through which a job's resource pipeline acts on the system: volumes opened and
// flushed, loop devices attached and detached, NBD servers started, signalled and released, NBD
// devices connected and disconnected, and a timer. The pipeline decides what to do and in which
// order; an implementation only does it. The daemon's is HostResources (host_resources.hpp);
// the unit tests give the pipeline a fake that records each call and completes each operation
// whenever the test says (Ninja's DiskInterface is the model).
#pragma once
#include <uv.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "core/job.hpp"
#include "core/resource.hpp"
#include "util/fd.hpp"
#include "util/time.hpp"
#include "util/uv.hpp"

struct nbd_handle;

namespace repvisor {

// libnbd handles are closed through the library, loaded only once one exists (sys/libnbd.hpp).
struct NbdCloser {
  void operator()(nbd_handle* h) const;
};
using NbdPtr = std::unique_ptr<nbd_handle, NbdCloser>;

// What the daemon holds open for one resource. Filled and read by HostResources only: the
// pipeline keeps them with the resource (they end with it) but never looks inside. Members are
// destroyed in reverse order, so each poll is closed before the descriptor it watches.
struct ResourceHandles {
  Fd file;    // file, loop: the volume, for the flush after the job
  Fd loop;    // loop: held while the job runs (autoclear detaches on the last close)
  Fd listen;  // nbd-server: the socket it was activated with (qemu-nbd; nbdkit binds its own)
  Fd pidfd;   // nbd-server, while it is watched
  bool server_is_child = true;
  // nbd-server: while pidfd is nbdkit's starting process (its PID), which forks the server and
  // exits (nbd_server.cpp); the server is watched, and recorded, from then on.
  pid_t launcher = 0;
  int signalled = 0;                                    // the last signal sent to the server, for one forked after it
  std::function<void(const std::string& how)> on_exit;  // nbd-server: it ended, "exited with status 1"
  UvPtr<uv_poll_t> pid_poll;
  NbdPtr probe;  // nbd-server: the handshake that says it serves
  std::function<void(bool ok, const std::string& why)> on_probe;
  UvPtr<uv_poll_t> probe_poll;
};

// One resource of a job: what was asked, what the daemon recorded, what it holds.
struct JobResource {
  JobResource(size_t number, const core::ResourceSpec& spec, core::Resource& record)
      : number(number), spec(spec), record(record) {}
  JobResource(const JobResource&) = delete;
  JobResource& operator=(const JobResource&) = delete;

  const size_t number;             // its place in the job's list: names its server's cgroup and socket
  const core::ResourceSpec& spec;  // the job's declaration
  core::Resource& record;          // persisted with the job: a restarted daemon acts on it alone
  ResourceHandles handles;
  bool pending = false;  // the pipeline waits for an operation of its current phase on it

  bool is_volume() const { return spec.kind == core::ResourceKind::File || spec.kind == core::ResourceKind::Loop; }
  bool is(core::ResourceKind k) const { return spec.kind == k; }
};

// Every completion is reported from the event loop, never before the call that started the
// operation has returned. A failure is a negative return (-errno where there is one) with `why`
// a sentence that does not name the resource: the pipeline names it.
class ResourceSystem {
 public:
  virtual ~ResourceSystem() = default;

  class Timer {
   public:
    virtual ~Timer() = default;
    // Fires `after` from now, then every `repeat` (0: once). Re-arming replaces the old arming.
    virtual void arm(usec_t after, usec_t repeat) = 0;
    virtual void disarm() = 0;
  };
  virtual std::unique_ptr<Timer> make_timer(std::function<void()> fire) = 0;
  virtual usec_t now() = 0;  // monotonic
  // Test-only fault injection: the daemon dies here when told to (REPVISOR_TEST_CRASH_AT).
  virtual void crash_point(const char* name) = 0;

  // The job's runtime directory, where its servers' sockets live.
  virtual int make_runtime_dir(const core::Job& job, std::string* why) = 0;
  virtual void remove_runtime_dir(const core::Job& job) = 0;

  // ---- volumes (file, loop) ----
  // Opens the volume for writing, creating it when the spec gives a size; *created says it did.
  virtual int open_volume(JobResource& r, bool* created, std::string* why) = 0;
  // Attaches the opened volume to a loop device: its path and the backing file's identity.
  virtual int attach_loop(JobResource& r, std::string* device, uint64_t* dev, uint64_t* ino, std::string* why) = 0;
  // Holds the volume again after a restart (for its flush); a failure only means no hold.
  virtual void hold_volume(JobResource& r) = 0;
  // Holds the recorded loop device again after a restart, if it still backs the volume.
  virtual int hold_loop(JobResource& r, std::string* why) = 0;
  // Flushes the volume to stable storage: through what is held, else opened by its path.
  // -ENOENT: it is gone. 0: `done(error)` follows, once.
  virtual int flush_volume(JobResource& r, std::function<void(int error)> done, std::string* why) = 0;
  // Lets go of the loop device (the hold, then LOOP_CLR_FD): 1 detached (or someone else's now),
  // 0 still bound (open elsewhere: it goes with the last close; see loop_released).
  virtual int detach_loop(JobResource& r, std::string* why) = 0;
  virtual bool loop_released(JobResource& r) = 0;
  virtual void close_volume(JobResource& r) = 0;
  // Removes the volume's file (0 when already gone).
  virtual int remove_volume(JobResource& r, std::string* why) = 0;

  // ---- NBD servers ----
  struct ServerStart {
    std::string socket;  // set once it is bound, even if the start fails later
    pid_t pid = 0;
    uint64_t start_time = 0;
  };
  // Starts the server on its socket and watches it: `on_exit(how)` once it ends (the watch ends
  // with it, or with release_server / abandon_server).
  virtual int start_server(const core::Job& job, JobResource& r, std::function<void(const std::string&)> on_exit,
                           ServerStart* out, std::string* why) = 0;
  // Waits for the server's first NBD handshake: `done(ok, why)`, unless stop_probe comes first.
  // When the process serving is not the one started (nbdkit forks it), by then r.record's pid
  // and start_time name the one serving.
  virtual int probe_server(JobResource& r, std::function<void(bool ok, const std::string& why)> done,
                           std::string* why) = 0;
  virtual void stop_probe(JobResource& r) = 0;
  // Whether the server is watched; one recorded by an earlier daemon is watched again if it is
  // still that process.
  virtual bool hold_server(JobResource& r, std::function<void(const std::string&)> on_exit) = 0;
  virtual void signal_server(JobResource& r, int sig) = 0;
  virtual void kill_server(const core::Job& job, JobResource& r) = 0;  // its whole cgroup
  // Stops watching a server that would not die (reaped whenever it does).
  virtual void abandon_server(JobResource& r) = 0;
  // After its end: its cgroup (with anything it started) and its socket go.
  virtual void release_server(const core::Job& job, JobResource& r) = 0;

  // ---- NBD devices ----
  virtual int nbd_available(std::string* why) = 0;
  // Connects a device to the server listening on `socket`; *device is /dev/nbdN.
  virtual int connect_device(JobResource& r, const std::string& socket, std::string* device, std::string* why) = 0;
  virtual int disconnect_device(JobResource& r, std::string* why) = 0;
};

}  // namespace repvisor
