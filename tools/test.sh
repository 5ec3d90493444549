#!/usr/bin/env bash
# The one test command: install dependencies, build, run every test (README and .ci/run call it).
# Then the same suite again built with AddressSanitizer + UndefinedBehaviorSanitizer (halting on
# the first error), clang-format and clang-tidy with the repo's configs, and each libFuzzer target
# for a bounded time (FUZZ_SECONDS, default 10). SANITIZE=0 / TIDY=0 / FUZZ=0 skip those.
# The web console's browser tests run after the first ctest (CONSOLE=0 skips them), then, with
# SYSTEM_TESTS=1 (.ci/run sets it), the system tests: the .deb under systemd as PID 1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
bash tools/build.sh
(cd build && ctest --output-on-failure -j"$(nproc)" --timeout 300)
# The web console's browser tests (tests/console/run.sh; CONSOLE=0 skips them).
if [[ ${CONSOLE:-1} == 1 ]]; then
  bash tests/console/run.sh
fi
# The system tests (tests/system/run.sh, docs/system-tests.md): each test boots Debian 12 with
# systemd as PID 1 in systemd-nspawn and installs the package there.
if [[ ${SYSTEM_TESTS:-0} == 1 ]]; then
  bash tests/system/run.sh
fi

if [[ ${SANITIZE:-1} == 1 ]]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" >/dev/null
  cmake --build build-asan -j"$(nproc)"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    ctest --output-on-failure -j"$(nproc)" --timeout 300)
fi

if [[ ${TIDY:-1} == 1 ]]; then
  echo "clang-format: checking every C and C++ file"
  git ls-files '*.cpp' '*.hpp' '*.c' '*.h' | xargs clang-format --dry-run --Werror
  echo "clang-format: clean"
  echo "clang-tidy: checking daemon/ ctl/ worker/ tests/"
  git ls-files 'daemon/*.cpp' 'ctl/*.cpp' 'worker/*.cpp' 'tests/*.cpp' |
    xargs -P"$(nproc)" -n4 clang-tidy -p build --quiet 2>/dev/null | tee build/clang-tidy.log
  if grep -qE '(warning|error):' build/clang-tidy.log; then
    echo "clang-tidy found problems (above)" >&2
    exit 1
  fi
  echo "clang-tidy: clean"
fi

if [[ ${FUZZ:-1} == 1 ]]; then
  bash tools/fuzz.sh
fi
