"""The daemon's real work under the unit's sandbox: copies with repvisor-copy from NBD servers the
daemon starts (qemu-nbd serving qcow2, nbdkit serving raw) into loop volumes, a stop mid-copy, the
resume and the verification, every cleanup step; the jobs' cgroups in the delegated subtree; the
journal's fields."""

import json
import re
import unittest

import harness

VOLUMES = "/var/lib/repvisor/volumes"

# The daemon finds nbdkit on its PATH, /usr/local/bin first: this one is the real nbdkit with a
# delay filter, so that a copy lasts long enough to be stopped in the middle. The delay is read
# from a file the test changes before the resume.
SLOW_NBDKIT = """#!/bin/sh
exec /usr/bin/nbdkit --filter=delay "$@" delay-read="$(cat /etc/repvisor-test-delay)"
"""


def copy_job(name, server, source, target, size, fmt="raw", extra=()):
    argv = ["repvisor-copy", "{nbd.source}", "{volume.target}", "--verify", *extra]
    return f"""name = "{name}"
argv = {json.dumps(argv)}
stop_timeout = "30s"

[[resources]]
kind = "nbd-server"
name = "source"
path = "{source}"
format = "{fmt}"
server = "{server}"

[[resources]]
kind = "loop"
name = "target"
path = "{target}"
size = "{size}"
on_stop = "keep"
"""


