#include "util/log.hpp"

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <string>

namespace repvisor::log {

static Level max_level = Info;

void set_max_level(Level level) { max_level = level; }

void write(Level level, std::string_view msg) {
  if (level > max_level) return;
  std::string line = "<" + std::to_string(static_cast<int>(level)) + ">repvisord: ";
  line += msg;
  line += '\n';
  // One write(2) per line so lines from concurrent writers never interleave.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

namespace {

// Whether stderr is the stream systemd connected to journald: JOURNAL_STREAM names its device
// and inode (systemd.exec(5)). A process that inherited the variable but writes elsewhere (a
// shell started from a unit, its output redirected) is not, and keeps its lines where they go.
bool stderr_is_journal() {
  static const bool is = [] {
    const char* stream = getenv("JOURNAL_STREAM");
    if (!stream) return false;
    const std::string_view s(stream);
    const size_t colon = s.find(':');
    uint64_t dev = 0, ino = 0;
    if (colon == std::string_view::npos || std::from_chars(s.data(), s.data() + colon, dev).ptr != s.data() + colon ||
        std::from_chars(s.data() + colon + 1, s.data() + s.size(), ino).ptr != s.data() + s.size())
      return false;
    struct stat st {};
    return fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
  }();
  return is;
}

std::string event_text(std::string_view job_id, std::string_view job_name, std::string_view type,
                       std::string_view message) {
  std::string text;
  if (!job_id.empty()) {
    text = fmt::format("job {}", job_id);
    if (!job_name.empty()) fmt::format_to(std::back_inserter(text), " {}", job_name);
    text += ": ";
  }
  fmt::format_to(std::back_inserter(text), "{}: {}", type, message);
  return text;
}

}  // namespace

std::vector<std::string> event_fields(Level level, std::string_view job_id, std::string_view job_name,
                                      std::string_view type, std::string_view message) {
  std::vector<std::string> fields = {
      "MESSAGE=" + event_text(job_id, job_name, type, message),
      fmt::format("PRIORITY={}", static_cast<int>(level)),
      "SYSLOG_IDENTIFIER=repvisord",
      fmt::format("REPVISOR_EVENT={}", type),
  };
  if (!job_id.empty()) fields.push_back(fmt::format("REPVISOR_JOB_ID={}", job_id));
  return fields;
}

void event(Level level, std::string_view job_id, std::string_view job_name, std::string_view type,
           std::string_view message) {
  if (level > max_level) return;
  if (stderr_is_journal()) {
    const auto fields = event_fields(level, job_id, job_name, type, message);
    std::vector<iovec> iov;
    iov.reserve(fields.size());
    for (const auto& f : fields) iov.push_back({const_cast<char*>(f.data()), f.size()});
    // A value may hold newlines: the native protocol carries it whole, as one entry.
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0) return;
  }
  write(level, event_text(job_id, job_name, type, message));
}

}  // namespace repvisor::log
