// The vtables of the objects Api serves, next to the methods and properties behind them.
#include <fmt/format.h>

#include "bus/api.hpp"
#include "bus/args.hpp"
#include "bus/connection.hpp"
#include "bus/errors.hpp"
#include "util/id.hpp"

namespace repvisor::bus {

namespace {

Api& api_of(void* userdata) { return *static_cast<Api*>(userdata); }

void check(int r) {
  if (r < 0) throw std::runtime_error(std::string("building reply: ") + strerror(-r));
}

// a{sv} writer for method results.
class DictWriter {
 public:
  explicit DictWriter(sd_bus_message* m) : m_(m) { check(sd_bus_message_open_container(m_, 'a', "{sv}")); }
  template <class T>
  DictWriter& add(const char* key, const char* sig, T value) {
    check(sd_bus_message_append(m_, "{sv}", key, sig, value));
    return *this;
  }
  void close() { check(sd_bus_message_close_container(m_)); }

 private:
  sd_bus_message* m_;
};

// Replies to a Stop call, once what it changed is on disk; works both at once and later (for
// `wait`), the call kept alive by a reference.
void reply_stop(Api& api, sd_bus_message* call, const core::Job& job, bool already) {
  sd_bus_message* reply = nullptr;
  if (sd_bus_message_new_method_return(call, &reply) < 0) return;
  DictWriter d(reply);
  d.add("id", "s", job.id().c_str())
      .add("state", "s", core::to_string(job.state()))
      .add("cancelled_usec", "t", job.cancelled_usec)
      .add("reason", "s", job.cancel_reason.c_str())
      .add("notes", "s", job.cancel_notes.c_str())
      .add("already", "b", static_cast<int>(already));
  d.close();
  api.reply_after_commit(call, reply);
}

void reply_error(sd_bus_message* call, const ApiError& e) { bus::reply_error(call, error_name(e.kind()), e.what()); }

}  // namespace

int Api::stop(sd_bus_message* m, core::Job& job, sd_bus_error*) {
  require(m, Privilege::Admin, "stop jobs");
  bool wait = false;
  core::StopRequest req = parse_stop_options(m, &wait);
  const Caller who = caller(m);
  req.uid = who.uid;
  const core::StopOutcome outcome = sup_.stop(job, req, &who);
  if (wait && !core::is_terminal(job.state())) {
    sup_.when_finished(job.id(), [this, call = ref(m), already = outcome.already, id = job.id()](core::Job* j) {
      if (j)
        reply_stop(*this, call.get(), *j, already);
      else
        reply_error(call.get(), ApiError(ErrorKind::NoSuchJob, "job " + id + " was deleted while stopping"));
    });
    return 1;
  }
  reply_stop(*this, m, job, outcome.already);
  return 1;
}

int Api::remove(sd_bus_message* m, core::Job& job, sd_bus_error*) {
  require(m, Privilege::Admin, "delete jobs");
  DeleteOptions opts = parse_delete_options(m);
  const Caller who = caller(m);
  opts.uid = who.uid;
  sup_.delete_job(job, opts, &who, [this, call = ref(m)](std::optional<DeleteResult> res, std::optional<ApiError> err) {
    if (err) {
      reply_error(call.get(), *err);
      return;
    }
    sd_bus_message* reply = nullptr;
    if (sd_bus_message_new_method_return(call.get(), &reply) < 0) return;
    DictWriter d(reply);
    d.add("id", "s", res->id.c_str()).add("status", "s", "deleted").add("deleted_usec", "t", res->deleted_usec);
    d.close();
    reply_after_commit(call.get(), reply);
  });
  return 1;
}

int Api::resume(sd_bus_message* m, core::Job& job, sd_bus_error*) {
  require(m, Privilege::Admin, "resume jobs");
  parse_resume_options(m);
  const Caller who = caller(m);
  sup_.resume(job, &who);
  sd_bus_message* reply = nullptr;
  check(sd_bus_message_new_method_return(m, &reply));
  MessagePtr owned(reply);
  check(sd_bus_message_append(reply, "o", job_path(job.id()).c_str()));
  reply_after_commit(m, owned.release());
  return 1;
}

int Api::retry_cleanup(sd_bus_message* m, core::Job& job, sd_bus_error*) {
  require(m, Privilege::Admin, "clean up jobs");
  const Caller who = caller(m);
  // Answered once the teardown has run, with its outcome.
  sup_.retry_cleanup(job, &who, [this, call = ref(m), id = job.id()](bool ok) {
    core::Job* j = sup_.find_by_id(id);
    if (!ok) {
      reply_error(call.get(), ApiError(ErrorKind::CleanupFailed,
                                       fmt::format("job {}: cleanup failed: {}", id, j ? j->cleanup_error : "")));
      return;
    }
    sd_bus_message* reply = nullptr;
    if (sd_bus_message_new_method_return(call.get(), &reply) < 0) return;
    reply_after_commit(call.get(), reply);
  });
  return 1;
}

// ---- org.repvisor1.Manager ----------------------------------------------------------------

struct ManagerMethods {
  static int submit(sd_bus_message* m, void* userdata, sd_bus_error* err) {
    return guarded(err, [&] {
      Api& api = api_of(userdata);
      bool from_template = false;
      core::JobSpec spec = parse_job_spec(m, api.sup_.config(), &from_template);
      // A template fixes the command: admins may run it. A raw command runs as root: root only.
      if (from_template)
        api.require(m, Api::Privilege::Admin, "submit jobs from templates");
      else
        api.require(m, Api::Privilege::Root, "submit jobs");
      const core::Job& job = api.sup_.submit(std::move(spec), api.caller(m));
      sd_bus_message* reply = nullptr;
      check(sd_bus_message_new_method_return(m, &reply));
      MessagePtr owned(reply);
      check(sd_bus_message_append(reply, "so", job.id().c_str(), job_path(job.id()).c_str()));
      api.reply_after_commit(m, owned.release(), [&sup = api.sup_, id = job.id()] { sup.forget_unrecorded(id); });
      return 1;
    });
  }

