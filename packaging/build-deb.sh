#!/usr/bin/env bash
# Builds the Debian package from a release build: packaging/build-deb.sh [OUTDIR]
# (CPack's DEB generator; the package lands in OUTDIR, default build-pkg/).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-pkg}
bash tools/deps.sh
cmake -S . -B build-pkg -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build build-pkg -j"$(nproc)"
(cd build-pkg && cpack -G DEB -B "$(realpath -m "../$out")" >/dev/null)
ls "$out"/*.deb
