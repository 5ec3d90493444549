"""The console for real: cockpit-repvisor installed with Cockpit in the system, cockpit.socket
started, users with passwords logging in through Cockpit's login page and PAM in headless
Chromium (run in the container's network namespace, on its loopback), a member of the repvisor
group stopping a job with a reason, a plain user finding the actions disabled."""

import json
import os
import shutil
import subprocess
import unittest

import harness

SCRIPT = os.path.join(os.path.dirname(__file__), "console_login.mjs")
SHOTS = os.path.join(harness.WORK, "screenshots")


def missing():
    """Why the console test cannot run here, or None."""
    if "cockpit-repvisor" not in harness.debs():
        return "no cockpit-repvisor package was built (node and console/node_modules: tools/deps.sh)"
    if not shutil.which("node"):
        return "no node"
    if not os.path.exists("/usr/bin/chromium"):
        return "no /usr/bin/chromium (tools/deps.sh installs it)"
    if not os.path.isdir(os.path.join(harness.ROOT, "console", "node_modules", "puppeteer-core")):
        return "no puppeteer-core in console/node_modules (tools/deps.sh installs it)"
    return None


class Console(harness.SystemTest):
    install = ("repvisor", "cockpit-repvisor")

    def setUp(self):
        why = missing()
        if why:
            self.skipTest(f"the console login test needs the cockpit-repvisor package: {why}")
        super().setUp()

    def browser(self, *args):
        """console_login.mjs in the container's network namespace (its 127.0.0.1:9090)."""
        os.makedirs(SHOTS, exist_ok=True)
        p = subprocess.run(["nsenter", "-t", str(self.c.pid1), "-n", "node", SCRIPT, *args], capture_output=True,
                           text=True, timeout=180)
        if p.returncode != 0:
            raise harness.Failed(f"console_login.mjs {' '.join(args[:1])} failed:\n{p.stderr[-4000:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])

    def test_login_stop_with_a_reason_and_a_plain_user_read_only(self):
        self.c.run(["dpkg-query", "-W", "cockpit-repvisor"])
        self.c.run(["test", "-f", "/usr/share/cockpit/repvisor/manifest.json"])
        self.start_daemon()
        for user, groups in (("alice", ["--groups", "repvisor"]), ("bob", [])):
            self.c.run(["useradd", "--create-home", *groups, user])
            self.c.run(["chpasswd"], input=f"{user}:correct horse {user}\n")
        self.c.run(["systemctl", "start", "cockpit.socket"])
        self.c.run(["repvisorctl", "submit", "--name", "disk0", "--", "sleep", "1000"])
        self.c.run(["repvisorctl", "submit", "--name", "disk1", "--", "sleep", "1000"])

        # A member of the group stops a job from the Stop dialog with a reason.
        out = self.browser("stop", "alice", "correct horse alice", "disk0", "maintenance",
                           os.path.join(SHOTS, "console-stopped.png"))
        self.assertEqual(out["errors"], [])
        job = json.loads(self.c.run(["repvisorctl", "--json", "status", "disk0"]).stdout)
        alice = int(self.c.run(["id", "-u", "alice"]).stdout)
        self.assertEqual((job["state"], job["cancel_reason"], job["requested_by_uid"]),
                         ("cancelled", "maintenance", alice), job)
        self.assertEqual(job["cancel_notes"], "stopped from the console by alice")
        events = json.loads(self.c.run(["repvisorctl", "--json", "events", "disk0"]).stdout)
        stop = [e for e in events if e["type"] == "stop-requested"]
        self.assertEqual(len(stop), 1, events)
        # Through the page's bridge, as the user who logged in (a real PAM session).
        self.assertEqual((stop[0]["details"]["uid"], stop[0]["details"]["command"]), (alice, "cockpit-bridge"))
        self.assertIn("session opened for user alice",
                      self.c.run(["journalctl", "--no-pager", "-o", "cat", "SYSLOG_IDENTIFIER=cockpit-session"]).stdout)

        # A plain user sees the jobs with the actions disabled, the reason on hover; the job runs on.
        out = self.browser("read-only", "bob", "correct horse bob", "disk1", os.path.join(SHOTS, "console-read-only.png"))
        self.assertEqual(out["disabled"], {"stop": "true", "stop-delete": "true"}, out)
        self.assertIn("You may only read jobs", out["tooltip"])
        self.assertFalse(out["dialog"], "a disabled action opened its dialog")
        self.assertEqual(out["state"], "running")
        self.assertEqual(out["errors"], [])
        self.assertEqual(json.loads(self.c.run(["repvisorctl", "--json", "status", "disk1"]).stdout)["state"],
                         "running")


if __name__ == "__main__":
    unittest.main()
