#include "client.hpp"

#include <fmt/format.h>
#include <grp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "util/text.hpp"
#include "wire/errors.hpp"
#include "wire/names.hpp"

namespace repvisor::ctl {

namespace {

using wire::kJobInterface;
using wire::kManagerPath;
constexpr const char* kManager = wire::kManagerInterface;

void check(int r, const char* what) {
  if (r < 0) throw CtlError(kExitFailure, fmt::format("{}: {}", what, strerror(-r)));
}

void append_options(sd_bus_message* m, const Options& opts) { check(wire::append_dict(m, opts), "building call"); }

}  // namespace

Client::Reply Client::call(const char* path, const char* interface, const char* method, const Options* opts,
                           uint64_t timeout, const std::vector<std::string>& leading) {
  wire::Message m;
  check(wire::new_call(bus(), path, interface, method, &m), method);
  for (const auto& s : leading) check(sd_bus_message_append_basic(m.get(), 's', s.c_str()), method);
  if (opts) append_options(m.get(), *opts);
  wire::Error err;
  Reply reply;
  if (wire::call(bus(), m.get(), timeout, &err, &reply) < 0) raise(err.get());
  return reply;
}

Props for_terminal(const Props& p) {
  Props out;
  for (const auto& [k, v] : p)
    out[k] = std::visit(
        [](const auto& x) -> Value {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::string>) {
            return escape(x);
          } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            std::vector<std::string> e;
            for (const auto& s : x) e.push_back(escape(s));
            return e;
          } else if constexpr (std::is_same_v<T, StringMap>) {
            StringMap e;
            for (const auto& [mk, mv] : x) e[escape(mk)] = escape(mv);
            return e;
          } else if constexpr (std::is_same_v<T, DictList>) {
            DictList e;
            for (const auto& d : x) {
              Dict ed;
              for (const auto& [dk, dv] : d)
                ed[dk] = std::holds_alternative<std::string>(dv) ? DictValue(escape(std::get<std::string>(dv))) : dv;
              e.push_back(std::move(ed));
            }
            return e;
          } else {
            return x;
          }
        },
        v);
  return out;
}

std::string get_s(const Props& p, const std::string& k) {
  auto it = p.find(k);
  if (it == p.end()) return {};
  if (auto* s = std::get_if<std::string>(&it->second)) return *s;
  return {};
}
uint64_t get_t(const Props& p, const std::string& k) {
  auto it = p.find(k);
  if (it == p.end()) return 0;
  if (auto* v = std::get_if<uint64_t>(&it->second)) return *v;
  return 0;
}
int64_t get_i(const Props& p, const std::string& k) {
  auto it = p.find(k);
  if (it == p.end()) return 0;
  if (auto* v = std::get_if<int32_t>(&it->second)) return *v;
  if (auto* v = std::get_if<uint32_t>(&it->second)) return *v;
  if (auto* v = std::get_if<int64_t>(&it->second)) return *v;
  if (auto* v = std::get_if<uint64_t>(&it->second)) return static_cast<int64_t>(*v);
  if (auto* v = std::get_if<bool>(&it->second)) return *v;
  return 0;
}
double get_d(const Props& p, const std::string& k) {
  auto it = p.find(k);
  if (it == p.end()) return -1;
  if (auto* v = std::get_if<double>(&it->second)) return *v;
  return -1;
}

Props read_props(sd_bus_message* m) {
  Props out;
  check(wire::read_dict(m, &out), "reading reply");
  return out;
}

namespace {

// The socket of a unix:path= address, empty for any other kind.
std::string socket_path(const std::string& address) {
  constexpr std::string_view kUnix = "unix:path=";
  if (address.rfind(kUnix, 0) != 0) return {};
  std::string path = address.substr(kUnix.size());
  return path.substr(0, path.find(','));
}

// What to do about a socket we may not open: the admin group owns it.
std::string access_hint(const std::string& address) {
  struct stat st {};
  const std::string path = socket_path(address);
  if (!path.empty() && stat(path.c_str(), &st) == 0)
    if (const group* gr = getgrgid(st.st_gid))
      return fmt::format("add yourself to the group '{}' (the socket's group), or use sudo", gr->gr_name);
  return "add yourself to the daemon's admin group (the socket's group, 'repvisor' unless configured), or use sudo";
}

CtlError unreachable(const std::string& address, int r) {
  if (address.rfind("unixexec:path=ssh,", 0) == 0)
    return {kExitUnreachable, fmt::format("cannot reach repvisord over ssh: {}", strerror(-r)),
            "check that ssh to the host works and that it has systemd-stdio-bridge and a running repvisord"};
  return {kExitUnreachable, fmt::format("cannot connect to repvisord at {}: {}", address, strerror(-r)),
          "is repvisord running? Use --runtime-dir or --address to reach a daemon started elsewhere"};
}

}  // namespace

