"""The system bus with real users, through the real dbus-daemon and the shipped policy: the
package's sysusers.d makes the repvisor group; its members may stop and delete (repvisorctl and
busctl), everyone else may only read, root submits."""

import json
import unittest

import harness

MANAGER = ["org.repvisor1", "/org/repvisor1", "org.repvisor1.Manager"]


class Bus(harness.SystemTest):
    def setUp(self):
        super().setUp()
        self.start_daemon()
        self.c.run(["useradd", "--create-home", "--groups", "repvisor", "admin"])
        self.c.run(["useradd", "--create-home", "plain"])

    def busctl(self, user, method, signature, *args, check=True):
        return self.c.unit(["busctl", "--system", "--json=short", "call", *MANAGER, method, signature, *args],
                           user=user, check=check)

    def test_group_members_stop_and_delete_others_read_root_submits(self):
        group = self.c.run(["getent", "group", "repvisor"]).stdout.strip().split(":")
        self.assertLess(int(group[2]), 1000, f"a system group: {group}")
        self.assertIn("repvisor", self.c.run(["id", "-nG", "admin"]).stdout.split())
        # The private socket is the group's; the bus is everyone's.
        self.assertEqual(self.c.run(["stat", "-c", "%a %U:%G", "/run/repvisor/private"]).stdout.strip(),
                         "660 root:repvisor")

        # Root submits, over the system bus, with repvisorctl and with busctl.
        self.c.run(["repvisorctl", "--system", "submit", "--name", "one", "--", "sleep", "1000"])
        self.c.run(["busctl", "--system", "call", *MANAGER, "Submit", "a{sv}", "2", "name", "s", "two", "argv", "as",
                    "2", "sleep", "1000"])
        self.c.run(["repvisorctl", "--system", "submit", "--name", "three", "--", "sleep", "1000"])

        # A plain user reads: the list, a job's properties, the events.
        listed = json.loads(self.c.unit(["repvisorctl", "--system", "--json", "list"], user="plain").stdout)
        self.assertEqual(sorted(j["name"] for j in listed), ["one", "three", "two"])
        self.c.unit(["busctl", "--system", "get-property", "org.repvisor1", "/org/repvisor1", "org.repvisor1.Manager",
                     "JobsActive"], user="plain")
        self.c.unit(["repvisorctl", "status", "one"], user="plain")  # the private socket is not open to it: the bus
        # ... and may do nothing else.
        p = self.c.unit(["repvisorctl", "--system", "stop", "one"], user="plain", check=False)
        self.assertEqual(p.returncode, 5, p.stdout + p.stderr)
        self.assertIn("may not stop jobs", p.stdout + p.stderr)
        # (busctl prints every AccessDenied as "Access denied"; the daemon's reason is in the audit.)
        p = self.busctl("plain", "StopJob", "sa{sv}", "one", "0", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Access denied", p.stderr)
        p = self.c.unit(["repvisorctl", "--system", "delete", "one", "--force", "--yes"], user="plain", check=False)
        self.assertEqual(p.returncode, 5, p.stdout + p.stderr)
        p = self.busctl("plain", "Submit", "a{sv}", "1", "argv", "as", "1", "true", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Access denied", p.stderr)

        # A member of the group stops and deletes, with repvisorctl (on the bus and on the private
        # socket) and with busctl.
        self.c.unit(["repvisorctl", "--system", "stop", "one", "--reason", "by-admin"], user="admin")
        self.busctl("admin", "StopJob", "sa{sv}", "two", "2", "reason", "s", "by-busctl", "wait", "b", "true")
        self.c.unit(["repvisorctl", "stop", "three"], user="admin")  # the private socket, 0660 root:repvisor
        for name, reason in (("one", "by-admin"), ("two", "by-busctl"), ("three", "user_request")):
            job = json.loads(self.c.run(["repvisorctl", "--json", "status", name]).stdout)
            self.assertEqual((job["state"], job["cancel_reason"]), ("cancelled", reason), job)
            self.assertEqual(job["requested_by_uid"], int(self.c.run(["id", "-u", "admin"]).stdout))
        self.c.unit(["repvisorctl", "--system", "delete", "one", "--yes"], user="admin")
        self.busctl("admin", "DeleteJob", "sa{sv}", "two", "0")
        # But it may not run a command of its own: that runs as root.
        p = self.c.unit(["repvisorctl", "--system", "submit", "--", "id"], user="admin", check=False)
        self.assertEqual(p.returncode, 5, p.stdout + p.stderr)

        left = json.loads(self.c.run(["repvisorctl", "--json", "list"]).stdout)
        self.assertEqual([j["name"] for j in left], ["three"])
        # Every denial is in the audit trail with the caller's uid.
        plain_uid = int(self.c.run(["id", "-u", "plain"]).stdout)
        events = json.loads(self.c.run(["repvisorctl", "--json", "events"]).stdout)
        denied = [e["message"] for e in events if e["details"].get("uid") == plain_uid and e["type"] == "access-denied"]
        self.assertEqual(len(denied), 4, json.dumps(events, indent=1)[-3000:])
        self.assertEqual(sum("may not stop jobs" in m for m in denied), 2, denied)
        self.assertEqual(sum("may not submit" in m for m in denied), 1, denied)


if __name__ == "__main__":
    unittest.main()
