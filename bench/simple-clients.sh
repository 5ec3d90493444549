#!/usr/bin/env bash
# Issue 37's simple-client mode, one entry point: repvisord driven one blocking call at a time
# from a C sd-bus client (bench/simple_client.cpp) and from dbus-python (bench/simple_client.py),
# beside s6 (bench/peers.py --simple) and the syscall floor (bench/floor.c) on the same workload,
# ROUNDS times in turn. Run as root on an otherwise idle machine:
#   bash bench/simple-clients.sh    (ROUNDS=3 ITERATIONS=50 ESCALATIONS=3 COUNT=100 COLD_RUNS=50)
# Prints a Markdown table (each ratio to s6 and to the floor of the same round) and the raw JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3} ITERATIONS=${ITERATIONS:-50} ESCALATIONS=${ESCALATIONS:-3} COUNT=${COUNT:-100}
COLD_RUNS=${COLD_RUNS:-50}
# Every count is checked here, before anything is built or started.
for name in ROUNDS ITERATIONS ESCALATIONS COUNT COLD_RUNS; do
  if [[ ! ${!name} =~ ^[1-9][0-9]{0,5}$ ]] || ((${!name} > 100000)); then
    echo "simple-clients.sh: $name: '${!name}' is not a whole number from 1 to 100000" >&2
    exit 2
  fi
done
if ! command -v s6-svscan >/dev/null || ! /usr/bin/python3 -c 'import dbus' 2>/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends s6 python3-dbus >/dev/null
fi
cmake -S . -B build -G Ninja >/dev/null
cmake --build build --target repvisord repvisorctl bench-child bench-floor bench-cold-client bench-simple-client >/dev/null
ulimit -n "$(ulimit -Hn)"
# As deployed (and as stop-latency.sh runs it): the state directory on disk, so every
# acknowledged change pays its fsync; the runtime directory (sockets) on a tmpfs.
tmp=$(mktemp -d /var/tmp/repvisor-simple.XXXXXX)
run=$(mktemp -d /dev/shm/repvisor-simple-run.XXXXXX)
daemon_pid=''
cleanup() {
  [[ -n $daemon_pid ]] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  rm -rf "$tmp" "$run"
}
trap cleanup EXIT
cat >"$tmp/repvisord.toml" <<TOML
[daemon]
max_concurrent_jobs = $((COUNT + 100))
[bus]
system = "no"
TOML
build/daemon/repvisord --config "$tmp/repvisord.toml" --state-dir "$tmp/state" --runtime-dir "$run" 2>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 200); do [[ -S $run/private ]] && break; sleep 0.05; done
[[ -S $run/private ]] || { echo "simple-clients.sh: repvisord did not start:" >&2; cat "$tmp/daemon.log" >&2; exit 1; }
child=$(realpath build/bench/bench-child)
address="unix:path=$run/private"
mkdir "$tmp/out"
for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  EACH=1 build/bench/bench-floor "$child" "$ITERATIONS" "$ESCALATIONS" "$COUNT" "$tmp" >"$tmp/out/$round-floor.json"
  REPVISORCTL=$(realpath build/ctl/repvisorctl) COLD_CLIENT=$(realpath build/bench/bench-cold-client) \
    build/bench/bench-simple-client "$address" "$child" "$ITERATIONS" "$ESCALATIONS" "$COUNT" "$COLD_RUNS" \
    >"$tmp/out/$round-c.json"
  /usr/bin/python3 bench/simple_client.py "$address" "$child" "$ITERATIONS" "$ESCALATIONS" "$COUNT" \
    >"$tmp/out/$round-python.json"
  mkdir "$tmp/peers-$round"
  /usr/bin/python3 bench/peers.py --simple "$tmp/peers-$round" "$child" "$ITERATIONS" "$ESCALATIONS" "$COUNT" \
    "$COLD_RUNS" >"$tmp/out/$round-s6.json"
done
echo "$(date -u '+%Y-%m-%d %H:%M') UTC, commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- daemon ctl bench || echo ' + changes'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 bench/simple_report.py "$tmp/out"
