#!/usr/bin/env python3
"""The one table `make bench` prints: every figure the benchmarks under a
folder measured (Google Benchmark JSON files, registration.json from
tests/bench/registration_bench.py, coop.json from tests/bench/coop_bench.py,
vm_throughput.json from tests/bench/vm_throughput.py), each beside its
target and, where the target is relative, the peer or bound it was
compared with in the same run. The rows go to summary.json there too.

    bench-report.py [FOLDER] [--architecture docs/ARCHITECTURE.md]

--architecture rewrites the generated part of ARCHITECTURE's performance
section (between its `bench-report` markers) from the summary.json the last
run wrote, so the document's figures are a run's, never copied by hand.

Exit status is 0 whatever the figures: benchmarks report, they do not fail
the build (wall-clock numbers vary by machine and load)."""
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys

# row name -> (comparison, target, where the target comes from). Google
# Benchmark rows are named as the benchmark (its "/..." arguments dropped)
# and measured in ns per iteration.
TARGETS = {
    "BM_DecodeRegistrationMessage4": ("<", 2000.0, "issue 2: < 2 us"),
    "BM_Classify_IPv4_10000_entries": ("<", 100.0, "issue 5: < 100 ns a packet with 10,000 entries"),
    "BM_Classify_IPv6_10000_entries": ("<", 100.0, "issue 12: IPv6 as IPv4, < 100 ns with 10,000 entries"),
    "classify_10000_to_10_entries": ("<=", 1.5, "issue 5: <= 1.5x the 10-entry cost"),
    "classify_ipv6_10000_to_10_entries": ("<=", 1.5, "issue 12: IPv6 as IPv4, <= 1.5x the 10-entry cost"),
    "dh19_ratio_to_bound": (">=", 0.8, "issue 14: >= 80% of the raw-crypto rate"),
    "dh19_one_core_to_two_cores_ratio": (">=", 1.7, "issue 14: covey-ks on two cores >= 1.7x on one"),
    "ks_rss_mb_at_10000": ("<", 100.0, "issue gm-swarm: 10,000 members < 100 MB"),
    "rekey_unicast_first_push_to_last_ack_s": ("<", 2.0, "issue rekey: 10,000 members < 2 s"),
    "vm_covey_to_static_ratio": (">=", 0.9, "issue 5: covey >= 0.9x static XFRM SAs without BPF"),
    "state_save_100000_ms": ("<", 50.0, "issue 14: the lazy save at 100,000 members"),
    "state_restore_100000_ms": ("<", 2000.0, "issue 14: the store's part of a restart < 2 s"),
    "state_save_cpu_per_registration_100000_to_10000": ("<=", 1.5,
                                                        "issue 14: save CPU per registration must not grow"),
    "ks_members_100000_s": ("<", 1.0, "issue 14: coveyctl ks members, 100,000 members, < 1 s"),
    "ks_members_100000_json_s": ("<", 1.0, "issue 14: < 1 s"),
    "ks_members_100000_prefix_s": ("<", 1.0, "issue 14: < 1 s"),
    "ks_members_100000_since_s": ("<", 1.0, "issue 14: < 1 s"),
    "ks_members_100000_count_s": ("<", 1.0, "issue 14: < 1 s"),
    "ks_members_100000_max_piece_ms": ("<", 50.0, "covey's own: the loop is never held longer by a listing"),
    "classify_ipv4_10000_net_ns": ("<", 50.0, "issue 14: < 50 ns net of the test run"),
    "classify_ipv6_10000_net_ns": ("<", 50.0, "issue 14: < 50 ns net of the test run"),
    "classify_ipv4_10000_to_10_net_ratio": ("<=", 1.3, "issue 14: <= 1.3x the 10-entry cost, net"),
    "classify_ipv6_10000_to_10_net_ratio": ("<=", 1.3, "issue 14: <= 1.3x the 10-entry cost, net"),
    "ks_rss_mb_at_100000": ("<", 300.0, "issue 14: 100,000 members < 300 MB"),
    "rekey_unicast_100000_first_push_to_last_ack_s": ("<", 3.0, "issue 14: 100,000 members < 3 s"),
    # A covey-gm member gives an attempt up after 2 s x 4 retransmissions
    # unanswered (gm/registrar.h): half of that, arrival to keys, leaves
    # every message of the exchange room for a retransmission.
    "registration_storm_100000_p99_ms": ("<", 5000.0, "issue 14: bounded; half a member's 10 s give-up time"),
    "ks_restore_100000_s": ("<", 2.0, "issue 14: restore and serve 100,000 members < 2 s"),
}

