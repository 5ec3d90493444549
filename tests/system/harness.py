"""A Debian 12 system booted under systemd-nspawn for each test: the tree, the container, teardown.

The tree is built once by mmdebstrap and cached as a tarball keyed by its package list; each test
boots it with a fresh tmpfs overlay (--volatile=overlay), inside a PID and mount namespace of its
own (unshare --kill-child) and a cgroup of its own, so that nothing outlives the test even when the
runner is killed. The container is driven from outside with nsenter; commands that need a real
unit context run through systemd-run inside it. See docs/system-tests.md.
"""

import contextlib
import ctypes
import hashlib
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = os.path.join(ROOT, "build", "system")
CACHE = os.environ.get("REPVISOR_SYSTEM_CACHE", "/var/cache/repvisor-system-tests")
DEBS = os.path.join(WORK, "debs")  # current/ and next/ (a version bump), made by run.sh
SUITE = "bookworm"
MIRRORS = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
]
# What every test's system has besides the packages' own dependencies: systemd as PID 1 with
# logind and the system bus, and what the tests run inside (losetup, qemu-img, ps, cmp, sudo-less
# user switching through systemd-run).
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "libpam-systemd", "mount", "procps", "diffutils",
                 "qemu-utils", "nbdkit", "libnbd-bin"]
# Cockpit for the console test (tests/system/test_console.py).
CONSOLE_PACKAGES = ["cockpit-ws", "cockpit-bridge", "cockpit-system"]
# Changed when the way a tree is made changes, so that an old cached tarball is not reused.
TREE_RECIPE = "2"
BOOT_TIMEOUT = 60
POWEROFF_TIMEOUT = 20
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CGROUP_PREFIX = "repvisor-systest-"

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def log(msg):
    print(f"[system] {msg}", file=sys.stderr, flush=True)


def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                return fields[4]
    raise RuntimeError("no cgroup2 mount on this host")


def wait_cgroup_empty(path, timeout):
    """Waits for 'populated 0' in cgroup.events, woken by the kernel's notification (POLLPRI)."""
    deadline = time.monotonic() + timeout
    fd = os.open(os.path.join(path, "cgroup.events"), os.O_RDONLY)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLPRI | select.POLLERR)
        while True:
            if b"populated 0" in os.pread(fd, 4096, 0):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            poller.poll(left * 1000)
    finally:
        os.close(fd)


def remove_cgroup_tree(path):
    for dirpath, dirnames, _ in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(dirpath)


def sweep_stale_cgroups():
    """Cgroups of runs that were killed: their runner is gone; kill what is left and remove them."""
    top = cgroup2_mount()
    for name in os.listdir(top):
        m = re.fullmatch(CGROUP_PREFIX + r"(\d+)-\d+", name)
        if not m or os.path.exists(f"/proc/{m.group(1)}"):
            continue
        path = os.path.join(top, name)
        log(f"removing the cgroup of a killed run: {path}")
        with open(os.path.join(path, "cgroup.kill"), "w") as f:
            f.write("1")
        wait_cgroup_empty(path, 30)
        remove_cgroup_tree(path)


def deb_depends(deb):
    """The package names a .deb depends on (the first of each alternative, no versions)."""
    out = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], check=True, capture_output=True, text=True).stdout
    names = []
    for part in out.split(","):
        name = part.split("|")[0].strip().split(" ")[0].split(":")[0]
        if name and name not in ("repvisor",):
            names.append(name)
    return names


def debs(which="current"):
    d = os.path.join(DEBS, which)
    found = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".deb"):
            found[f.split("_")[0]] = os.path.join(d, f)
    if "repvisor" not in found:
        raise RuntimeError(f"no repvisor .deb in {d}: run tests/system/run.sh")
    return found


