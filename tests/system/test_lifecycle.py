"""The service's life with jobs running: systemctl stop, restart, kill (the whole unit, and the
daemon alone) and start again; an upgrade with dpkg -i while a copy runs; apt-get remove and
purge."""

import json
import time
import unittest

import harness
from test_jobs import SLOW_NBDKIT, VOLUMES, copy_job

# qemu-nbd as the daemon starts it for a raw image (descriptor 4, socket-activated), read through
# a throttle of 3 MiB/s: a copy that lasts across an upgrade (24 MiB: 8 s).
SLOW_QEMU_NBD = """#!/bin/sh
exec /usr/bin/qemu-nbd --read-only --persistent --shared=0 \\
  --object throttle-group,id=slow,x-bps-read=3145728 \\
  --image-opts driver=throttle,throttle-group=slow,file.driver=raw,file.file.driver=file,file.file.filename=/dev/fd/4
"""

# Ignores SIGTERM: only its stop timeout's SIGKILL ends it.
STUBBORN = 'name = "stubborn"\nargv = ["sh", "-c", "trap \\"\\" TERM; sleep 1000 & wait; wait"]\nstop_timeout = "2s"\n'
SLEEPER = 'name = "sleeper"\nargv = ["sleep", "1000"]\n'


class Lifecycle(harness.SystemTest):
    def jobs(self):
        return {j["name"]: j for j in json.loads(self.c.run(["repvisorctl", "--json", "list"]).stdout)}

    def status(self, name):
        return json.loads(self.c.run(["repvisorctl", "--json", "status", name]).stdout)

    def running(self, *names):
        for name in names:
            self.watch_job(name, lambda j: j.get("state") == "running" and j.get("main_pid"), "running")

    def service_cgroup_processes(self):
        """Every process left in the service's cgroup tree (jobs included), as the container sees it."""
        return self.c.sh("if [ -d /sys/fs/cgroup/system.slice/repvisord.service ]; then "
                         "find /sys/fs/cgroup/system.slice/repvisord.service -name cgroup.procs -exec cat {} +; fi"
                         ).stdout.split()

    def test_stop_restart_and_kill_with_jobs_running(self):
        self.start_daemon()
        self.submit(SLEEPER, "/root/sleeper.toml")
        self.submit(STUBBORN, "/root/stubborn.toml")
        self.running("sleeper", "stubborn")

        # stop: the daemon stops every job itself (SIGTERM, then SIGKILL after each one's stop
        # timeout), records them, and exits well within TimeoutStopSec.
        started = time.monotonic()
        self.c.run(["systemctl", "stop", "repvisord"])
        took = time.monotonic() - started
        self.assertLess(took, 30, "stopped within its jobs' stop timeouts, far below TimeoutStopSec=120s")
        self.assertEqual(self.c.show("repvisord", "Result"), "success")
        self.assertEqual(self.service_cgroup_processes(), [], "no job process outlives the service")
        self.c.run(["systemctl", "start", "repvisord"])
        jobs = self.jobs()
        self.assertEqual({n: j["state"] for n, j in jobs.items()}, {"sleeper": "cancelled", "stubborn": "cancelled"})
        self.assertEqual(self.status("sleeper")["cancel_reason"], "daemon_shutdown")
        stubborn = self.status("stubborn")
        self.assertEqual((stubborn["cancel_reason"], stubborn["exit_signal"]), ("daemon_shutdown", 9), stubborn)
        self.assertEqual(stubborn["requested_by_uid"], 4294967295, "stopped by the daemon itself")

        # restart: the same stop, then a daemon that carries the records on.
        self.c.run(["repvisorctl", "resume", "sleeper"])
        self.running("sleeper")
        self.c.run(["systemctl", "restart", "repvisord"])
        s = self.status("sleeper")
        self.assertEqual((s["state"], s["cancel_reason"], s["runs"]), ("cancelled", "daemon_shutdown", 2), s)

        # kill -s KILL (every process of the unit, jobs included: KillMode= does not apply to
        # `systemctl kill`), then Restart=on-failure starts it again: the record says the job was
        # lost while the daemon was down.
        self.c.run(["repvisorctl", "resume", "sleeper"])
        self.running("sleeper")
        self.c.run(["systemctl", "kill", "-s", "KILL", "repvisord"])
        self.c.wait_for("the automatic restart", lambda: self.c.show("repvisord", "NRestarts") == "1" and
                        self.c.show("repvisord", "ActiveState") == "active")
        self.c.run(["systemctl", "start", "repvisord"])  # nothing to do: it is running again
        s = self.watch_job("sleeper", lambda j: j.get("state") not in ("running", "stopping", "cleaning"), "its end")
        self.assertEqual(s["state"], "failed", s)
        self.assertEqual(self.service_cgroup_processes(), [self.c.show("repvisord", "MainPID")])

        # The daemon alone killed (a crash): its jobs live on in their cgroups; the new daemon
        # stops them, recovery = "stop" (the default).
        self.c.run(["repvisorctl", "resume", "sleeper"])
        self.running("sleeper")
        job_pid = self.status("sleeper")["main_pid"]
        self.c.run(["systemctl", "kill", "--kill-who=main", "-s", "KILL", "repvisord"])
        self.c.wait_for("the automatic restart", lambda: self.c.show("repvisord", "NRestarts") == "2" and
                        self.c.show("repvisord", "ActiveState") == "active")
        s = self.watch_job("sleeper", lambda j: j.get("state") == "cancelled", "stopped by recovery")
        self.assertEqual(s["cancel_reason"], "daemon_restart", s)
        self.assertFalse(self.c.run(["kill", "-0", str(job_pid)], check=False).returncode == 0)

        # ... and with recovery = "adopt" they are supervised on, and stop as usual.
        self.c.sh("sed -i 's/^recovery = \"stop\"/recovery = \"adopt\"/' /etc/repvisor/repvisord.toml")
        self.c.run(["repvisorctl", "resume", "sleeper"])
        self.running("sleeper")
        job_pid = self.status("sleeper")["main_pid"]
        self.c.run(["systemctl", "kill", "--kill-who=main", "-s", "KILL", "repvisord"])
        self.c.wait_for("the automatic restart", lambda: self.c.show("repvisord", "NRestarts") == "3" and
                        self.c.show("repvisord", "ActiveState") == "active")
        s = self.status("sleeper")
        self.assertEqual((s["state"], s["main_pid"]), ("running", job_pid), s)
        self.assertIn("adopted", [e["type"] for e in json.loads(self.c.run(
            ["repvisorctl", "--json", "events", "sleeper"]).stdout)])
        self.c.run(["repvisorctl", "stop", "sleeper", "--reason", "after-adoption"])
        s = self.status("sleeper")
        self.assertEqual((s["state"], s["cancel_reason"]), ("cancelled", "after-adoption"), s)
        self.assertEqual(self.service_cgroup_processes(), [self.c.show("repvisord", "MainPID")])

    def daemon_binary(self):
        """(MainPID, whether it runs the installed /usr/sbin/repvisord, as opposed to a deleted one)."""
        pid = self.c.show("repvisord", "MainPID")
        same = self.c.sh(f'[ "$(stat -L -c %d:%i /proc/{pid}/exe)" = "$(stat -c %d:%i /usr/sbin/repvisord)" ] '
                         f'&& echo same || echo other').stdout.strip()
        return int(pid), same == "same"

    def version(self):
        return self.c.run(["dpkg-query", "-W", "-f", "${Version}", "repvisor"]).stdout

    def test_upgrade_while_copies_run_with_recovery_adopt(self):
        self.start_daemon()
        self.c.sh(f"mkdir -p {VOLUMES}/src && head -c 24M /dev/urandom > {VOLUMES}/src/a.raw && "
                  f"head -c 16M /dev/urandom > {VOLUMES}/src/b.raw")
        self.c.sh("sed -i 's/^recovery = \"stop\"/recovery = \"adopt\"/' /etc/repvisor/repvisord.toml")
        self.c.run(["systemctl", "restart", "repvisord"])
        self.c.write("/usr/local/bin/qemu-nbd", SLOW_QEMU_NBD, mode="0755")
        self.c.write("/usr/local/bin/nbdkit", SLOW_NBDKIT, mode="0755")
        self.c.write("/etc/repvisor-test-delay", "400ms\n")  # 16 chunks: 6.4 s, past the upgrade
        slow = ["--chunk-size", "1M", "--connections", "1", "--requests", "1", "--checkpoint-interval", "100"]
        qemu = self.submit(copy_job("via-qemu-nbd", "qemu-nbd", f"{VOLUMES}/src/a.raw", f"{VOLUMES}/a.img", "24M",
                                    extra=slow), "/root/a.toml")
        kit = self.submit(copy_job("via-nbdkit", "nbdkit", f"{VOLUMES}/src/b.raw", f"{VOLUMES}/b.img", "16M",
                                   extra=slow), "/root/b.toml")
        before = {job: self.watch_job(job, lambda j: j.get("checkpoint"), "copying") for job in (qemu, kit)}
        servers = {job: self.server_pid(job) for job in (qemu, kit)}
        old_pid, _ = self.daemon_binary()

        out = self.c.run(["dpkg", "-i", f"/debs/next/repvisor_{self.next_version()}_amd64.deb"])
        self.assertEqual(self.version(), self.next_version())
        # The new binary runs: postinst killed the old daemon alone and started the new one.
        new_pid, installed = self.daemon_binary()
        self.assertNotEqual(new_pid, old_pid, out.stdout + out.stderr)
        self.assertTrue(installed, "the daemon runs the installed binary, not the deleted old one")

        # Neither copy was interrupted: the same processes, the copy's and its server's (qemu-nbd;
        # nbdkit, which the daemon starts in the background so that it does not die with its
        # parent: docs/system-tests.md, Upgrades), adopted, still copying.
        for job in (qemu, kit):
            during = self.status(job)
            self.assertEqual((during["state"], during["main_pid"]), ("running", before[job]["main_pid"]), during)
            self.assertEqual(self.server_pid(job), servers[job], during)
            events = [e["type"] for e in json.loads(self.c.run(["repvisorctl", "--json", "events", job]).stdout)]
            self.assertIn("adopted", events)
            self.assertNotIn("signal", events)
        # What happens at their end (until the daemon re-executes itself, issue #33): an adopted
        # copy is no child of the new daemon; its status is the kernel's once systemd has reaped
        # it, and it also reported it (EXIT_STATUS=0 through the notify socket) before exiting.
        for job, source, target in ((qemu, "a.raw", "a.img"), (kit, "b.raw", "b.img")):
            end = self.watch_job(job, lambda j: j.get("state") in ("completed", "failed", "cancelled"), "its end",
                                 timeout=120)
            print(f"\n[system] the copy adopted across the upgrade ended {end['state']}, exit code "
                  f"{end.get('exit_code')}, fail reason {end.get('fail_reason')!r}", flush=True)
            self.assertEqual((end["state"], end["exit_code"], end["runs"]), ("completed", 0, 1), end)
            self.c.run(["cmp", f"{VOLUMES}/src/{source}", f"{VOLUMES}/{target}"])
            self.assertEqual(self.status(job)["cleanup_state"], "done")
            self.assertEqual(self.c.run(["losetup", "-j", f"{VOLUMES}/{target}"]).stdout, "")
        self.assertEqual(self.c.run(["pgrep", "-a", "-x", "qemu-nbd|nbdkit"], check=False).stdout, "",
                         "the adopted servers are stopped with their jobs")

    def server_pid(self, job):
        server = next(r for r in self.status(job)["resource_details"] if r["kind"] == "nbd-server")
        return server["server_pid"]

    def next_version(self):
        return harness.debs("next")["repvisor"].split("_")[1]

    def test_upgrade_with_recovery_stop_keeps_the_old_daemon_while_jobs_run(self):
        pid = self.start_daemon()
        self.submit(SLEEPER)
        self.running("sleeper")
        out = self.c.run(["dpkg", "-i", f"/debs/next/repvisor_{self.next_version()}_amd64.deb"])
        self.assertIn("repvisord still runs the previous version", out.stderr)
        # The old daemon and its job go on: nothing was interrupted, but it is the old binary.
        self.assertEqual(self.daemon_binary(), (pid, False))
        self.assertEqual(self.status("sleeper")["state"], "running")
        # Once no job is active, configuring the package again restarts it onto the new binary.
        self.c.run(["repvisorctl", "stop", "sleeper"])
        self.c.run(["dpkg", "-i", f"/debs/next/repvisor_{self.next_version()}_amd64.deb"])
        new_pid, installed = self.daemon_binary()
        self.assertNotEqual(new_pid, pid)
        self.assertTrue(installed)
        self.assertEqual(self.status("sleeper")["state"], "cancelled")

    def test_remove_keeps_the_state_and_purge_removes_it(self):
        self.start_daemon()
        self.c.sh(f"mkdir -p {VOLUMES}/src && head -c 4M /dev/urandom > {VOLUMES}/src/c.raw")
        done = self.submit(copy_job("done", "qemu-nbd", f"{VOLUMES}/src/c.raw", f"{VOLUMES}/c.img", "4M"))
        self.c.run(["repvisorctl", "wait", done])
        self.submit(SLEEPER)
        self.running("sleeper")

        self.c.run(["apt-get", "remove", "-y", "repvisor"], env={"DEBIAN_FRONTEND": "noninteractive"})
        self.assertEqual(self.c.run(["dpkg-query", "-W", "-f", "${Status}", "repvisor"]).stdout,
                         "deinstall ok config-files")
        # The daemon stopped its job on the way out; nothing of either is left running.
        self.assertEqual(self.c.run(["pgrep", "-a", "-x", "sleep|repvisord|qemu-nbd"], check=False).stdout, "")
        self.assertEqual(self.service_cgroup_processes(), [])
        self.assertEqual(self.c.run(["losetup", "-j", f"{VOLUMES}/c.img"]).stdout, "")
        # The state stays: the database, the logs, the volumes, the configuration.
        for kept in ("/var/lib/repvisor/repvisor.db", f"{VOLUMES}/c.img", "/etc/repvisor/repvisord.toml"):
            self.c.run(["test", "-e", kept])
        self.c.run(["sh", "-c", "ls /var/lib/repvisor/logs/*.log"])

        self.c.run(["apt-get", "purge", "-y", "repvisor"], env={"DEBIAN_FRONTEND": "noninteractive"})
        self.assertEqual(self.c.run(["dpkg-query", "-W", "-f", "${Status}", "repvisor"], check=False).stdout.strip(),
                         "")
        for gone in ("/var/lib/repvisor", "/etc/repvisor", "/run/repvisor", "/usr/sbin/repvisord",
                     "/sys/fs/cgroup/system.slice/repvisord.service"):
            self.assertNotEqual(self.c.run(["test", "-e", gone], check=False).returncode, 0, f"{gone} left")
        # The group stays (Debian keeps system groups: files may still belong to it).
        self.c.run(["getent", "group", "repvisor"])
        self.assertEqual(self.c.show("repvisord", "LoadState"), "not-found")


if __name__ == "__main__":
    unittest.main()
