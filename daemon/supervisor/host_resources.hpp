// The daemon's ResourceSystem: the resource pipeline's verbs done on this host, with the
// Supervisor's cgroups, spawner, job logs and runtime directories. Volumes, loop devices and NBD
// devices are in host_volumes.cpp; NBD servers (start, readiness probe, watch, stop) in
// nbd_server.cpp. Private to supervisor/*.cpp.
#pragma once
#include <string>
#include <vector>

#include "supervisor/resource_system.hpp"
#include "sys/volume.hpp"

namespace repvisor {

class Supervisor;

class HostResources final : public ResourceSystem {
 public:
  explicit HostResources(Supervisor& sup) : sup_(sup) {}

  std::unique_ptr<Timer> make_timer(std::function<void()> fire) override;
  usec_t now() override { return now_monotonic(); }
  void crash_point(const char* name) override;
  int make_runtime_dir(const core::Job& job, std::string* why) override;
  void remove_runtime_dir(const core::Job& job) override;

  int open_volume(JobResource& r, bool* created, std::string* why) override;
  int attach_loop(JobResource& r, std::string* device, uint64_t* dev, uint64_t* ino, std::string* why) override;
  void hold_volume(JobResource& r) override;
  int hold_loop(JobResource& r, std::string* why) override;
  int flush_volume(JobResource& r, std::function<void(int error)> done, std::string* why) override;
  int detach_loop(JobResource& r, std::string* why) override;
  bool loop_released(JobResource& r) override;
  void close_volume(JobResource& r) override { r.handles.file.reset(); }
  int remove_volume(JobResource& r, std::string* why) override;

  int start_server(const core::Job& job, JobResource& r, std::function<void(const std::string&)> on_exit,
                   ServerStart* out, std::string* why) override;
  int probe_server(JobResource& r, std::function<void(bool ok, const std::string& why)> done,
                   std::string* why) override;
  void stop_probe(JobResource& r) override;
  bool hold_server(JobResource& r, std::function<void(const std::string&)> on_exit) override;
  void signal_server(JobResource& r, int sig) override;
  void kill_server(const core::Job& job, JobResource& r) override;
  void abandon_server(JobResource& r) override;
  void release_server(const core::Job& job, JobResource& r) override;

  int nbd_available(std::string* why) override;
  int connect_device(JobResource& r, const std::string& socket, std::string* device, std::string* why) override;
  int disconnect_device(JobResource& r, std::string* why) override;

  sys::VolumePolicy volume_policy() const;
  // The files qemu would open by name for the qcow2 image at `fd` (backing files, external data
  // files, theirs), each checked under the volume rules and opened into `files`. `opts` spells
  // the image, as the server's descriptor `image_fd`, and them, as the descriptors after it, for
  // --image-opts. "" or why the image is refused (a file outside the volume roots, say).
  std::string check_qcow2_image(int fd, const std::string& path, int image_fd, std::vector<Fd>* files,
                                std::string* opts) const;

 private:
  std::string server_cgroup(const core::Job& job, const JobResource& r) const;
  std::string server_socket(const core::Job& job, const JobResource& r) const;
  // Watches the server's pidfd; r.handles.on_exit once it has ended.
  static void watch_server(uv_loop_t* loop, JobResource& r);
  // nbdkit's starting process ended: the server it forked is watched, and recorded, instead.
  // False when there is none.
  static bool take_forked_server(uv_loop_t* loop, JobResource& r);
  // Starts the handshake that says the server serves; r.handles.on_probe once it is settled.
  static int connect_probe(uv_loop_t* loop, JobResource& r, std::string* why);
  static void probe_step(JobResource& r);

  Supervisor& sup_;
};

}  // namespace repvisor
