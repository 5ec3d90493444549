// One table per enum of the names it is spelled with on the bus, in the store and in the config,
// as systemd's DEFINE_STRING_TABLE_LOOKUP: the name of a value, the value of a name, and the list
// of names an error message offers, all from the one array, so they cannot drift apart.
// The enum's values must be 0, 1, 2... in the order of the names.
#pragma once
#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace repvisor {

template <class E, size_t N>
class StringTable {
 public:
  constexpr explicit StringTable(std::array<const char*, N> names) : names_(names) {}

  // "" for a value outside the table (a corrupt cast), never a dangling pointer.
  constexpr const char* name(E e) const {
    const auto i = static_cast<size_t>(e);
    return i < N ? names_[i] : "";
  }

  std::optional<E> value(std::string_view s) const {
    for (size_t i = 0; i < N; ++i)
      if (s == names_[i]) return static_cast<E>(i);
    return std::nullopt;
  }

  bool value(std::string_view s, E* out) const {
    const auto v = value(s);
    if (v) *out = *v;
    return v.has_value();
  }

  // "a, b, c": what a refusal offers instead. Empty names (a "none" value) are left out.
  std::string choices() const {
    std::string out;
    for (const char* n : names_) {
      if (*n == '\0') continue;
      if (!out.empty()) out += ", ";
      out += n;
    }
    return out;
  }

  static constexpr size_t size() { return N; }

 private:
  std::array<const char*, N> names_;
};

}  // namespace repvisor
