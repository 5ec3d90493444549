#include "client.hpp"

#include <fmt/format.h>
#include <grp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "util/text.hpp"

namespace repvisor::ctl {

namespace {

constexpr const char* kDest = "org.repvisor1";
constexpr const char* kManagerPath = "/org/repvisor1";
constexpr const char* kManager = "org.repvisor1.Manager";

void check(int r, const char* what) {
  if (r < 0) throw CtlError(kExitFailure, fmt::format("{}: {}", what, strerror(-r)));
}

void append_options(sd_bus_message* m, const Options& opts) {
  check(sd_bus_message_open_container(m, 'a', "{sv}"), "building call");
  for (const auto& [k, v] : opts) {
    check(sd_bus_message_open_container(m, 'e', "sv"), "building call");
    check(sd_bus_message_append_basic(m, 's', k.c_str()), "building call");
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          int r;
          if constexpr (std::is_same_v<T, std::string>)
            r = sd_bus_message_append(m, "v", "s", x.c_str());
          else if constexpr (std::is_same_v<T, bool>)
            r = sd_bus_message_append(m, "v", "b", static_cast<int>(x));
          else if constexpr (std::is_same_v<T, uint64_t>)
            r = sd_bus_message_append(m, "v", "t", x);
          else if constexpr (std::is_same_v<T, int32_t>)
            r = sd_bus_message_append(m, "v", "i", x);
          else if constexpr (std::is_same_v<T, uint32_t>)
            r = sd_bus_message_append(m, "v", "u", x);
          else if constexpr (std::is_same_v<T, double>)
            r = sd_bus_message_append(m, "v", "d", x);
          else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            std::vector<const char*> l;
            for (const auto& s : x) l.push_back(s.c_str());
            l.push_back(nullptr);
            r = sd_bus_message_open_container(m, 'v', "as");
            if (r >= 0) r = sd_bus_message_append_strv(m, const_cast<char**>(l.data()));
            if (r >= 0) r = sd_bus_message_close_container(m);
          } else if constexpr (std::is_same_v<T, StringMap>) {
            r = sd_bus_message_open_container(m, 'v', "a{ss}");
            if (r >= 0) r = sd_bus_message_open_container(m, 'a', "{ss}");
            for (const auto& [mk, mv] : x)
              if (r >= 0) r = sd_bus_message_append(m, "{ss}", mk.c_str(), mv.c_str());
            if (r >= 0) r = sd_bus_message_close_container(m);
            if (r >= 0) r = sd_bus_message_close_container(m);
          } else if constexpr (std::is_same_v<T, DictList>) {
            r = sd_bus_message_open_container(m, 'v', "aa{sv}");
            if (r >= 0) r = sd_bus_message_open_container(m, 'a', "a{sv}");
            for (const auto& d : x) {
              if (r >= 0) r = sd_bus_message_open_container(m, 'a', "{sv}");
              for (const auto& [dk, dv] : d) {
                if (r < 0) break;
                if (const auto* s = std::get_if<std::string>(&dv))
                  r = sd_bus_message_append(m, "{sv}", dk.c_str(), "s", s->c_str());
                else if (const auto* t = std::get_if<uint64_t>(&dv))
                  r = sd_bus_message_append(m, "{sv}", dk.c_str(), "t", *t);
                else
                  r = sd_bus_message_append(m, "{sv}", dk.c_str(), "b", static_cast<int>(std::get<bool>(dv)));
              }
              if (r >= 0) r = sd_bus_message_close_container(m);
            }
            if (r >= 0) r = sd_bus_message_close_container(m);
            if (r >= 0) r = sd_bus_message_close_container(m);
          } else {
            r = -EINVAL;
          }
          check(r, "building call");
        },
        v);
    check(sd_bus_message_close_container(m), "building call");
  }
  check(sd_bus_message_close_container(m), "building call");
}

}  // namespace

// Frees an sd_bus_error however the scope is left (raise() throws).
struct ErrorGuard {
  sd_bus_error* e;
  ~ErrorGuard() { sd_bus_error_free(e); }
};

[[noreturn]] static void raise_owned(sd_bus_error* err) {
  ErrorGuard guard{err};
  Client::raise(err);
}

