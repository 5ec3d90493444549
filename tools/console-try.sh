#!/usr/bin/env bash
# Brings up the web console to try (as root): installs and builds what it needs, then runs
# repvisord on a private system bus with a few sample jobs and cockpit-ws on 127.0.0.1 for them,
# printing the URL, until Ctrl-C. REPVISOR_CONSOLE_PORT chooses the port (default 9091).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
bash tools/build.sh
(cd console && node build.mjs)
exec node tests/console/try.mjs
