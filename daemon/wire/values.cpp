#include "wire/values.hpp"

#include <cerrno>
#include <cstdlib>
#include <memory>

namespace repvisor::wire {

namespace {

int append_scalar(sd_bus_message* m, const std::string& key, const Scalar& v) {
  if (const auto* s = std::get_if<std::string>(&v))
    return sd_bus_message_append(m, "{sv}", key.c_str(), "s", s->c_str());
  if (const auto* t = std::get_if<uint64_t>(&v)) return sd_bus_message_append(m, "{sv}", key.c_str(), "t", *t);
  return sd_bus_message_append(m, "{sv}", key.c_str(), "b", static_cast<int>(std::get<bool>(v)));
}

int append_records(sd_bus_message* m, const Records& list) {
  int r = sd_bus_message_open_container(m, 'a', "a{sv}");
  for (const auto& record : list) {
    if (r >= 0) r = sd_bus_message_open_container(m, 'a', "{sv}");
    for (const auto& [k, v] : record)
      if (r >= 0) r = append_scalar(m, k, v);
    if (r >= 0) r = sd_bus_message_close_container(m);
  }
  if (r >= 0) r = sd_bus_message_close_container(m);
  return r;
}

// A value as the contents of the variant the message is in.
struct ValueWriter {
  sd_bus_message* m;
  int operator()(const std::string& s) const { return sd_bus_message_append_basic(m, 's', s.c_str()); }
  int operator()(bool b) const {
    const int v = b;
    return sd_bus_message_append_basic(m, 'b', &v);
  }
  int operator()(uint64_t v) const { return sd_bus_message_append_basic(m, 't', &v); }
  int operator()(int64_t v) const { return sd_bus_message_append_basic(m, 'x', &v); }
  int operator()(int32_t v) const { return sd_bus_message_append_basic(m, 'i', &v); }
  int operator()(uint32_t v) const { return sd_bus_message_append_basic(m, 'u', &v); }
  int operator()(double v) const { return sd_bus_message_append_basic(m, 'd', &v); }
  int operator()(const std::vector<std::string>& l) const {
    std::vector<const char*> strv;
    strv.reserve(l.size() + 1);
    for (const auto& s : l) strv.push_back(s.c_str());
    strv.push_back(nullptr);
    return sd_bus_message_append_strv(m, const_cast<char**>(strv.data()));
  }
  int operator()(const std::vector<uint32_t>& l) const {
    return sd_bus_message_append_array(m, 'u', l.data(), l.size() * sizeof(uint32_t));
  }
  int operator()(const StringMap& map) const {
    int r = sd_bus_message_open_container(m, 'a', "{ss}");
    for (const auto& [k, v] : map)
      if (r >= 0) r = sd_bus_message_append(m, "{ss}", k.c_str(), v.c_str());
    if (r >= 0) r = sd_bus_message_close_container(m);
    return r;
  }
  int operator()(const Records& list) const { return append_records(m, list); }
};

const char* signature(const Value& v) {
  constexpr const char* kSignatures[] = {"s", "b", "t", "x", "i", "u", "d", "as", "au", "a{ss}", "aa{sv}"};
  static_assert(std::size(kSignatures) == std::variant_size_v<Value>);
  return kSignatures[v.index()];
}

struct StrvFree {
  void operator()(char** l) const {
    for (char** p = l; p && *p; ++p) free(*p);
    free(static_cast<void*>(l));
  }
};

template <class T>
int read_basic(sd_bus_message* m, char type, Value* out) {
  T v{};
  const int r = sd_bus_message_read_basic(m, type, &v);
  if (r > 0) *out = v;
  return r;
}

// The contents of the variant the message is in, of signature `sig`: 1 read, 0 passed over.
int read_contents(sd_bus_message* m, std::string_view sig, Value* out) {
  int r = 0;
  if (sig == "s" || sig == "o") {
    const char* s = nullptr;
    r = sd_bus_message_read_basic(m, sig[0], &s);
    if (r > 0) *out = std::string(s);
  } else if (sig == "b") {
    int b = 0;
    r = sd_bus_message_read_basic(m, 'b', &b);
    if (r > 0) *out = b != 0;
  } else if (sig == "t") {
    r = read_basic<uint64_t>(m, 't', out);
  } else if (sig == "x") {
    r = read_basic<int64_t>(m, 'x', out);
  } else if (sig == "i") {
    r = read_basic<int32_t>(m, 'i', out);
  } else if (sig == "u") {
    r = read_basic<uint32_t>(m, 'u', out);
  } else if (sig == "d") {
    r = read_basic<double>(m, 'd', out);
  } else if (sig == "as") {
    char** raw = nullptr;
    r = sd_bus_message_read_strv(m, &raw);
    const std::unique_ptr<char*, StrvFree> l(raw);
    if (r >= 0) {
      std::vector<std::string> v;
      for (char** p = l.get(); p && *p; ++p) v.emplace_back(*p);
      *out = std::move(v);
      r = 1;
    }
  } else if (sig == "au") {
    const void* data = nullptr;
    size_t size = 0;
    r = sd_bus_message_read_array(m, 'u', &data, &size);
    if (r >= 0) {
      const auto* u = static_cast<const uint32_t*>(data);
      *out = std::vector<uint32_t>(u, u + size / sizeof(uint32_t));
      r = 1;
    }
  } else if (sig == "a{ss}") {
    StringMap map;
    r = sd_bus_message_enter_container(m, 'a', "{ss}");
    const char *k = nullptr, *v = nullptr;
    while (r >= 0 && (r = sd_bus_message_read(m, "{ss}", &k, &v)) > 0) map[k] = v;
    if (r >= 0) r = sd_bus_message_exit_container(m);
    if (r >= 0) {
      *out = std::move(map);
      r = 1;
    }
  } else if (sig == "aa{sv}") {
    Records list;
    r = read_records(m, &list);
    if (r >= 0) {
      *out = std::move(list);
      r = 1;
    }
  } else {
    r = sd_bus_message_skip(m, std::string(sig).c_str());
    if (r >= 0) r = 0;
  }
  return r;
}

}  // namespace

int append_dict(sd_bus_message* m, const Dict& d) {
  int r = sd_bus_message_open_container(m, 'a', "{sv}");
  for (const auto& [k, v] : d) {
    if (r >= 0) r = sd_bus_message_open_container(m, 'e', "sv");
    if (r >= 0) r = sd_bus_message_append_basic(m, 's', k.c_str());
    if (r >= 0) r = sd_bus_message_open_container(m, 'v', signature(v));
    if (r >= 0) r = std::visit(ValueWriter{m}, v);
    if (r >= 0) r = sd_bus_message_close_container(m);
    if (r >= 0) r = sd_bus_message_close_container(m);
  }
  if (r >= 0) r = sd_bus_message_close_container(m);
  return r;
}

int read_variant(sd_bus_message* m, Value* out) {
  const char* contents = nullptr;
  int r = sd_bus_message_peek_type(m, nullptr, &contents);
  if (r == 0) return -ENXIO;  // at the end: no variant here
  if (r < 0) return r;
  const std::string sig = contents;
  if ((r = sd_bus_message_enter_container(m, 'v', sig.c_str())) < 0) return r;
  const int read = read_contents(m, sig, out);
  if (read < 0) return read;
  if ((r = sd_bus_message_exit_container(m)) < 0) return r;
  return read;
}

int read_dict(sd_bus_message* m, Dict* out) {
  int r = sd_bus_message_enter_container(m, 'a', "{sv}");
  if (r == 0) return -ENXIO;  // at the end: no dictionary here
  if (r < 0) return r;
  while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
    const char* key = nullptr;
    if ((r = sd_bus_message_read_basic(m, 's', &key)) < 0) return r;
    Value v;
    if ((r = read_variant(m, &v)) < 0) return r;
    if (r > 0) (*out)[key] = std::move(v);
    if ((r = sd_bus_message_exit_container(m)) < 0) return r;
  }
  if (r < 0) return r;
  return sd_bus_message_exit_container(m);
}