  static int list(sd_bus_message* m, void* userdata, sd_bus_error* err) {
    return guarded(err, [&] {
      Api& api = api_of(userdata);
      const auto states = parse_list_filter(m);
      sd_bus_message* reply = nullptr;
      check(sd_bus_message_new_method_return(m, &reply));
      MessagePtr owned(reply);
      check(sd_bus_message_open_container(reply, 'a', "(ssssdtto)"));
      for (const core::Job* j : api.sup_.jobs()) {
        if (!states.empty() && std::find(states.begin(), states.end(), j->state()) == states.end()) continue;
        check(sd_bus_message_append(reply, "(ssssdtto)", j->id().c_str(), j->spec().name.c_str(),
                                    core::to_string(j->state()), j->phase.c_str(), j->progress, j->created_usec,
                                    j->finished_usec, job_path(j->id()).c_str()));
      }
      check(sd_bus_message_close_container(reply));
      return sd_bus_send(nullptr, reply, nullptr);
    });
  }

  static int list_events(sd_bus_message* m, void* userdata, sd_bus_error* err) {
    return guarded(err, [&] {
      Api& api = api_of(userdata);
      const auto args = parse_events_filter(m);
      store::EventFilter f{.since_usec = args.since_usec, .limit = args.limit};
      if (!args.job.empty()) {
        // A deleted job's entries stay: its full id works even though the job is gone.
        if (is_job_id(args.job) && !api.sup_.find_by_id(args.job))
          f.job = args.job;
        else
          f.job = api.sup_.lookup(args.job).id();
      }
      sd_bus_message* reply = nullptr;
      check(sd_bus_message_new_method_return(m, &reply));
      MessagePtr owned(reply);
      check(sd_bus_message_open_container(reply, 'a', "(tsssa{sv})"));
      // Who may read the trail is everyone; what a job was asked to run, with its environment's
      // names and working directory, is the admins' to read.
      const bool admin = api.allowed(m, Api::Privilege::Admin);
      for (auto& e : api.sup_.events(f)) {
        if (!admin) e.details.erase("spec");
        check(sd_bus_message_open_container(reply, 'r', "tsssa{sv}"));
        check(sd_bus_message_append(reply, "tsss", e.ts_usec, e.job_id.c_str(), e.type.c_str(), e.message.c_str()));
        check(sd_bus_message_open_container(reply, 'a', "{sv}"));
        for (const auto& [k, v] : e.details.items()) {
          if (v.is_string())
            check(sd_bus_message_append(reply, "{sv}", k.c_str(), "s", v.get<std::string>().c_str()));
          else if (v.is_boolean())
            check(sd_bus_message_append(reply, "{sv}", k.c_str(), "b", static_cast<int>(v.get<bool>())));
          else if (v.is_number_unsigned())
            check(sd_bus_message_append(reply, "{sv}", k.c_str(), "t", v.get<uint64_t>()));
          else if (v.is_number_integer())
            check(sd_bus_message_append(reply, "{sv}", k.c_str(), "x", v.get<int64_t>()));
          else if (v.is_number_float())
            check(sd_bus_message_append(reply, "{sv}", k.c_str(), "d", v.get<double>()));
          else
            check(sd_bus_message_append(reply, "{sv}", k.c_str(), "s", v.dump().c_str()));  // nested: JSON text
        }
        check(sd_bus_message_close_container(reply));
        check(sd_bus_message_close_container(reply));
      }
      check(sd_bus_message_close_container(reply));
      return sd_bus_send(nullptr, reply, nullptr);
    });
  }

