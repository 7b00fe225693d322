#!/usr/bin/env python3
"""Prints one table of every benchmark result under a folder of Google
Benchmark JSON files, with the project's targets beside them, and writes
the same rows to summary.json there. Exit status is 0: benchmarks report,
they do not fail the build (wall-clock numbers vary by machine)."""
import json
import pathlib
import sys

# name -> (target in ns per iteration, where the target comes from)
TARGETS = {
    "BM_DecodeRegistrationMessage4": (2000.0, "issue 2: < 2 us"),
}


def main(folder):
    rows = []
    for path in sorted(pathlib.Path(folder).glob("*_bench.json")):
        data = json.loads(path.read_text())
        for b in data.get("benchmarks", []):
            if b.get("run_type") == "aggregate":
                continue
            unit = b.get("time_unit", "ns")
            scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[unit]
            ns = b["real_time"] * scale
            target = TARGETS.get(b["name"])
            rows.append({
                "suite": path.stem,
                "name": b["name"],
                "ns_per_op": ns,
                "target_ns": target[0] if target else None,
                "meets_target": (ns < target[0]) if target else None,
                "note": target[1] if target else "",
            })
    print()
    print(f"{'benchmark':44} {'time/op':>12} {'target':>10}  verdict")
    for r in rows:
        t = f"{r['target_ns']:.0f} ns" if r["target_ns"] else "-"
        v = "" if r["meets_target"] is None else ("meets" if r["meets_target"] else "MISSES")
        print(f"{r['name']:44} {r['ns_per_op']:>9.0f} ns {t:>10}  {v} {r['note']}")
    (pathlib.Path(folder) / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/bench")
