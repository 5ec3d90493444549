#!/usr/bin/env bash
# Stop latency, escalation accuracy, scale and idle cost of repvisord against the syscall floor,
# on identical tiny C children. Run as root on an otherwise idle machine:
#   bash bench/stop-latency.sh            (ITERATIONS=200 ESCALATIONS=5 SCALE=1000 by default)
# Prints a Markdown table and a JSON line. (supervisord and s6 are not measured yet: see README.)
set -euo pipefail
cd "$(dirname "$0")/.."
ITERATIONS=${ITERATIONS:-200} ESCALATIONS=${ESCALATIONS:-5} SCALE=${SCALE:-1000}
cmake -S . -B build -G Ninja >/dev/null
cmake --build build --target repvisord bench-child bench-floor repvisor-bench >/dev/null
tmp=$(mktemp -d /tmp/repvisor-bench.XXXXXX)
daemon_pid=
cleanup() {
  [[ -n $daemon_pid ]] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
cat >"$tmp/repvisord.toml" <<TOML
[daemon]
max_concurrent_jobs = $((SCALE + 100))
[bus]
system = "no"
TOML
build/daemon/repvisord --config "$tmp/repvisord.toml" --state-dir "$tmp/state" --runtime-dir "$tmp/run" 2>"$tmp/daemon.log" &
daemon_pid=$!
for _ in $(seq 200); do [[ -S $tmp/run/private ]] && break; sleep 0.05; done
child=$(realpath build/bench/bench-child)
floor=$(build/bench/bench-floor "$child" "$ITERATIONS" "$ESCALATIONS")
repvisor=$(build/bench/repvisor-bench "unix:path=$tmp/run/private" "$daemon_pid" "$child" "$ITERATIONS" "$ESCALATIONS" "$SCALE")
python3 - "$floor" "$repvisor" <<'PY'
import json, sys
floor, rv = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def row(name, key, target):
    f, r = floor[key], rv[key]
    print(f"| {name} | {r['median_ms']:.3f} | {r['p99_ms']:.3f} | {f['median_ms']:.3f} | {f['p99_ms']:.3f} | {r['median_ms']/f['median_ms']:.1f}x | {target} |")
print("| measure (ms) | repvisord median | repvisord p99 | syscall floor median | floor p99 | repvisord / floor | target |")
print("|---|---|---|---|---|---|---|")
row("force stop, request to terminal", "force_stop", "< 0.5")
row("graceful stop (exits on SIGTERM)", "graceful_stop", "< 0.5")
row("escalation beyond a 1 s timeout", "escalation_beyond_1s", "< 2")
print()
print(f"| at {rv['scale']} jobs | repvisord | target |")
print("|---|---|---|")
print(f"| start all, until all run | {rv['start_all_ms']:.0f} ms | < 500 ms |")
print(f"| stop all, until all terminal | {rv['stop_all_ms']:.0f} ms | < 100 ms |")
print(f"| daemon RSS, idle | {rv['idle_rss_kib']/1024:.1f} MiB | < 20 MiB |")
print(f"| daemon CPU over 10 s idle | {rv['idle_cpu_ms_per_10s']:.0f} ms | ~0 |")
s = rv['status_roundtrip']
print(f"| status round trip (warm) | median {s['median_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms | < 0.1 ms |")
print(f"| List of {rv['scale']} jobs | {rv['list_ms']:.2f} ms | (10,000: < 20 ms) |")
print()
print(json.dumps({"floor": floor, "repvisord": rv}))
PY
