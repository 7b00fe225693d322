#!/usr/bin/env python3
"""Prints one table of every benchmark result under a folder of Google
Benchmark JSON files, with the project's targets beside them, then the
registration load results (registration.json, from
tests/bench/registration_bench.py) and the VM throughput comparison
(vm_throughput.json, from tests/bench/vm_throughput.py) against theirs, and
writes the same rows to summary.json there. Exit status is 0: benchmarks report, they do
not fail the build (wall-clock numbers vary by machine)."""
import json
import pathlib
import sys

# name -> (target in ns per iteration, where the target comes from)
TARGETS = {
    "BM_DecodeRegistrationMessage4": (2000.0, "issue 2: < 2 us"),
    "BM_Classify_IPv4_10000_entries": (100.0, "issue 5: < 100 ns a packet with 10,000 entries"),
    "BM_Classify_IPv6_10000_entries": (100.0, "issue 12: IPv6 as IPv4, < 100 ns with 10,000 entries"),
}

# name -> (benchmark, divided by benchmark, at most, where the target comes from)
RATIO_TARGETS = {
    "classify_10000_to_10_entries": ("BM_Classify_IPv4_10000_entries", "BM_Classify_IPv4_10_entries", 1.5,
                                     "issue 5: <= 1.5x the 10-entry cost"),
    "classify_ipv6_10000_to_10_entries": ("BM_Classify_IPv6_10000_entries", "BM_Classify_IPv6_10_entries", 1.5,
                                          "issue 12: IPv6 as IPv4, <= 1.5x the 10-entry cost"),
}

# registration.json metric -> (comparison, target, where the target comes from)
REGISTRATION_TARGETS = {
    "dh19_ratio_to_bound": (">=", 0.8, "issue 14: >= 80% of the raw-crypto rate"),
    "dh19_one_core_to_two_cores_ratio": (">=", 1.7, "issue 14: covey-ks on two cores >= 1.7x on one"),
    "ks_rss_mb_at_10000": ("<", 100.0, "issue gm-swarm: 10,000 members < 100 MB"),
    "rekey_unicast_first_push_to_last_ack_s": ("<", 2.0, "issue rekey: 10,000 members < 2 s"),
}

# vm_throughput.json: covey's TCP rate over the static XFRM tunnel's, same VM run.
VM_THROUGHPUT_TARGET = (">=", 0.9, "issue 5: covey >= 0.9x static XFRM SAs without BPF")


def vm_throughput_rows(folder):
    """(name, value, unit, target, meets, note) from vm_throughput.json; an error row when it measured nothing."""
    path = pathlib.Path(folder) / "vm_throughput.json"
    if not path.exists():
        return []
    d = json.loads(path.read_text())
    if d.get("error"):
        return [("vm_throughput", None, "", None, None, "NOT MEASURED: " + d["error"])]
    where = (f"median of {len(d['static']['mbit_s'])}, {d.get('mib')} MiB a run, {d.get('accel')}, "
             f"kernel {d.get('kernel')}")
    op, target, note = VM_THROUGHPUT_TARGET
    return [
        ("vm_static_xfrm_mbit_s", d["static"]["median_mbit_s"], "Mb/s", None, None, where),
        ("vm_covey_mbit_s", d["covey"]["median_mbit_s"], "Mb/s", None, None, where),
        ("vm_covey_to_static_ratio", d["ratio"], "", f"{op} {target:g}", d["ratio"] >= target,
         note + ("" if d.get("same_transform") else "; TRANSFORMS DIFFER")),
        ("vm_covey_to_static_median_pair_ratio", d.get("median_pair_ratio"), "", None, None,
         "each covey run over the static run before it"),
    ]


