#!/usr/bin/python3
"""Joins the JSON of bench-floor, repvisor-bench and peers.py into one Markdown table (every
column, repvisord's ratio to each: below 1 repvisord is faster/smaller) and one JSON line.
Usage: report.py FLOOR_JSON REPVISOR_JSON PEERS_JSON"""
import json
import sys

floor, rv, peers = (json.loads(a) for a in sys.argv[1:4])
# The cold query's floor needs the daemon, so repvisor-bench measures it (bench/cold_client.c).
if "ctl_status_cold_floor" in rv:
    floor["ctl_status_cold"] = rv.pop("ctl_status_cold_floor")
sd, s6 = peers.get("supervisord", {}), peers.get("s6", {})
scale = rv["scale"]


def get(d, key, field):
    v = d.get(key)
    if v is None:
        return None
    return v[field] if isinstance(v, dict) else v


def fmt(v, unit):
    if v is None:
        return "—"
    if unit == "MiB":
        return f"{v / 1024:.1f} MiB"
    if unit == "ms" and v >= 100:
        return f"{v:,.0f} ms"
    if unit == "ms" and v >= 10:
        return f"{v:.1f} ms"
    return f"{v:.3f} {unit}" if unit == "ms" else f"{v:.0f} {unit}"


def ratio(a, b):
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}"


ROWS = [  # label, key, field, unit, target (in the unit; None: no target)[, the floor's key that bounds it]
    ("force stop, request to terminal (median)", "force_stop", "median_ms", "ms", 0.5, "force_stop_durable"),
    ("force stop (p99)", "force_stop", "p99_ms", "ms", None),
    # The least a stop costs with repvisord's promises kept (floor.c): no peer keeps them all.
    ("force stop, floor with a cgroup per job and its end synced to disk (median)", "force_stop_durable", "median_ms",
     "ms", None),
    ("daemon CPU per force stop (median)", "force_stop_cpu_ms", "median_ms", "ms", None),
    ("graceful stop, exits on SIGTERM (median)", "graceful_stop", "median_ms", "ms", 0.5, "force_stop_durable"),
    ("graceful stop (p99)", "graceful_stop", "p99_ms", "ms", None),
    (f"escalation beyond a 1 s timeout, {scale} jobs running (median)", "escalation_beyond_1s", "median_ms",
     "ms", 2.0, "escalation_beyond_1s_durable"),
    ("escalation (max)", "escalation_beyond_1s", "max_ms", "ms", None),
    ("escalation, floor with a cgroup per job and each step synced to disk (median)", "escalation_beyond_1s_durable",
     "median_ms", "ms", None),
    (f"start {scale} jobs, until all run (repvisord: Submits pipelined)", "start_all_ms", None, "ms", 500.0),
    (f"start {scale} jobs, one Submit at a time", "start_all_sequential_ms", None, "ms", None),
    (f"stop all {scale}, until all terminal", "stop_all_ms", None, "ms", 100.0),
    # Where a stop-all's time goes: the daemon's CPU, and its loop thread running or ready but
    # waiting for a core (the children it signalled exit on it).
    (f"stop all {scale}: daemon CPU", "stop_all_cpu_ms", None, "ms", None),
    (f"stop all {scale}: the loop thread on a CPU", "stop_all_loop_cpu_ms", None, "ms", None),
    (f"stop all {scale}: the loop thread ready, waiting for a CPU", "stop_all_loop_wait_ms", None, "ms", None),
    # The floor's own cost of one cgroup per child (what repvisord keeps per job): no peer has it.
    (f"start {scale}, floor with a cgroup per child", "start_all_cgroups_ms", None, "ms", None),
    (f"stop all {scale}, floor with a cgroup per child (removed after)", "stop_all_cgroups_ms", None, "ms", None),
    # Busy CPU of the whole machine meanwhile (the children's exits too): divided by the cores, the
    # least wall time that work allows.
    (f"stop all {scale}: the machine's busy CPU", "stop_all_machine_cpu_ms", None, "ms", None),
    (f"stop all {scale}, floor with a cgroup per child: the machine's busy CPU", "stop_all_cgroups_machine_cpu_ms",
     None, "ms", None),
    (f"RSS with {scale} idle jobs", "idle_rss_kib", None, "MiB", 20 * 1024),
    ("CPU over 10 s with those jobs idle", "idle_cpu_ms_per_10s", None, "ms", None),
    # "Zero CPU while waiting out a stop timeout": the figure includes the stop's own work (request,
    # signals, reaping, commits), so the bar is no busy wait: at most 1 % of the 1 s waited.
    ("CPU spent on a stop that waits out a 1 s timeout (median)", "stop_timeout_cpu_ms", "median_ms", "ms", 10.0),
    ("status of one job, warm client (median)", "status_roundtrip", "median_ms", "ms", 0.1),
    ("status of one job, warm client (p99)", "status_roundtrip", "p99_ms", "ms", None),
    ("status of one job, cold CLI (median)", "ctl_status_cold", "median_ms", "ms", 5.0),
    (f"list {scale} jobs", "list_ms", None, "ms", None),
    (f"list {rv.get('list_many_jobs', 10000):,} recorded jobs (median of 20)", "list_many", "median_ms", "ms", 20.0),
    ("stop of repvisor-copy mid-copy, until cancelled + flushed (median)", "copy_stop", "median_ms", "ms", None),
]

print("| measure | repvisord | supervisord | s6 | syscall floor | ÷ supervisord | ÷ s6 | ÷ floor | target |")
print("|---|---|---|---|---|---|---|---|---|")
for label, key, field, unit, target, *bound in ROWS:
    vals = [get(d, key, field) if field else d.get(key) for d in (rv, sd, s6, floor)]
    r = vals[0]
    verdict = ""
    if target is not None and r is not None:
        ok = r <= target
        tgt = f"≤ {fmt(target, unit)}"
        verdict = f"{tgt} — {'met' if ok else '**missed**'}"
        # A target under the bare syscalls' own figure cannot be met on this machine by anyone.
        if not ok and vals[3] is not None and vals[3] > target:
            verdict += f" (this machine's floor is {fmt(vals[3], unit)} itself)"
        elif not ok and bound and get(floor, bound[0], field) is not None and get(floor, bound[0], field) > target:
            verdict += f" (this machine's floor with the same promises is {fmt(get(floor, bound[0], field), unit)})"
    print(f"| {label} | {fmt(r, unit)} | {fmt(vals[1], unit)} | {fmt(vals[2], unit)} | {fmt(vals[3], unit)} | "
          f"{ratio(r, vals[1])} | {ratio(r, vals[2])} | {ratio(r, vals[3])} | {verdict} |")
if "processes" in s6:
    print(f"\ns6 runs one s6-supervise per service: its RSS and CPU are summed over {s6['processes']} processes "
          f"(proportional set size, shared pages split: {s6['idle_pss_kib'] / 1024:.1f} MiB).")
print()
print(json.dumps({"floor": floor, "repvisord": rv, "supervisord": sd, "s6": s6}))