Client::Client(const std::string& address) {
  wire::ConnectStep failed = wire::ConnectStep::Create;
  const int r = wire::connect(address, &bus_, &failed);
  if (r >= 0) return;
  if (failed == wire::ConnectStep::Create) check(r, "sd_bus_new");
  if (failed == wire::ConnectStep::Address)
    throw CtlError(kExitUsage, fmt::format("invalid address '{}': {}", address, strerror(-r)));
  if (r == -EACCES || r == -EPERM)
    throw CtlError(kExitAccessDenied, fmt::format("cannot connect to repvisord at {}: {}", address, strerror(-r)),
                   access_hint(address));
  throw unreachable(address, r);
}

void Client::raise(const sd_bus_error* e, const std::string& context) {
  const std::string name = e->name ? e->name : "";
  std::string msg = e->message ? e->message : name;
  if (!context.empty()) msg = context + ": " + msg;
  if (const auto kind = wire::error_kind(name)) {
    switch (*kind) {
      case wire::ErrorKind::NoSuchJob:
        throw CtlError(kExitNoSuchJob, msg, "'repvisorctl list' shows the jobs there are");
      case wire::ErrorKind::JobActive:
        throw CtlError(kExitJobActive, msg,
                       "wait for it to end ('repvisorctl wait JOB') or stop it ('repvisorctl stop JOB')");
      case wire::ErrorKind::NotResumable:
        throw CtlError(kExitNotResumable, msg);
      case wire::ErrorKind::CleanupFailed:
        throw CtlError(kExitCleanupFailed, msg, "fix the cause, then 'repvisorctl cleanup JOB' tries again");
      case wire::ErrorKind::AccessDenied:
        throw CtlError(kExitAccessDenied, msg, "run as root");
      case wire::ErrorKind::InvalidArgs:
        throw CtlError(kExitInvalidArgs, msg);
      case wire::ErrorKind::ShuttingDown:
        throw CtlError(kExitFailure, msg);
      case wire::ErrorKind::Failed:
        break;  // sd-bus's own failures share the name: told apart below, by what they say
    }
  }
  // A job object that is gone: deleted between finding the job and calling it. sd-bus answers
  // UnknownObject, or UnknownMethod where a fallback serves the job paths.
  if (name == SD_BUS_ERROR_UNKNOWN_OBJECT ||
      (name == SD_BUS_ERROR_UNKNOWN_METHOD && msg.find(kJobInterface) != std::string::npos))
    throw CtlError(kExitNoSuchJob,
                   context.empty() ? "the job is gone (deleted)" : context + ": the job is gone (deleted)",
                   "'repvisorctl list' shows the jobs there are");
  if (name == SD_BUS_ERROR_SERVICE_UNKNOWN || name == SD_BUS_ERROR_NAME_HAS_NO_OWNER)
    throw CtlError(kExitUnreachable, msg, "is repvisord running? 'systemctl status repvisord' tells");
  if (name == SD_BUS_ERROR_NO_REPLY || name == SD_BUS_ERROR_DISCONNECTED)
    throw CtlError(kExitUnreachable, msg, "the daemon went away");
  switch (sd_bus_error_get_errno(e)) {
    case ECONNRESET:
    case ENOTCONN:
    case EPIPE:
    case ECONNREFUSED:
    case ESHUTDOWN:
      throw CtlError(kExitUnreachable, msg, "the connection to the daemon was lost");
    default:
      break;
  }
  throw CtlError(kExitFailure, msg);
}

std::string Client::resume(const std::string& path) {
  const Options none;
  Reply reply = call(path.c_str(), kJobInterface, "Resume", &none);
  const char* out = nullptr;
  check(sd_bus_message_read(reply.get(), "o", &out), "reading reply");
  return out;
}

void Client::retry_cleanup(const std::string& path) {
  call(path.c_str(), kJobInterface, "RetryCleanup", nullptr, UINT64_MAX - 1);
}

std::pair<std::string, std::string> Client::submit(const Options& spec) {
  Reply reply = call(kManagerPath, kManager, "Submit", &spec);
  const char *id, *path;
  check(sd_bus_message_read(reply.get(), "so", &id, &path), "reading reply");
  return {id, path};
}

