#!/usr/bin/python3
"""The peers a user would otherwise pick, on the workloads of repvisor-bench and the same child.

supervisord (Debian `supervisor`) on a private Unix socket in a temporary directory, driven by a
warm XML-RPC client (supervisor's own persistent-connection transport); s6 (Debian `s6`) on a
private scan directory, driven through each service's control FIFO and listened to on its event
fifodir (the protocol s6-svc -w uses, without exec'ing a tool per request).

Usage: peers.py TMPDIR CHILD [ITERATIONS] [ESCALATIONS] [SCALE]
Prints one JSON object: {"supervisord": {...}, "s6": {...}} with repvisor-bench's keys.
       peers.py --simple TMPDIR CHILD ITERATIONS ESCALATIONS COUNT COLD_RUNS
s6 alone on the simple-client workload of bench/simple-clients.sh (see s6_simple).

Where the peers' natural API differs, each is used the way its users would:
- force stop: supervisord stopProcess(wait) of a program with stopsignal=KILL until STOPPED;
  s6 'd' to a service whose down-signal is SIGKILL, until its 'd' (down) event.
- escalation: stopwaitsecs=1 (supervisord counts whole seconds) / timeout-kill 1000 ms (s6),
  measured with SCALE idle jobs running, as for repvisord.
- start/stop all: supervisord startProcessGroup/stopProcessGroup(wait) of one program with
  numprocs=SCALE (one call); s6 'u'/'d' written to every control FIFO, until every event arrived.
- status round trip: getProcessInfo (supervisord); reading supervise/status, what s6-svstat
  does (s6 has no server to ask). "List": getAllProcessInfo / reading every status file.
  Cold status: `supervisorctl status NAME` / `s6-svstat DIR`, exec to exit.
- RSS and CPU: supervisord's process; for s6 the sum over s6-svscan and its s6-supervise
  processes (one per service).
"""
import json
import os
import resource
import select
import shutil
import struct
import subprocess
import sys
import time
import xmlrpc.client

sys.path.insert(0, "/usr/lib/python3/dist-packages")
IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "10"))
try:  # Debian's supervisor package; checked in main() so bad arguments are named first
    from supervisor.xmlrpc import SupervisorTransport  # noqa: E402
except ImportError:
    SupervisorTransport = None


def now_ms():
    return time.perf_counter_ns() / 1e6


def term_ready(pid, child):
    """The child runs (exec'd: a peer's fork still holds the peer's own handlers) and its SIGTERM
    is caught or ignored, per /proc/PID/status: no stop races the child's start-up."""
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


def wait_term_ready(pid, child):
    while not term_ready(pid, child):
        time.sleep(0.0001)


def stats(v):
    v = sorted(v)
    n = len(v)
    return {"n": n, "median_ms": round(v[n // 2], 4), "p99_ms": round(v[min(n - 1, int(n * 0.99))], 4),
            "max_ms": round(v[-1], 4)}


def usage(pids):
    """Summed RSS and proportional set size (KiB: shared pages split between the processes), and
    CPU time (ms, from each thread's /proc/PID/task/TID/schedstat in nanoseconds; /proc/PID/stat
    counts whole clock ticks) of the given processes."""
    rss, pss, ns = 0, 0, 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns += int(f.read().split()[0])
    return rss, pss, ns / 1e6


def kill_tree(root):
    """SIGKILLs a process and every descendant: a peer killed alone (after a failure) would leave
    its jobs running. The tree is read from /proc before anything is killed."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    for pid in tree:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def run_cold(argv):
    """Exec to exit of a command, as a user typing it pays for it (ms)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    t0 = now_ms()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1)])
    _, status = os.waitpid(pid, 0)
    t = now_ms() - t0
    os.close(devnull)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv} failed")
    return t


