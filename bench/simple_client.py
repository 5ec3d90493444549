#!/usr/bin/python3
"""bench/simple_client.cpp's workload from dbus-python (Debian python3-dbus), the client most
orchestration scripts that call repvisord use: one blocking call at a time, no main loop, no
signal watched. The same measures and JSON keys as the C client (without the cold CLI, which does
not depend on the caller's language).

Proxies are made with introspect=False: a default dbus-python proxy sends Introspect before its
first call, once per job object, which would time dbus-python's habit rather than the daemon.

Usage: simple_client.py ADDRESS CHILD [ITERATIONS] [ESCALATIONS] [COUNT]
"""
import json
import os
import sys
import time

sys.path.insert(0, "/usr/lib/python3/dist-packages")
try:  # Debian's python3-dbus; checked in main() so bad arguments are named first
    import dbus
    import dbus.bus
except ImportError:
    dbus = None

BUS_NAME = "org.repvisor1"
MANAGER_PATH = "/org/repvisor1"
MANAGER = "org.repvisor1.Manager"
JOB = "org.repvisor1.Job"
PROPS = "org.freedesktop.DBus.Properties"


def now_ms():
    return time.perf_counter_ns() / 1e6


def stats(v):
    v = sorted(v)
    n = len(v)
    return {"n": n, "median_ms": round(v[n // 2], 4), "p99_ms": round(v[min(n - 1, int(n * 0.99))], 4),
            "max_ms": round(v[-1], 4)}


def term_ready(pid, child):
    """The child runs (exec'd) and its SIGTERM is caught or ignored, per /proc/PID/status."""
    try:
        if os.readlink(f"/proc/{pid}/exe") != child:
            return False
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("SigCgt:", "SigIgn:")) and int(line[7:], 16) & (1 << 14):
                    return True
    except (FileNotFoundError, ProcessLookupError):
        pass
    return False


class Repvisor:
    def __init__(self, address):
        self.bus = dbus.bus.BusConnection(address)  # says Hello, as any bus client does
        manager = self.bus.get_object(BUS_NAME, MANAGER_PATH, introspect=False)
        self.submit_call = manager.get_dbus_method("Submit", MANAGER)
        self.list_call = manager.get_dbus_method("List", MANAGER)

    def job(self, path):
        return self.bus.get_object(BUS_NAME, path, introspect=False)

    def submit(self, child, mode, stop_timeout_usec):
        _, path = self.submit_call({"argv": dbus.Array([child, mode], signature="s"),
                                    "stop_timeout_usec": dbus.UInt64(stop_timeout_usec)}, signature="a{sv}")
        return str(path)

    def stop(self, path, force):
        # No timeout of our own: a stop waits out the job's stop timeout before it answers.
        result = self.job(path).Stop({"force": dbus.Boolean(force), "wait": dbus.Boolean(True)},
                                     signature="a{sv}", dbus_interface=JOB, timeout=3600)
        if result["state"] != "cancelled":
            raise RuntimeError(f"Stop: the job ended {result['state']}")

    def delete(self, path):
        self.job(path).Delete({}, signature="a{sv}", dbus_interface=JOB)

    def running(self, paths):
        rows = self.list_call({"states": dbus.Array(["running"], signature="s")}, signature="a{sv}")
        return sum(1 for row in rows if str(row[7]) in paths)

    def wait_ready(self, path, child):
        """Untimed set-up: until the job's child runs with its SIGTERM disposition."""
        job = self.job(path)
        while True:
            pid = int(job.Get(JOB, "MainPID", dbus_interface=PROPS))
            if pid and term_ready(pid, child):
                return
            time.sleep(0.0001)


def count(name, text):
    if not text.isdigit() or not 1 <= int(text) <= 1_000_000:
        print(f"simple_client.py: {name}: '{text}' is not a whole number from 1 to 1000000", file=sys.stderr)
        sys.exit(2)
    return int(text)


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: simple_client.py ADDRESS CHILD [ITERATIONS] [ESCALATIONS] [COUNT]")
    address, child = sys.argv[1], os.path.realpath(sys.argv[2])
    n, esc, jobs_n = (count(name, a) for name, a in zip(("ITERATIONS", "ESCALATIONS", "COUNT"),
                                                         sys.argv[3:6] + ["50", "3", "100"][len(sys.argv[3:6]):]))
    if dbus is None:
        sys.exit("simple_client.py: dbus-python is needed (apt install python3-dbus)")
    rv = Repvisor(address)
    out = {}
    force, grace = [], []
    for _ in range(n):
        for f, into in ((True, force), (False, grace)):
            job = rv.submit(child, "term", 30_000_000)
            rv.wait_ready(job, child)
            t0 = now_ms()
            rv.stop(job, f)
            into.append(now_ms() - t0)
            rv.delete(job)
    out["force_stop"], out["graceful_stop"] = stats(force), stats(grace)

    t0 = now_ms()
    jobs = [rv.submit(child, "term", 30_000_000) for _ in range(jobs_n)]
    replied = now_ms() - t0
    wanted = set(jobs)
    while rv.running(wanted) < jobs_n:
        pass
    out["count"], out["start_each_ms"], out["start_each_replies_ms"] = jobs_n, round(now_ms() - t0, 1), round(replied, 1)
    for job in jobs:
        rv.wait_ready(job, child)
    t0 = now_ms()
    for job in jobs:
        rv.stop(job, False)
    out["stop_each_ms"] = round(now_ms() - t0, 1)
    for job in jobs:
        rv.delete(job)

    over = []
    for _ in range(esc):
        job = rv.submit(child, "ignore", 1_000_000)
        rv.wait_ready(job, child)
        t0 = now_ms()
        rv.stop(job, False)
        over.append(now_ms() - t0 - 1000.0)
        rv.delete(job)
    out["escalation_beyond_1s"] = stats(over)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