def registration_rows(folder):
    """(name, value, unit, note) from registration.json, targets applied."""
    path = pathlib.Path(folder) / "registration.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    out = []

    def add(name, value, unit, note=""):
        if value is not None:
            out.append((name, value, unit, note))

    for dh in ("19", "14"):
        r, b = data.get(f"dh{dh}", {}), data.get("bound", {}).get(dh, {})
        if not r:
            continue
        c = r.get("concurrency")
        add(f"dh{dh}_registrations_per_s", r.get("registrations_per_s"), "/s",
            f"{r.get('registered')} of {r.get('members')} members, {c} in flight")
        add(f"dh{dh}_raw_crypto_bound_per_s", b.get("registrations_per_s_2_cores"), "/s",
            f"2 cores; GM {b.get('gm_us', 0):.0f} us + KS {b.get('ks_us', 0):.0f} us")
        add(f"dh{dh}_ratio_to_bound", r.get("ratio_to_bound"), "")
        add(f"dh{dh}_ratio_uncontended", r.get("ratio_to_bound_uncontended"), "",
            "from CPU time: the rate with a core each and no other load")
        add(f"dh{dh}_latency_p50_ms", r.get("latency_ms", {}).get("p50"), "ms", f"{c} in flight")
        add(f"dh{dh}_latency_p99_ms", r.get("latency_ms", {}).get("p99"), "ms", f"{c} in flight")
        add(f"dh{dh}_ks_cpu_ms_per_registration", r.get("ks_cpu_ms_per_registration"), "ms")
    lat = data.get("latency", {}).get("latency_ms")
    if lat:
        add("dh19_latency_p50_ms_unloaded", lat.get("p50"), "ms", "one in flight")
        add("dh19_latency_p99_ms_unloaded", lat.get("p99"), "ms", "one in flight")
    r = data.get("dh19", {})
    if r.get("ks_rss_kb_per_1000") is not None:
        add("ks_rss_mb_per_1000_members", r["ks_rss_kb_per_1000"] / 1024, "MB")
    if r.get("registered") and r.get("ks_rss_kb_after"):
        # Scaled to exactly 10,000 when the run registered another number.
        base, per = r["ks_rss_kb_before"], (r["ks_rss_kb_after"] - r["ks_rss_kb_before"]) / r["registered"]
        add("ks_rss_mb_at_10000", (base + per * 10000) / 1024, "MB",
            f"measured with {r['registered']} members" + ("" if r["registered"] == 10000 else ", scaled"))
    k = data.get("rekey_unicast", {})
    if k:
        note = f"{k.get('members_acked')} of {k.get('members')} members acked, {k.get('ks_recorded_acks')} recorded by the KS"
        if k.get("members_acked") == k.get("members"):
            add("rekey_unicast_first_push_to_last_ack_s", k.get("first_push_to_last_ack_s"), "s", note)
        else:  # no time to compare: the rekey never reached everyone
            add("rekey_unicast_members_acked", k.get("members_acked"), "", note + ": INCOMPLETE, misses the target")
        add("rekey_unicast_push_bytes", k.get("push_bytes"), "B", "one datagram, the same for every member")
        add("rekey_unicast_bytes_per_member", k.get("bytes_per_member"), "B", "retransmissions included")
    out.extend(cores_rows(data))
    load = data.get("loadavg_1m_start")
    if load is not None:
        add("loadavg_1m_during_run", max(load, data.get("loadavg_1m_end", 0)), "", f"{data.get('cores')} cores")
    return out


def cores_rows(data):
    """registration.json's cores_dh19 section: covey-ks on one CPU, then two."""
    c = data.get("cores_dh19", {})
    if not c or c.get("ratio") is None:
        return []
    where = f"KS on CPUs {c.get('ks_cpus_one')} then {c.get('ks_cpus_two')}, gm-swarm {c.get('swarm_cpus')}"
    bound = c.get("bound_ratio")
    return [
        ("dh19_one_core_registrations_per_s", c["one"]["registrations_per_s"], "/s", where),
        ("dh19_two_cores_registrations_per_s", c["two"]["registrations_per_s"], "/s", where),
        ("dh19_one_core_to_two_cores_ratio", c["ratio"], "", where),
    ] + ([("dh19_one_core_to_two_cores_bound", bound, "", "what the raw crypto allows with this pinning")]
         if bound else []) + ([("dh19_ks_alone_two_to_one_core_ratio", c["ks_alone_two_to_one_core_ratio"], "",
                                f"from covey-ks's CPU: loop {c['ks_loop_ms_per_registration']:.3f} ms + workers "
                                f"{c['ks_workers_ms_per_registration']:.3f} ms per registration")]
                              if c.get("ks_alone_two_to_one_core_ratio") else [])


