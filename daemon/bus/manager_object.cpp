// org.repvisor1.Manager: its methods, its property table and the vtable made from both.
#include "bus/manager_object.hpp"

#include <algorithm>

#include "bus/api.hpp"
#include "bus/args.hpp"
#include "bus/call.hpp"
#include "bus/job_object.hpp"
#include "bus/properties.hpp"
#include "util/id.hpp"

namespace repvisor::bus {

namespace {

// ---- properties ------------------------------------------------------------------------------

constexpr Property<Supervisor> kManagerProperties[] = {
    {"Version", "s", kConst, [](auto m, auto&) { return append(m, REPVISOR_VERSION); }},
    {"JobsActive", "u", kManagerChangedJobsActive, [](auto m, auto& sup) { return append(m, sup.jobs_active()); }},
    {"MaxConcurrentJobs", "u", kManagerChangedLimits,
     [](auto m, auto& sup) { return append(m, sup.config().max_concurrent_jobs); }},
};

int get(sd_bus*, const char*, const char*, const char* name, sd_bus_message* reply, void* userdata, sd_bus_error* err) {
  return guarded(err, [&] {
    return get_property<Supervisor>(kManagerProperties, name, reply, static_cast<Api*>(userdata)->supervisor());
  });
}

// ---- methods ---------------------------------------------------------------------------------

int submit(Api& api, sd_bus_message* call) {
  Supervisor& sup = api.supervisor();
  bool from_template = false;
  core::JobSpec spec = parse_job_spec(call, sup.config(), &from_template);
  // A template fixes the command: admins may run it. A raw command runs as root: root only.
  if (from_template)
    api.require(call, Api::Privilege::Admin, "submit jobs from templates");
  else
    api.require(call, Api::Privilege::Root, "submit jobs");
  const core::Job& job = sup.submit(std::move(spec), api.caller(call));
  MessagePtr reply = new_reply(call);
  check(sd_bus_message_append(reply.get(), "so", job.id().c_str(), job_path(job.id()).c_str()));
  api.reply_after_commit(call, std::move(reply), [&sup, id = job.id()] { sup.forget_unrecorded(id); });
  return 1;
}

int list(Api& api, sd_bus_message* call) {
  const auto states = parse_list_filter(call);
  MessagePtr reply = new_reply(call);
  sd_bus_message* m = reply.get();
  check(sd_bus_message_open_container(m, 'a', "(ssssdtto)"));
  for (const core::Job* j : api.supervisor().jobs()) {
    if (!states.empty() && std::find(states.begin(), states.end(), j->state()) == states.end()) continue;
    check(sd_bus_message_append(m, "(ssssdtto)", j->id().c_str(), j->spec().name.c_str(), core::to_string(j->state()),
                                j->phase.c_str(), j->progress, j->created_usec, j->finished_usec,
                                job_path(j->id()).c_str()));
  }
  check(sd_bus_message_close_container(m));
  return send(reply);
}

// An event's details, each value as its JSON type's nearest D-Bus type.
void append_details(sd_bus_message* m, const nlohmann::json& details) {
  check(sd_bus_message_open_container(m, 'a', "{sv}"));
  for (const auto& [k, v] : details.items()) {
    if (v.is_string())
      check(sd_bus_message_append(m, "{sv}", k.c_str(), "s", v.get<std::string>().c_str()));
    else if (v.is_boolean())
      check(sd_bus_message_append(m, "{sv}", k.c_str(), "b", static_cast<int>(v.get<bool>())));
    else if (v.is_number_unsigned())
      check(sd_bus_message_append(m, "{sv}", k.c_str(), "t", v.get<uint64_t>()));
    else if (v.is_number_integer())
      check(sd_bus_message_append(m, "{sv}", k.c_str(), "x", v.get<int64_t>()));
    else if (v.is_number_float())
      check(sd_bus_message_append(m, "{sv}", k.c_str(), "d", v.get<double>()));
    else
      check(sd_bus_message_append(m, "{sv}", k.c_str(), "s", v.dump().c_str()));  // nested: JSON text
  }
  check(sd_bus_message_close_container(m));
}

int list_events(Api& api, sd_bus_message* call) {
  Supervisor& sup = api.supervisor();
  const auto args = parse_events_filter(call);
  store::EventFilter f{.since_usec = args.since_usec, .limit = args.limit};
  if (!args.job.empty()) {
    // A deleted job's entries stay: its full id works even though the job is gone.
    if (is_job_id(args.job) && !sup.find_by_id(args.job))
      f.job = args.job;
    else
      f.job = sup.lookup(args.job).id();
  }
  MessagePtr reply = new_reply(call);
  sd_bus_message* m = reply.get();
  check(sd_bus_message_open_container(m, 'a', "(tsssa{sv})"));
  // Who may read the trail is everyone; what a job was asked to run, with its environment's
  // names and working directory, is the admins' to read.
  const bool admin = api.allowed(call, Api::Privilege::Admin);
  for (auto& e : sup.events(f)) {
    if (!admin) e.details.erase("spec");
    check(sd_bus_message_open_container(m, 'r', "tsssa{sv}"));
    check(sd_bus_message_append(m, "tsss", e.ts_usec, e.job_id.c_str(), e.type.c_str(), e.message.c_str()));
    append_details(m, e.details);
    check(sd_bus_message_close_container(m));
  }
  check(sd_bus_message_close_container(m));
  return send(reply);
}

// The id or name argument the *Job methods start with.
std::string key_of(sd_bus_message* call) {
  const char* key = nullptr;
  check(sd_bus_message_read(call, "s", &key));
  return key;
}

int get_job(Api& api, sd_bus_message* call) {
  const core::Job& job = api.supervisor().lookup(key_of(call));
  return sd_bus_reply_method_return(call, "o", job_path(job.id()).c_str());
}

// What the caller may do, by the rules require() enforces: a client asks once instead of
// inferring it, and shows what it may not do as such (the console's disabled actions). The
// answer is about this caller as the daemon sees it: a client acting through sudo or Cockpit's
// administrative access asks through that same connection.
int get_access(Api& api, sd_bus_message* call) {
  const bool admin = api.allowed(call, Api::Privilege::Admin);
  const bool root = api.allowed(call, Api::Privilege::Root);
  MessagePtr reply = new_reply(call);
  DictWriter d(reply.get());
  d.add("uid", "u", api.caller_uid(call))
      .add("level", "s",
           root    ? "root"
           : admin ? "admin"
                   : "read-only")
      .add("admin_group", "s", api.supervisor().config().admin_group.c_str())
      .add("may_read", "b", 1)
      .add("may_stop", "b", static_cast<int>(admin))
      .add("may_delete", "b", static_cast<int>(admin))
      .add("may_resume", "b", static_cast<int>(admin))
      .add("may_clean_up", "b", static_cast<int>(admin))
      .add("may_submit_templates", "b", static_cast<int>(admin))
      .add("may_submit_commands", "b", static_cast<int>(root))
      .add("may_read_specs", "b", static_cast<int>(admin));
  d.close();
  return send(reply);
}

// A template's parameters in the order its command first uses them (the order a form asks for
// them in), then any others by name.
std::vector<std::string> param_order(const config::JobTemplate& t) {
  std::vector<std::string> out;
  for (const auto& a : t.argv)
    for (size_t open = a.find('{'); open != std::string::npos; open = a.find('{', open + 1)) {
      const size_t close = a.find('}', open);
      if (close == std::string::npos) break;
      const std::string name = a.substr(open + 1, close - open - 1);
      if (t.params.count(name) && std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
    }
  for (const auto& [name, p] : t.params)
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  return out;
}

// Opens an entry of an a{sv} whose value is a container of `contents` (as, aa{sv}).
void open_entry(sd_bus_message* m, const char* key, const char* variant, const char* contents) {
  check(sd_bus_message_open_container(m, 'e', "sv"));
  check(sd_bus_message_append_basic(m, 's', key));
  check(sd_bus_message_open_container(m, 'v', variant));
  check(sd_bus_message_open_container(m, 'a', contents));
}
void close_entry(sd_bus_message* m) {
  for (int i = 0; i < 3; ++i) check(sd_bus_message_close_container(m));
}

// The configured templates, for everyone who may read: what a template runs is the
// configuration's, never a secret (secret parameters are placeholders in it).
int list_templates(Api& api, sd_bus_message* call) {
  const config::Config& cfg = api.supervisor().config();
  MessagePtr reply = new_reply(call);
  sd_bus_message* m = reply.get();
  check(sd_bus_message_open_container(m, 'a', "a{sv}"));
  for (const auto& [name, t] : cfg.templates) {
    check(sd_bus_message_open_container(m, 'a', "{sv}"));
    check(sd_bus_message_append(m, "{sv}", "name", "s", name.c_str()));
    check(sd_bus_message_append(m, "{sv}", "description", "s", t.description.c_str()));
    check(sd_bus_message_append(m, "{sv}", "progress", "s", t.progress.c_str()));
    check(sd_bus_message_append(m, "{sv}", "stop_timeout_usec", "t", t.stop_timeout.value_or(cfg.stop_timeout)));
    open_entry(m, "argv", "as", "s");
    for (const auto& a : t.argv) check(sd_bus_message_append_basic(m, 's', a.c_str()));
    close_entry(m);
    open_entry(m, "params", "aa{sv}", "a{sv}");
    for (const std::string& pname : param_order(t)) {
      const config::TemplateParam& p = t.params.at(pname);
      DictWriter d(m);
      d.add("name", "s", pname.c_str())
          .add("pattern", "s", p.pattern.c_str())
          .add("secret", "b", static_cast<int>(p.secret))
          .add("description", "s", p.description.c_str());
      if (p.default_value) d.add("default", "s", p.default_value->c_str());
      d.close();
    }
    close_entry(m);
    check(sd_bus_message_close_container(m));
  }
  check(sd_bus_message_close_container(m));
  return send(reply);
}

int stop(Api& api, sd_bus_message* call) { return stop_job(api, call, api.supervisor().lookup(key_of(call))); }
int remove(Api& api, sd_bus_message* call) { return delete_job(api, call, api.supervisor().lookup(key_of(call))); }
int resume(Api& api, sd_bus_message* call) { return resume_job(api, call, api.supervisor().lookup(key_of(call))); }
int retry(Api& api, sd_bus_message* call) { return retry_cleanup(api, call, api.supervisor().lookup(key_of(call))); }

const std::vector<sd_bus_vtable>& vtable() {
  static const std::vector<sd_bus_vtable> v = make_vtable<Supervisor>(
      {
          SD_BUS_METHOD_WITH_NAMES("Submit", "a{sv}", SD_BUS_PARAM(spec), "so", SD_BUS_PARAM(id) SD_BUS_PARAM(job),
                                   (method<Api, submit>), SD_BUS_VTABLE_UNPRIVILEGED),
          SD_BUS_METHOD_WITH_NAMES("List", "a{sv}", SD_BUS_PARAM(filter), "a(ssssdtto)", SD_BUS_PARAM(jobs),
                                   (method<Api, list>), SD_BUS_VTABLE_UNPRIVILEGED),
          SD_BUS_METHOD_WITH_NAMES("ListEvents", "a{sv}", SD_BUS_PARAM(filter), "a(tsssa{sv})", SD_BUS_PARAM(events),
                                   (method<Api, list_events>), SD_BUS_VTABLE_UNPRIVILEGED),
          SD_BUS_METHOD_WITH_NAMES("GetJob", "s", SD_BUS_PARAM(id_or_name), "o", SD_BUS_PARAM(job),
                                   (method<Api, get_job>), SD_BUS_VTABLE_UNPRIVILEGED),
          SD_BUS_METHOD_WITH_NAMES("StopJob", "sa{sv}", SD_BUS_PARAM(id) SD_BUS_PARAM(options), "a{sv}",
                                   SD_BUS_PARAM(result), (method<Api, stop>), SD_BUS_VTABLE_UNPRIVILEGED),
          SD_BUS_METHOD_WITH_NAMES("DeleteJob", "sa{sv}", SD_BUS_PARAM(id) SD_BUS_PARAM(options), "a{sv}",
                                   SD_BUS_PARAM(result), (method<Api, remove>), SD_BUS_VTABLE_UNPRIVILEGED),
          SD_BUS_METHOD_WITH_NAMES("ResumeJob", "sa{sv}", SD_BUS_PARAM(id) SD_BUS_PARAM(options), "o",
                                   SD_BUS_PARAM(job), (method<Api, resume>), SD_BUS_VTABLE_UNPRIVILEGED),
          SD_BUS_METHOD_WITH_ARGS("RetryCleanup", SD_BUS_ARGS("s", id), SD_BUS_NO_RESULT, (method<Api, retry>),
                                  SD_BUS_VTABLE_UNPRIVILEGED),
          SD_BUS_METHOD_WITH_ARGS("GetAccess", SD_BUS_NO_ARGS, SD_BUS_RESULT("a{sv}", access),
                                  (method<Api, get_access>), SD_BUS_VTABLE_UNPRIVILEGED),
          SD_BUS_METHOD_WITH_ARGS("ListTemplates", SD_BUS_NO_ARGS, SD_BUS_RESULT("aa{sv}", templates),
                                  (method<Api, list_templates>), SD_BUS_VTABLE_UNPRIVILEGED),
      },
      kManagerProperties, get);
  return v;
}

}  // namespace

void serve_manager(sd_bus* bus, Api& api, Slots& slots) {
  slots.add("manager object", [&](sd_bus_slot** s) {
    return sd_bus_add_object_vtable(bus, s, kManagerPath, kManagerInterface, vtable().data(), &api);
  });
  slots.add("object manager", [&](sd_bus_slot** s) { return sd_bus_add_object_manager(bus, s, kManagerPath); });
}

std::vector<const char*> manager_properties_changed(uint32_t changed) {
  return changed_properties<Supervisor>(kManagerProperties, changed);
}

}  // namespace repvisor::bus
