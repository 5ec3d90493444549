#!/usr/bin/env bash
# The API's latency while a job floods its log (docs/design.md, Job logs): repvisord on a state
# directory on disk, as deployed, with the default [logs] bounds; bench-log-flood times N
# property reads with no job running and with a job writing its stdout as fast as it can.
#   bash bench/log-flood.sh      (READS=200000 FLOOD_MBPS=0: as fast as it can; e.g. 400 paces it)
set -euo pipefail
cd "$(dirname "$0")/.."
READS=${READS:-200000} FLOOD_MBPS=${FLOOD_MBPS:-0}
if [[ ! $READS =~ ^[1-9][0-9]{1,6}$ ]]; then
  echo "log-flood.sh: READS: '$READS' is not a whole number from 10 to 9999999" >&2
  exit 2
fi
if [[ ! $FLOOD_MBPS =~ ^[0-9]{1,5}$ ]]; then
  echo "log-flood.sh: FLOOD_MBPS: '$FLOOD_MBPS' is not a whole number from 0 to 99999" >&2
  exit 2
fi
cmake -S . -B build -G Ninja >/dev/null
cmake --build build --target repvisord bench-log-flood >/dev/null
tmp=$(mktemp -d /var/tmp/repvisor-bench.XXXXXX)
run=$(mktemp -d /dev/shm/repvisor-bench-run.XXXXXX)
daemon_pid=''
cleanup() {
  [[ -n $daemon_pid ]] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  rm -rf "$tmp" "$run"
}
trap cleanup EXIT
printf '[bus]\nsystem = "no"\n[volumes]\nroots = ["%s/volumes"]\n' "$tmp" >"$tmp/repvisord.toml"
build/daemon/repvisord --config "$tmp/repvisord.toml" --state-dir "$tmp/state" --runtime-dir "$run" 2>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 200); do [[ -S $run/private ]] && break; sleep 0.05; done
echo "log-flood.sh: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), $(nproc) cores, state on $(df --output=fstype "$tmp" | tail -1)"
build/bench/bench-log-flood "unix:path=$run/private" "$READS" "$daemon_pid" "$FLOOD_MBPS"
