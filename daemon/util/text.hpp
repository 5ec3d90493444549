// Text that came from outside (names, notes, argv, file contents) made safe to show: in an error
// message, a log line or on a terminal. Shared by the daemon and repvisorctl.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace repvisor {

// The text with every control character (C0, DEL, C1), backslash and byte that is not valid
// UTF-8 written as a C escape (\n, \t, \\, \x1b, \u009b), as systemctl shows unit names.
// Printable UTF-8 stays as it is, so the result is valid UTF-8 and moves no terminal cursor.
std::string escape(std::string_view s);

// escape(s) in single quotes, cut after max_chars characters of the input with "…" and the
// input's full size: for an error that echoes what a caller sent, however long or odd.
std::string quote(std::string_view s, size_t max_chars = 80);

// s unchanged when it is valid UTF-8; otherwise each invalid byte written as \xNN. For messages
// that must be valid UTF-8 on D-Bus (sd-bus refuses to send anything else).
std::string valid_utf8(std::string_view s);

// The length of the valid UTF-8 sequence at s[i], 0 when the byte there does not start one.
size_t utf8_sequence(std::string_view s, size_t i);

}  // namespace repvisor