# ratio row -> (benchmark, divided by benchmark): Google Benchmark rows of the same run.
RATIOS = {
    "classify_10000_to_10_entries": ("BM_Classify_IPv4_10000_entries", "BM_Classify_IPv4_10_entries"),
    "classify_ipv6_10000_to_10_entries": ("BM_Classify_IPv6_10000_entries", "BM_Classify_IPv6_10_entries"),
}


def row(suite, name, value, unit="", peer="", note=""):
    return {"suite": suite, "name": name, "value": value, "unit": unit, "peer": peer, "note": note}


def adder(out, suite):
    """add(name, value, unit, note="", peer=""): a row of SUITE appended to OUT, unless value is None."""
    def add(name, value, unit, note="", peer=""):
        if value is not None:
            out.append(row(suite, name, value, unit, peer, note))
    return add


def load(folder, name):
    path = pathlib.Path(folder) / name
    return json.loads(path.read_text()) if path.exists() else None


# Google Benchmark files read by a function of their own (repetitions, counters).
OWN_ROWS = {"state_store_bench", "ks_members_bench"}


def gbench_rows(folder):
    """Every Google Benchmark result (ns per iteration), then the ratios between them."""
    out = []
    for path in sorted(pathlib.Path(folder).glob("*_bench.json")):
        if path.stem in OWN_ROWS:
            continue
        for b in json.loads(path.read_text()).get("benchmarks", []):
            if b.get("run_type") == "aggregate":
                continue
            scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[b.get("time_unit", "ns")]
            # "BM_X/19/iterations:3/manual_time" is the row of "BM_X/19": its
            # arguments name it, the runner's settings do not.
            name = "/".join(p for p in b["name"].split("/") if ":" not in p and p not in ("manual_time", "real_time"))
            out.append(row(path.stem, name, b["real_time"] * scale, "ns"))
    ns = {r["name"]: r["value"] for r in out}
    for name, (top, bottom) in RATIOS.items():
        if top in ns and bottom in ns:
            out.append(row("ratio", name, ns[top] / ns[bottom], "", f"{bottom} {ns[bottom]:.0f} ns"))
    return out


def classify_net_rows(folder):
    """classify_bench's rows net of BPF_PROG_TEST_RUN: each iteration ran an empty
    program of the same type on the same frame beside the real one (empty_ns, net_ns)."""
    data = load(folder, "classify_bench.json")
    if not data:
        return []
    bench = {b["name"].split("/")[0]: b for b in data.get("benchmarks", []) if b.get("run_type") != "aggregate"}
    out = []
    for family in (4, 6):
        net = {}
        for entries in (10, 1000, 10000):
            b = bench.get(f"BM_Classify_IPv{family}_{entries}_entries")
            if b and "net_ns" in b:
                net[entries] = b["net_ns"]
        if 10000 not in net:
            continue
        empty = bench[f"BM_Classify_IPv{family}_10000_entries"]["empty_ns"]
        out.append(row("classify_net", f"classify_ipv{family}_empty_program_ns", empty, "ns", "",
                       "BPF_PROG_TEST_RUN of a program that returns at once, same frame (median)"))
        for entries, value in net.items():
            out.append(row("classify_net", f"classify_ipv{family}_{entries}_net_ns", value, "ns",
                           f"empty program {empty:.0f} ns", "median of runs minus the empty program's median"))
        if 10 in net and net[10] > 0:
            out.append(row("classify_net", f"classify_ipv{family}_10000_to_10_net_ratio", net[10000] / net[10], "",
                           f"10 entries {net[10]:.0f} ns net"))
    return out