class Jobs(harness.SystemTest):
    def setUp(self):
        super().setUp()
        self.start_daemon()
        self.c.sh(f"""mkdir -p {VOLUMES}/src
            head -c 24M /dev/urandom > {VOLUMES}/src/a.raw
            qemu-img convert -f raw -O qcow2 {VOLUMES}/src/a.raw {VOLUMES}/src/a.qcow2
            head -c 16M /dev/urandom > {VOLUMES}/src/b.raw""")

    def unified_cgroup(self, pid):
        """The process's cgroup v2 line (the host's v1 controllers are listed too: see the docs)."""
        lines = self.c.read(f"/proc/{pid}/cgroup").splitlines()
        return next(line for line in lines if line.startswith("0::"))

    def events(self, job):
        return json.loads(self.c.run(["repvisorctl", "--json", "events", job]).stdout)

    def assert_cleaned_up(self, job, servers):
        """Every cleanup step succeeded, in the audit trail and in the system."""
        events = self.events(job)
        types = [e["type"] for e in events]
        text = "\n".join(f'{e["type"]}: {e["message"]}' for e in events)
        for bad in ("cleanup-failed", "resource-failed"):
            self.assertNotIn(bad, types, text)
        last_run = text[text.rfind("resource-created") if "resource-created" in text else 0:]
        self.assertIn("resource-stopped", last_run, text)
        self.assertIn("resource-detached", last_run, text)
        self.assertIn("cleanup: resources released", text)
        status = self.job(job)
        self.assertEqual(status["cleanup_state"], "done", status)
        # No server left, no loop device on the volume, no job cgroup.
        procs = self.c.run(["pgrep", "-a", "-x", "|".join(servers)], check=False).stdout
        self.assertEqual(procs, "", "NBD servers left running")
        target = next(r for r in status["resource_details"] if r["kind"] == "loop")
        self.assertEqual(self.c.run(["losetup", "-j", target["path"]]).stdout, "", "loop device left attached")
        return status

    def test_copy_from_qemu_nbd_and_nbdkit_stopped_resumed_verified(self):
        # qcow2 served by qemu-nbd, copied into a loop volume and verified, start to end.
        job = self.submit(copy_job("qcow", "qemu-nbd", f"{VOLUMES}/src/a.qcow2", f"{VOLUMES}/qcow.img", "24M",
                                   fmt="qcow2"))
        self.c.run(["repvisorctl", "wait", job], timeout=120)
        status = self.assert_cleaned_up(job, ["qemu-nbd"])
        self.assertEqual((status["state"], status["exit_code"]), ("completed", 0), status)
        self.c.run(["cmp", f"{VOLUMES}/src/a.raw", f"{VOLUMES}/qcow.img"])

        # raw served by nbdkit (slowed), stopped in the middle of the copy.
        self.c.write("/usr/local/bin/nbdkit", SLOW_NBDKIT, mode="0755")
        self.c.write("/etc/repvisor-test-delay", "200ms\n")
        spec = copy_job("raw", "nbdkit", f"{VOLUMES}/src/b.raw", f"{VOLUMES}/raw.img", "16M",
                        extra=["--chunk-size", "1M", "--connections", "1", "--requests", "1",
                               "--checkpoint-interval", "100"])
        job = self.submit(spec)
        running = self.watch_job(job, lambda j: j.get("checkpoint"), "a first checkpoint")
        self.assertEqual(running["state"], "running", running)
        # The teardown's leftover check sees the container's loop devices from the host.
        device = next(r["device"] for r in self.job(job)["resource_details"] if r["kind"] == "loop")
        self.assertEqual(self.c.own_loop_devices(), [device])
        self.c.run(["repvisorctl", "stop", job, "--reason", "maintenance", "--notes", "system test"], timeout=60)
        status = self.assert_cleaned_up(job, ["nbdkit"])
        self.assertEqual(status["state"], "cancelled", status)
        self.assertEqual(status["exit_code"], 75, "repvisor-copy stopped cleanly on SIGTERM")
        self.assertEqual(status["cancel_reason"], "maintenance")
        m = re.fullmatch(r"repvisor-copy/1 done=(\d+) size=(\d+)", status["checkpoint"])
        self.assertIsNotNone(m, status["checkpoint"])
        done, size = int(m.group(1)), int(m.group(2))
        self.assertTrue(0 < done < size == 16 << 20, f"stopped mid-copy: {done} of {size}")
        volume = next(r for r in status["resource_details"] if r["kind"] == "loop")
        self.assertEqual(volume["state"], "kept", volume)

        # Resumed from the checkpoint on the kept volume, at full speed: completes and verifies.
        self.c.write("/etc/repvisor-test-delay", "0\n")
        self.c.run(["repvisorctl", "resume", job])
        self.c.run(["repvisorctl", "wait", job], timeout=120)
        status = self.assert_cleaned_up(job, ["nbdkit"])
        self.assertEqual((status["state"], status["exit_code"], status["runs"]), ("completed", 0, 2), status)
        resumed = [e for e in self.events(job) if e["type"] == "resumed"]
        self.assertEqual(len(resumed), 1)
        self.assertIn(f"done={done}", json.dumps(resumed[0]))
        self.c.run(["cmp", f"{VOLUMES}/src/b.raw", f"{VOLUMES}/raw.img"])
        log = self.c.run(["repvisorctl", "logs", job]).stdout
        self.assertNotIn("error", log.lower(), log)

    def test_jobs_run_in_the_delegated_subtree_and_journal_has_their_fields(self):
        job = self.submit('name = "sleeper"\nargv = ["sh", "-c", "echo started; exec sleep 1000"]\n')
        status = self.watch_job(job, lambda j: j.get("state") == "running" and j.get("main_pid"), "running")
        pid = status["main_pid"]

        # The job's cgroup is below the service's own, which systemd delegated to it.
        cgroup = self.unified_cgroup(pid)
        self.assertRegex(cgroup, r"^0::/system\.slice/repvisord\.service/.+")
        self.assertEqual(self.c.show("repvisord", "Delegate"), "yes")
        cgls = self.c.run(["systemd-cgls", "--no-pager", "-u", "repvisord.service"]).stdout
        job_cgroup = cgroup.split("/")[-1]
        self.assertIn(job_cgroup, cgls)
        self.assertRegex(cgls, rf"{job_cgroup}[\s\S]*{pid} sleep 1000")
        # The daemon itself is not in the job's cgroup, nor the job in the daemon's.
        daemon_cg = self.unified_cgroup(self.c.show("repvisord", "MainPID"))
        self.assertNotEqual(daemon_cg, cgroup)
        self.assertTrue(daemon_cg.startswith("0::/system.slice/repvisord.service"), daemon_cg)

        self.c.run(["repvisorctl", "stop", job])
        # Gone from the tree once stopped.
        self.assertNotIn(job_cgroup, self.c.run(["systemd-cgls", "--no-pager", "-u", "repvisord.service"]).stdout)

        # Journald: the job's story by its id, with the event type as a field of its own.
        out = self.c.run(["journalctl", "-u", "repvisord", f"REPVISOR_JOB_ID={job}", "-o", "json", "--no-pager"]).stdout
        entries = [json.loads(line) for line in out.splitlines()]
        self.assertTrue(entries, "journalctl REPVISOR_JOB_ID= found nothing")
        events = [e["REPVISOR_EVENT"] for e in entries]
        # Every one of the job's audit events, its submission included, in the trail's order.
        for expected in ("submitted", "started", "stop-requested", "signal", "exited", "cleanup", "cancelled"):
            self.assertIn(expected, events, events)
        self.assertEqual(events, [e["type"] for e in self.events(job)])
        submitted = entries[events.index("submitted")]
        self.assertEqual(submitted["MESSAGE"], f"job {job} sleeper: submitted: sh submitted by uid 0")
        self.assertEqual((submitted["PRIORITY"], submitted["SYSLOG_IDENTIFIER"]), ("6", "repvisord"))
        self.assertTrue(all(e["REPVISOR_JOB_ID"] == job for e in entries))
        self.assertTrue(all(e["_SYSTEMD_UNIT"] == "repvisord.service" for e in entries))
        # The job's own output is its log file (docs/design.md, Job logs), not the journal.
        self.assertEqual(self.c.run(["repvisorctl", "logs", job]).stdout, "started\n")
        self.assertEqual(self.c.read(status["log_path"]), "started\n")
        self.assertTrue(status["log_path"].startswith("/var/lib/repvisor/logs/"), status["log_path"])
        everything = self.c.run(["journalctl", "--no-pager", "-o", "cat"]).stdout
        self.assertNotIn("started\n", [line + "\n" for line in everything.splitlines()])


if __name__ == "__main__":
    unittest.main()
