"""Boots one test system with the package installed and keeps it until Enter (or EOF): for looking
around by hand, as the tests see it. Prints the nsenter command that enters it."""
import sys

import harness


def main():
    tree = harness.ensure_tree()
    c = harness.Container("shell", tree, binds=[(f"{harness.DEBS}/current", "/debs/current"),
                                                (f"{harness.DEBS}/next", "/debs/next")])
    try:
        c.boot()
        c.run(["sh", "-c", "dpkg -i /debs/current/repvisor_*.deb"])
        print(f"nsenter -t {c.pid1} -a bash   # Enter here powers it off", flush=True)
        sys.stdin.readline()
    finally:
        c.teardown()


if __name__ == "__main__":
    main()