def state_store_rows(folder):
    """The state file at 100,000 members (state_store_bench; repeated benchmarks by their median)."""
    data = load(folder, "state_store_bench.json")
    if not data:
        return []
    runs = {}
    for b in data.get("benchmarks", []):
        name = b.get("run_name", b["name"]).split("/iterations")[0].split("/real_time")[0]
        if (b.get("run_type") != "aggregate" and not b.get("repetitions", 1) > 1) or b.get("aggregate_name") == "median":
            runs[name] = b
    out = []

    def ms(b):
        return b["real_time"] * {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b.get("time_unit", "ns")]

    lazy = runs.get("BM_StateSavePerRegistration/100000")
    if lazy:
        out.append(row("state", "state_save_100000_ms", ms(lazy), "ms", "",
                       "a lazy save: 1,000 registrations' journal record, fdatasync"))
    full = runs.get("BM_StateSave/100000")
    if full:
        out.append(row("state", "state_snapshot_100000_ms", ms(full), "ms", "",
                       f"the whole file ({full.get('file_bytes', 0) / 1e6:.1f} MB, fsync): at start, and once "
                       "the journal outgrows it"))
    restore = runs.get("BM_StateRestore/100000")
    if restore:
        out.append(row("state", "state_restore_100000_ms", ms(restore), "ms"))
    per = {}
    for n in (10000, 100000):
        b = runs.get(f"BM_StateSavePerRegistration/{n}")
        if b and "save_cpu_us_per_registration" in b:
            per[n] = b["save_cpu_us_per_registration"]
            out.append(row("state", f"state_save_cpu_us_per_registration_at_{n}", per[n], "us", "",
                           f"journal append {b.get('append_cpu_us_per_registration', 0):.2f} + compaction "
                           f"amortized {b.get('compaction_cpu_us_per_registration', 0):.2f}"))
    if len(per) == 2 and per[10000] > 0:
        out.append(row("state", "state_save_cpu_per_registration_100000_to_10000", per[100000] / per[10000], "",
                       f"at 10,000: {per[10000]:.2f} us"))
    return out


def registration_rows(folder):
    data = load(folder, "registration.json")
    if not data:
        return []
    out = []

    add = adder(out, "registration")

    for dh in ("19", "14"):
        r, b = data.get(f"dh{dh}", {}), data.get("bound", {}).get(dh, {})
        if not r:
            continue
        c = r.get("concurrency")
        bound = b.get("registrations_per_s_2_cores")
        add(f"dh{dh}_registrations_per_s", r.get("registrations_per_s"), "/s",
            f"{r.get('registered')} of {r.get('members')} members, {c} in flight")
        add(f"dh{dh}_raw_crypto_bound_per_s", bound, "/s",
            f"2 cores; GM {b.get('gm_us', 0):.0f} us + KS {b.get('ks_us', 0):.0f} us")
        add(f"dh{dh}_ratio_to_bound", r.get("ratio_to_bound"), "", peer=f"bound {bound:.0f}/s" if bound else "")
        add(f"dh{dh}_ratio_uncontended", r.get("ratio_to_bound_uncontended"), "",
            "from CPU time: the rate with a core each and no other load")
        add(f"dh{dh}_ratio_ceiling_kernel", r.get("ratio_ceiling_kernel"), "",
            f"the ratio if user space did nothing but the crypto: kernel CPU per registration KS "
            f"{r.get('ks_system_cpu_ms_per_registration') or 0:.3f} ms + gm-swarm "
            f"{r.get('gm_system_cpu_ms_per_registration') or 0:.3f} ms beside the crypto's "
            f"{(b.get('gm_us', 0) + b.get('ks_us', 0)) / 1000:.3f} ms")
        add(f"dh{dh}_crypto_share_of_cpu", r.get("crypto_share_of_cpu"), "",
            "the raw crypto's part of both processes' CPU per registration")
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
        if k.get("first_push_to_last_ack_s") is not None:
            add("rekey_unicast_first_push_to_last_ack_s", k["first_push_to_last_ack_s"], "s",
                f"to the last ack the KS recorded (polled); {note}")
            add("rekey_unicast_first_push_to_last_ack_sent_s", k.get("first_push_to_last_ack_sent_s"), "s",
                "to the last ack a member sent, as gm-swarm timed it")
        else:  # no time to compare: the rekey never reached everyone
            add("rekey_unicast_members_acked", k.get("members_acked"), "", note + ": INCOMPLETE, misses the target")
        add("rekey_unicast_push_bytes", k.get("push_bytes"), "B", "one datagram, the same for every member")
        add("rekey_unicast_bytes_per_member", k.get("bytes_per_member"), "B", "retransmissions included")
    load1 = data.get("loadavg_1m_start")
    if load1 is not None:
        add("loadavg_1m_during_run", max(load1, data.get("loadavg_1m_end", 0)), "", f"{data.get('cores')} cores")
    out += cores_rows(data)
    out += scale_rows(data)
    return out


