// What a job declares it needs besides its command — NBD servers, NBD devices, image files and
// loop devices — and what the daemon records about each while it sets them up and tears them
// down. Plain data: the system layer acts on it, the store persists it.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace repvisor::core {

enum class ResourceKind { NbdServer, NbdDevice, File, Loop };
enum class NbdServerKind { QemuNbd, Nbdkit };
enum class ImageFormat { Raw, Qcow2 };
enum class OnStop { Keep, Discard };

struct ResourceSpec {
  ResourceKind kind = ResourceKind::File;
  std::string name;              // [A-Za-z0-9_-]{1,32}: REPVISOR_NBD_<NAME>, {nbd.NAME}, {volume.NAME}
  std::string path;              // the file or device served (nbd-server) or written (file, loop)
  std::optional<uint64_t> size;  // create the volume with this size when it does not exist
  NbdServerKind server = NbdServerKind::QemuNbd;
  ImageFormat format = ImageFormat::Raw;
  OnStop on_stop = OnStop::Keep;
  std::string export_of;  // nbd-device: the nbd-server resource of the same job it connects to
};

const char* to_string(ResourceKind k);
const char* to_string(NbdServerKind k);
const char* to_string(ImageFormat f);
const char* to_string(OnStop p);
bool resource_kind_from_string(std::string_view s, ResourceKind* out);
bool nbd_server_kind_from_string(std::string_view s, NbdServerKind* out);
bool image_format_from_string(std::string_view s, ImageFormat* out);
bool on_stop_from_string(std::string_view s, OnStop* out);

// The variable part of an environment name: "src-disk" -> "SRC_DISK".
std::string resource_env_suffix(std::string_view name);
// Checks one job's list of resources on its own (names, keys per kind, paths written
// canonically). Returns "" or a sentence naming resources[i].key; no file-system access.
std::string check_resources(const std::vector<ResourceSpec>& resources);

// Where a resource is in its life. Volumes end "kept" or "discarded", servers and devices
// "released"; "failed" carries an error; "unavailable" is a resource this host cannot provide.
enum class ResourceState { Pending, Ready, Released, Kept, Discarded, Failed, Unavailable };
const char* to_string(ResourceState s);
bool resource_state_from_string(std::string_view s, ResourceState* out);

// The daemon's record of one resource of a job (persisted: recovery after a crash acts on it).
struct Resource {
  ResourceState state = ResourceState::Pending;
  bool created = false;         // the daemon created the file: only then may it discard it
  std::string endpoint;         // what the job is given: NBD URI, loop device path, file path
  std::string socket;           // nbd-server: the Unix socket it listens on
  std::string device;           // loop, nbd-device: /dev/loopN, /dev/nbdN
  uint64_t inode = 0, dev = 0;  // loop: the backing file, to recognise the device after a crash
  pid_t pid = 0;                // nbd-server
  uint64_t start_time = 0;
  std::string error;
  bool teardown_failed = false;  // the error is from a cleanup step: a retry starts it over
};

}  // namespace repvisor::core
