#!/usr/bin/env bash
# Builds the Debian packages: packaging/build-deb.sh [OUTDIR] (default build-pkg/; relative to the
# checkout, or absolute). repvisor with CPack's DEB generator from a release build, and
# cockpit-repvisor (the web console, console/dist) with dpkg-deb.
#   BUILD_DIR=DIR   package an already configured build tree (e.g. build/, as tests/system does)
#                   instead of configuring build-pkg/ (built incrementally either way)
#   VERSION=X.Y.Z   the packages' version (default: the project's); the system tests build a newer
#                   one to upgrade to
#   CONSOLE=0       skip cockpit-repvisor (it needs node and console/node_modules: tools/deps.sh)
#   DEPS=0          do not run tools/deps.sh first
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
out=$(realpath -m -- "${1:-build-pkg}")
[[ ${DEPS:-1} == 0 ]] || bash tools/deps.sh
if [[ -n ${BUILD_DIR:-} ]]; then
  build=$(realpath -- "$BUILD_DIR")
else
  build=$top/build-pkg
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
fi
cmake --build "$build" -j"$(nproc)"
version=${VERSION:-$(sed -n 's/^CPACK_PACKAGE_VERSION:STATIC=//p;s/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt" | head -1)}
mkdir -p "$out"
rm -f "$out"/repvisor_*.deb "$out"/cockpit-repvisor_*.deb
# -D overrides the version CPackConfig.cmake was written with (file name and control alike).
(cd "$build" && cpack -G DEB -B "$out" -D CPACK_PACKAGE_VERSION="$version" >/dev/null)
rm -rf "$out/_CPack_Packages"

if [[ ${CONSOLE:-1} == 1 ]]; then
  # The console's built page goes where Cockpit looks for packages; Cockpit's bridge runs it and
  # repvisord (same version) serves what it calls on the system bus.
  (cd console && node build.mjs >/dev/null)
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage/DEBIAN" "$stage/usr/share/cockpit" "$stage/usr/share/doc/cockpit-repvisor"
  cp -r console/dist "$stage/usr/share/cockpit/repvisor"
  cp docs/console.md "$stage/usr/share/doc/cockpit-repvisor/"
  cat >"$stage/DEBIAN/control" <<EOF
Package: cockpit-repvisor
Version: $version
Architecture: all
Maintainer: repvisor maintainers <repvisor@localhost>
Section: admin
Priority: optional
Depends: cockpit-bridge, cockpit-ws, repvisor (= $version)
Installed-Size: $(du -sk "$stage/usr" | cut -f1)
Description: repvisor's web console: a Cockpit page for replication jobs
 Lists repvisord's jobs with their state and progress, and lets members of the
 repvisor group stop and delete them (org.repvisor1 on the system bus).
EOF
  chmod -R u=rwX,go=rX "$stage"
  dpkg-deb --root-owner-group -Zxz --build "$stage" "$out/cockpit-repvisor_${version}_all.deb" >/dev/null
fi
ls "$out"/*.deb