def cores_rows(data):
    """registration.json's cores_dh19 section: covey-ks on one CPU, then two."""
    c = data.get("cores_dh19", {})
    if not c or c.get("ratio") is None:
        return []
    where = f"KS on CPUs {c.get('ks_cpus_one')} then {c.get('ks_cpus_two')}, gm-swarm {c.get('swarm_cpus')}"
    bound = c.get("bound_ratio")
    one = c["one"]["registrations_per_s"]
    out = [
        row("registration", "dh19_one_core_registrations_per_s", one, "/s", "", where),
        row("registration", "dh19_two_cores_registrations_per_s", c["two"]["registrations_per_s"], "/s", "", where),
        row("registration", "dh19_one_core_to_two_cores_ratio", c["ratio"], "",
            f"one core {one:.0f}/s" + (f"; raw-crypto bound with this pinning {bound:.2f}" if bound else ""), where),
    ]
    if c.get("ks_alone_two_to_one_core_ratio"):
        out.append(row("registration", "dh19_ks_alone_two_to_one_core_ratio", c["ks_alone_two_to_one_core_ratio"], "",
                       "", f"from covey-ks's CPU: loop {c['ks_loop_ms_per_registration']:.3f} ms + workers "
                       f"{c['ks_workers_ms_per_registration']:.3f} ms per registration"))
    return out


def scale_rows(data):
    """registration.json's at_scale and storm sections (issue 14), named by their member count."""
    out = []

    add = adder(out, "registration_at_scale")

    a = data.get("at_scale", {})
    if a:
        n, load = a["members"], f"load average {a.get('loadavg_1m_rekey', 0):.2f}"
        add(f"ks_cpu_ms_per_registration_at_{n}", a.get("ks_cpu_ms_per_registration"), "ms",
            f"{a.get('registered')} registered, lazy saves included; dh19_ks_cpu_ms_per_registration is the same at 10,000")
        if a.get("ks_rss_kb_registered"):
            add(f"ks_rss_mb_at_{n}", a["ks_rss_kb_registered"] / 1024, "MB",
                f"{a.get('registered')} registered, as the last registrations end (their phase-1 SAs still held)")
        if a.get("ks_rss_kb_settled"):
            add(f"ks_rss_mb_at_{n}_settled", a["ks_rss_kb_settled"] / 1024, "MB",
                "11 s later, every phase-1 SA ended (glibc keeps freed memory)")
        procs = a.get("gm_swarm_processes", 1)
        note = (f"{a.get('members_acked')} of {a.get('registered')} acked, {a.get('ks_recorded_acks')} recorded by the "
                f"KS; members in {procs} gm-swarm process{'es' if procs != 1 else ''}")
        if a.get("first_push_to_last_ack_s") is not None:
            add(f"rekey_unicast_{n}_first_push_to_last_ack_s", a["first_push_to_last_ack_s"], "s",
                f"to the last ack the KS recorded (polled); {note}; {load}")
            add(f"rekey_unicast_{n}_first_push_to_last_ack_sent_s", a.get("first_push_to_last_ack_sent_s"), "s",
                "to the last ack a member sent, as gm-swarm timed it")
        else:
            add(f"rekey_unicast_{n}_members_acked", a.get("members_acked"), "", note + ": INCOMPLETE, misses the target")
        add(f"rekey_unicast_{n}_ks_cpu_s", a.get("ks_cpu_s_for_rekey"), "s", "covey-ks, first push to last ack")
        per = a.get("gm_cpu_s_for_rekey_per_process") or []
        add(f"rekey_unicast_{n}_gm_swarm_cpu_s", a.get("gm_cpu_s_for_rekey"), "s",
            "gm-swarm: every member verifies, decrypts and acks; the larger CPU is the bottleneck"
            + (f" (per process: {', '.join(f'{c:.2f}' for c in per if c is not None)})" if len(per) > 1 else ""))
        for counter, drops in (a.get("udp_drops_during_rekey") or {}).items():
            add(f"rekey_unicast_{n}_udp_{counter.lower()}", drops, "", "/proc/net/snmp Udp, whole host")
        add(f"rekey_unicast_{n}_ks_socket_drops", a.get("ks_socket_drops_during_rekey"), "",
            "acks the KS's receive buffer dropped (/proc/net/udp); the rest of RcvbufErrors were gm-swarm's")
        add(f"gm_swarm_rss_mb_at_{n}", (a.get("gm_max_rss_kb") or 0) / 1024 or None, "MB", "peak, members following rekeys")
        add(f"ks_restore_{n}_s", a.get("ks_restore_s"), "s", "exec to `ks.group` answering with every member; "
            f"stopped by SIGTERM (saved) in {a.get('ks_stop_s', 0):.2f} s")
        add(f"at_{n}_loadavg_1m_at_rekey", a.get("loadavg_1m_rekey"), "", "other load on the host: figures above are noisy")
    st = data.get("storm", {})
    if st:
        n = st["members"]
        where = (f"{st.get('registered')} of {n} registered, {st.get('failed')} failed, arriving over "
                 f"{st.get('window_s'):g} s, {st.get('concurrency')} in flight at most")
        add(f"registration_storm_{n}_p99_ms", (st.get("arrival_latency_ms") or {}).get("p99"), "ms",
            f"from arrival; {where}; load average {st.get('loadavg_1m_start', 0):.2f}")
        add(f"registration_storm_{n}_exchange_p99_ms", (st.get("latency_ms") or {}).get("p99"), "ms",
            "Main Mode start to keys, waiting for a slot excluded")
        add(f"registration_storm_{n}_registrations_per_s", st.get("registrations_per_s"), "/s",
            f"last start {st.get('last_start_s', 0):.1f} s after the first")
        add(f"registration_storm_{n}_retransmissions", st.get("retransmissions"), "", "gm-swarm's members")
        add(f"registration_storm_{n}_failed", st.get("failed"), "", str(st.get("failures") or ""))
        if st.get("ks_rss_kb_peak"):
            add(f"registration_storm_{n}_ks_rss_mb_peak", st["ks_rss_kb_peak"] / 1024, "MB", "sampled every 0.5 s")
        add(f"registration_storm_{n}_ks_cpu_s", st.get("ks_cpu_s"), "s")
        add(f"registration_storm_{n}_gm_swarm_cpu_s", st.get("gm_cpu_s"), "s")
        for counter, drops in (st.get("udp_drops") or {}).items():
            add(f"registration_storm_{n}_udp_{counter.lower()}", drops, "", "/proc/net/snmp Udp, whole host")
        add(f"registration_storm_{n}_ks_socket_drops", st.get("ks_socket_drops"), "", "at the KS's socket")
        add(f"registration_storm_{n}_loadavg_1m", max(st.get("loadavg_1m_start", 0), st.get("loadavg_1m_end", 0)), "",
            "other load on the host: figures above are noisy")
    return out


