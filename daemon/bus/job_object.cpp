// org.repvisor1.Job: the per-job object's vtable, made from its methods and its property table,
// and the verbs behind its methods (which Manager's *Job methods call too).
#include "bus/job_object.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>
#include <system_error>
#include <utility>

#include "bus/api.hpp"
#include "bus/args.hpp"
#include "bus/call.hpp"
#include "bus/properties.hpp"
#include "config/logs.hpp"
#include "supervisor/log_reader.hpp"

namespace repvisor::bus {

std::string job_path(const std::string& id) { return std::string(kJobPrefix) + "/" + id; }

namespace {

// The job an object path names, if it still exists.
core::Job* job_at(Supervisor& sup, std::string_view path) {
  const std::string prefix = std::string(kJobPrefix) + "/";
  if (path.size() <= prefix.size() || path.substr(0, prefix.size()) != prefix) return nullptr;
  return sup.find_by_id(path.substr(prefix.size()));
}

core::Job& job_of(Api& api, const char* path) {
  if (core::Job* j = job_at(api.supervisor(), path ? path : "")) return *j;
  throw ApiError(ErrorKind::NoSuchJob, "no job at " + std::string(path ? path : ""));
}

// ---- properties ------------------------------------------------------------------------------

struct JobView {
  const core::Job& job;
  const Supervisor& sup;
};

int append_argv(sd_bus_message* m, const JobView& v) {
  std::vector<const char*> argv;
  for (const auto& a : v.job.spec().argv_shown()) argv.push_back(a.c_str());
  argv.push_back(nullptr);
  return sd_bus_message_append_strv(m, const_cast<char**>(argv.data()));
}

int append_stuck_pids(sd_bus_message* m, const JobView& v) {
  check(sd_bus_message_open_container(m, 'a', "u"));
  for (pid_t pid : v.job.stuck_pids) check(append(m, static_cast<uint32_t>(pid)));
  return sd_bus_message_close_container(m);
}

int append_resources(sd_bus_message* m, const JobView& v) {
  const core::Job& j = v.job;
  check(sd_bus_message_open_container(m, 'a', "(ssss)"));
  for (size_t i = 0; i < j.resources.size(); ++i) {
    const auto& s = j.spec().resources[i];
    check(sd_bus_message_append(m, "(ssss)", core::to_string(s.kind), s.name.c_str(), s.path.c_str(),
                                core::to_string(j.resources[i].state)));
  }
  return sd_bus_message_close_container(m);
}

int append_resource_details(sd_bus_message* m, const JobView& v) {
  const core::Job& j = v.job;
  check(sd_bus_message_open_container(m, 'a', "a{sv}"));
  for (size_t i = 0; i < j.resources.size(); ++i) {
    const auto& s = j.spec().resources[i];
    const auto& r = j.resources[i];
    DictWriter d(m);
    d.add("kind", "s", core::to_string(s.kind))
        .add("name", "s", s.name.c_str())
        .add("path", "s", s.path.c_str())
        .add("state", "s", core::to_string(r.state))
        .add("endpoint", "s", r.endpoint.c_str())
        .add("device", "s", r.device.c_str())
        .add("created", "b", static_cast<int>(r.created))
        .add("on_stop", "s", core::to_string(s.on_stop))
        .add("server_pid", "u", static_cast<uint32_t>(r.pid))
        .add("error", "s", r.error.c_str());
    if (s.size) d.add("size", "t", *s.size);
    d.close();
  }
  return sd_bus_message_close_container(m);
}

// Every Job property, in the order introspection shows them; the change bits are core's
// (core/job.hpp), which the supervisor reports through Api::job_changed.
constexpr Property<JobView> kJobProperties[] = {
    {"Id", "s", kConst, [](auto m, auto& v) { return append(m, v.job.id()); }},
    {"Name", "s", kConst, [](auto m, auto& v) { return append(m, v.job.spec().name); }},
    {"State", "s", core::kChangedState, [](auto m, auto& v) { return append(m, core::to_string(v.job.state())); }},
    {"SubState", "s", core::kChangedState,
     [](auto m, auto& v) { return append(m, core::to_string(v.job.sub_state())); }},
    {"Phase", "s", core::kChangedProgress, [](auto m, auto& v) { return append(m, v.job.phase); }},
    {"Progress", "d", core::kChangedProgress, [](auto m, auto& v) { return append(m, v.job.progress); }},
    {"StatusText", "s", core::kChangedStatus, [](auto m, auto& v) { return append(m, v.job.status_text); }},
    {"FailReason", "s", core::kChangedStatus, [](auto m, auto& v) { return append(m, v.job.fail_reason); }},
    {"Result", "s", core::kChangedResult, [](auto m, auto& v) { return append(m, core::to_string(v.job.result())); }},
    {"BytesDone", "t", core::kChangedProgress, [](auto m, auto& v) { return append(m, v.job.bytes_done); }},
    {"BytesTotal", "t", core::kChangedProgress, [](auto m, auto& v) { return append(m, v.job.bytes_total); }},
    {"Checkpoint", "s", core::kChangedCheckpoint, [](auto m, auto& v) { return append(m, v.job.checkpoint); }},
    {"MainPID", "u", core::kChangedPid,
     [](auto m, auto& v) { return append(m, static_cast<uint32_t>(v.job.main_alive ? v.job.main_pid : 0)); }},
    {"Argv", "as", kConst, append_argv},
    {"CreatedUSec", "t", kConst, [](auto m, auto& v) { return append(m, v.job.created_usec); }},
    {"StartedUSec", "t", core::kChangedTimes, [](auto m, auto& v) { return append(m, v.job.started_usec); }},
    {"StopRequestedUSec", "t", core::kChangedStop,
     [](auto m, auto& v) { return append(m, v.job.stop_requested_usec); }},
    {"StopDeadlineUSec", "t", core::kChangedStop, [](auto m, auto& v) { return append(m, v.job.stop_deadline_usec); }},
    {"FinishedUSec", "t", core::kChangedTimes, [](auto m, auto& v) { return append(m, v.job.finished_usec); }},
    {"CancelledUSec", "t", core::kChangedTimes, [](auto m, auto& v) { return append(m, v.job.cancelled_usec); }},
    {"CancelReason", "s", core::kChangedStop, [](auto m, auto& v) { return append(m, v.job.cancel_reason); }},
    {"CancelNotes", "s", core::kChangedStop, [](auto m, auto& v) { return append(m, v.job.cancel_notes); }},
    {"StopMode", "s", core::kChangedStop, [](auto m, auto& v) { return append(m, core::to_string(v.job.stop_mode)); }},
    {"RequestedByUID", "u", core::kChangedStop, [](auto m, auto& v) { return append(m, v.job.requested_by_uid); }},
    {"ExitCode", "i", core::kChangedExit, [](auto m, auto& v) { return append(m, v.job.exit_code); }},
    {"ExitSignal", "i", core::kChangedExit, [](auto m, auto& v) { return append(m, v.job.exit_signal); }},
    {"LogPath", "s", kConst, [](auto m, auto& v) { return append(m, v.sup.log_path(v.job)); }},
    {"LogBytesCut", "t", core::kChangedLog, [](auto m, auto& v) { return append(m, v.job.log_bytes_cut); }},
    {"LogKeep", "s", core::kChangedLog, [](auto m, auto& v) { return append(m, v.job.log_keep); }},
    {"LogLimit", "t", core::kChangedLog, [](auto m, auto& v) { return append(m, v.job.log_limit); }},
    {"LogBytesWritten", "t", core::kChangedLogWritten, [](auto m, auto& v) { return append(m, v.job.log_written); }},
    {"StopTimeoutUSec", "t", kConst, [](auto m, auto& v) { return append(m, v.job.spec().stop_timeout); }},
    {"StopSignal", "i", kConst, [](auto m, auto& v) { return append(m, v.job.spec().stop_signal); }},
    {"KillMode", "s", kConst, [](auto m, auto& v) { return append(m, core::to_string(v.job.spec().kill_mode)); }},
    // Found when the job turns unkillable and cleared by a resume, each time with the status text.
    {"StuckPIDs", "au", core::kChangedStatus, append_stuck_pids},
    {"Resources", "a(ssss)", core::kChangedResources, append_resources},
    {"ResourceDetails", "aa{sv}", core::kChangedResources, append_resource_details},
    {"CleanupState", "s", core::kChangedResources, [](auto m, auto& v) { return append(m, v.job.cleanup_state); }},
    {"CleanupError", "s", core::kChangedResources, [](auto m, auto& v) { return append(m, v.job.cleanup_error); }},
    {"Runs", "u", core::kChangedRuns, [](auto m, auto& v) { return append(m, v.job.runs); }},
    {"ProgressSource", "s", kConst, [](auto m, auto& v) { return append(m, core::to_string(v.job.spec().progress)); }},
};

int get(sd_bus*, const char* path, const char*, const char* name, sd_bus_message* reply, void* userdata,
        sd_bus_error* err) {
  return guarded(err, [&] {
    Api& api = *static_cast<Api*>(userdata);
    const JobView view{job_of(api, path), api.supervisor()};
    return get_property<JobView>(kJobProperties, name, reply, view);
  });
}

// ---- methods ---------------------------------------------------------------------------------

int stop(Api& api, sd_bus_message* call) { return stop_job(api, call, job_of(api, sd_bus_message_get_path(call))); }
int remove(Api& api, sd_bus_message* call) { return delete_job(api, call, job_of(api, sd_bus_message_get_path(call))); }
int resume(Api& api, sd_bus_message* call) { return resume_job(api, call, job_of(api, sd_bus_message_get_path(call))); }
int retry(Api& api, sd_bus_message* call) {
  return retry_cleanup(api, call, job_of(api, sd_bus_message_get_path(call)));
}

// The most one ReadLog returns: a reply of a few hundred KiB is what a console page wants, and
// a caller that wants more asks again from next_offset.
constexpr uint64_t kReadLogMax = uint64_t{1024} * 1024;

// Positions and times as a(tt).
template <class T, class Fn>
void append_pairs(sd_bus_message* m, const char* key, const std::vector<T>& items, Fn pair) {
  check(sd_bus_message_open_container(m, 'e', "sv"));
  check(sd_bus_message_append_basic(m, 's', key));
  check(sd_bus_message_open_container(m, 'v', "a(tt)"));
  check(sd_bus_message_open_container(m, 'a', "(tt)"));
  for (const auto& item : items) {
    const auto [a, b] = pair(item);
    check(sd_bus_message_append(m, "(tt)", a, b));
  }
  check(sd_bus_message_close_container(m));
  check(sd_bus_message_close_container(m));
  check(sd_bus_message_close_container(m));
}

// Everyone who may read the job may read its log: it is read like the job's properties (its
// StatusText is the job's words too).
int read_log(Api& api, sd_bus_message* call) {
  const core::Job& job = job_of(api, sd_bus_message_get_path(call));
  LogReadRequest req;
  uint32_t max_bytes = 0;
  check(sd_bus_message_read(call, "tu", &req.offset, &max_bytes));
  req.max_bytes = std::min<uint64_t>(max_bytes, kReadLogMax);
  parse_read_log_options(call, &req);
  req.growing = !core::is_terminal(job.state());
  LogRead got;
  try {
    got = api.supervisor().read_log(job, req);
  } catch (const std::system_error& e) {
    throw ApiError(ErrorKind::Failed, fmt::format("job {}: cannot read its log: {}", job.id(), e.what()));
  }
  MessagePtr reply = new_reply(call);
  sd_bus_message* m = reply.get();
  check(sd_bus_message_append_array(m, 'y', got.data.data(), got.data.size()));
  check(sd_bus_message_append(m, "t", got.start + static_cast<uint64_t>(got.data.size())));
  check(sd_bus_message_open_container(m, 'a', "{sv}"));
  check(sd_bus_message_append(m, "{sv}", "start", "t", got.start));
  check(sd_bus_message_append(m, "{sv}", "end", "t", got.end));
  check(sd_bus_message_append(m, "{sv}", "cut", "t", got.cut));
  check(sd_bus_message_append(m, "{sv}", "keep", "s", got.cut ? config::to_string(got.keep) : ""));
  append_pairs(m, "kept", got.kept, [](const LogRange& r) { return std::pair{r.from, r.to}; });
  append_pairs(m, "stamps", got.stamps, [](const core::LogStamp& s) { return std::pair{s.written, s.usec}; });
  check(sd_bus_message_close_container(m));
  return send(reply);
}

const std::vector<sd_bus_vtable>& vtable() {
  static const std::vector<sd_bus_vtable> v = make_vtable<JobView>(
      {
          SD_BUS_METHOD_WITH_NAMES("Stop", "a{sv}", SD_BUS_PARAM(options), "a{sv}", SD_BUS_PARAM(result),
                                   (method<Api, stop>), SD_BUS_VTABLE_UNPRIVILEGED),
          SD_BUS_METHOD_WITH_NAMES("Delete", "a{sv}", SD_BUS_PARAM(options), "a{sv}", SD_BUS_PARAM(result),
                                   (method<Api, remove>), SD_BUS_VTABLE_UNPRIVILEGED),
          SD_BUS_METHOD_WITH_NAMES("Resume", "a{sv}", SD_BUS_PARAM(options), "o", SD_BUS_PARAM(job),
                                   (method<Api, resume>), SD_BUS_VTABLE_UNPRIVILEGED),
          SD_BUS_METHOD("RetryCleanup", "", "", (method<Api, retry>), SD_BUS_VTABLE_UNPRIVILEGED),
          SD_BUS_METHOD_WITH_NAMES("ReadLog", "tua{sv}",
                                   SD_BUS_PARAM(offset) SD_BUS_PARAM(max_bytes) SD_BUS_PARAM(options), "ayta{sv}",
                                   SD_BUS_PARAM(data) SD_BUS_PARAM(next_offset) SD_BUS_PARAM(info),
                                   (method<Api, read_log>), SD_BUS_VTABLE_UNPRIVILEGED),
      },
      kJobProperties, get);
  return v;
}

// A job's object exists while the job does.
int find(sd_bus*, const char* path, const char*, void* userdata, void** found, sd_bus_error*) {
  auto* api = static_cast<Api*>(userdata);
  if (!job_at(api->supervisor(), path)) return 0;
  *found = api;
  return 1;
}

int enumerate(sd_bus*, const char*, void* userdata, char*** nodes, sd_bus_error*) {
  auto* api = static_cast<Api*>(userdata);
  auto jobs = api->supervisor().jobs();
  // A strv that sd-bus takes over and frees.
  char** l = static_cast<char**>(calloc(jobs.size() + 1, sizeof(char*)));
  if (!l) return -ENOMEM;
  size_t i = 0;
  for (const auto* j : jobs) {
    l[i] = strdup(job_path(j->id()).c_str());
    if (!l[i]) {
      for (size_t k = 0; k < i; ++k) free(l[k]);
      free(l);
      return -ENOMEM;
    }
    ++i;
  }
  *nodes = l;
  return 0;
}

// The reply to a Stop: the job's stop record as it is when the reply is made.
MessagePtr stop_reply(sd_bus_message* call, const core::Job& job, bool already) {
  MessagePtr reply = new_reply(call);
  DictWriter d(reply.get());
  d.add("id", "s", job.id().c_str())
      .add("state", "s", core::to_string(job.state()))
      .add("cancelled_usec", "t", job.cancelled_usec)
      .add("reason", "s", job.cancel_reason.c_str())
      .add("notes", "s", job.cancel_notes.c_str())
      .add("already", "b", static_cast<int>(already));
  d.close();
  return reply;
}

}  // namespace

void serve_jobs(sd_bus* bus, Api& api, Slots& slots) {
  slots.add("job objects", [&](sd_bus_slot** s) {
    return sd_bus_add_fallback_vtable(bus, s, kJobPrefix, kJobInterface, vtable().data(), find, &api);
  });
  slots.add("job enumerator",
            [&](sd_bus_slot** s) { return sd_bus_add_node_enumerator(bus, s, kJobPrefix, enumerate, &api); });
}

std::vector<const char*> job_properties_changed(uint32_t changed) {
  return changed_properties<JobView>(kJobProperties, changed);
}

// ---- the verbs -------------------------------------------------------------------------------

int stop_job(Api& api, sd_bus_message* call, core::Job& job) {
  api.require(call, Api::Privilege::Admin, "stop jobs");
  bool wait = false;
  core::StopRequest req = parse_stop_options(call, &wait);
  const Caller who = api.caller(call);
  req.uid = who.uid;
  const core::StopOutcome outcome = api.supervisor().stop(job, req, &who);
  if (wait && !core::is_terminal(job.state())) {
    // Answered once the job has ended, with its record then.
    api.supervisor().when_finished(
        job.id(), [&api, call = ref(call), already = outcome.already, id = job.id()](core::Job* j) {
          answer(call.get(), [&] {
            if (!j) throw ApiError(ErrorKind::NoSuchJob, "job " + id + " was deleted while stopping");
            api.reply_after_commit(call.get(), stop_reply(call.get(), *j, already));
            return 1;
          });
        });
    return 1;
  }
  api.reply_after_commit(call, stop_reply(call, job, outcome.already));
  return 1;
}

int delete_job(Api& api, sd_bus_message* call, core::Job& job) {
  api.require(call, Api::Privilege::Admin, "delete jobs");
  DeleteOptions opts = parse_delete_options(call);
  const Caller who = api.caller(call);
  opts.uid = who.uid;
  // Answered when the job and what it leaves are gone (possibly at once).
  api.supervisor().delete_job(
      job, opts, &who, [&api, call = ref(call)](std::optional<DeleteResult> res, std::optional<ApiError> err) {
        answer(call.get(), [&] {
          if (err) throw *err;
          MessagePtr reply = new_reply(call.get());
          DictWriter d(reply.get());
          d.add("id", "s", res->id.c_str()).add("status", "s", "deleted").add("deleted_usec", "t", res->deleted_usec);
          d.close();
          api.reply_after_commit(call.get(), std::move(reply));
          return 1;
        });
      });
  return 1;
}

int resume_job(Api& api, sd_bus_message* call, core::Job& job) {
  api.require(call, Api::Privilege::Admin, "resume jobs");
  parse_resume_options(call);
  const Caller who = api.caller(call);
  api.supervisor().resume(job, &who);
  MessagePtr reply = new_reply(call);
  check(sd_bus_message_append(reply.get(), "o", job_path(job.id()).c_str()));
  api.reply_after_commit(call, std::move(reply));
  return 1;
}

int retry_cleanup(Api& api, sd_bus_message* call, core::Job& job) {
  api.require(call, Api::Privilege::Admin, "clean up jobs");
  const Caller who = api.caller(call);
  // Answered once the teardown has run, with its outcome.
  api.supervisor().retry_cleanup(job, &who, [&api, call = ref(call), id = job.id()](bool ok) {
    answer(call.get(), [&] {
      if (!ok) {
        const core::Job* j = api.supervisor().find_by_id(id);
        throw ApiError(ErrorKind::CleanupFailed,
                       fmt::format("job {}: cleanup failed: {}", id, j ? j->cleanup_error : ""));
      }
      api.reply_after_commit(call.get(), new_reply(call.get()));
      return 1;
    });
  });
  return 1;
}

}  // namespace repvisor::bus
