#!/usr/bin/env bash
# Installs what repvisor needs to build, test and run on Debian 12 (run as root).
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config clang-tidy clang-format clang libclang-rt-14-dev git bc
      libsystemd-dev libuv1-dev libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libfmt-dev
      libsqlite3-dev sqlite3 libmnl-dev libnbd-dev libnbd-bin nbdkit qemu-utils libgtest-dev dbus-daemon dbus-bin libglib2.0-bin systemd util-linux procps man-db dpkg-dev libbenchmark-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
