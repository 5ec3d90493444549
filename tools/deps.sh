#!/usr/bin/env bash
# Installs what repvisor needs to build, test and run on Debian 12 (run as root).
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config clang-tidy clang-format clang libclang-rt-14-dev git bc
      libsystemd-dev libuv1-dev libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libfmt-dev
      libsqlite3-dev sqlite3 libmnl-dev libnbd-dev libnbd-bin nbdkit qemu-utils libgtest-dev dbus-daemon dbus-bin libglib2.0-bin systemd util-linux procps man-db dpkg-dev libbenchmark-dev python3-dbus)
# The web console (console/, a Cockpit page) and its browser tests: Cockpit's web server, shell and
# bridge, Debian's Chromium, and Node.js with npm (any nodejs package that provides npm will do).
pkgs+=(cockpit-ws cockpit-bridge cockpit-system chromium)
# The system tests (tests/system/): a bookworm tree booted under systemd-nspawn.
pkgs+=(systemd-container mmdebstrap)
command -v node >/dev/null && command -v npm >/dev/null || pkgs+=(nodejs npm)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The npm packages of console/package-lock.json, installed again only when the lock changed.
console="$(cd "$(dirname "$0")/.." && pwd)/console"
stamp="$console/node_modules/.package-lock.sha256"
if ! [[ -f $stamp ]] || [[ $(cat "$stamp") != $(sha256sum <"$console/package-lock.json") ]]; then
  # puppeteer-core downloads no browser; the tests use Debian's /usr/bin/chromium.
  (cd "$console" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  sha256sum <"$console/package-lock.json" >"$stamp"
fi