  static int get_job(sd_bus_message* m, void* userdata, sd_bus_error* err) {
    return guarded(err, [&] {
      Api& api = api_of(userdata);
      const char* key = nullptr;
      check(sd_bus_message_read(m, "s", &key));
      const core::Job& job = api.sup_.lookup(key);
      return sd_bus_reply_method_return(m, "o", job_path(job.id()).c_str());
    });
  }

  static int stop_job(sd_bus_message* m, void* userdata, sd_bus_error* err) {
    return guarded(err, [&] {
      Api& api = api_of(userdata);
      const char* key = nullptr;
      check(sd_bus_message_read(m, "s", &key));
      return api.stop(m, api.sup_.lookup(key), err);
    });
  }

  static int delete_job(sd_bus_message* m, void* userdata, sd_bus_error* err) {
    return guarded(err, [&] {
      Api& api = api_of(userdata);
      const char* key = nullptr;
      check(sd_bus_message_read(m, "s", &key));
      return api.remove(m, api.sup_.lookup(key), err);
    });
  }

  static int resume_job(sd_bus_message* m, void* userdata, sd_bus_error* err) {
    return guarded(err, [&] {
      Api& api = api_of(userdata);
      const char* key = nullptr;
      check(sd_bus_message_read(m, "s", &key));
      return api.resume(m, api.sup_.lookup(key), err);
    });
  }

  static int retry_cleanup(sd_bus_message* m, void* userdata, sd_bus_error* err) {
    return guarded(err, [&] {
      Api& api = api_of(userdata);
      const char* key = nullptr;
      check(sd_bus_message_read(m, "s", &key));
      return api.retry_cleanup(m, api.sup_.lookup(key), err);
    });
  }