int read_records(sd_bus_message* m, Records* out) {
  int r = sd_bus_message_enter_container(m, 'a', "a{sv}");
  if (r == 0) return -ENXIO;
  if (r < 0) return r;
  while ((r = sd_bus_message_at_end(m, false)) == 0) {
    Dict d;
    if ((r = read_dict(m, &d)) < 0) return r;
    Record record;
    for (auto& [k, v] : d) {
      if (auto* s = std::get_if<std::string>(&v))
        record[k] = std::move(*s);
      else if (const auto* b = std::get_if<bool>(&v))
        record[k] = *b;
      else if (const auto* t = std::get_if<uint64_t>(&v))
        record[k] = *t;
      else if (const auto* u = std::get_if<uint32_t>(&v))
        record[k] = uint64_t{*u};
    }
    out->push_back(std::move(record));
  }
  if (r < 0) return r;
  return sd_bus_message_exit_container(m);
}

int seek_key(sd_bus_message* m, std::string_view key) {
  int r = sd_bus_message_enter_container(m, 'a', "{sv}");
  if (r <= 0) return r;
  while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
    const char* name = nullptr;
    if ((r = sd_bus_message_read_basic(m, 's', &name)) < 0) return r;
    if (key == name) return 1;
    if ((r = sd_bus_message_skip(m, "v")) < 0 || (r = sd_bus_message_exit_container(m)) < 0) return r;
  }
  return r;
}

}  // namespace repvisor::wire
