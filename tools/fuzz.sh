#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (+ASan/UBSan) and runs each for FUZZ_SECONDS (default
# 10, as in CI; give more on demand: FUZZ_SECONDS=600 bash tools/fuzz.sh). New inputs go to a
# scratch corpus; crashes are saved in build-fuzz/crashes/ and fail the run — add each one to
# fuzz/corpus/<target>/ as a regression seed once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREPVISOR_FUZZ=ON \
  -DBUILD_TESTING=OFF -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all" >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_config fuzz_notify fuzz_text fuzz_bus_args fuzz_qcow2 fuzz_jobfile
mkdir -p build-fuzz/crashes
for target in fuzz_config fuzz_notify fuzz_text fuzz_bus_args fuzz_qcow2 fuzz_jobfile; do
  scratch=$(mktemp -d)
  cp fuzz/corpus/"$target"/* "$scratch"/
  echo "fuzzing $target for ${FUZZ_SECONDS:-10} s"
  build-fuzz/fuzz/"$target" -max_total_time="${FUZZ_SECONDS:-10}" -print_final_stats=1 \
    -artifact_prefix=build-fuzz/crashes/"$target"- "$scratch" fuzz/corpus/"$target" 2>&1 |
    grep -E 'stat::number_of_executed_units|ERROR|SUMMARY|Done' || true
  rm -rf "$scratch"
done
if compgen -G "build-fuzz/crashes/*" >/dev/null; then
  echo "fuzzing found crashes: build-fuzz/crashes/" >&2
  exit 1
fi
echo "fuzzing: no crash"
