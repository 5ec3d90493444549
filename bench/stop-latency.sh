#!/usr/bin/env bash
# Issue 7's benchmark, one entry point: repvisord side by side with supervisord, s6 and the bare
# syscall floor, on identical tiny C children (bench/child.c). Run as root on an otherwise idle
# machine:
#   bash bench/stop-latency.sh      (ITERATIONS=200 ESCALATIONS=5 SCALE=1000 COPY_STOPS=5 PEERS=1)
# PEERS=0 skips supervisord and s6 (installed from Debian if missing: supervisor, s6).
# Prints a Markdown table (every column, repvisord's ratio to each) and the raw JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERATIONS=${ITERATIONS:-200} ESCALATIONS=${ESCALATIONS:-5} SCALE=${SCALE:-1000}
COPY_STOPS=${COPY_STOPS:-5} PEERS=${PEERS:-1}
# Every count is checked here, before anything is built or started.
for name in ITERATIONS ESCALATIONS SCALE COPY_STOPS; do
  if [[ ! ${!name} =~ ^[1-9][0-9]{0,6}$ ]] || ((${!name} > 1000000)); then
    echo "stop-latency.sh: $name: '${!name}' is not a whole number from 1 to 1000000" >&2
    exit 2
  fi
done
if [[ $PEERS != 0 && $PEERS != 1 ]]; then
  echo "stop-latency.sh: PEERS: '$PEERS' is neither 0 nor 1" >&2
  exit 2
fi
if [[ $PEERS == 1 ]] && ! { command -v supervisord && command -v s6-svscan; } >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends supervisor s6 >/dev/null
fi
cmake -S . -B build -G Ninja >/dev/null
cmake --build build --target repvisord repvisorctl repvisor-copy bench-child bench-floor bench-cold-client repvisor-bench >/dev/null
ulimit -n "$(ulimit -Hn)"  # supervisord keeps ~4 descriptors per program
# As deployed: the state directory (SQLite, logs) on disk, so commits pay their fsync; the
# runtime directory (sockets) on a tmpfs, as systemd's RuntimeDirectory=/run/repvisor is.
tmp=$(mktemp -d /var/tmp/repvisor-bench.XXXXXX)
run=$(mktemp -d /dev/shm/repvisor-bench-run.XXXXXX)
daemon_pid='' nbdkit_pid=''
cleanup() {
  [[ -n $daemon_pid ]] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  [[ -n $nbdkit_pid ]] && kill -TERM "$nbdkit_pid" 2>/dev/null || true
  rm -rf "$tmp" "$run"
}
trap cleanup EXIT
mkdir -p "$tmp/volumes"
cat >"$tmp/repvisord.toml" <<TOML
[daemon]
max_concurrent_jobs = $((SCALE + 100))
[bus]
system = "no"
[volumes]
roots = ["$tmp/volumes"]
TOML
# The copy's source: 64 GiB of nbdkit's pattern, far more than a stop lets it copy.
nbdkit -U "$tmp/source.sock" -P "$tmp/nbdkit.pid" -r pattern size=64G
nbdkit_pid=$(cat "$tmp/nbdkit.pid")
build/daemon/repvisord --config "$tmp/repvisord.toml" --state-dir "$tmp/state" --runtime-dir "$run" 2>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 200); do [[ -S $run/private ]] && break; sleep 0.05; done
child=$(realpath build/bench/bench-child)
# The floor's durable stop records into the same file system as the daemon's state.
floor=$(build/bench/bench-floor "$child" "$ITERATIONS" "$ESCALATIONS" "$SCALE" "$tmp")
repvisor=$(REPVISORCTL=$(realpath build/ctl/repvisorctl) COLD_CLIENT=$(realpath build/bench/bench-cold-client) REPVISOR_COPY=$(realpath build/worker/repvisor-copy) \
  COPY_SOURCE="nbd+unix:///?socket=$tmp/source.sock" COPY_DIR="$tmp/volumes" COPY_STOPS=$COPY_STOPS \
  build/bench/repvisor-bench "unix:path=$run/private" "$daemon_pid" "$child" "$ITERATIONS" "$ESCALATIONS" "$SCALE")
kill -TERM "$daemon_pid" && wait "$daemon_pid" || true
daemon_pid=''
peers='{}'
if [[ $PEERS == 1 ]]; then
  mkdir "$tmp/peers"
  peers=$(/usr/bin/python3 bench/peers.py "$tmp/peers" "$child" "$ITERATIONS" "$ESCALATIONS" "$SCALE")
fi
/usr/bin/python3 bench/report.py "$floor" "$repvisor" "$peers"