Client::Reply Client::call(const char* path, const char* interface, const char* method, const Options* opts,
                           uint64_t timeout, const std::vector<std::string>& leading) {
  sd_bus_message *m = nullptr, *reply = nullptr;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  check(sd_bus_message_new_method_call(bus_, &m, kDest, path, interface, method), method);
  Reply call_msg(m);
  for (const auto& s : leading) check(sd_bus_message_append_basic(m, 's', s.c_str()), method);
  if (opts) append_options(m, *opts);
  if (sd_bus_call(bus_, m, timeout, &err, &reply) < 0) raise_owned(&err);
  return Reply(reply);
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
  check(sd_bus_message_enter_container(m, 'a', "{sv}"), "reading reply");
  while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
    const char* key;
    check(sd_bus_message_read_basic(m, 's', &key), "reading reply");
    const char* contents;
    check(sd_bus_message_peek_type(m, nullptr, &contents), "reading reply");
    check(sd_bus_message_enter_container(m, 'v', contents), "reading reply");
    std::string sig = contents;
    if (sig == "s" || sig == "o") {
      const char* s;
      check(sd_bus_message_read_basic(m, sig[0], &s), "reading reply");
      out[key] = std::string(s);
    } else if (sig == "b") {
      int b;
      check(sd_bus_message_read_basic(m, 'b', &b), "reading reply");
      out[key] = b != 0;
    } else if (sig == "t") {
      uint64_t t;
      check(sd_bus_message_read_basic(m, 't', &t), "reading reply");
      out[key] = t;
    } else if (sig == "x") {
      int64_t x;
      check(sd_bus_message_read_basic(m, 'x', &x), "reading reply");
      out[key] = x;
    } else if (sig == "i") {
      int32_t i;
      check(sd_bus_message_read_basic(m, 'i', &i), "reading reply");
      out[key] = i;
    } else if (sig == "u") {
      uint32_t u;
      check(sd_bus_message_read_basic(m, 'u', &u), "reading reply");
      out[key] = u;
    } else if (sig == "d") {
      double d;
      check(sd_bus_message_read_basic(m, 'd', &d), "reading reply");
      out[key] = d;
    } else if (sig == "as") {
      char** l = nullptr;
      check(sd_bus_message_read_strv(m, &l), "reading reply");
      std::vector<std::string> v;
      for (char** p = l; p && *p; ++p) {
        v.emplace_back(*p);
        free(*p);
      }
      free(l);
      out[key] = v;
    } else if (sig == "au") {
      std::vector<uint32_t> v;
      check(sd_bus_message_enter_container(m, 'a', "u"), "reading reply");
      uint32_t u;
      while (sd_bus_message_read_basic(m, 'u', &u) > 0) v.push_back(u);
      check(sd_bus_message_exit_container(m), "reading reply");
      out[key] = v;
    } else if (sig == "aa{sv}") {
      // Each element is an a{sv}: read as properties, kept as strings, numbers and booleans.
      DictList list;
      check(sd_bus_message_enter_container(m, 'a', "a{sv}"), "reading reply");
      while (sd_bus_message_at_end(m, false) == 0) {
        Dict d;
        for (const auto& [k, v] : read_props(m))
          std::visit(
              [&, &k = k](const auto& x) {
                using T = std::decay_t<decltype(x)>;
                if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, bool>)
                  d[k] = x;
                else if constexpr (std::is_same_v<T, uint64_t> || std::is_same_v<T, uint32_t>)
                  d[k] = static_cast<uint64_t>(x);
              },
              v);
        list.push_back(std::move(d));
      }
      check(sd_bus_message_exit_container(m), "reading reply");
      out[key] = std::move(list);
    } else {
      check(sd_bus_message_skip(m, contents), "reading reply");
    }
    check(sd_bus_message_exit_container(m), "reading reply");
    check(sd_bus_message_exit_container(m), "reading reply");
  }
  check(sd_bus_message_exit_container(m), "reading reply");
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
  check(sd_bus_new(&bus_), "sd_bus_new");
  if (int r = sd_bus_set_address(bus_, address.c_str()); r < 0) {
    bus_ = sd_bus_flush_close_unref(bus_);
    throw CtlError(kExitUsage, fmt::format("invalid address '{}': {}", address, strerror(-r)));
  }
  // A bus client: sends Hello, as busctl does; the daemon's private socket answers it.
  sd_bus_set_bus_client(bus_, 1);
  int r = sd_bus_start(bus_);
  // The unique name comes with the reply to Hello: waiting for it finds a peer that is not
  // there (an ssh that could not connect, say) here rather than at the first call.
  const char* unique = nullptr;
  if (r >= 0) r = sd_bus_get_unique_name(bus_, &unique);
  if (r < 0) {
    bus_ = sd_bus_flush_close_unref(bus_);  // the destructor does not run for a throwing constructor
    if (r == -EACCES || r == -EPERM)
      throw CtlError(kExitAccessDenied, fmt::format("cannot connect to repvisord at {}: {}", address, strerror(-r)),
                     access_hint(address));
    throw unreachable(address, r);
  }
}

Client::~Client() { sd_bus_flush_close_unref(bus_); }

