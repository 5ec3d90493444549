#!/usr/bin/env bash
# The demo: installs dependencies, builds, and runs repvisord on a temporary state/runtime dir
# with its private socket; submits a sample replication-like job, shows its progress, stops it,
# shows it cancelled, deletes it, and stops the daemon. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
bash tools/build.sh

tmp=$(mktemp -d /tmp/repvisor-demo.XXXXXX)
daemon_pid=
cleanup() {
  if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/repvisord.toml" <<'TOML'
[daemon]
max_concurrent_jobs = 8
stop_timeout = "10s"
TOML

ctl() { build/ctl/repvisorctl --runtime-dir "$tmp/run" "$@"; }
step() { printf '\n\033[1m$ repvisorctl %s\033[0m\n' "$*"; }

build/daemon/repvisord --config "$tmp/repvisord.toml" --state-dir "$tmp/state" --runtime-dir "$tmp/run" \
  2>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do ctl list >/dev/null 2>&1 && break; sleep 0.1; done

# A stand-in for a disk copy: reports progress through the sd_notify protocol and, on SIGTERM,
# finishes its current chunk before exiting (what repvisor-copy does for real).
cat >"$tmp/fake-copy.sh" <<'SH'
trap 'systemd-notify STOPPING=1 "STATUS=finishing the current chunk"; sleep 0.3; exit 0' TERM
i=0
while [ $i -lt 100 ]; do
  i=$((i + 1))
  systemd-notify PHASE=copy PROGRESS=$i "STATUS=copied $i of 100 chunks"
  echo "chunk $i written"
  sleep 0.1
done
SH

step submit --name disk0-copy -- sh "$tmp/fake-copy.sh"
ctl submit --name disk0-copy -- sh "$tmp/fake-copy.sh"
sleep 1.5
step list
ctl list
step status disk0-copy
ctl status disk0-copy
step stop disk0-copy --reason maintenance --notes "\"demo: stopped mid-copy\""
ctl stop disk0-copy --reason maintenance --notes "demo: stopped mid-copy"
step status disk0-copy
ctl status disk0-copy
step logs disk0-copy "| tail -3"
ctl logs disk0-copy | tail -3
step delete disk0-copy --yes
ctl delete disk0-copy --yes
step list --json
ctl list --json

kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=
printf '\nDaemon log:\n'
cat "$tmp/daemon.log"
