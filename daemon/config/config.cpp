#include "config/config.hpp"
#include "config/logs_toml.hpp"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

namespace repvisor::config {

namespace {

std::string where(const std::string& source, const toml::source_region& r) {
  return fmt::format("{}:{}:{}", source, r.begin.line, r.begin.column);
}

[[noreturn]] void fail(const std::string& source, const toml::node& node, const std::string& key,
                       const std::string& what) {
  throw ConfigError(fmt::format("{}: {}: {}", where(source, node.source()), key, what));
}

usec_t get_timespan(const std::string& source, const toml::node& node, const std::string& key) {
  if (auto s = node.value<std::string>()) {
    std::string error;
    if (auto v = parse_timespan(*s, &error)) return *v;
    fail(source, node, key, error);
  }
  if (auto i = node.value<int64_t>(); i && node.is_integer()) {
    if (*i < 0) fail(source, node, key, "must not be negative");
    return static_cast<usec_t>(*i) * USEC_PER_SEC;
  }
  fail(source, node, key, "expected a time span such as \"30s\" or \"1min 30s\"");
}

std::string get_string(const std::string& source, const toml::node& node, const std::string& key) {
  if (!node.is_string()) fail(source, node, key, "expected a string");
  return *node.value<std::string>();
}

void parse_daemon(const std::string& source, const toml::table& t, Config& c) {
  for (const auto& [k, node] : t) {
    const std::string key = "daemon." + std::string(k.str());
    if (k == "max_concurrent_jobs") {
      if (!node.is_integer()) fail(source, node, key, "expected an integer");
      int64_t v = *node.value<int64_t>();
      if (v < 1 || v > 100000) fail(source, node, key, fmt::format("{} is out of range (1..100000)", v));
      c.max_concurrent_jobs = static_cast<unsigned>(v);
    } else if (k == "stop_timeout") {
      c.stop_timeout = get_timespan(source, node, key);
    } else if (k == "final_kill_timeout") {
      c.final_kill_timeout = get_timespan(source, node, key);
    } else if (k == "max_stop_extension") {
      c.max_stop_extension = get_timespan(source, node, key);
    } else if (k == "shutdown_timeout") {
      c.shutdown_timeout = get_timespan(source, node, key);
    } else if (k == "cgroup_root") {
      std::string v = get_string(source, node, key);
      if (v != "auto" && v != "none" && (v.empty() || v[0] != '/'))
        fail(source, node, key, fmt::format("'{}' is not \"auto\", \"none\" or an absolute path", v));
      c.cgroup_root = v;
    } else if (k == "recovery") {
      std::string v = get_string(source, node, key);
      if (v != "stop" && v != "adopt") fail(source, node, key, fmt::format("'{}' is not \"stop\" or \"adopt\"", v));
      c.recovery = v;
    } else if (k == "state_dir" || k == "runtime_dir") {
      std::string v = get_string(source, node, key);
      if (v.empty() || v[0] != '/') fail(source, node, key, fmt::format("'{}' is not an absolute path", v));
      (k == "state_dir" ? c.state_dir : c.runtime_dir) = v;
    } else {
      fail(source, node, key, "unknown key");
    }
  }
}

// Absolute and written the one way (no ".", "..", "//" or trailing slash): roots are compared
// with job paths as strings.
bool canonical_absolute(const std::string& p) {
  if (p.size() < 2 || p[0] != '/' || p.back() == '/') return false;
  return p.find("//") == std::string::npos && p.find("/./") == std::string::npos &&
         p.find("/../") == std::string::npos && !p.ends_with("/.") && !p.ends_with("/..");
}

std::vector<std::string> get_paths(const std::string& source, const toml::node& node, const std::string& key,
                                   bool globs) {
  const auto* arr = node.as_array();
  if (!arr) fail(source, node, key, "expected an array of absolute paths");
  std::vector<std::string> out;
  for (const auto& el : *arr) {
    std::string v = get_string(source, el, key);
    if (!canonical_absolute(v))
      fail(source, el, key, fmt::format("'{}' is not an absolute path written canonically", v));
    if (!globs && v.find_first_of("*?[") != std::string::npos)
      fail(source, el, key, fmt::format("'{}': patterns are not allowed here", v));
    if (globs && v.rfind("/dev/", 0) != 0) fail(source, el, key, fmt::format("'{}' is not under /dev", v));
    out.push_back(v);
  }
  return out;
}

void parse_volumes(const std::string& source, const toml::table& t, Config& c) {
  for (const auto& [k, node] : t) {
    const std::string key = "volumes." + std::string(k.str());
    if (k == "roots") {
      c.volume_roots = get_paths(source, node, key, false);
      for (const auto& r : c.volume_roots)
        if (r.rfind("/dev", 0) == 0 || r.rfind("/proc", 0) == 0 || r.rfind("/sys", 0) == 0)
          fail(source, node, key, fmt::format("'{}' cannot hold volumes", r));
    } else if (k == "devices") {
      c.volume_devices = get_paths(source, node, key, true);
    } else if (k == "sync_timeout") {
      c.sync_timeout = get_timespan(source, node, key);
    } else if (k == "detach_timeout") {
      c.detach_timeout = get_timespan(source, node, key);
    } else {
      fail(source, node, key, "unknown key");
    }
  }
}

void parse_bus(const std::string& source, const toml::table& t, Config& c) {
  for (const auto& [k, node] : t) {
    const std::string key = "bus." + std::string(k.str());
    if (k == "system") {
      std::string v = get_string(source, node, key);
      if (v != "auto" && v != "yes" && v != "no")
        fail(source, node, key, fmt::format("'{}' is not \"auto\", \"yes\" or \"no\"", v));
      c.bus_system = v;
    } else if (k == "admin_group") {
      std::string v = get_string(source, node, key);
      if (v.empty() || v.size() > 32 || v.find_first_of(" :/\n") != std::string::npos)
        fail(source, node, key, fmt::format("'{}' is not a group name", v));
      c.admin_group = v;
    } else {
      fail(source, node, key, "unknown key");
    }
  }
}

// "{name}" placeholders of an argv element.
std::vector<std::string> placeholders(const std::string& a) {
  std::vector<std::string> out;
  for (size_t at = a.find('{'); at != std::string::npos; at = a.find('{', at + 1)) {
    const size_t close = a.find('}', at);
    if (close == std::string::npos) break;
    out.push_back(a.substr(at + 1, close - at - 1));
  }
  return out;
}

void parse_template(const std::string& source, const std::string& name, const toml::table& t, Config& c) {
  const std::string at = "templates." + name;
  JobTemplate tpl;
  const toml::node* argv_node = nullptr;
  for (const auto& [k, node] : t) {
    const std::string key = at + "." + std::string(k.str());
    if (k == "description") {
      tpl.description = get_string(source, node, key);
    } else if (k == "argv") {
      const auto* arr = node.as_array();
      if (!arr || arr->empty()) fail(source, node, key, "expected a non-empty array of strings");
      for (const auto& el : *arr) tpl.argv.push_back(get_string(source, el, key));
      argv_node = &node;
    } else if (k == "stop_timeout") {
      tpl.stop_timeout = get_timespan(source, node, key);
      if (*tpl.stop_timeout == 0) fail(source, node, key, "must be greater than 0");
    } else if (k == "progress") {
      tpl.progress = get_string(source, node, key);
      if (tpl.progress != "notify" && tpl.progress != "nbdcopy")
        fail(source, node, key, fmt::format("'{}' is not \"notify\" or \"nbdcopy\"", tpl.progress));
    } else if (k == "params") {
      const auto* pt = node.as_table();
      if (!pt) fail(source, node, key, "expected a table of parameters");
      for (const auto& [pk, pn] : *pt) {
        const std::string pkey = key + "." + std::string(pk.str());
        const auto* ptab = pn.as_table();
        if (!ptab) fail(source, pn, pkey, "expected a table (pattern, default, secret, description)");
        TemplateParam p;
        for (const auto& [fk, fn] : *ptab) {
          const std::string fkey = pkey + "." + std::string(fk.str());
          if (fk == "pattern") {
            p.pattern = get_string(source, fn, fkey);
            try {
              std::regex re(p.pattern);
            } catch (const std::regex_error& e) {
              fail(source, fn, fkey, fmt::format("'{}' is not a regular expression: {}", p.pattern, e.what()));
            }
          } else if (fk == "default") {
            p.default_value = get_string(source, fn, fkey);
          } else if (fk == "secret") {
            if (!fn.is_boolean()) fail(source, fn, fkey, "expected true or false");
            p.secret = *fn.value<bool>();
          } else if (fk == "description") {
            p.description = get_string(source, fn, fkey);
          } else {
            fail(source, fn, fkey, "unknown key");
          }
        }
        tpl.params[std::string(pk.str())] = p;
      }
    } else {
      fail(source, node, key, "unknown key");
    }
  }
  if (!argv_node) fail(source, t, at + ".argv", "required");
  // Every placeholder is declared, every declared parameter is used.
  std::set<std::string> used;
  for (const auto& a : tpl.argv)
    for (const auto& ph : placeholders(a)) {
      if (!tpl.params.count(ph))
        fail(source, *argv_node, at + ".argv", fmt::format("{{{}}} is not a declared parameter", ph));
      used.insert(ph);
    }
  for (const auto& [pname, p] : tpl.params)
    if (!used.count(pname)) fail(source, t, at + ".params." + pname, "declared but not used in argv");
  c.templates[name] = std::move(tpl);
}

void parse_audit(const std::string& source, const toml::table& t, Config& c) {
  for (const auto& [k, node] : t) {
    const std::string key = "audit." + std::string(k.str());
    if (k == "env_values") {
      const auto* arr = node.as_array();
      if (!arr) fail(source, node, key, "expected an array of environment variable names");
      c.audit_env_values.clear();
      for (const auto& el : *arr) {
        std::string v = get_string(source, el, key);
        if (v.empty() ||
            v.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
                std::string::npos ||
            (v[0] >= '0' && v[0] <= '9'))
          fail(source, el, key, fmt::format("'{}' is not an environment variable name", v));
        c.audit_env_values.push_back(v);
      }
    } else {
      fail(source, node, key, "unknown key");
    }
  }
}

void parse_nbd(const std::string& source, const toml::table& t, Config& c) {
  for (const auto& [k, node] : t) {
    const std::string key = "nbd." + std::string(k.str());
    if (k == "ready_timeout")
      c.nbd_ready_timeout = get_timespan(source, node, key);
    else if (k == "stop_timeout")
      c.nbd_stop_timeout = get_timespan(source, node, key);
    else
      fail(source, node, key, "unknown key");
  }
}

}  // namespace

Config parse(std::string_view text, const std::string& source) {
  Config c;
  parse_into(c, text, source);
  return c;
}

void parse_into(Config& into, std::string_view text, const std::string& source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    throw ConfigError(fmt::format("{}: {}", where(source, e.source()), e.description()));
  }
  Config c = into;  // all or nothing: a bad file changes nothing
  for (const auto& [k, node] : root) {
    if (k == "daemon") {
      if (!node.is_table()) fail(source, node, "daemon", "expected a table [daemon]");
      parse_daemon(source, *node.as_table(), c);
    } else if (k == "volumes") {
      if (!node.is_table()) fail(source, node, "volumes", "expected a table [volumes]");
      parse_volumes(source, *node.as_table(), c);
    } else if (k == "bus") {
      if (!node.is_table()) fail(source, node, "bus", "expected a table [bus]");
      parse_bus(source, *node.as_table(), c);
    } else if (k == "templates") {
      if (!node.is_table()) fail(source, node, "templates", "expected tables [templates.NAME]");
      for (const auto& [tk, tn] : *node.as_table()) {
        const std::string tname(tk.str());
        if (tname.empty() || tname.size() > 64 ||
            tname.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
                std::string::npos)
          fail(source, tn, "templates." + tname, "a template name is 1 to 64 letters, digits, '_' or '-'");
        if (!tn.is_table()) fail(source, tn, "templates." + tname, "expected a table");
        parse_template(source, tname, *tn.as_table(), c);
      }
    } else if (k == "nbd") {
      if (!node.is_table()) fail(source, node, "nbd", "expected a table [nbd]");
      parse_nbd(source, *node.as_table(), c);
    } else if (k == "audit") {
      if (!node.is_table()) fail(source, node, "audit", "expected a table [audit]");
      parse_audit(source, *node.as_table(), c);
    } else if (k == "logs") {
      if (!node.is_table()) fail(source, node, "logs", "expected a table [logs]");
      parse_logs(source, *node.as_table(), c.logs);
    } else {
      fail(source, node, std::string(k.str()), "unknown section or key");
    }
  }
  into = c;
}

