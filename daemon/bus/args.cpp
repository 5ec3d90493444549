#include "bus/args.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/stat.h>

#include <regex>

#include "core/errors.hpp"
#include "util/id.hpp"
#include "util/text.hpp"

namespace repvisor::bus {

namespace {

[[noreturn]] void invalid(const std::string& msg) { throw ApiError(ErrorKind::InvalidArgs, msg); }

void check(int r, const std::string& what) {
  if (r < 0) invalid(fmt::format("{}: malformed message ({})", what, strerror(-r)));
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

}  // namespace

void Value::expect(const char* sig) {
  if (sig_ != sig) invalid(fmt::format("{}: expected a value of type '{}', got '{}'", key_, sig, sig_));
}

std::string Value::str() {
  expect("s");
  const char* s = nullptr;
  check(sd_bus_message_read_basic(m_, 's', &s), key_);
  return s;
}

bool Value::boolean() {
  expect("b");
  int b = 0;
  check(sd_bus_message_read_basic(m_, 'b', &b), key_);
  return b != 0;
}

uint64_t Value::u64() {
  expect("t");
  uint64_t v = 0;
  check(sd_bus_message_read_basic(m_, 't', &v), key_);
  return v;
}

int32_t Value::i32() {
  expect("i");
  int32_t v = 0;
  check(sd_bus_message_read_basic(m_, 'i', &v), key_);
  return v;
}

std::vector<std::string> Value::strv() {
  expect("as");
  char** l = nullptr;
  check(sd_bus_message_read_strv(m_, &l), key_);
  std::vector<std::string> out;
  for (char** p = l; p && *p; ++p) {
    out.emplace_back(*p);
    free(*p);
  }
  free(l);
  return out;
}

std::map<std::string, std::string> Value::str_map() {
  expect("a{ss}");
  std::map<std::string, std::string> out;
  check(sd_bus_message_enter_container(m_, 'a', "{ss}"), key_);
  for (;;) {
    const char *k, *v;
    int r = sd_bus_message_read(m_, "{ss}", &k, &v);
    check(r, key_);
    if (r == 0) break;
    out[k] = v;
  }
  check(sd_bus_message_exit_container(m_), key_);
  return out;
}

void Value::each_dict(const std::function<void(size_t, sd_bus_message*)>& fn) {
  expect("aa{sv}");
  check(sd_bus_message_enter_container(m_, 'a', "a{sv}"), key_);
  for (size_t i = 0;; ++i) {
    int r = sd_bus_message_at_end(m_, 0);
    check(r, key_);
    if (r > 0) break;
    fn(i, m_);
  }
  check(sd_bus_message_exit_container(m_), key_);
}

void read_dict(sd_bus_message* m, const std::function<void(Value&)>& fn) {
  check(sd_bus_message_enter_container(m, 'a', "{sv}"), "options");
  for (;;) {
    int r = sd_bus_message_enter_container(m, 'e', "sv");
    check(r, "options");
    if (r == 0) break;
    const char* key = nullptr;
    check(sd_bus_message_read_basic(m, 's', &key), "options");
    const char* contents = nullptr;
    check(sd_bus_message_peek_type(m, nullptr, &contents), key);
    std::string sig = contents ? contents : "";
    check(sd_bus_message_enter_container(m, 'v', contents), key);
    Value v(m, key, sig);
    fn(v);
    check(sd_bus_message_exit_container(m), key);
    check(sd_bus_message_exit_container(m), key);
  }
  check(sd_bus_message_exit_container(m), "options");
}

void validate_job_spec(const core::JobSpec& spec) {
  if (spec.argv.empty()) invalid("argv: required, and must hold at least the command");
  if (spec.argv[0].empty()) invalid("argv: the command (argv[0]) is empty");
  if (spec.argv[0].find('/') != std::string::npos && spec.argv[0][0] != '/')
    invalid("argv: the command " + quote(spec.argv[0]) +
            " is a relative path; give an absolute path or a command name looked up in PATH");
  if (!spec.name.empty())
    if (auto why = check_job_name(spec.name); !why.empty()) invalid("name: " + quote(spec.name) + ": " + why);
  for (const auto& [k, v] : spec.env) {
    if (k.empty() || k.find('=') != std::string::npos || (k[0] >= '0' && k[0] <= '9'))
      invalid("env: " + quote(k) + " is not a valid variable name");
    if (k.rfind("REPVISOR_", 0) == 0) invalid("env: " + quote(k) + ": the REPVISOR_ prefix is reserved");
  }
  if (spec.working_directory.empty() || spec.working_directory[0] != '/')
    invalid("working_directory: " + quote(spec.working_directory) + " is not an absolute path");
  struct stat st {};
  if (stat(spec.working_directory.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
    invalid("working_directory: " + quote(spec.working_directory) + " is not an existing directory");
  if (spec.stop_signal <= 0 || spec.stop_signal >= SIGRTMAX || spec.stop_signal == SIGSTOP)
    invalid(fmt::format("stop_signal: {} is not a signal that can stop a job", spec.stop_signal));
  if (spec.stop_timeout == 0) invalid("stop_timeout_usec: must be greater than 0");
  if (auto why = core::check_resources(spec.resources); !why.empty()) invalid(why);
  // {nbd.NAME} and {volume.NAME} in argv must name a resource of the job, of the right kind.
  for (const auto& a : spec.argv)
    for (const std::string prefix : {"{nbd.", "{volume."})
      for (size_t at = a.find(prefix); at != std::string::npos; at = a.find(prefix, at + 1)) {
        const size_t close = a.find('}', at);
        if (close == std::string::npos) continue;
        const std::string name = a.substr(at + prefix.size(), close - at - prefix.size());
        const bool want_server = prefix == "{nbd.";
        bool found = false;
        for (const auto& r : spec.resources)
          found |= r.name == name && (r.kind == core::ResourceKind::NbdServer) == want_server;
        if (!found)
          invalid(fmt::format("argv: {} names no {} resource of this job", quote(a.substr(at, close - at + 1)),
                              want_server ? "nbd-server" : "file, loop or nbd-device"));
      }
  if (spec.progress == core::ProgressSource::Nbdcopy && spec.argv[0] != "nbdcopy" &&
      (spec.argv[0].size() < 8 || spec.argv[0].compare(spec.argv[0].size() - 8, 8, "/nbdcopy") != 0))
    invalid("progress: \"nbdcopy\" reads nbdcopy's --progress output, but the command is " + quote(spec.argv[0]));
}

namespace {
core::ResourceSpec parse_resource(size_t index, sd_bus_message* m) {
  core::ResourceSpec r;
  bool have_kind = false;
  const std::string at = fmt::format("resources[{}]", index);
  read_dict(m, [&](Value& v) {
    const std::string k = v.key();
    auto enum_value = [&](auto parse, auto* out, const char* allowed) {
      const std::string s = v.str();
      if (!parse(s, out)) invalid(fmt::format("{}.{}: {} is not one of {}", at, k, quote(s), allowed));
    };
    if (k == "kind") {
      enum_value(core::resource_kind_from_string, &r.kind, "nbd-server, nbd-device, file, loop");
      have_kind = true;
    } else if (k == "name") {
      r.name = v.str();
    } else if (k == "path") {
      r.path = v.str();
    } else if (k == "size") {
      r.size = v.u64();
    } else if (k == "server") {
      enum_value(core::nbd_server_kind_from_string, &r.server, "qemu-nbd, nbdkit");
    } else if (k == "format") {
      enum_value(core::image_format_from_string, &r.format, "raw, qcow2");
    } else if (k == "on_stop") {
      enum_value(core::on_stop_from_string, &r.on_stop, "keep, discard");
    } else if (k == "export") {
      r.export_of = v.str();
    } else {
      invalid(fmt::format("{}: unknown key {}", at, quote(k)));
    }
  });
  if (!have_kind) invalid(at + ".kind: required key is missing");
  return r;
}
}  // namespace

void parse_resume_options(sd_bus_message* m) {
  read_dict(m, [&](Value& v) { invalid("unknown key " + quote(v.key()) + " in resume options"); });
}

core::JobSpec parse_job_spec(sd_bus_message* m, const config::Config& cfg, bool* from_template) {
  core::JobSpec spec;
  spec.stop_timeout = cfg.stop_timeout;
  bool have_argv = false;
  std::string template_name;
  std::map<std::string, std::string> params;
  bool have_params = false;
  std::vector<std::string> raw_keys;  // what a template submission may not set
  read_dict(m, [&](Value& v) {
    const std::string& k = v.key();
    if (k != "template" && k != "params" && k != "name") raw_keys.push_back(k);
    if (k == "template") {
      template_name = v.str();
      if (template_name.empty()) invalid("template: must not be empty (leave it out to give argv)");
    } else if (k == "params") {
      params = v.str_map();
      have_params = true;
    } else if (k == "argv") {
      spec.argv = v.strv();
      have_argv = true;
    } else if (k == "name") {
      spec.name = v.str();
      if (spec.name.empty()) invalid("name: must not be empty (leave it out for no name)");
    } else if (k == "env") {
      spec.env = v.str_map();
    } else if (k == "working_directory") {
      spec.working_directory = v.str();
    } else if (k == "stop_signal") {
      spec.stop_signal = v.i32();
    } else if (k == "stop_timeout_usec") {
      spec.stop_timeout = v.u64();
    } else if (k == "tasks_max") {
      spec.tasks_max = v.u64();
      // The kernel's own limit on PIDs (pid_max) is at most 2^22.
      if (spec.tasks_max < 1 || spec.tasks_max > 4194304)
        invalid(fmt::format("tasks_max: {} is out of range (1-4194304)", spec.tasks_max));
    } else if (k == "resources") {
      v.each_dict([&](size_t i, sd_bus_message* msg) { spec.resources.push_back(parse_resource(i, msg)); });
    } else if (k == "progress") {
      const std::string s = v.str();
      if (!core::progress_source_from_string(s, &spec.progress))
        invalid("progress: " + quote(s) + " is not one of notify, nbdcopy");
    } else if (k == "kill_mode") {
      const std::string s = v.str();
      if (!core::kill_mode_from_string(s, &spec.kill_mode))
        invalid("kill_mode: " + quote(s) + " is not one of mixed, control-group");
    } else {
      invalid("unknown key " + quote(k) + " in job spec");
    }
  });
  if (!template_name.empty()) {
    if (!raw_keys.empty())
      invalid("template: " + quote(raw_keys.front()) + " cannot be given with a template (the template fixes it)");
    auto it = cfg.templates.find(template_name);
    if (it == cfg.templates.end()) {
      std::string known;
      for (const auto& [n, t] : cfg.templates) known += (known.empty() ? "" : ", ") + n;
      invalid("template: no template " + quote(template_name) + " (configured: " + (known.empty() ? "none" : known) +
              ")");
    }
    const config::JobTemplate& t = it->second;
    for (const auto& [k, val] : params)
      if (!t.params.count(k)) invalid("params." + escape(k) + ": not a parameter of template " + quote(template_name));
    std::map<std::string, std::string> values;
    for (const auto& [pname, p] : t.params) {
      auto given = params.find(pname);
      if (given == params.end()) {
        if (!p.default_value) invalid("params." + pname + ": required by template " + quote(template_name));
        values[pname] = *p.default_value;
        continue;
      }
      if (!std::regex_match(given->second, std::regex(p.pattern)))
        invalid(fmt::format("params.{}: {} does not match the template's pattern '{}'", pname,
                            p.secret ? std::string("its (secret) value") : quote(given->second), p.pattern));
      values[pname] = given->second;
    }
    // Secret parameters stay placeholders in what is shown; every other one is put in place.
    auto expand = [&](std::string a, bool show) {
      for (const auto& [pname, val] : values) {
        if (show && t.params.at(pname).secret) continue;
        const std::string ph = "{" + pname + "}";
        for (size_t at = a.find(ph); at != std::string::npos; at = a.find(ph, at + val.size()))
          a.replace(at, ph.size(), val);
      }
      return a;
    };
    spec.argv.clear();
    spec.shown_argv.clear();
    bool secret = false;
    for (const auto& [pname, p] : t.params) secret |= p.secret;
    for (const std::string& a : t.argv) {
      spec.argv.push_back(expand(a, false));
      if (secret) spec.shown_argv.push_back(expand(a, true));
    }
    if (t.stop_timeout) spec.stop_timeout = *t.stop_timeout;
    core::progress_source_from_string(t.progress, &spec.progress);
    if (from_template) *from_template = true;
    validate_job_spec(spec);
    return spec;
  }
  if (have_params) invalid("params: only with a template");
  if (from_template) *from_template = false;
  if (!have_argv) invalid("argv: required key is missing");
  validate_job_spec(spec);
  return spec;
}

core::StopRequest parse_stop_options(sd_bus_message* m, bool* wait) {
  core::StopRequest req;
  *wait = false;
  read_dict(m, [&](Value& v) {
    const std::string& k = v.key();
    if (k == "force") {
      req.force = v.boolean();
    } else if (k == "timeout_usec") {
      req.timeout = v.u64();
      if (req.timeout == 0) invalid("timeout_usec: must be greater than 0 (use force for an immediate kill)");
    } else if (k == "reason") {
      req.reason = v.str();
      if (req.reason.empty() || req.reason.size() > 64) invalid("reason: must be 1 to 64 characters");
    } else if (k == "notes") {
      req.notes = v.str();
      if (utf8_length(req.notes) > 500)
        invalid(fmt::format("notes: {} characters, at most 500 are allowed", utf8_length(req.notes)));
    } else if (k == "wait") {
      *wait = v.boolean();
    } else {
      invalid("unknown key " + quote(k) + " in stop options");
    }
  });
  return req;
}

DeleteOptions parse_delete_options(sd_bus_message* m) {
  DeleteOptions opts;
  read_dict(m, [&](Value& v) {
    const std::string& k = v.key();
    if (k == "force")
      opts.force = v.boolean();
    else if (k == "keep_data")
      opts.keep_data = v.boolean();
    else
      invalid("unknown key " + quote(k) + " in delete options");
  });
  return opts;
}

std::vector<core::JobState> parse_list_filter(sd_bus_message* m) {
  std::vector<core::JobState> states;
  read_dict(m, [&](Value& v) {
    if (v.key() != "states") invalid("unknown key " + quote(v.key()) + " in list filter");
    for (const auto& s : v.strv()) {
      core::JobState st;
      if (!core::job_state_from_string(s, &st))
        invalid("states: " + quote(s) +
                " is not a job state (pending, starting, running, stopping, cleaning, completed, failed, cancelled)");
      states.push_back(st);
    }
  });
  return states;
}

EventsFilterArgs parse_events_filter(sd_bus_message* m) {
  EventsFilterArgs f;
  read_dict(m, [&](Value& v) {
    const std::string& k = v.key();
    if (k == "job") {
      f.job = v.str();
      if (f.job.empty()) invalid("job: must not be empty (leave it out for every job)");
    } else if (k == "since_usec") {
      f.since_usec = v.u64();
    } else if (k == "limit") {
      f.limit = v.u64();
      if (f.limit == 0 || f.limit > 100000) invalid(fmt::format("limit: {} is out of range (1..100000)", f.limit));
    } else {
      invalid("unknown key " + quote(k) + " in events filter");
    }
  });
  return f;
}

void parse_read_log_options(sd_bus_message* m, LogReadRequest* req) {
  read_dict(m, [&](Value& v) {
    const std::string& k = v.key();
    if (k == "from_end")
      req->from_end = v.boolean();
    else if (k == "since_usec")
      req->since = v.u64();
    else if (k == "whole_lines")
      req->whole_lines = v.boolean();
    else
      invalid("unknown key " + quote(k) + " in log read options");
  });
}

}  // namespace repvisor::bus