def tree_packages():
    pkgs = set(BASE_PACKAGES)
    for deb in debs().values():
        pkgs.update(deb_depends(deb))
    if "cockpit-repvisor" in debs():
        pkgs.update(CONSOLE_PACKAGES)
    return sorted(pkgs)


def ensure_tree():
    """The extracted tree for this package list: from the cached tarball, built when missing."""
    pkgs = tree_packages()
    key = hashlib.sha256("\n".join([TREE_RECIPE, SUITE, *MIRRORS, *pkgs]).encode()).hexdigest()[:16]
    tarball = os.path.join(CACHE, f"tree-{key}.tar")
    tree = os.path.join(WORK, f"tree-{key}")
    if os.path.exists(os.path.join(tree, ".complete")):
        return tree
    os.makedirs(CACHE, exist_ok=True)
    if not os.path.exists(tarball):
        log(f"building the {SUITE} tree ({len(pkgs)} packages) into {tarball}: about a minute")
        tmp = tarball + f".tmp{os.getpid()}"
        hooks = [
            # No first-boot questions, and one machine id for the journal's directory.
            'systemctl --root="$1" mask systemd-firstboot.service',
            'rm -f "$1/etc/machine-id" && systemd-machine-id-setup --root="$1"',
            # Where the tests put their journal bind mount.
            'mkdir -p "$1/var/log/journal"',
        ]
        cmd = ["mmdebstrap", "--variant=minbase", "--quiet", f"--include={','.join(pkgs)}",
               '--aptopt=Acquire::Check-Valid-Until "false"', "--format=tar"]
        cmd += [f"--customize-hook={h}" for h in hooks]
        cmd += [SUITE, tmp, *MIRRORS]
        try:
            subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
            os.rename(tmp, tarball)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        # Older trees of this cache are of other package lists: not needed again.
        for old in os.listdir(CACHE):
            if old.startswith("tree-") and old != os.path.basename(tarball):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(CACHE, old))
    for old in os.listdir(WORK) if os.path.isdir(WORK) else []:
        if old.startswith("tree-") and old != os.path.basename(tree):
            shutil.rmtree(os.path.join(WORK, old), ignore_errors=True)
    shutil.rmtree(tree, ignore_errors=True)
    os.makedirs(tree)
    subprocess.run(["tar", "-C", tree, "--numeric-owner", "-xpf", tarball], check=True)
    open(os.path.join(tree, ".complete"), "w").close()
    return tree


def loop_devices():
    """Every attached loop device of the host: {name: (backing major:minor, inode)}."""
    out = subprocess.run(["losetup", "-J", "-O", "NAME,BACK-MAJ:MIN,BACK-INO"], capture_output=True, text=True,
                         check=True).stdout
    if not out.strip():
        return {}
    return {d["name"]: (str(d["back-maj:min"]).strip(), str(d["back-ino"]).strip()) for d in json.loads(out)["loopdevices"]}


class Failed(AssertionError):
    pass