  static int property(sd_bus*, const char*, const char*, const char* name, sd_bus_message* reply, void* userdata,
                      sd_bus_error* err) {
    return guarded(err, [&] {
      Api& api = api_of(userdata);
      const std::string_view p(name);
      if (p == "Version") return sd_bus_message_append(reply, "s", REPVISOR_VERSION);
      if (p == "JobsActive") return sd_bus_message_append(reply, "u", api.sup_.jobs_active());
      if (p == "MaxConcurrentJobs") return sd_bus_message_append(reply, "u", api.sup_.config().max_concurrent_jobs);
      return -ENOENT;
    });
  }
};

const sd_bus_vtable Api::kManagerVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD_WITH_NAMES("Submit", "a{sv}", SD_BUS_PARAM(spec), "so", SD_BUS_PARAM(id) SD_BUS_PARAM(job),
                             ManagerMethods::submit, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("List", "a{sv}", SD_BUS_PARAM(filter), "a(ssssdtto)", SD_BUS_PARAM(jobs),
                             ManagerMethods::list, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("ListEvents", "a{sv}", SD_BUS_PARAM(filter), "a(tsssa{sv})", SD_BUS_PARAM(events),
                             ManagerMethods::list_events, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("GetJob", "s", SD_BUS_PARAM(id_or_name), "o", SD_BUS_PARAM(job), ManagerMethods::get_job,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("StopJob", "sa{sv}", SD_BUS_PARAM(id) SD_BUS_PARAM(options), "a{sv}", SD_BUS_PARAM(result),
                             ManagerMethods::stop_job, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("DeleteJob", "sa{sv}", SD_BUS_PARAM(id) SD_BUS_PARAM(options), "a{sv}",
                             SD_BUS_PARAM(result), ManagerMethods::delete_job, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("ResumeJob", "sa{sv}", SD_BUS_PARAM(id) SD_BUS_PARAM(options), "o", SD_BUS_PARAM(job),
                             ManagerMethods::resume_job, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("RetryCleanup", SD_BUS_ARGS("s", id), SD_BUS_NO_RESULT, ManagerMethods::retry_cleanup,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("Version", "s", ManagerMethods::property, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("JobsActive", "u", ManagerMethods::property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("MaxConcurrentJobs", "u", ManagerMethods::property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_VTABLE_END,
};

// ---- org.repvisor1.Job --------------------------------------------------------------------

struct JobMethods {
  static int stop(sd_bus_message* m, void* userdata, sd_bus_error* err) {
    return guarded(err, [&] {
      Api& api = api_of(userdata);
      return api.stop(m, api.job_from_path(sd_bus_message_get_path(m)), err);
    });
  }

  static int remove(sd_bus_message* m, void* userdata, sd_bus_error* err) {
    return guarded(err, [&] {
      Api& api = api_of(userdata);
      return api.remove(m, api.job_from_path(sd_bus_message_get_path(m)), err);
    });
  }

  static int resume(sd_bus_message* m, void* userdata, sd_bus_error* err) {
    return guarded(err, [&] {
      Api& api = api_of(userdata);
      return api.resume(m, api.job_from_path(sd_bus_message_get_path(m)), err);
    });
  }

  static int retry_cleanup(sd_bus_message* m, void* userdata, sd_bus_error* err) {
    return guarded(err, [&] {
      Api& api = api_of(userdata);
      return api.retry_cleanup(m, api.job_from_path(sd_bus_message_get_path(m)), err);
    });
  }

  static int property(sd_bus*, const char* path, const char*, const char* name, sd_bus_message* reply, void* userdata,
                      sd_bus_error* err) {
    return guarded(err, [&]() -> int {
      Api& api = api_of(userdata);
      const core::Job& j = api.job_from_path(path);
      const std::string_view p(name);
      if (p == "Id") return sd_bus_message_append(reply, "s", j.id().c_str());
      if (p == "Name") return sd_bus_message_append(reply, "s", j.spec().name.c_str());
      if (p == "State") return sd_bus_message_append(reply, "s", core::to_string(j.state()));
      if (p == "SubState") return sd_bus_message_append(reply, "s", core::to_string(j.sub_state()));
      if (p == "Phase") return sd_bus_message_append(reply, "s", j.phase.c_str());
      if (p == "Progress") return sd_bus_message_append(reply, "d", j.progress);
      if (p == "StatusText") return sd_bus_message_append(reply, "s", j.status_text.c_str());
      if (p == "FailReason") return sd_bus_message_append(reply, "s", j.fail_reason.c_str());
      if (p == "MainPID")
        return sd_bus_message_append(reply, "u", static_cast<uint32_t>(j.main_alive ? j.main_pid : 0));
      if (p == "Argv") {
        std::vector<const char*> v;
        for (const auto& a : j.spec().argv_shown()) v.push_back(a.c_str());
        v.push_back(nullptr);
        return sd_bus_message_append_strv(reply, const_cast<char**>(v.data()));
      }
      if (p == "CreatedUSec") return sd_bus_message_append(reply, "t", j.created_usec);
      if (p == "StartedUSec") return sd_bus_message_append(reply, "t", j.started_usec);
      if (p == "StopRequestedUSec") return sd_bus_message_append(reply, "t", j.stop_requested_usec);
      if (p == "StopDeadlineUSec") return sd_bus_message_append(reply, "t", j.stop_deadline_usec);
      if (p == "FinishedUSec") return sd_bus_message_append(reply, "t", j.finished_usec);
      if (p == "CancelledUSec") return sd_bus_message_append(reply, "t", j.cancelled_usec);
      if (p == "CancelReason") return sd_bus_message_append(reply, "s", j.cancel_reason.c_str());
      if (p == "CancelNotes") return sd_bus_message_append(reply, "s", j.cancel_notes.c_str());
      if (p == "StopMode") return sd_bus_message_append(reply, "s", core::to_string(j.stop_mode));
      if (p == "RequestedByUID") return sd_bus_message_append(reply, "u", j.requested_by_uid);
      if (p == "ExitCode") return sd_bus_message_append(reply, "i", j.exit_code);
      if (p == "ExitSignal") return sd_bus_message_append(reply, "i", j.exit_signal);
      if (p == "LogPath") return sd_bus_message_append(reply, "s", api.supervisor().log_path(j).c_str());
      if (p == "LogBytesCut") return sd_bus_message_append(reply, "t", j.log_bytes_cut);
      if (p == "LogKeep") return sd_bus_message_append(reply, "s", j.log_keep.c_str());
      if (p == "LogLimit") return sd_bus_message_append(reply, "t", j.log_limit);
      if (p == "BytesDone") return sd_bus_message_append(reply, "t", j.bytes_done);
      if (p == "BytesTotal") return sd_bus_message_append(reply, "t", j.bytes_total);
      if (p == "Checkpoint") return sd_bus_message_append(reply, "s", j.checkpoint.c_str());
      if (p == "StopTimeoutUSec") return sd_bus_message_append(reply, "t", j.spec().stop_timeout);
      if (p == "StopSignal") return sd_bus_message_append(reply, "i", j.spec().stop_signal);
      if (p == "KillMode") return sd_bus_message_append(reply, "s", core::to_string(j.spec().kill_mode));
      if (p == "CleanupState") return sd_bus_message_append(reply, "s", j.cleanup_state.c_str());
      if (p == "CleanupError") return sd_bus_message_append(reply, "s", j.cleanup_error.c_str());
      if (p == "Runs") return sd_bus_message_append(reply, "u", j.runs);
      if (p == "ProgressSource") return sd_bus_message_append(reply, "s", core::to_string(j.spec().progress));
      if (p == "Resources") {
        check(sd_bus_message_open_container(reply, 'a', "(ssss)"));
        for (size_t i = 0; i < j.resources.size(); ++i) {
          const auto& s = j.spec().resources[i];
          check(sd_bus_message_append(reply, "(ssss)", core::to_string(s.kind), s.name.c_str(), s.path.c_str(),
                                      core::to_string(j.resources[i].state)));
        }
        return sd_bus_message_close_container(reply);
      }
      if (p == "ResourceDetails") {
        check(sd_bus_message_open_container(reply, 'a', "a{sv}"));
        for (size_t i = 0; i < j.resources.size(); ++i) {
          const auto& s = j.spec().resources[i];
          const auto& r = j.resources[i];
          DictWriter d(reply);
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
        return sd_bus_message_close_container(reply);
      }
      if (p == "StuckPIDs") {
        check(sd_bus_message_open_container(reply, 'a', "u"));
        for (pid_t pid : j.stuck_pids) check(sd_bus_message_append(reply, "u", static_cast<uint32_t>(pid)));
        return sd_bus_message_close_container(reply);
      }
      return -ENOENT;
    });
  }
};

#define JOB_PROPERTY(name, sig, flags) SD_BUS_PROPERTY(name, sig, JobMethods::property, 0, flags)
constexpr auto kChange = SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE;
constexpr auto kConst = SD_BUS_VTABLE_PROPERTY_CONST;

const sd_bus_vtable Api::kJobVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD_WITH_NAMES("Stop", "a{sv}", SD_BUS_PARAM(options), "a{sv}", SD_BUS_PARAM(result), JobMethods::stop,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Delete", "a{sv}", SD_BUS_PARAM(options), "a{sv}", SD_BUS_PARAM(result),
                             JobMethods::remove, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("Resume", "a{sv}", SD_BUS_PARAM(options), "o", SD_BUS_PARAM(job), JobMethods::resume,
                             SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("RetryCleanup", "", "", JobMethods::retry_cleanup, SD_BUS_VTABLE_UNPRIVILEGED),
    JOB_PROPERTY("Id", "s", kConst),
    JOB_PROPERTY("Name", "s", kConst),
    JOB_PROPERTY("State", "s", kChange),
    JOB_PROPERTY("SubState", "s", kChange),
    JOB_PROPERTY("Phase", "s", kChange),
    JOB_PROPERTY("Progress", "d", kChange),
    JOB_PROPERTY("StatusText", "s", kChange),
    JOB_PROPERTY("FailReason", "s", kChange),
    JOB_PROPERTY("BytesDone", "t", kChange),
    JOB_PROPERTY("BytesTotal", "t", kChange),
    JOB_PROPERTY("Checkpoint", "s", kChange),
    JOB_PROPERTY("MainPID", "u", kChange),
    JOB_PROPERTY("Argv", "as", kConst),
    JOB_PROPERTY("CreatedUSec", "t", kConst),
    JOB_PROPERTY("StartedUSec", "t", kChange),
    JOB_PROPERTY("StopRequestedUSec", "t", kChange),
    JOB_PROPERTY("StopDeadlineUSec", "t", kChange),
    JOB_PROPERTY("FinishedUSec", "t", kChange),
    JOB_PROPERTY("CancelledUSec", "t", kChange),
    JOB_PROPERTY("CancelReason", "s", kChange),
    JOB_PROPERTY("CancelNotes", "s", kChange),
    JOB_PROPERTY("StopMode", "s", kChange),
    JOB_PROPERTY("RequestedByUID", "u", kChange),
    JOB_PROPERTY("ExitCode", "i", kChange),
    JOB_PROPERTY("ExitSignal", "i", kChange),
    JOB_PROPERTY("LogPath", "s", kConst),
    JOB_PROPERTY("LogBytesCut", "t", kChange),
    JOB_PROPERTY("LogKeep", "s", kChange),
    JOB_PROPERTY("LogLimit", "t", kChange),
    JOB_PROPERTY("StopTimeoutUSec", "t", kConst),
    JOB_PROPERTY("StopSignal", "i", kConst),
    JOB_PROPERTY("KillMode", "s", kConst),
    JOB_PROPERTY("StuckPIDs", "au", kChange),
    JOB_PROPERTY("Resources", "a(ssss)", kChange),
    JOB_PROPERTY("ResourceDetails", "aa{sv}", kChange),
    JOB_PROPERTY("CleanupState", "s", kChange),
    JOB_PROPERTY("CleanupError", "s", kChange),
    JOB_PROPERTY("Runs", "u", kChange),
    JOB_PROPERTY("ProgressSource", "s", kConst),
    SD_BUS_VTABLE_END,
};

// ---- org.freedesktop.DBus on peer-to-peer connections --------------------------------------
// busctl, gdbus and sd-bus clients speak to a bus: they send Hello first and AddMatch for
// signals. On our private socket every signal goes to every peer, so matches need no record.

struct DriverMethods {
  static int hello(sd_bus_message* m, void* userdata, sd_bus_error* err) {
    return guarded(err, [&] {
      Api& api = api_of(userdata);
      const std::string name = fmt::format(":1.{}", api.next_peer_++);
      return sd_bus_reply_method_return(m, "s", name.c_str());
    });
  }
  static int ok(sd_bus_message* m, void*, sd_bus_error*) { return sd_bus_reply_method_return(m, ""); }
  static int get_name_owner(sd_bus_message* m, void*, sd_bus_error* err) {
    const char* name = nullptr;
    if (int r = sd_bus_message_read(m, "s", &name); r < 0) return r;
    if (std::string_view(name) == "org.repvisor1" || std::string_view(name) == "org.freedesktop.DBus")
      return sd_bus_reply_method_return(m, "s", name);
    return sd_bus_error_setf(err, SD_BUS_ERROR_NAME_HAS_NO_OWNER, "no owner for %s on this private socket", name);
  }
  static int name_has_owner(sd_bus_message* m, void*, sd_bus_error*) {
    const char* name = nullptr;
    if (int r = sd_bus_message_read(m, "s", &name); r < 0) return r;
    return sd_bus_reply_method_return(m, "b", std::string_view(name) == "org.repvisor1");
  }
  static int list_names(sd_bus_message* m, void*, sd_bus_error*) {
    return sd_bus_reply_method_return(m, "as", 2, "org.freedesktop.DBus", "org.repvisor1");
  }
  static int get_id(sd_bus_message* m, void*, sd_bus_error*) {
    sd_id128_t id{};
    sd_bus_get_bus_id(sd_bus_message_get_bus(m), &id);
    char s[SD_ID128_STRING_MAX];
    return sd_bus_reply_method_return(m, "s", sd_id128_to_string(id, s));
  }
};

const sd_bus_vtable Api::kDriverVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("Hello", "", "s", DriverMethods::hello, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("AddMatch", "s", "", DriverMethods::ok, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("RemoveMatch", "s", "", DriverMethods::ok, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("GetNameOwner", "s", "s", DriverMethods::get_name_owner, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("NameHasOwner", "s", "b", DriverMethods::name_has_owner, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("ListNames", "", "as", DriverMethods::list_names, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("GetId", "", "s", DriverMethods::get_id, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

}  // namespace repvisor::bus