void Client::raise(const sd_bus_error* e, const std::string& context) {
  const std::string name = e->name ? e->name : "";
  std::string msg = e->message ? e->message : name;
  if (!context.empty()) msg = context + ": " + msg;
  if (name == "org.repvisor1.Error.NoSuchJob")
    throw CtlError(kExitNoSuchJob, msg, "'repvisorctl list' shows the jobs there are");
  if (name == "org.repvisor1.Error.JobActive")
    throw CtlError(kExitJobActive, msg,
                   "wait for it to end ('repvisorctl wait JOB') or stop it ('repvisorctl stop JOB')");
  if (name == "org.repvisor1.Error.NotResumable") throw CtlError(kExitNotResumable, msg);
  if (name == "org.repvisor1.Error.CleanupFailed")
    throw CtlError(kExitCleanupFailed, msg, "fix the cause, then 'repvisorctl cleanup JOB' tries again");
  if (name == SD_BUS_ERROR_ACCESS_DENIED) throw CtlError(kExitAccessDenied, msg, "run as root");
  if (name == SD_BUS_ERROR_INVALID_ARGS) throw CtlError(kExitInvalidArgs, msg);
  // A job object that is gone: deleted between finding the job and calling it. sd-bus answers
  // UnknownObject, or UnknownMethod where a fallback serves the job paths.
  if (name == SD_BUS_ERROR_UNKNOWN_OBJECT ||
      (name == SD_BUS_ERROR_UNKNOWN_METHOD && msg.find("org.repvisor1.Job") != std::string::npos))
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
  Reply reply = call(path.c_str(), "org.repvisor1.Job", "Resume", &none);
  const char* out = nullptr;
  check(sd_bus_message_read(reply.get(), "o", &out), "reading reply");
  return out;
}

void Client::retry_cleanup(const std::string& path) {
  call(path.c_str(), "org.repvisor1.Job", "RetryCleanup", nullptr, UINT64_MAX - 1);
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
  Reply owned = call(kManagerPath, kManager, "List", &filter);
  sd_bus_message* reply = owned.get();
  int r = 0;
  std::vector<JobRow> rows;
  check(sd_bus_message_enter_container(reply, 'a', "(ssssdtto)"), "reading reply");
  for (;;) {
    const char *id, *name, *state, *phase, *path;
    JobRow row;
    r = sd_bus_message_read(reply, "(ssssdtto)", &id, &name, &state, &phase, &row.progress, &row.created_usec,
                            &row.finished_usec, &path);
    check(r, "reading reply");
    if (r == 0) break;
    row.id = id, row.name = name, row.state = state, row.phase = phase, row.path = path;
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string Client::get_job(const std::string& key) {
  sd_bus_message* reply = nullptr;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  int r = sd_bus_call_method(bus_, kDest, kManagerPath, kManager, "GetJob", &err, &reply, "s", key.c_str());
  if (r < 0) {
    ErrorGuard guard{&err};
    if (err.name && std::string_view(err.name) == SD_BUS_ERROR_INVALID_ARGS && err.message &&
        std::string_view(err.message).find("matches more than one job") != std::string_view::npos)
      ambiguous(key);
    raise(&err);
  }
  const char* path;
  check(sd_bus_message_read(reply, "o", &path), "reading reply");
  std::string out = path;
  sd_bus_message_unref(reply);
  return out;
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
  sd_bus_message* reply = nullptr;
  sd_bus_error err = SD_BUS_ERROR_NULL;
  int r =
      sd_bus_call_method(bus, kDest, path, "org.freedesktop.DBus.Properties", "GetAll", &err, &reply, "s", interface);
  if (r < 0) {
    ErrorGuard guard{&err};
    Client::raise(&err);
  }
  Props p = read_props(reply);
  sd_bus_message_unref(reply);
  return p;
}

Props Client::job_properties(const std::string& path) { return get_all(bus_, path.c_str(), "org.repvisor1.Job"); }
Props Client::manager_properties() { return get_all(bus_, kManagerPath, kManager); }

sd_bus_slot* Client::call_async(const char* path, const char* interface, const char* method,
                                const std::vector<std::string>& leading, const Options& opts,
                                sd_bus_message_handler_t cb, void* userdata) {
  sd_bus_message* m = nullptr;
  check(sd_bus_message_new_method_call(bus_, &m, kDest, path, interface, method), method);
  for (const auto& s : leading) check(sd_bus_message_append_basic(m, 's', s.c_str()), method);
  append_options(m, opts);
  sd_bus_slot* slot = nullptr;
  // No timeout: a stop with wait lasts as long as the job's stop timeout allows.
  int r = sd_bus_call_async(bus_, &slot, m, cb, userdata, UINT64_MAX);
  sd_bus_message_unref(m);
  check(r, method);
  return slot;
}

Props Client::call_dict(const char* path, const char* interface, const char* method,
                        const std::vector<std::string>& leading, const Options& opts) {
  Reply reply = call(path, interface, method, &opts, UINT64_MAX, leading);
  return read_props(reply.get());
}

}  // namespace repvisor::ctl