class Container:
    """One booted system. run()/sh() act in it; teardown() powers it off and checks for leftovers."""

    count = 0

    def __init__(self, name, tree, binds=()):
        Container.count += 1
        self.name = name
        self.tree = tree
        self.binds = list(binds)
        self.cgroup = os.path.join(cgroup2_mount(), f"{CGROUP_PREFIX}{os.getpid()}-{Container.count}")
        self.journal = os.path.join(WORK, "journal", name)
        self.console_log = os.path.join(WORK, "console", name + ".log")
        self.launcher = None
        self.pid1 = None
        self.fs_dev = None  # the device of the container's new files, to find loop devices it left

    # ---- boot ----
    def boot(self):
        shutil.rmtree(self.journal, ignore_errors=True)
        os.makedirs(self.journal)
        os.makedirs(os.path.dirname(self.console_log), exist_ok=True)
        os.mkdir(self.cgroup)
        # nspawn reports READY=1 (once the container's systemd is up) and its leader's PID here.
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        address = f"\0repvisor-systest-{os.getpid()}-{Container.count}"
        notify.bind(address)
        args = ["systemd-nspawn", "--quiet", "--directory", self.tree, "--boot", "--register=no", "--keep-unit",
                "--volatile=overlay", "--system-call-filter=bpf", "--private-network", "--notify-ready=yes",
                "--console=read-only", f"--machine=rv-{Container.count}",
                "--bind=/dev/loop-control", f"--bind={self.journal}:/var/log/journal"]
        args += [f"--bind-ro={src}:{dst}" for src, dst in self.binds]
        # A private /run: nspawn keeps its own state there, and it goes with the namespace.
        inner = "mount -t tmpfs -o mode=0755 tmpfs /run && exec " + shlex.join(args)
        cmd = ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private", "sh", "-c", inner]
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1", NOTIFY_SOCKET="@" + address[1:])
        cgroup_procs = os.path.join(self.cgroup, "cgroup.procs")

        def enter():
            # In its own cgroup before it runs, and killed with the runner: a killed run leaves
            # nothing running (unshare --kill-child then takes the whole namespace with it).
            with open(cgroup_procs, "w") as f:
                f.write("0")
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

        out = open(self.console_log, "w")
        self.launcher = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=enter)
        out.close()
        leader = None
        ready = False
        deadline = time.monotonic() + BOOT_TIMEOUT
        notify.settimeout(1)
        try:
            while not (ready and leader):
                if time.monotonic() > deadline:
                    raise Failed(f"the container did not boot in {BOOT_TIMEOUT} s:\n{self.console_tail()}")
                if self.launcher.poll() is not None:
                    raise Failed(f"systemd-nspawn exited with {self.launcher.returncode}:\n{self.console_tail()}")
                try:
                    msg = notify.recv(4096).decode()
                except socket.timeout:
                    continue
                for line in msg.splitlines():
                    if line == "READY=1":
                        ready = True
                    elif line.startswith("X_NSPAWN_LEADER_PID="):
                        leader = line.split("=", 1)[1]
        finally:
            notify.close()
        self.pid1 = self.host_pid(leader)
        # READY=1 is basic.target; wait for the whole boot, then look at what failed.
        state = self.run(["systemctl", "is-system-running", "--wait"], check=False).stdout.strip()
        if state != "running":
            failed = self.run(["systemctl", "--failed", "--no-pager"], check=False).stdout
            raise Failed(f"the system is {state!r} after boot:\n{failed}")
        # The files the container writes (volumes among them) live on the overlay's upper tmpfs,
        # whose device a new file reports (directories report the overlay's own).
        self.fs_dev = self.sh("f=/var/lib/.systest-device; : > $f; stat -c %d $f").stdout.strip()
        return self

    def host_pid(self, ns_pid):
        """The host PID of the process that nspawn (in the unshare namespace) knows as ns_pid."""
        for dirpath, _, files in os.walk(self.cgroup):
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                for pid in f.read().split():
                    with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/status") as st:
                        for line in st:
                            if line.startswith("NSpid:"):
                                ids = line.split()[1:]
                                if len(ids) == 3 and ids[1] == ns_pid and ids[2] == "1":
                                    return int(pid)
        raise Failed(f"no container leader with PID {ns_pid} in {self.cgroup}")

    def console_tail(self, lines=40):
        with contextlib.suppress(OSError), open(self.console_log, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
        return ""

    # ---- acting inside ----
    def run(self, argv, check=True, timeout=120, input=None, env=None):
        """argv in the container's namespaces (not in a unit: for systemctl, journalctl, files)."""
        e = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
        e.update(env or {})
        cmd = ["nsenter", "-t", str(self.pid1), "-a", "env", "-i"] + [f"{k}={v}" for k, v in e.items()] + list(argv)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise Failed(f"in the container: {shlex.join(argv)}: exit {p.returncode}\n"
                         f"stdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-3000:]}")
        return p

    def sh(self, script, check=True, timeout=120, input=None):
        return self.run(["sh", "-euc", script], check=check, timeout=timeout, input=input)

    def unit(self, argv, user=None, check=True, timeout=120, props=()):
        """argv as a transient service (a real unit context, as a user when given); its exit status."""
        cmd = ["systemd-run", "--quiet", "--wait", "--pipe", "--collect", "--service-type=exec"]
        if user:
            cmd.append(f"--uid={user}")
        cmd += [f"--property={p}" for p in props]
        return self.run(cmd + ["--"] + list(argv), check=check, timeout=timeout)

    def write(self, path, text, mode="0644"):
        self.run(["sh", "-c", f'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod {mode} "$1"', "-", path], input=text)

    def read(self, path):
        return self.run(["cat", path]).stdout

    def show(self, unit, prop):
        return self.run(["systemctl", "show", "-P", prop, unit]).stdout.strip()

    def wait_for(self, what, predicate, timeout=60):
        """Waits until predicate() is true: for the states systemd and the daemon report only when
        asked (a unit's properties); bounded, and says what it waited for."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise Failed(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.1)

    def watch(self, argv, until, what, timeout=60):
        """Runs argv (a command printing JSON lines, e.g. repvisorctl --json watch JOB) and reads its
        lines until until(merged object) is true; returns that object. Event-driven: each line is a
        change the daemon signalled."""
        e = [f"PATH={PATH}", "LANG=C.UTF-8"]
        # Killed with nsenter when we are done with it.
        cmd = ["nsenter", "-t", str(self.pid1), "-a", "env", "-i", *e, "setpriv", "--pdeathsig", "KILL", *argv]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        merged, seen = {}, []
        deadline = time.monotonic() + timeout
        try:
            poller = select.poll()
            poller.register(p.stdout, select.POLLIN)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failed(f"timed out after {timeout} s waiting for {what}; last: {seen[-5:]}")
                if not poller.poll(left * 1000):
                    continue
                line = p.stdout.readline()
                if not line:
                    raise Failed(f"{shlex.join(argv)} ended before {what}: {p.stderr.read()[-2000:]}; last: {seen[-5:]}")
                seen.append(line.strip())
                merged.update(json.loads(line))
                if until(merged):
                    return merged
        finally:
            # The command, then nsenter: nsenter reaps it. (Killing nsenter first would leave it a
            # zombie that a subreaper outside the container may never reap, and systemd's
            # shutdown would wait for it.)
            with contextlib.suppress(OSError):
                with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                    for child in f.read().split():
                        os.kill(int(child), signal.SIGKILL)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()

    def journal_text(self, args=(), lines=200):
        p = subprocess.run(["journalctl", "-D", self.journal, "--no-pager", "-o", "short-monotonic", "-n", str(lines),
                            *args], capture_output=True, text=True)
        return p.stdout + p.stderr

    def own_loop_devices(self):
        """The host's loop devices backed by a file of this container (loop devices are the host's:
        parallel tests elsewhere have theirs)."""
        major, minor = os.major(int(self.fs_dev)), os.minor(int(self.fs_dev))
        return sorted(n for n, (dev, _) in loop_devices().items() if dev == f"{major}:{minor}")

    # ---- teardown ----
    def teardown(self):
        """Powers the system off, kills what is left, and checks that nothing is: no process, no
        cgroup, no mount, no loop device of this container. Raises on a leftover."""
        problems = []
        if self.launcher is None:
            return
        if self.launcher.poll() is None:
            if self.pid1:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid1, signal.SIGRTMIN + 4)  # systemd: poweroff
            try:
                self.launcher.wait(POWEROFF_TIMEOUT)
            except subprocess.TimeoutExpired:
                problems.append(f"did not power off within {POWEROFF_TIMEOUT} s")
                self.launcher.kill()
                self.launcher.wait()
        if os.path.isdir(self.cgroup):
            with open(os.path.join(self.cgroup, "cgroup.kill"), "w") as f:
                f.write("1")
            if not wait_cgroup_empty(self.cgroup, 30):
                problems.append(f"processes left in {self.cgroup} after cgroup.kill")
            remove_cgroup_tree(self.cgroup)
            if os.path.exists(self.cgroup):
                problems.append(f"cgroup {self.cgroup} could not be removed")
        with open("/proc/self/mountinfo") as f:
            mounts = [line for line in f if self.tree in line or self.journal in line]
        if mounts:
            problems.append("mounts left: " + "".join(mounts))
        if self.fs_dev:
            left = self.own_loop_devices()
            if left:
                problems.append(f"loop devices left attached to the container's files: {left}")
        self.launcher = None
        if problems:
            raise Failed("leftovers after the container's teardown:\n" + "\n".join(problems))


class SystemTest(unittest.TestCase):
    """Boots a fresh system per test with the repvisor package installed by dpkg -i."""

    install = ("repvisor",)
    tree = None

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("the system tests need root")
        SystemTest.tree = SystemTest.tree or ensure_tree()

    def _problems(self):
        result = self._outcome.result
        return len(result.failures) + len(result.errors)

    def setUp(self):
        self._problems_before = self._problems()
        self.c = Container(self.id().split(".", 1)[1], SystemTest.tree,
                           binds=[(os.path.join(DEBS, "current"), "/debs/current"),
                                  (os.path.join(DEBS, "next"), "/debs/next")])
        self.addCleanup(self._teardown)
        self.c.boot()
        if self.install:
            self.dpkg_install("current", *self.install)

    def _teardown(self):
        # A failure of this test (or of its setUp) is already in the result when cleanups run.
        failed = self._problems() > self._problems_before
        if failed:
            # The journal is kept in build/system/journal/<test>: the daemon's part of it, and the
            # end of all of it (systemd's word on the unit, dbus, dpkg's scripts).
            print(f"\n---- repvisord's journal in {self.c.name} (all of it kept in {self.c.journal}) ----",
                  file=sys.stderr)
            print(self.c.journal_text(["-u", "repvisord"], lines=100), file=sys.stderr)
            print("---- the end of the whole journal ----", file=sys.stderr)
            print(self.c.journal_text(lines=60), file=sys.stderr)
        self.c.teardown()
        if not failed and not os.environ.get("KEEP_JOURNALS"):
            shutil.rmtree(self.c.journal, ignore_errors=True)

    # ---- helpers for the tests ----
    def dpkg_install(self, which, *packages):
        files = [f"/debs/{which}/{os.path.basename(debs(which)[p])}" for p in packages]
        return self.c.run(["dpkg", "-i", *files], timeout=300)

    def start_daemon(self, config=None, dropin=None):
        if config is not None:
            self.c.write("/etc/repvisor/repvisord.toml", config)
        if dropin is not None:
            self.c.write("/etc/systemd/system/repvisord.service.d/test.conf", dropin)
            self.c.run(["systemctl", "daemon-reload"])
        self.c.run(["systemctl", "start", "repvisord"])
        return int(self.c.show("repvisord", "MainPID"))

    def job(self, job_id):
        return json.loads(self.c.run(["repvisorctl", "--json", "status", job_id]).stdout)

    def watch_job(self, job_id, predicate, what, timeout=60):
        """Waits, on the daemon's PropertiesChanged signals, until predicate(job's properties)."""
        return self.c.watch(["repvisorctl", "--json", "watch", job_id], predicate, f"job {job_id}: {what}", timeout)

    def submit(self, spec_toml, path="/root/job.toml", check=True):
        self.c.write(path, spec_toml)
        p = self.c.run(["repvisorctl", "--json", "submit", "-F", path], check=check)
        return json.loads(p.stdout)["id"] if p.returncode == 0 else p