std::vector<JobRow> Client::list(const std::vector<std::string>& states) {
  Options filter;
  if (!states.empty()) filter["states"] = states;
  Reply reply = call(kManagerPath, kManager, "List", &filter);
  std::vector<JobRow> rows;
  check(wire::read_job_rows(reply.get(), &rows), "reading reply");
  return rows;
}

std::string Client::get_job(const std::string& key) {
  wire::Message m;
  check(wire::new_call(bus(), kManagerPath, kManager, "GetJob", &m), "GetJob");
  check(sd_bus_message_append_basic(m.get(), 's', key.c_str()), "GetJob");
  wire::Error err;
  Reply reply;
  if (wire::call(bus(), m.get(), 0, &err, &reply) < 0) {
    if (err.name() == std::string_view(SD_BUS_ERROR_INVALID_ARGS) &&
        std::string_view(err.message()).find("matches more than one job") != std::string_view::npos)
      ambiguous(key);
    raise(err.get());
  }
  const char* path;
  check(sd_bus_message_read(reply.get(), "o", &path), "reading reply");
  return path;
}

void Client::ambiguous(const std::string& prefix) {
  // As git does for a short object id: the candidates, so the user can pick one.
  auto rows = list();
  std::erase_if(rows, [&](const JobRow& r) { return r.id.rfind(prefix, 0) != 0; });
  std::sort(rows.begin(), rows.end(), [](const JobRow& x, const JobRow& y) { return x.created_usec < y.created_usec; });
  std::string msg = fmt::format("job id prefix '{}' is ambiguous; it matches:", prefix);
  for (const auto& r : rows)
    msg += fmt::format("\n  {}  {:<20}  {}", r.id, r.name.empty() ? "-" : escape(r.name), r.state);
  throw CtlError(kExitInvalidArgs, msg, "give more of the id, or the job's name");
}

std::vector<EventRow> Client::list_events(const std::string& job, uint64_t since_usec, uint64_t limit) {
  Options filter;
  if (!job.empty()) filter["job"] = job;
  if (since_usec) filter["since_usec"] = since_usec;
  filter["limit"] = limit;
  Reply owned = call(kManagerPath, kManager, "ListEvents", &filter);
  sd_bus_message* reply = owned.get();
  int r = 0;
  std::vector<EventRow> rows;
  check(sd_bus_message_enter_container(reply, 'a', "(tsssa{sv})"), "reading reply");
  while ((r = sd_bus_message_enter_container(reply, 'r', "tsssa{sv}")) > 0) {
    EventRow e;
    const char *job_id, *type, *msg;
    check(sd_bus_message_read(reply, "tsss", &e.ts_usec, &job_id, &type, &msg), "reading reply");
    e.job = job_id, e.type = type, e.message = msg;
    e.details = read_props(reply);
    check(sd_bus_message_exit_container(reply), "reading reply");
    rows.push_back(std::move(e));
  }
  check(r, "reading reply");
  return rows;
}

static Props get_all(sd_bus* bus, const char* path, const char* interface) {
  wire::Error err;
  Props p;
  const int r = wire::get_all(bus, path, interface, &p, &err);
  if (err.is_set()) Client::raise(err.get());
  check(r, "reading reply");
  return p;
}

Props Client::job_properties(const std::string& path) { return get_all(bus(), path.c_str(), kJobInterface); }
Props Client::manager_properties() { return get_all(bus(), kManagerPath, kManager); }

wire::Slot Client::call_async(const char* path, const char* interface, const char* method,
                              const std::vector<std::string>& leading, const Options& opts, sd_bus_message_handler_t cb,
                              void* userdata) {
  wire::Message m;
  check(wire::new_call(bus(), path, interface, method, &m), method);
  for (const auto& s : leading) check(sd_bus_message_append_basic(m.get(), 's', s.c_str()), method);
  append_options(m.get(), opts);
  sd_bus_slot* slot = nullptr;
  // No timeout: a stop with wait lasts as long as the job's stop timeout allows.
  check(sd_bus_call_async(bus(), &slot, m.get(), cb, userdata, UINT64_MAX), method);
  return wire::Slot(slot);
}

Props Client::call_dict(const char* path, const char* interface, const char* method,
                        const std::vector<std::string>& leading, const Options& opts) {
  Reply reply = call(path, interface, method, &opts, UINT64_MAX, leading);
  return read_props(reply.get());
}

}  // namespace repvisor::ctl
