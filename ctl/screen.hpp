// `repvisorctl watch` on a terminal: the table of jobs drawn in place, cut to the window's
// size, and drawn again when the window is resized.
#pragma once
#include <map>
#include <string>

#include "client.hpp"

namespace repvisor::ctl {

// Clears the screen once (later frames overwrite in place, without a flash) and notes resizes.
void start_screen();
// Whether the window was resized since the last call.
bool take_resize();
// One frame: every row cut to the width, never wrapped, and as many rows as the height allows,
// the rest counted. `jobs`: object path to properties.
void draw_table(const std::map<std::string, Props>& jobs);

}  // namespace repvisor::ctl
