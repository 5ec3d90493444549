// Daemon log lines: to stderr with a syslog priority prefix ("<4>"), which journald parses
// when we run under systemd and which a terminal shows plainly; and the audit trail's events,
// which under journald go as entries of their own with fields that name the job and the event.
#pragma once
#include <fmt/format.h>

#include <string>
#include <string_view>
#include <vector>

namespace repvisor::log {

enum Level { Err = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

void write(Level level, std::string_view msg);
void set_max_level(Level level);

// One audit event (the trail's, store/), logged: the text "job ID[ NAME]: TYPE: message" (or
// "TYPE: message" for the daemon's own, without a job). When stderr is journald's stream, it goes
// to the journal as an entry of its own with REPVISOR_JOB_ID= (for a job's) and REPVISOR_EVENT=,
// so `journalctl REPVISOR_JOB_ID=ID` tells a job's whole story; elsewhere, or if the journal
// refuses it, it is a line on stderr like any other. Every event the trail records is logged
// through here, so none reaches the journal without its fields.
void event(Level level, std::string_view job_id, std::string_view job_name, std::string_view type,
           std::string_view message);
// The journal fields event() sends, "NAME=value" each.
std::vector<std::string> event_fields(Level level, std::string_view job_id, std::string_view job_name,
                                      std::string_view type, std::string_view message);

template <typename... Args>
void err(fmt::format_string<Args...> f, Args&&... a) {
  write(Err, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void warning(fmt::format_string<Args...> f, Args&&... a) {
  write(Warning, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void notice(fmt::format_string<Args...> f, Args&&... a) {
  write(Notice, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... a) {
  write(Info, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... a) {
  write(Debug, fmt::format(f, std::forward<Args>(a)...));
}

}  // namespace repvisor::log
