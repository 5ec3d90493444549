#!/usr/bin/env bash
# The console's browser tests (tests/console/*.test.mjs, node's own test runner): builds the page,
# runs every test file against a real dbus-daemon, repvisord, cockpit-ws and Chromium, and ends
# with "N passed, N failed"; exits non-zero when a test failed. Needs a built tree (build/).
set -euo pipefail
cd "$(dirname "$0")/../.."
(cd console && node build.mjs)
tap=build/console-tests.tap
rm -rf build/console-screenshots
status=0
node --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" tests/console/*.test.mjs || status=$?
pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$tap")
fail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$tap")
echo "console tests: ${pass:-0} passed, ${fail:-0} failed (screenshots in build/console-screenshots/)"
if ((status != 0)) || [[ ${fail:-1} != 0 ]] || [[ ${pass:-0} == 0 ]]; then
  echo "console tests FAILED" >&2
  exit 1
fi
