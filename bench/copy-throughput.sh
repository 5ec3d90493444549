#!/usr/bin/env bash
# Throughput of repvisor-copy against nbdcopy on the same run and machine: a fully allocated,
# non-zero source (nbdkit's pattern plugin) copied into a local file, each tool RUNS times,
# alternating. repvisor-copy always flushes (its checkpoints are fsync'ed), so nbdcopy is shown
# both as it runs by default and with --flush; the fair ratio is against nbdcopy --flush.
#
#   bash bench/copy-throughput.sh            # SIZE=4G RUNS=3 DIR=/var/tmp by default
#   SIZE=1G RUNS=5 DIR=/mnt/fast bash bench/copy-throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-4G}
RUNS=${RUNS:-3}
DIR=${DIR:-/var/tmp}
[[ -x build/worker/repvisor-copy ]] || bash tools/build.sh >/dev/null
work=$(mktemp -d "$DIR/repvisor-bench.XXXXXX")
trap '[[ -f $work/nbdkit.pid ]] && kill "$(cat "$work/nbdkit.pid")" 2>/dev/null; rm -rf "$work"' EXIT
nbdkit -U "$work/src.sock" -P "$work/nbdkit.pid" -r pattern size="$SIZE"
uri="nbd+unix:///?socket=$work/src.sock"
bytes=$(nbdinfo --size "$uri")

run() {  # name, command...: prints seconds
  local name=$1
  shift
  rm -f "$work/out.img"
  sync
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

declare -A total=([repvisor-copy]=0 [nbdcopy]=0 [nbdcopy-flush]=0)
declare -A best=([repvisor-copy]=0 [nbdcopy]=0 [nbdcopy-flush]=0)
for i in $(seq "$RUNS"); do
  for tool in repvisor-copy nbdcopy nbdcopy-flush; do
    case $tool in
      repvisor-copy) s=$(run "$tool" build/worker/repvisor-copy "$uri" "$work/out.img") ;;
      nbdcopy) s=$(run "$tool" nbdcopy "$uri" "$work/out.img") ;;
      nbdcopy-flush) s=$(run "$tool" nbdcopy --flush "$uri" "$work/out.img") ;;
    esac
    mibs=$(echo "$bytes / 1048576 / $s" | bc -l)
    total[$tool]=$(echo "${total[$tool]} + $mibs" | bc -l)
    if (($(echo "$mibs > ${best[$tool]}" | bc -l))); then best[$tool]=$mibs; fi
    printf 'run %d  %-14s %7.2f s  %8.1f MiB/s\n' "$i" "$tool" "$s" "$mibs" >&2
  done
done
mean() { echo "${total[$1]} / $RUNS" | bc -l; }
r=$(mean repvisor-copy)
n=$(mean nbdcopy)
f=$(mean nbdcopy-flush)
printf '\n| tool | mean MiB/s | best MiB/s |\n|---|---|---|\n'
for tool in repvisor-copy nbdcopy nbdcopy-flush; do printf '| %s | %.1f | %.1f |\n' "$tool" "$(mean "$tool")" "${best[$tool]}"; done
printf '\nrepvisor-copy / nbdcopy --flush = %.2f; repvisor-copy / nbdcopy = %.2f (target: at least 0.90)\n' \
  "$(echo "$r / $f" | bc -l)" "$(echo "$r / $n" | bc -l)"
printf '{"size_bytes": %s, "runs": %s, "mib_s": {"repvisor_copy": %.1f, "nbdcopy": %.1f, "nbdcopy_flush": %.1f}}\n' \
  "$bytes" "$RUNS" "$r" "$n" "$f"