def coop_rows(folder):
    data = load(folder, "coop.json")
    if not data:
        return []
    out = []

    add = adder(out, "coop")

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


def vm_throughput_rows(folder):
    d = load(folder, "vm_throughput.json")
    if not d:
        return []
    if d.get("error"):
        return [row("vm_throughput", "vm_throughput", None, "", "", "NOT MEASURED: " + d["error"])]
    where = (f"median of {len(d['static']['mbit_s'])}, {d.get('mib')} MiB a run, {d.get('accel')}, "
             f"kernel {d.get('kernel')}")
    static = d["static"]["median_mbit_s"]
    return [
        row("vm_throughput", "vm_static_xfrm_mbit_s", static, "Mb/s", "", where),
        row("vm_throughput", "vm_covey_mbit_s", d["covey"]["median_mbit_s"], "Mb/s", "", where),
        row("vm_throughput", "vm_covey_to_static_ratio", d["ratio"], "", f"static XFRM {static:.1f} Mb/s",
            "" if d.get("same_transform") else "TRANSFORMS DIFFER"),
        row("vm_throughput", "vm_covey_to_static_median_pair_ratio", d.get("median_pair_ratio"), "", "",
            "each covey run over the static run before it"),
    ]


# ks_members_bench.json (tests/bench/ks_members_bench.cpp): `coveyctl ks members` at 100,000
# members, request to last line printed over a real control socket.
# row -> (benchmark, counter or None for its time, unit, note)
KS_MEMBERS_ROWS = {
    "ks_members_100000_s": ("BM_KsMembers_100000_Table", None, "s", "the table"),
    "ks_members_100000_json_s": ("BM_KsMembers_100000_Json", None, "s", "--json"),
    "ks_members_100000_prefix_s": ("BM_KsMembers_100000_Prefix", None, "s", "--prefix (4,096 listed)"),
    "ks_members_100000_since_s": ("BM_KsMembers_100000_Since", None, "s", "--since (1,000 listed, all examined)"),
    "ks_members_100000_count_s": ("BM_KsMembers_100000_Count", None, "s", "--count with --since"),
    "ks_members_100000_key_server_s": ("BM_KsMembers_100000_Produce", None, "s",
                                       "the key server's side alone: every piece of the listing"),
    "ks_members_100000_max_piece_ms": ("BM_KsMembers_100000_Table", "max_piece_ms", "ms",
                                       "longest the KS loop spent on one piece (UDP 848 waits behind it)"),
}


