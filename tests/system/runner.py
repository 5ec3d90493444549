"""Runs the system tests (every test_*.py here, or the names given) and closes with
"system tests: N passed, N failed, N skipped"; exit 1 when one failed or none ran."""

import sys
import time
import unittest

import harness


class Result(unittest.TextTestResult):
    def startTest(self, test):
        self._started = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        self.stream.write(f"    ({time.monotonic() - self._started:.1f} s)\n")
        self.stream.flush()


def main():
    harness.sweep_stale_cgroups()
    loader = unittest.TestLoader()
    names = sys.argv[1:]
    suite = loader.loadTestsFromNames(names) if names else loader.discover(".", pattern="test_*.py")
    started = time.monotonic()
    result = unittest.TextTestRunner(resultclass=Result, verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print(f"system tests took {time.monotonic() - started:.0f} s")
    print(f"system tests: {passed} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed or passed == 0 else 0)


if __name__ == "__main__":
    main()
