#!/usr/bin/python3
"""Joins the rounds of bench/simple-clients.sh into one Markdown table: each figure is the median
over the rounds of that round's figure (a median itself for the one-job rows), every ratio is
taken within a round and its median shown, with the rounds' own ratios beside it to show the
noise. Below 1 repvisord is faster.
Usage: simple_report.py DIR   (DIR holds ROUND-floor.json, ROUND-c.json, ROUND-python.json and
ROUND-s6.json for each round, as the script writes them)"""
import glob
import json
import os
import statistics
import sys

d = sys.argv[1]
rounds = sorted({os.path.basename(p).split("-")[0] for p in glob.glob(os.path.join(d, "*-c.json"))}, key=int)
data = []
for r in rounds:
    one = {}
    for who in ("floor", "c", "python", "s6"):
        with open(os.path.join(d, f"{r}-{who}.json")) as f:
            one[who] = json.load(f)
    one["s6"] = one["s6"].get("s6", one["s6"])
    # The cold query's floor needs the daemon, so the C client measures it (bench/cold_client.c).
    if "ctl_status_cold_floor" in one["c"]:
        one["floor"]["ctl_status_cold"] = one["c"]["ctl_status_cold_floor"]
    data.append(one)
count = data[0]["c"]["count"]


def value(d, key):
    v = d.get(key)
    return v["median_ms"] if isinstance(v, dict) else v


# label, repvisord's key, s6's key, the bare floor's key, the floor with repvisord's cgroup (and,
# for single stops, durability) and its key; None where there is none.
ROWS = [
    ("graceful stop, one job (median)", "graceful_stop", "graceful_stop", "graceful_stop", None),
    ("force stop, one job (median)", "force_stop", "force_stop", "force_stop", "force_stop_durable"),
    (f"start {count}, one Submit at a time, until all run", "start_each_ms", "start_each_ms", "start_all_ms",
     "start_all_cgroups_ms"),
    (f"stop {count}, one Stop at a time", "stop_each_ms", "stop_each_ms", "stop_each_ms", "stop_each_cgroups_ms"),
    ("escalation overshoot past a 1 s timeout (median)", "escalation_beyond_1s", "escalation_beyond_1s",
     "escalation_beyond_1s", "escalation_beyond_1s_durable"),
    ("status through the CLI, cold (median)", "ctl_status_cold", "ctl_status_cold", "ctl_status_cold", None),
    ("stop through the CLI, cold (median)", "ctl_stop_cold", "ctl_stop_cold", None, None),
]


def fmt(v):
    if v is None:
        return "—"
    return f"{v:,.0f} ms" if v >= 100 else f"{v:.1f} ms" if v >= 10 else f"{v:.3f} ms"


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def rfmt(v):
    return "—" if v is None else f"{v:.2f}"


print(f"{len(data)} rounds; each figure the median over the rounds, each ratio the median of the rounds' "
      "ratios (the rounds' own C ÷ s6 in the last column)\n")
print("| measure | repvisord, C sd-bus | repvisord, dbus-python | s6 | floor | floor, cgroup each (force stop, escalation: + durable) "
      "| C ÷ s6 | Python ÷ s6 | C ÷ floor | Python ÷ floor | C ÷ s6, per round |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
summary = {}
for label, key, s6_key, floor_key, floor2_key in ROWS:
    c = [value(r["c"], key) for r in data]
    py = [value(r["python"], key) for r in data]
    s6 = [value(r["s6"], s6_key) for r in data]
    fl = [value(r["floor"], floor_key) if floor_key else None for r in data]
    fl2 = [value(r["floor"], floor2_key) if floor2_key else None for r in data]
    c_s6 = [ratio(a, b) for a, b in zip(c, s6)]
    py_s6 = [ratio(a, b) for a, b in zip(py, s6)]
    c_fl = [ratio(a, b) for a, b in zip(c, fl)]
    py_fl = [ratio(a, b) for a, b in zip(py, fl)]
    per_round = "/".join(rfmt(x) for x in c_s6)
    print(f"| {label} | {fmt(med(c))} | {fmt(med(py))} | {fmt(med(s6))} | {fmt(med(fl))} | {fmt(med(fl2))} | "
          f"{rfmt(med(c_s6))} | {rfmt(med(py_s6))} | {rfmt(med(c_fl))} | {rfmt(med(py_fl))} | {per_round} |")
    summary[key] = {"c": med(c), "python": med(py), "s6": med(s6), "floor": med(fl), "floor_cgroup": med(fl2),
                    "c_over_s6": med(c_s6), "python_over_s6": med(py_s6), "c_over_floor": med(c_fl),
                    "python_over_floor": med(py_fl)}

extra = [
    (f"start {count}: the last Submit's reply (repvisord)", "start_each_replies_ms", None),
    (f"start {count}, s6 fire-and-forget (`u` to every FIFO, then every event)", None, "start_all_ms"),
    (f"stop {count}, s6 fire-and-forget (`d` to every FIFO, then every event)", None, "stop_all_ms"),
]
print()
for label, rv_key, s6_key in extra:
    if rv_key:
        print(f"- {label}: C {fmt(med([r['c'].get(rv_key) for r in data]))}, "
              f"Python {fmt(med([r['python'].get(rv_key) for r in data]))}")
    else:
        print(f"- {label}: {fmt(med([r['s6'].get(s6_key) for r in data]))}")
print()
print(json.dumps({"rounds": len(data), "count": count, "summary": summary, "raw": data}))