namespace {
// false when the file does not exist and need not.
bool read_into(Config& c, const std::string& path, bool must_exist) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!must_exist && !std::filesystem::exists(path)) return false;
    throw ConfigError(fmt::format("{}: cannot read: {}", path, strerror(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  parse_into(c, ss.str(), path);
  return true;
}
}  // namespace

Config load(const std::string& path, bool must_exist) {
  Config c;
  read_into(c, path, must_exist);
  return c;
}

Config load_with_dropins(const std::string& path, bool must_exist, std::vector<std::string>* files) {
  Config c;
  if (read_into(c, path, must_exist) && files) files->push_back(path);
  std::vector<std::string> dropins;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(path + ".d", ec))
    if (e.path().extension() == ".toml" && (e.is_regular_file() || e.is_symlink())) dropins.push_back(e.path());
  std::sort(dropins.begin(), dropins.end());
  for (const auto& d : dropins) {
    read_into(c, d, true);
    if (files) files->push_back(d);
  }
  return c;
}

std::string to_toml(const Config& c) {
  auto q = [](const std::string& s) { return toml::value<std::string>(s); };
  std::stringstream out;
  out << "[daemon]\n"
      << "max_concurrent_jobs = " << c.max_concurrent_jobs << "\n"
      << "stop_timeout = " << q(format_timespan(c.stop_timeout)) << "\n"
      << "max_stop_extension = " << q(format_timespan(c.max_stop_extension)) << "\n"
      << "final_kill_timeout = " << q(format_timespan(c.final_kill_timeout)) << "\n"
      << "shutdown_timeout = " << q(format_timespan(c.shutdown_timeout)) << "\n"
      << "cgroup_root = " << q(c.cgroup_root) << "\n"
      << "recovery = " << q(c.recovery) << "\n"
      << "state_dir = " << q(c.state_dir) << "\n"
      << "runtime_dir = " << q(c.runtime_dir) << "\n";
  auto list = [&](const std::vector<std::string>& v) {
    toml::array a;
    for (const auto& s : v) a.push_back(s);
    std::stringstream ss;
    ss << a;
    return ss.str();
  };
  out << "\n[volumes]\n"
      << "roots = " << list(c.volume_roots) << "\n"
      << "devices = " << list(c.volume_devices) << "\n"
      << "sync_timeout = " << q(format_timespan(c.sync_timeout)) << "\n"
      << "detach_timeout = " << q(format_timespan(c.detach_timeout)) << "\n"
      << "\n[bus]\n"
      << "system = " << q(c.bus_system) << "\n"
      << "admin_group = " << q(c.admin_group) << "\n"
      << "\n[nbd]\n"
      << "ready_timeout = " << q(format_timespan(c.nbd_ready_timeout)) << "\n"
      << "stop_timeout = " << q(format_timespan(c.nbd_stop_timeout)) << "\n"
      << "\n[audit]\n"
      << "env_values = " << list(c.audit_env_values) << "\n"
      << logs_to_toml(c.logs);
  for (const auto& [name, t] : c.templates) {
    out << "\n[templates." << name << "]\n";
    if (!t.description.empty()) out << "description = " << q(t.description) << "\n";
    out << "argv = " << list(t.argv) << "\n";
    if (t.stop_timeout) out << "stop_timeout = " << q(format_timespan(*t.stop_timeout)) << "\n";
    if (t.progress != "notify") out << "progress = " << q(t.progress) << "\n";
    for (const auto& [pname, p] : t.params) {
      out << "[templates." << name << ".params." << pname << "]\npattern = " << q(p.pattern) << "\n";
      if (p.default_value) out << "default = " << q(*p.default_value) << "\n";
      if (p.secret) out << "secret = true\n";
      if (!p.description.empty()) out << "description = " << q(p.description) << "\n";
    }
  }
  return out.str();
}

std::vector<std::string> keys_needing_restart(const Config& running, const Config& wanted) {
  std::vector<std::string> keys;
  if (running.cgroup_root != wanted.cgroup_root) keys.emplace_back("daemon.cgroup_root");
  if (running.state_dir != wanted.state_dir) keys.emplace_back("daemon.state_dir");
  if (running.runtime_dir != wanted.runtime_dir) keys.emplace_back("daemon.runtime_dir");
  if (running.bus_system != wanted.bus_system) keys.emplace_back("bus.system");
  return keys;
}

}  // namespace repvisor::config
