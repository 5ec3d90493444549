#!/usr/bin/env bash
# Throughput of repvisor-copy against nbdcopy on the same run and machine: a fully allocated,
# non-zero source (nbdkit's pattern plugin) copied into a local file, each tool RUNS times,
# alternating, at each size of SIZES. repvisor-copy always flushes (its checkpoints are
# fsync'ed), so nbdcopy is shown both as it runs by default and with --flush; the fair ratio is
# against nbdcopy --flush of the same size and run.
#
#   bash bench/copy-throughput.sh            # SIZES="2G 4G" RUNS=3 DIR=/var/tmp by default
#   SIZES=1G RUNS=5 DIR=/mnt/fast bash bench/copy-throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-${SIZE:-2G 4G}}
RUNS=${RUNS:-3}
DIR=${DIR:-/var/tmp}
cmake -S . -B build -G Ninja >/dev/null
cmake --build build --target repvisor-copy >/dev/null
work=$(mktemp -d "$DIR/repvisor-bench.XXXXXX")
trap '[[ -f $work/nbdkit.pid ]] && kill "$(cat "$work/nbdkit.pid")" 2>/dev/null; rm -rf "$work"' EXIT

run() {  # command...: prints seconds
  rm -f "$work/out.img"
  sync
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

echo "$(date -u '+%Y-%m-%d %H:%M') UTC, commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- worker || echo ' + changes'), $(nproc) CPUs, target in $DIR ($(df --output=fstype "$DIR" | tail -1)), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '\n| size | tool | mean MiB/s | best MiB/s |\n|---|---|---|---|\n'
json='' summary=''
for size in $SIZES; do
  [[ -f $work/nbdkit.pid ]] && kill "$(cat "$work/nbdkit.pid")" && rm -f "$work/nbdkit.pid" "$work/src.sock"
  nbdkit -U "$work/src.sock" -P "$work/nbdkit.pid" -r pattern size="$size"
  uri="nbd+unix:///?socket=$work/src.sock"
  bytes=$(nbdinfo --size "$uri")
  declare -A total=([repvisor-copy]=0 [nbdcopy]=0 [nbdcopy-flush]=0)
  declare -A best=([repvisor-copy]=0 [nbdcopy]=0 [nbdcopy-flush]=0)
  for i in $(seq "$RUNS"); do
    for tool in repvisor-copy nbdcopy nbdcopy-flush; do
      case $tool in
        repvisor-copy) s=$(run build/worker/repvisor-copy "$uri" "$work/out.img") ;;
        nbdcopy) s=$(run nbdcopy "$uri" "$work/out.img") ;;
        nbdcopy-flush) s=$(run nbdcopy --flush "$uri" "$work/out.img") ;;
      esac
      mibs=$(echo "$bytes / 1048576 / $s" | bc -l)
      total[$tool]=$(echo "${total[$tool]} + $mibs" | bc -l)
      if (($(echo "$mibs > ${best[$tool]}" | bc -l))); then best[$tool]=$mibs; fi
      printf '%s run %d  %-14s %7.2f s  %8.1f MiB/s\n' "$size" "$i" "$tool" "$s" "$mibs" >&2
    done
  done
  mean() { echo "${total[$1]} / $RUNS" | bc -l; }
  r=$(mean repvisor-copy) n=$(mean nbdcopy) f=$(mean nbdcopy-flush)
  for tool in repvisor-copy nbdcopy nbdcopy-flush; do
    printf '| %s | %s | %.1f | %.1f |\n' "$size" "$tool" "$(mean "$tool")" "${best[$tool]}"
  done
  summary+=$(printf '\n%s: repvisor-copy / nbdcopy --flush = %.2f; repvisor-copy / nbdcopy = %.2f' "$size" \
    "$(echo "$r / $f" | bc -l)" "$(echo "$r / $n" | bc -l)")
  json+=$(printf '%s{"size_bytes": %s, "runs": %s, "mib_s": {"repvisor_copy": %.1f, "nbdcopy": %.1f, "nbdcopy_flush": %.1f}}' \
    "${json:+, }" "$bytes" "$RUNS" "$r" "$n" "$f")
  unset total best
done
printf '%s\n(target: at least 1.0 of nbdcopy --flush at each size)\n[%s]\n' "$summary" "$json"
