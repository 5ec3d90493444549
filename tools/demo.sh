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

cat >"$tmp/repvisord.toml" <<TOML
[daemon]
max_concurrent_jobs = 8
stop_timeout = "10s"
[volumes]
roots = ["$tmp/volumes"]
[bus]
# The demo keeps to its private socket: it must not take org.repvisor1 on the machine's bus.
system = "no"
TOML

ctl() { build/ctl/repvisorctl --runtime-dir "$tmp/run" "$@"; }
step() { printf '\n\033[1m$ repvisorctl %s\033[0m\n' "$*"; }
run() { step "$@" && ctl "$@"; }  # shows the command, then runs it

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
run list
run status disk0-copy
step stop disk0-copy --reason maintenance --notes "\"demo: stopped mid-copy\""
ctl stop disk0-copy --reason maintenance --notes "demo: stopped mid-copy"
run status disk0-copy
run logs disk0-copy
run resume disk0-copy
step wait disk0-copy
ctl wait disk0-copy || true
run status disk0-copy
run events disk0-copy
run delete disk0-copy --yes

# Resources: the daemon itself serves the source disk over NBD (qemu-nbd, socket-activated),
# creates the target volume and attaches it to a loop device, runs nbdcopy between them, and
# tears everything down in order afterwards. The shipped template, with the demo's paths.
mkdir -p "$tmp/volumes/source"
truncate -s 256M "$tmp/volumes/source/disk0.img"
dd if=/dev/urandom of="$tmp/volumes/source/disk0.img" bs=1M count=32 conv=notrunc status=none
sed -e "s|/var/lib/repvisor/volumes|$tmp/volumes|g" -e 's|disk0.qcow2|disk0.img|' -e 's|format = "qcow2"|format = "raw"|' \
  -e 's|size = "20G"|size = "256M"|' -e 's|name = "disk0-copy"|name = "disk0-nbdcopy"|' config/jobs/nbdcopy.toml >"$tmp/nbdcopy.toml"
step submit -F nbdcopy.toml --wait
ctl submit -F "$tmp/nbdcopy.toml" --wait || true
run status disk0-nbdcopy
run events disk0-nbdcopy
run delete disk0-nbdcopy --yes
run list --json

kill -TERM "$daemon_pid"
wait "$daemon_pid"
daemon_pid=
printf '\nDaemon log:\n'
cat "$tmp/daemon.log"