def wait_for(what, predicate, timeout=60.0):
    """Set-up only (never timed): polls until the peer is ready."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------- supervisord

def supervisord(tmp, child, n, esc, scale):
    d = os.path.join(tmp, "supervisord")
    os.makedirs(d)
    sock = os.path.join(d, "supervisor.sock")

    def program(name, args, stopsignal, extra=""):
        return (f"[program:{name}]\ncommand={child} {args}\nautostart=false\nautorestart=false\n"
                f"startsecs=0\nstartretries=0\nstopsignal={stopsignal}\nstopwaitsecs=30\n"
                f"stdout_logfile=NONE\nstderr_logfile=NONE\n{extra}\n")

    conf = os.path.join(d, "supervisord.conf")
    with open(conf, "w") as f:
        f.write(f"[unix_http_server]\nfile={sock}\n\n[supervisorctl]\nserverurl=unix://{sock}\n\n"
                f"[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n"
                f"childlogdir={d}\nloglevel=warn\nminfds={scale * 8 + 1024}\nminprocs={scale + 200}\n\n"
                "[rpcinterface:supervisor]\n"
                "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n")
        f.write(program("force", "term", "KILL"))
        f.write(program("grace", "term", "TERM"))
        f.write(program("ignore", "ignore", "TERM").replace("stopwaitsecs=30", "stopwaitsecs=1"))
        f.write(program("j", "term", "TERM", f"numprocs={scale}\nprocess_name=%(program_name)s%(process_num)05d"))
    daemon = subprocess.Popen(["/usr/bin/supervisord", "-c", conf], stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(d, "stderr.log"), "w"))
    try:
        transport = SupervisorTransport(None, None, "unix://" + sock)
        rpc = xmlrpc.client.ServerProxy("http://localhost", transport=transport).supervisor

        def up():
            try:
                return rpc.getState()["statename"] == "RUNNING"
            except (OSError, xmlrpc.client.Fault):
                transport.close()  # a failed request leaves the connection unusable
                return False
        wait_for("supervisord", up)

        out = {}
        force, grace = [], []
        for _ in range(n):
            for name, into in (("force", force), ("grace", grace)):
                rpc.startProcess(name, True)
                wait_term_ready(rpc.getProcessInfo(name)["pid"], child)
                t0 = now_ms()
                rpc.stopProcess(name, True)
                into.append(now_ms() - t0)
                assert rpc.getProcessInfo(name)["statename"] == "STOPPED"
        out["force_stop"], out["graceful_stop"] = stats(force), stats(grace)

        t0 = now_ms()
        rpc.startProcessGroup("j", True)
        out["start_all_ms"] = round(now_ms() - t0, 1)
        assert all(p["statename"] == "RUNNING" for p in rpc.getAllProcessInfo() if p["group"] == "j")
        out["scale"] = scale

        over, cpu = [], []
        for _ in range(esc):
            rpc.startProcess("ignore", True)
            wait_term_ready(rpc.getProcessInfo("ignore")["pid"], child)
            _, _, c0 = usage([daemon.pid])
            t0 = now_ms()
            rpc.stopProcess("ignore", True)
            over.append(now_ms() - t0 - 1000.0)
            cpu.append(usage([daemon.pid])[2] - c0)
        out["escalation_beyond_1s"], out["stop_timeout_cpu_ms"] = stats(over), stats(cpu)

        rt = []
        for _ in range(1000):
            t0 = now_ms()
            rpc.getProcessInfo("j:j00000")
            rt.append(now_ms() - t0)
        out["status_roundtrip"] = stats(rt)
        t0 = now_ms()
        rpc.getAllProcessInfo()
        out["list_ms"] = round(now_ms() - t0, 3)
        out["ctl_status_cold"] = stats([run_cold(["/usr/bin/supervisorctl", "-c", conf, "status", "j:j00000"])
                                        for _ in range(100)])

        _, _, cpu0 = usage([daemon.pid])
        time.sleep(IDLE_SECONDS)
        rss, _, cpu1 = usage([daemon.pid])
        out["idle_rss_kib"], out["idle_cpu_ms_per_10s"] = rss, round(cpu1 - cpu0, 1)

        t0 = now_ms()
        rpc.stopProcessGroup("j", True)
        out["stop_all_ms"] = round(now_ms() - t0, 1)
        assert all(p["statename"] == "STOPPED" for p in rpc.getAllProcessInfo() if p["group"] == "j")
        rpc.shutdown()
        daemon.wait(60)
        return out
    finally:
        if daemon.poll() is None:
            kill_tree(daemon.pid)
            daemon.wait()


# ------------------------------------------------------------------------------------------------- s6

STATUS = struct.Struct(">24xQHB")  # s6 2.11 supervise/status (35 bytes): stamps, pid, wstat, flags


class Service:
    """One s6 service directory: its control FIFO held open for writing, and an ftrig1 FIFO in its
    event fifodir held open (read-write, so it never reads end-of-file) for s6-supervise's events."""

    def __init__(self, path):
        self.path = path
        self.control = os.open(os.path.join(path, "supervise/control"), os.O_WRONLY | os.O_NONBLOCK)
        # s6-supervise writes to the FIFOs named "ftrig1:@" + 31 characters (s6's ftrigw).
        fifo = os.path.join(path, "event", f"ftrig1:@bench{os.getpid():026d}")
        os.mkfifo(fifo, 0o600)
        self.events = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)

    def drain(self):
        try:
            while os.read(self.events, 4096):
                pass
        except BlockingIOError:
            pass

    def send(self, command):
        os.write(self.control, command)

    def wait(self, event):
        p = select.poll()
        p.register(self.events, select.POLLIN)
        while True:
            p.poll()
            if event in os.read(self.events, 4096):
                return

    def pid(self):
        with open(os.path.join(self.path, "supervise/status"), "rb") as f:
            return STATUS.unpack_from(f.read())[0]

    def up(self, child):
        """Starts it and returns once the child runs with its SIGTERM disposition in place, no
        event pending."""
        self.drain()
        self.send(b"u")
        self.wait(b"u")
        wait_term_ready(self.pid(), child)
        self.drain()


