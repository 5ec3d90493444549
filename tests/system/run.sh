#!/usr/bin/env bash
# The system tests (tests/system/test_*.py, Python's unittest): packages this build (build/) as the
# .debs users install, plus the same at a higher version to upgrade to, then boots a Debian 12
# system under systemd-nspawn per test and installs them there (docs/system-tests.md). Ends with
# "N passed, N failed, N skipped"; exits non-zero when a test failed. Needs root and a built
# tree; tools/deps.sh installs systemd-container and mmdebstrap.
#   tests/system/run.sh [unittest names, e.g. test_jobs.Jobs.test_...]
set -euo pipefail
cd "$(dirname "$0")/../.."
# Absolute, as packaging/build-deb.sh must take it (it once read it as relative to the checkout).
debs=$PWD/build/system/debs
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' build/CMakeCache.txt)
# The next version: the patch level plus one (0.1.0 -> 0.1.1).
next=${version%.*}.$((${version##*.} + 1))
console=1
if ! command -v node >/dev/null || ! [[ -d console/node_modules ]]; then
  console=0
  echo "system tests: no node or console/node_modules (tools/deps.sh): cockpit-repvisor not built" >&2
fi
BUILD_DIR=build DEPS=0 CONSOLE=$console bash packaging/build-deb.sh "$debs/current" >/dev/null
BUILD_DIR=build DEPS=0 CONSOLE=$console VERSION="$next" bash packaging/build-deb.sh "$debs/next" >/dev/null
ls "$debs"/current/*.deb "$debs"/next/*.deb
cd tests/system
# Debian's Python (the test machines' own), not one of a developer's PATH.
exec /usr/bin/python3 runner.py "$@"