def ks_members_rows(folder):
    data = load(folder, "ks_members_bench.json")
    if not data:
        return []
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    runs = {b["name"].split("/")[0]: b for b in data.get("benchmarks", []) if b.get("run_type") != "aggregate"}
    out = []
    for name, (bench, counter, unit, note) in KS_MEMBERS_ROWS.items():
        b = runs.get(bench)
        if b is None or b.get("error_occurred"):
            out.append(row("ks_members", name, None, unit, "", "NOT MEASURED: " + (b or {}).get("error_message", "no run")))
            continue
        value = b.get(counter) if counter else b["real_time"] * scale[b.get("time_unit", "ns")]
        out.append(row("ks_members", name, value, unit, "", note))
    return out




SOURCES = [gbench_rows, classify_net_rows, state_store_rows, ks_members_rows, registration_rows, coop_rows, vm_throughput_rows]


def judge(r):
    """Adds target, meets_target and the target's source to a row."""
    t = TARGETS.get(r["name"])
    r["target"], r["meets_target"] = None, None
    if t and r["value"] is not None:
        op, limit, source = t
        r["target"] = f"{op} {limit:g}"
        r["meets_target"] = {"<": r["value"] < limit, "<=": r["value"] <= limit, ">=": r["value"] >= limit}[op]
        r["note"] = source + ("; " + r["note"] if r["note"] else "")
    return r


def shown(v):
    if v is None:
        return "-"
    if isinstance(v, int) or abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def meta():
    repo = pathlib.Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "commit": commit or None,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "loadavg_1m_at_end": os.getloadavg()[0],
    }


def print_table(rows):
    print()
    print(f"{'figure':48} {'value':>12} {'unit':<4} {'target':>9} {'verdict':7}  peer or bound; note")
    suite = None
    for r in rows:
        if r["suite"] != suite:
            suite = r["suite"]
            print(f"-- {suite}")
        verdict = "" if r["meets_target"] is None else ("meets" if r["meets_target"] else "MISSES")
        tail = "; ".join(x for x in (r["peer"], r["note"]) if x)
        print(f"{r['name']:48} {shown(r['value']):>12} {r['unit']:<4} {r['target'] or '-':>9} {verdict:7}  {tail}")


BEGIN, END = "<!-- bench-report: begin -->", "<!-- bench-report: end -->"


def architecture_block(summary):
    m = summary["meta"]
    lines = [
        BEGIN,
        f"Generated by `tools/bench-report.py --architecture` from `make bench` at {m['commit']}, "
        f"{m['date_utc']} UTC, {m['cores']} cores, kernel {m['kernel']}, load average "
        f"{m['loadavg_1m_at_end']:.2f} at its end. Rows with a target say whether this run met it; "
        "a relative target's peer or bound is from the same run.",
        "",
        "| figure | value | target | verdict | peer or bound; note |",
        "|---|---:|---:|---|---|",
    ]
    for r in summary["rows"]:
        if r["suite"] == "coop" and r["target"] is None and "_etcd_" in r["name"]:
            continue  # the etcd breakdown stays in summary.json
        verdict = "" if r["meets_target"] is None else ("meets" if r["meets_target"] else "**misses**")
        tail = "; ".join(x for x in (r["peer"], r["note"]) if x).replace("|", "/")
        value = shown(r["value"]) + (f" {r['unit']}" if r["unit"] else "")
        lines.append(f"| `{r['name']}` | {value} | {r['target'] or ''} | {verdict} | {tail} |")
    lines.append(END)
    return "\n".join(lines)


def update_architecture(path, summary):
    p = pathlib.Path(path)
    text = p.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{path}: no '{BEGIN}' ... '{END}' block to regenerate")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    p.write_text(head + architecture_block(summary) + tail)
    print(f"{path}: performance figures regenerated ({len(summary['rows'])} rows)")


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default="build/bench")
    ap.add_argument("--architecture", metavar="PATH",
                    help="regenerate PATH's performance table from the folder's summary.json (no rerun)")
    a = ap.parse_args(argv)
    summary_path = pathlib.Path(a.folder) / "summary.json"
    if a.architecture:
        if not summary_path.exists():
            sys.exit(f"{summary_path}: no summary; run `make bench` first")
        update_architecture(a.architecture, json.loads(summary_path.read_text()))
        return
    rows = [judge(r) for source in SOURCES for r in source(a.folder)]
    summary = {"meta": meta(), "rows": rows}
    print_table(rows)
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