def all_to(services, command, event):
    """Sends `command` to every service, until each has reported `event`: its duration (ms)."""
    for s in services:
        s.drain()
    t0 = now_ms()
    for s in services:
        s.send(command)
    wait_all(services, event)
    return round(now_ms() - t0, 1)


def wait_all(services, event):
    """Until every service has reported `event` once."""
    pending = {s.events: s for s in services}
    p = select.poll()
    for fd in pending:
        p.register(fd, select.POLLIN)
    while pending:
        for fd, _ in p.poll():
            if event in os.read(fd, 4096):
                p.unregister(fd)
                del pending[fd]


def s6(tmp, child, n, esc, scale):
    scan = os.path.join(tmp, "s6")
    os.makedirs(scan)

    def service(name, files, run=None):
        sd = os.path.join(scan, name)
        os.makedirs(sd)
        if run is None:
            os.symlink(child, os.path.join(sd, "run"))  # the child with no argument: exits on SIGTERM
        else:
            with open(os.path.join(sd, "run"), "w") as f:
                f.write(run)
            os.chmod(os.path.join(sd, "run"), 0o755)
        files = dict(files, down="")  # do not start with the scanner
        for k, v in files.items():
            with open(os.path.join(sd, k), "w") as f:
                f.write(v)
        return sd

    dirs = {"force": service("force", {"down-signal": "SIGKILL\n"}),
            "grace": service("grace", {}),
            "ignore": service("ignore", {"timeout-kill": "1000\n"}, f"#!/bin/sh\nexec {child} ignore\n")}
    names = [f"j{i:05d}" for i in range(scale)]
    for name in names:
        dirs[name] = service(name, {})
    scanner = subprocess.Popen(["s6-svscan", "-c", str(scale + 100), scan], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("s6-supervise", lambda: all(os.path.exists(os.path.join(d, "supervise/status"))
                                            for d in dirs.values()))
        svc = {name: Service(d) for name, d in dirs.items()}
        out = {}
        force, grace = [], []
        for _ in range(n):
            for name, into in (("force", force), ("grace", grace)):
                s = svc[name]
                s.up(child)
                t0 = now_ms()
                s.send(b"d")
                s.wait(b"d")
                into.append(now_ms() - t0)
        out["force_stop"], out["graceful_stop"] = stats(force), stats(grace)

        jobs = [svc[name] for name in names]
        out["start_all_ms"] = all_to(jobs, b"u", b"u")
        out["scale"] = scale

        over, cpu = [], []
        s = svc["ignore"]
        for _ in range(esc):
            s.up(child)
            supervise = [scanner.pid] + [int(p) for p in subprocess.check_output(
                ["pgrep", "-P", str(scanner.pid), "-f", "s6-supervise ignore"]).split()]
            _, _, c0 = usage(supervise)
            t0 = now_ms()
            s.send(b"d")
            s.wait(b"d")
            over.append(now_ms() - t0 - 1000.0)
            cpu.append(usage(supervise)[2] - c0)
        out["escalation_beyond_1s"], out["stop_timeout_cpu_ms"] = stats(over), stats(cpu)

        status = os.path.join(dirs[names[0]], "supervise/status")
        rt = []
        for _ in range(1000):
            t0 = now_ms()
            with open(status, "rb") as f:
                STATUS.unpack_from(f.read())
            rt.append(now_ms() - t0)
        out["status_roundtrip"] = stats(rt)
        t0 = now_ms()
        for s in jobs:
            s.pid()
        out["list_ms"] = round(now_ms() - t0, 3)
        svstat = shutil.which("s6-svstat")
        out["ctl_status_cold"] = stats([run_cold([svstat, dirs[names[0]]]) for _ in range(100)])

        pids = [scanner.pid] + [int(p) for p in subprocess.check_output(
            ["pgrep", "-P", str(scanner.pid)]).split()]
        _, _, cpu0 = usage(pids)
        time.sleep(IDLE_SECONDS)
        rss, out["idle_pss_kib"], cpu1 = usage(pids)
        out["idle_rss_kib"], out["idle_cpu_ms_per_10s"] = rss, round(cpu1 - cpu0, 1)
        out["processes"] = len(pids)

        out["stop_all_ms"] = all_to(jobs, b"d", b"d")
        subprocess.run(["s6-svscanctl", "-t", scan], check=True)
        scanner.wait(60)
        return out
    finally:
        if scanner.poll() is None:
            kill_tree(scanner.pid)
            scanner.wait()


def s6_simple(tmp, child, n, esc, count, cold_runs):
    """The simple-client workload (bench/simple_client.cpp) on s6: each request is the blocking
    form its own tool offers, `s6-svc -wu -u` / `-wd -d` (the FIFO written, then its event awaited),
    without exec'ing the tool; the CLI rows exec `s6-svstat` and `s6-svc -wd -d` themselves. Also
    s6's fire-and-forget form for comparison: `u` (or `d`) written to every FIFO, then every event
    awaited."""
    scan = os.path.join(tmp, "s6")
    os.makedirs(scan)

    def service(name, files, run=None):
        sd = os.path.join(scan, name)
        os.makedirs(sd)
        if run is None:
            os.symlink(child, os.path.join(sd, "run"))  # the child with no argument: exits on SIGTERM
        else:
            with open(os.path.join(sd, "run"), "w") as f:
                f.write(run)
            os.chmod(os.path.join(sd, "run"), 0o755)
        for k, v in dict(files, down="").items():  # "down": not started with the scanner
            with open(os.path.join(sd, k), "w") as f:
                f.write(v)
        return sd

    dirs = {"force": service("force", {"down-signal": "SIGKILL\n"}),
            "grace": service("grace", {}),
            "ignore": service("ignore", {"timeout-kill": "1000\n"}, f"#!/bin/sh\nexec {child} ignore\n")}
    names = [f"j{i:05d}" for i in range(count)]
    for name in names:
        dirs[name] = service(name, {})
    scanner = subprocess.Popen(["s6-svscan", "-c", str(count + 100), scan], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for("s6-supervise", lambda: all(os.path.exists(os.path.join(d, "supervise/status"))
                                            for d in dirs.values()))
        svc = {name: Service(d) for name, d in dirs.items()}
        out = {}
        force, grace = [], []
        for _ in range(n):
            for name, into in (("force", force), ("grace", grace)):
                s = svc[name]
                s.up(child)
                t0 = now_ms()
                s.send(b"d")
                s.wait(b"d")
                into.append(now_ms() - t0)
        out["force_stop"], out["graceful_stop"] = stats(force), stats(grace)

        jobs = [svc[name] for name in names]
        for s in jobs:
            s.drain()
        t0 = now_ms()
        for s in jobs:
            s.send(b"u")
            s.wait(b"u")
        out["count"], out["start_each_ms"] = count, round(now_ms() - t0, 1)
        for s in jobs:
            wait_term_ready(s.pid(), child)
            s.drain()
        t0 = now_ms()
        for s in jobs:
            s.send(b"d")
            s.wait(b"d")
        out["stop_each_ms"] = round(now_ms() - t0, 1)
        out["start_all_ms"] = all_to(jobs, b"u", b"u")
        for s in jobs:
            wait_term_ready(s.pid(), child)
        out["stop_all_ms"] = all_to(jobs, b"d", b"d")

        over = []
        s = svc["ignore"]
        for _ in range(esc):
            s.up(child)
            t0 = now_ms()
            s.send(b"d")
            s.wait(b"d")
            over.append(now_ms() - t0 - 1000.0)
        out["escalation_beyond_1s"] = stats(over)

        svstat, svc_tool = shutil.which("s6-svstat"), shutil.which("s6-svc")
        grace_dir = dirs["grace"]
        svc["grace"].up(child)
        out["ctl_status_cold"] = stats([run_cold([svstat, grace_dir]) for _ in range(cold_runs)])
        svc["grace"].send(b"d")  # down again: a `u` to a service that is up has no event to wait for
        svc["grace"].wait(b"d")
        stops = []
        for _ in range(cold_runs):
            svc["grace"].up(child)
            stops.append(run_cold([svc_tool, "-wd", "-d", grace_dir]))
        out["ctl_stop_cold"] = stats(stops)
        subprocess.run(["s6-svscanctl", "-t", scan], check=True)
        scanner.wait(60)
        return out
    finally:
        if scanner.poll() is None:
            kill_tree(scanner.pid)
            scanner.wait()


def count(name, text):
    """A count argument: a whole number from 1 to 1,000,000, or exit 2 naming it."""
    if not text.isdigit() or not 1 <= int(text) <= 1_000_000:
        print(f"peers.py: {name}: '{text}' is not a whole number from 1 to 1000000", file=sys.stderr)
        sys.exit(2)
    return int(text)


def main_simple():
    """peers.py --simple TMPDIR CHILD ITERATIONS ESCALATIONS COUNT COLD_RUNS: s6 alone, on the
    simple-client workload; prints {"s6": {...}}."""
    if len(sys.argv) != 8:
        sys.exit("usage: peers.py --simple TMPDIR CHILD ITERATIONS ESCALATIONS COUNT COLD_RUNS")
    tmp, child = sys.argv[2], os.path.realpath(sys.argv[3])
    n, esc, jobs_n, cold_runs = (count(name, a) for name, a in
                                 zip(("ITERATIONS", "ESCALATIONS", "COUNT", "COLD_RUNS"), sys.argv[4:8]))
    if not os.access(child, os.X_OK):
        print(f"peers.py: CHILD: '{sys.argv[3]}' is not an executable file", file=sys.stderr)
        sys.exit(2)
    if shutil.which("s6-svscan") is None:
        sys.exit("peers.py: s6-svscan is needed (apt install s6)")
    print(json.dumps({"s6": s6_simple(tmp, child, n, esc, jobs_n, cold_runs)}))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--simple":
        main_simple()
        return
    if len(sys.argv) < 3:
        sys.exit("usage: peers.py TMPDIR CHILD [ITERATIONS] [ESCALATIONS] [SCALE]")
    tmp, child = sys.argv[1], os.path.realpath(sys.argv[2])
    n, esc, scale = (count(name, a) for name, a in zip(("ITERATIONS", "ESCALATIONS", "SCALE"),
                                                        sys.argv[3:6] + ["200", "5", "1000"][len(sys.argv[3:6]):]))
    if not os.access(child, os.X_OK):
        print(f"peers.py: CHILD: '{sys.argv[2]}' is not an executable file", file=sys.stderr)
        sys.exit(2)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, 4 * scale + 1024)
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if SupervisorTransport is None or shutil.which("supervisord") is None or shutil.which("s6-svscan") is None:
        sys.exit("peers.py: supervisord and s6-svscan are needed (apt install supervisor s6)")
    print(json.dumps({"supervisord": supervisord(tmp, child, n, esc, scale), "s6": s6(tmp, child, n, esc, scale)}))


if __name__ == "__main__":
    main()