def coop_rows(folder):
    """(name, value, unit, note) from coop.json (tests/bench/coop_bench.py); no targets."""
    path = pathlib.Path(folder) / "coop.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    out = []

    def add(name, value, unit, note=""):
        if value is not None:
            out.append((name, value, unit, note))

    f = data.get("failover", {})
    if f:
        note = f"{f.get('members')} members, lease_ttl {f.get('lease_ttl_s')} s, {f.get('old_primary')} -> {f.get('new_primary')}"
        add("coop_kill_to_new_primary_s", f.get("kill_to_new_primary_s"), "s", note)
        add("coop_kill_to_first_push_of_new_primary_s", f.get("kill_to_first_push_of_new_primary_s"), "s", note)
        add("coop_kill_to_last_ack_s", f.get("kill_to_last_ack_recorded_by_new_primary_s"), "s",
            f"all {f.get('acks_recorded_by_new_primary')} acks recorded by the new primary")
    for label, r in data.get("registration", {}).items():
        where = f"{r.get('registered')} of {r.get('members')} members, {r.get('key_servers')} KS" + \
            (" + etcd" if r.get("etcd") else ", state file")
        add(f"coop_{label}_registrations_per_s", r.get("registrations_per_s"), "/s", where)
        for ks, ms in (r.get("ks_cpu_ms_per_registration") or {}).items():
            add(f"coop_{label}_{ks}_cpu_ms_per_registration", ms, "ms")
        e = r.get("etcd_per_registration")
        if e:
            add(f"coop_{label}_etcd_puts_per_registration", e.get("puts"), "",
                f"txns {e.get('txns', 0):.3f}; idle puts over the run {r['etcd_idle_over_run'].get('puts', 0):.0f}")
            add(f"coop_{label}_etcd_bytes_written_per_registration", e.get("put_bytes"), "B", "values put")
            add(f"coop_{label}_etcd_client_bytes_per_registration", e.get("client_bytes_in"), "B", "gRPC bytes in")
            add(f"coop_{label}_etcd_cpu_ms_per_registration", r.get("etcd_cpu_ms_per_registration"), "ms",
                "three members")
    return out


def verdict(name, value):
    t = REGISTRATION_TARGETS.get(name)
    if not t:
        return None, None, ""
    op, target, note = t
    meets = value >= target if op == ">=" else value < target
    return f"{op} {target:g}", meets, note


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
            # "BM_X/iterations:3/manual_time" has the target of "BM_X".
            target = TARGETS.get(b["name"]) or TARGETS.get(b["name"].split("/")[0])
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
    ns_by_name = {r["name"].split("/")[0]: r["ns_per_op"] for r in rows}
    for name, (top, bottom, limit, note) in RATIO_TARGETS.items():
        if top in ns_by_name and bottom in ns_by_name:
            ratio = ns_by_name[top] / ns_by_name[bottom]
            meets = ratio <= limit
            print(f"{name:44} {ratio:>12.2f} {'<= ' + format(limit, 'g'):>10}  {'meets' if meets else 'MISSES'} {note}")
            rows.append({"suite": "ratio", "name": name, "value": ratio, "target": f"<= {limit:g}",
                         "meets_target": meets, "note": note})
    reg = registration_rows(folder)
    if reg:
        print()
        print("registration: tools/gm-swarm against covey-ks (tests/bench/registration_bench.py)")
        print(f"{'metric':44} {'value':>12} {'target':>10}  verdict")
    for name, value, unit, note in reg:
        target, meets, target_note = verdict(name, value)
        v = "" if meets is None else ("meets" if meets else "MISSES")
        shown = f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
        print(f"{name:44} {shown:>9} {unit:<2} {target or '-':>10}  {v} {target_note or note}")
        rows.append({
            "suite": "registration",
            "name": name,
            "value": value,
            "unit": unit,
            "target": target,
            "meets_target": meets,
            "note": target_note or note,
        })
    coop = coop_rows(folder)
    if coop:
        print()
        print("cooperative key servers on etcd (tests/bench/coop_bench.py; measured, no targets)")
        print(f"{'metric':56} {'value':>10}  note")
    for name, value, unit, note in coop:
        shown = f"{value:.3f}" if abs(value) < 10 else f"{value:.0f}"
        print(f"{name:56} {shown:>7} {unit:<2}  {note}")
        rows.append({"suite": "coop", "name": name, "value": value, "unit": unit, "target": None,
                     "meets_target": None, "note": note})
    vm = vm_throughput_rows(folder)
    if vm:
        print()
        print("VM throughput: TCP h3 -> h4, covey's data path against static XFRM SAs (tests/bench/vm_throughput.py)")
        print(f"{'metric':44} {'value':>12} {'target':>10}  verdict")
    for name, value, unit, target, meets, note in vm:
        v = "" if meets is None else ("met" if meets else "NOT met")
        shown = "-" if value is None else f"{value:.2f}"
        print(f"{name:44} {shown:>9} {unit:<4} {target or '-':>8}  {v} {note}")
        rows.append({"suite": "vm_throughput", "name": name, "value": value, "unit": unit, "target": target,
                     "meets_target": meets, "note": note})
    (pathlib.Path(folder) / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/bench")
