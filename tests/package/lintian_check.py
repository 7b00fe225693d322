#!/usr/bin/env python3
"""package.lintian: lintian on the .deb `make deb` made reports no error and
no warning; what debian/covey.lintian-overrides silences is shown, and every
override there carries a comment saying why."""
import argparse
import re
import subprocess
import sys
from pathlib import Path


def overrides_without_reason(path: Path) -> list:
    """A comment covers the override lines after it, up to a blank line."""
    bare, reason = [], False
    for line in path.read_text().splitlines():
        if line.startswith("#") and line.strip("# "):
            reason = True
        elif not line.strip():
            reason = False
        elif not reason:
            bare.append(line)
    return bare


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, type=Path)
    ap.add_argument("--source", required=True, type=Path)
    a = ap.parse_args()
    debs = sorted((a.build / "deb").glob("covey_*.deb"))
    if not debs:
        print(f"package.lintian: no {a.build}/deb/covey_*.deb: run make deb (make test does)")
        return 1
    out = subprocess.run(["lintian", "--show-overrides", "--display-info", "--tag-display-limit", "0", str(debs[0])],
                         capture_output=True, text=True)
    hints = [m.groups() for m in re.finditer(r"^([EWIPXO]): covey[^:]*: (\S+)(.*)$", out.stdout, re.M)]
    counts = {}
    for kind, _, _ in hints:
        counts[kind] = counts.get(kind, 0) + 1
    bad = [h for h in hints if h[0] in "EW"]
    print(f"package.lintian: {debs[0].name}: {counts.get('E', 0)} errors, {counts.get('W', 0)} warnings, "
          f"{counts.get('O', 0)} overridden, {counts.get('I', 0)} info")
    for kind, tag, rest in hints:
        if kind in "EWO":
            print(f"  {kind}: {tag}{rest}")
    if out.returncode not in (0, 1) or (out.returncode == 1 and not bad):
        print(f"package.lintian: lintian failed (exit {out.returncode}): {out.stderr.strip()}")
        return 1
    overrides = a.source / "debian/covey.lintian-overrides"
    bare = overrides_without_reason(overrides) if overrides.exists() else []
    for line in bare:
        print(f"package.lintian: override without a reason (a # comment above it): {line}")
    return 1 if bad or bare else 0


if __name__ == "__main__":
    sys.exit(main())
