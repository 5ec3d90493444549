#include "core/resource.hpp"

#include <fmt/format.h>

#include <set>

#include "util/string_table.hpp"
#include "util/text.hpp"

namespace repvisor::core {

namespace {
constexpr StringTable<ResourceKind, 4> kKinds({"nbd-server", "nbd-device", "file", "loop"});
constexpr StringTable<NbdServerKind, 2> kServers({"qemu-nbd", "nbdkit"});
constexpr StringTable<ImageFormat, 2> kFormats({"raw", "qcow2"});
constexpr StringTable<OnStop, 2> kOnStop({"keep", "discard"});
constexpr StringTable<ResourceState, 7> kStates({"pending", "ready", "released", "kept", "discarded", "failed",
                                                 "unavailable"});
constexpr size_t kMaxResources = 16;
constexpr uint64_t kMaxSize = uint64_t{1} << 50;  // 1 PiB: a typo, not a disk

// Absolute, and written the one way: no ".", "..", empty components or trailing slash. Paths
// are compared against volume roots as strings, so a second spelling must not exist.
std::string check_path(const std::string& p) {
  if (p.empty() || p[0] != '/') return "is not an absolute path";
  if (p.size() > 1024) return "is longer than 1024 characters";
  if (p.find('\0') != std::string::npos) return "contains a NUL byte";
  size_t start = 1;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string::npos) end = p.size();
    const std::string_view comp(p.data() + start, end - start);
    if (comp.empty()) return "has an empty component (// or a trailing /)";
    if (comp == "." || comp == "..") return "has a '.' or '..' component";
    start = end + 1;
  }
  return "";
}
}  // namespace

const char* to_string(ResourceKind k) { return kKinds.name(k); }
const char* to_string(NbdServerKind k) { return kServers.name(k); }
const char* to_string(ImageFormat f) { return kFormats.name(f); }
const char* to_string(OnStop p) { return kOnStop.name(p); }
const char* to_string(ResourceState s) { return kStates.name(s); }
bool resource_kind_from_string(std::string_view s, ResourceKind* out) { return kKinds.value(s, out); }
bool nbd_server_kind_from_string(std::string_view s, NbdServerKind* out) { return kServers.value(s, out); }
bool image_format_from_string(std::string_view s, ImageFormat* out) { return kFormats.value(s, out); }
bool on_stop_from_string(std::string_view s, OnStop* out) { return kOnStop.value(s, out); }
bool resource_state_from_string(std::string_view s, ResourceState* out) { return kStates.value(s, out); }

std::string resource_env_suffix(std::string_view name) {
  std::string out;
  for (char c : name) out += c == '-' ? '_' : static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return out;
}

std::string check_resources(const std::vector<ResourceSpec>& resources) {
  if (resources.size() > kMaxResources)
    return fmt::format("resources: {} given, at most {} are allowed", resources.size(), kMaxResources);
  std::set<std::string> names, env_names, paths;
  for (size_t i = 0; i < resources.size(); ++i) {
    const ResourceSpec& r = resources[i];
    const std::string at = fmt::format("resources[{}]", i);
    if (r.name.empty() || r.name.size() > 32) return at + ".name: required, 1 to 32 characters";
    for (char c : r.name)
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
        return fmt::format("{}.name: {} may hold only letters, digits, '_' and '-'", at, quote(r.name));
    if (!names.insert(r.name).second) return fmt::format("{}.name: '{}' is used twice", at, r.name);
    if (!env_names.insert(resource_env_suffix(r.name)).second)
      return fmt::format("{}.name: '{}' gives the same environment name as another resource", at, r.name);

    const bool volume = r.kind == ResourceKind::File || r.kind == ResourceKind::Loop;
    if (r.kind == ResourceKind::NbdDevice) {
      if (!r.path.empty() && r.path.rfind("/dev/nbd", 0) != 0)
        return fmt::format("{}.path: {} is not an NBD device (/dev/nbdN)", at, quote(r.path));
    } else if (r.path.empty()) {
      return at + ".path: required for a " + to_string(r.kind) + " resource";
    }
    if (!r.path.empty())
      if (auto why = check_path(r.path); !why.empty()) return fmt::format("{}.path: {} {}", at, quote(r.path), why);
    if (volume && !paths.insert(r.path).second)
      return fmt::format("{}.path: '{}' is already a volume of this job", at, r.path);
    if (r.size) {
      if (!volume) return at + ".size: only file and loop volumes are created with a size";
      if (*r.size == 0 || *r.size > kMaxSize) return fmt::format("{}.size: {} is out of range (1..2^50)", at, *r.size);
      if (r.kind == ResourceKind::Loop && *r.size % 512 != 0)
        return fmt::format("{}.size: {} is not a multiple of 512 (a loop device's sector size)", at, *r.size);
    }
    if (r.server != NbdServerKind::QemuNbd && r.kind != ResourceKind::NbdServer)
      return at + ".server: only for nbd-server resources";
    if (r.format == ImageFormat::Qcow2) {
      if (r.kind != ResourceKind::NbdServer)
        return at + ".format: qcow2 is read only by an nbd-server; a volume is a raw image";
      if (r.server == NbdServerKind::Nbdkit)
        return at + ".format: nbdkit here cannot read qcow2 (no qcow2dec filter); use server = \"qemu-nbd\"";
    }
    if (r.on_stop != OnStop::Keep && !volume) return at + ".on_stop: only file and loop volumes are kept or discarded";
    if (r.kind == ResourceKind::NbdDevice) {
      if (r.export_of.empty()) return at + ".export: required: the name of the nbd-server resource to connect to";
    } else if (!r.export_of.empty()) {
      return at + ".export: only for nbd-device resources";
    }
  }
  for (size_t i = 0; i < resources.size(); ++i) {
    const ResourceSpec& r = resources[i];
    if (r.kind != ResourceKind::NbdDevice) continue;
    bool found = false;
    for (const auto& o : resources) found |= o.kind == ResourceKind::NbdServer && o.name == r.export_of;
    if (!found)
      return fmt::format("resources[{}].export: {} is not an nbd-server resource of this job", i, quote(r.export_of));
  }
  return "";
}

}  // namespace repvisor::core
