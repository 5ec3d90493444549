#!/usr/bin/env bash
# The one test command: install dependencies, build, run every test (README and .ci/run call it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
bash tools/build.sh
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 300
