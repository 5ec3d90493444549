// What nbdcopy --progress=FD writes, read as the job's progress: "N/D" lines, the last whole
// line read counting. Pure: fed the bytes as they come, in pieces of any size.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace repvisor::core {

class NbdcopyProgress {
 public:
  // The percentage the last whole line of what has come so far says, if it is a valid "N/D"
  // (N <= D, D > 0); nothing when no new whole line came or the last one is not.
  std::optional<double> feed(std::string_view bytes);

 private:
  std::string buf_;  // a line not yet ended; bounded, a stream without newlines cannot grow it
};

}  // namespace repvisor::core
