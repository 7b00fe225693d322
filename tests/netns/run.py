#!/usr/bin/env python3
"""Runs one netns test module for ctest: `run.py test_registration [--deadline S]`.

The tier builds network namespaces, so it needs root; without root it says
so and exits 0 (CI runs as root, so there it always runs)."""

import argparse
import os
import signal
import sys
import unittest
from pathlib import Path


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("module")
    p.add_argument("--deadline", type=int, default=0,
                   help="seconds; then tear the labs down and fail (set below ctest's TIMEOUT, whose kill is SIGKILL)")
    a = p.parse_args()
    if os.geteuid() != 0:
        print(f"{a.module}: skipped: needs root (the netns tier makes network namespaces)")
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import netns_lab  # noqa: F401  (installs the teardown on SIGTERM and SIGALRM)
    if a.deadline:
        signal.alarm(a.deadline)
    suite = unittest.defaultTestLoader.loadTestsFromName(a.module)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if result.wasSuccessful() and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
