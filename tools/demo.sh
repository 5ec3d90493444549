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

# The source disk: an NBD export served by nbdkit (a 1 GiB pattern, slowed down so that the copy
# can be watched); the job: repvisor-copy, which reports progress and checkpoints and, on
# SIGTERM, finishes its chunks in flight and flushes before it exits.
nbdkit -U "$tmp/source.sock" -P "$tmp/nbdkit.pid" -r --filter=delay pattern size=1G delay-read=20ms
trap 'kill "$(cat "$tmp/nbdkit.pid")" 2>/dev/null || true; cleanup' EXIT
source_uri="nbd+unix:///?socket=$tmp/source.sock"
copy=(build/worker/repvisor-copy "$source_uri" "$tmp/disk0.img" --chunk-size 1M --checkpoint-interval 500)

step submit --name disk0-copy -- repvisor-copy "$source_uri" disk0.img ...
ctl submit --name disk0-copy -- "${copy[@]}"
sleep 1.5
step list
ctl list
step status disk0-copy
ctl status disk0-copy
step stop disk0-copy --reason maintenance --notes "\"demo: stopped mid-copy\""
ctl stop disk0-copy --reason maintenance --notes "demo: stopped mid-copy"
step status disk0-copy
ctl status disk0-copy
step logs disk0-copy
ctl logs disk0-copy
cp_text=$(ctl status disk0-copy --json | sed -n 's/.*"Checkpoint":"\([^"]*\)".*/\1/p')
step submit --name disk0-resume --wait -- repvisor-copy ... --resume-from "\"$cp_text\"" --verify
ctl submit --name disk0-resume --wait -- "${copy[@]}" --resume-from "$cp_text" --verify || true
step status disk0-resume
ctl status disk0-resume
step events disk0-copy
ctl events disk0-copy
step delete disk0-copy --yes
ctl delete disk0-copy --yes
ctl delete disk0-resume --yes >/dev/null
step list --json
ctl list --json

kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=
printf '\nDaemon log:\n'
cat "$tmp/daemon.log"
