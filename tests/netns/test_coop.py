"""Cooperative key servers on etcd (issue 11's acceptance, netns tier).

Three covey-ks of one cluster (priorities 100, 90, 80) share the ks
namespace on 10.1.12.1, .11 and .12 and a real three-member etcd (Debian's
etcd-server, started here inside the ks namespace on its loopback). covey-gm
gm3 registers with the second key server, gm4 with the third, and 1,000
gm-swarm members (in the ks namespace, from 127.1.0.1 on) with the first.

  1. the 100 is primary; every key server shows the same cluster; members
     registered at each of the three hold the same TEK and KEK
  2. kill -9 of the primary during a unicast rekey of the 1,000: a secondary
     is primary within lease TTL + 1 s, finishes the rekey, every member
     ends on the same TEK, and gm3 and gm4 follow the next rekey from
     another address than they registered with, without registering again
  3. the primary cut off from etcd sends no push after its lease could have
     ended; a secondary takes over; healed, the old primary is a secondary
     and sends nothing stale
  4. an etcd member killed (-9) and restarted, and etcd's leader killed: a
     rekey after each reaches the members; the key servers keep one view
  6. etcd's data holds none of the key bytes the key servers show
  7. the key server cut off in 3, elected again, resumes nothing stale

One capture on every interface of the ks namespace holds every push any key
server sends (to gm-swarm over lo, to gm3 and gm4 over eth0); each test
checks it so far: no (KEK SPI, SEQ) pair with two contents, and SEQ never
goes back, neither per key server nor across them.

Cutting one key server off etcd: the three share the namespace and its
loopback, so each reaches etcd at a loopback address of its own
(127.0.0.11-13, where every etcd member also takes clients) and nftables
drops TCP between that address and etcd's client ports. That needs only
nftables, on any kernel a Debian 12 CI machine runs. A socket cgroupv2 match
needs the cgroup2 hierarchy where nft looks for it (/sys/fs/cgroup, not so
on hybrid hosts) and a cgroup per key server; an skuid match needs each key
server under its own uid, every file it opens chowned, and
CAP_NET_BIND_SERVICE for port 848.
"""

import base64
import json
import re
import signal
import subprocess
import time
import unittest
from collections import namedtuple
from pathlib import Path

from captures import udp_datagrams
from etcd_cluster import EtcdCluster
from netns_lab import BUILD, GM_ADDRESS, PSK, Lab, gm_config, ks_config
from pushes import GROUPKEY_PUSH, HEADER, seq_of

KeyServer = namedtuple("KeyServer", "name address priority etcd_host")
KSS = [KeyServer("ks1", "10.1.12.1", 100, "127.0.0.11"),
       KeyServer("ks2", "10.1.12.11", 90, "127.0.0.12"),
       KeyServer("ks3", "10.1.12.12", 80, "127.0.0.13")]
BY_NAME = {k.name: k for k in KSS}
KS_ADDRESSES = {k.address: k.name for k in KSS}
TTL = 3  # [cluster] lease_ttl, seconds
RETRANSMIT = ["retransmit_period = 1", "retransmit_count = 3"]
SWARM_BIN = BUILD / "tools" / "gm-swarm" / "gm-swarm"
SWARM_MEMBERS = 1000
SWARM_BASE = "127.1.0.1"
# The first 255 swarm members, whose acknowledgements the first primary
# never gets: its rekey of the 1,000 is certainly unfinished when it dies.
UNACKED = "127.1.0.0/24"
NFT_TABLE = ["inet", "covey_coop"]
GROUP = "GET_VPN"


def log_time(line):
    """The wall-clock time of a covey log line ("2026-12-05 07:04:08.123 covey-ks info: ...")."""
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) ", line)
    if not m:
        raise ValueError(f"no timestamp in {line!r}")
    return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000


class CoopTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not SWARM_BIN.exists():
            raise RuntimeError(f"{SWARM_BIN} missing: build first (cmake --build {BUILD} --target gm-swarm)")
        lab = cls.lab = Lab("coop")
        cls.addClassCleanup(lab.down)
        lab.up()
        for k in KSS[1:]:
            lab.sh("ks", "ip", "addr", "add", f"{k.address}/24", "dev", "eth0")
        lab.sh("ks", "nft", "add", "table", *NFT_TABLE)
        lab.sh("ks", "nft", "add", "chain", *NFT_TABLE, "in", "{ type filter hook input priority 0; }")
        lab.sh("ks", "nft", "add", "chain", *NFT_TABLE, "out", "{ type filter hook output priority 0; }")
        (lab.run / "etcd").mkdir()
        cls.etcd = EtcdCluster(prefix=lab.exec_args("ks"), client_hosts=[k.etcd_host for k in KSS],
                               workdir=str(lab.run / "etcd"))
        cls.addClassCleanup(cls.etcd.close)
        sealing_key = lab.write("cluster.key", subprocess.run(["openssl", "rand", "-hex", "32"], capture_output=True,
                                                              text=True, check=True).stdout)
        sealing_key.chmod(0o600)
        cls.sealing_key = sealing_key
        cls.keks = {}  # KEK SPI (16 bytes) -> KEK_ALGORITHM_KEY, from every --show-keys seen
        cls.captures = []  # finished, complete
        cls.capture = cls.start_capture(0)
        for k in KSS:
            cls.start_key_server(k)
        lab.wait_for(lambda: cls.cluster("ks1")["role"] == "primary", 3 * TTL + 5, "ks1 to be elected primary",
                     logs=("ks1", "ks2", "ks3"))
        lab.start_gm("gm3", gm_config(lab, "gm3", key_servers=[KSS[1].address]))
        lab.start_gm("gm4", gm_config(lab, "gm4", key_servers=[KSS[2].address]))
        cls.swarm_json = lab.run / "swarm.json"
        swarm_log = lab.log_path("swarm")
        with open(swarm_log, "wb") as out:
            p = subprocess.Popen(lab.exec_args("ks", SWARM_BIN, "--ks", f"{KSS[0].address}:848", "--group", "134",
                                               "--psk", PSK, "--members", SWARM_MEMBERS,
                                               "--source-base", SWARM_BASE, "--allow-nonlocal", "--follow-rekeys", 2,
                                               "--timeout", 200, "--json", cls.swarm_json),
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        lab.procs["swarm"] = (p, swarm_log)
        lab.wait_registered("gm3", ks=KSS[1].address, timeout=15)
        lab.wait_registered("gm4", ks=KSS[2].address, timeout=15)
        lab.wait_log("swarm", r"members registered; following", 90, "gm-swarm's 1,000 members to register")
        # What the members registered with, for test 1 (the swarm says at its end).
        cls.registration_keys = {k.name: cls.group(k.name, keys=True) for k in KSS}

    # -- helpers ----------------------------------------------------------------

    @classmethod
    def start_key_server(cls, k):
        lab = cls.lab
        text = ks_config(lab, name=k.name, address=k.address, listen=[k.address], rekey=RETRANSMIT)
        text += "\n".join(["", "[cluster]",
                           "endpoints = [" + ", ".join(f'"{e}"' for e in cls.etcd.endpoints(k.etcd_host)) + "]",
                           f'name = "{k.name}"', f"priority = {k.priority}", f"lease_ttl = {TTL}",
                           f'sealing_key = "{cls.sealing_key}"', 'prefix = "/covey"', ""])
        return lab.start_ks(text, name=k.name)

    @classmethod
    def start_capture(cls, n):
        # What the key servers send, on lo (to gm-swarm) and eth0 (to gm3 and gm4).
        return cls.lab.start_capture("ks", "any", f"coop-{n}.pcap", immediate=False, buffer_kib=32768,
                                     expression="udp src port 848 and (" +
                                                " or ".join(f"src host {k.address}" for k in KSS) + ")")

    @classmethod
    def cluster(cls, name):
        return cls.lab.ctl("ks", "ks", "cluster", name=name)

    @classmethod
    def group(cls, name, keys=False):
        g = cls.lab.ctl("ks", "ks", "group", *(["--show-keys"] if keys else []), name=name)["groups"][0]
        if keys:
            cls.keks[bytes.fromhex(g["kek"]["spi"])] = bytes.fromhex(g["kek"]["keys"]["algorithm_key"])
        return g

    def members(self, name):
        return {m["address"]: m for m in self.lab.ctl("ks", "ks", "members", name=name)["groups"][0]["members"]}

    def log_lines(self, name, pattern):
        return [line for line in self.lab.log(name).splitlines() if re.search(pattern, line)]

    def primary(self):
        """The one key server that says it is primary, once all that run agree on it."""
        lab = self.lab

        def agreed():
            views = {k.name: self.cluster(k.name) for k in KSS if lab.alive(k.name)}
            primaries = {v["primary"] for v in views.values()}
            says = [n for n, v in views.items() if v["role"] == "primary"]
            return says[0] if len(primaries) == 1 and says == list(primaries) else None

        return lab.wait_for(agreed, 3 * TTL + 5, "the key servers to agree on one primary", logs=tuple(BY_NAME))

    def same_view(self, seq=None, timeout=10):
        """Every running key server's `ks cluster`, once they show one view: the same primary, the same
        key servers with their roles, and the same SEQ and SPIs everywhere (SEQ: when given)."""
        lab = self.lab
        names = [k.name for k in KSS if lab.alive(k.name)]
        seen = {}

        def one_view():
            views = {n: self.cluster(n) for n in names}
            seen.update(views)
            first = views[names[0]]
            shape = [(s["name"], s["address"], s["priority"], s["role"]) for s in first["key_servers"]]
            for v in views.values():
                if v["primary"] != first["primary"] or not v["lease_valid"]:
                    return None
                if [(s["name"], s["address"], s["priority"], s["role"]) for s in v["key_servers"]] != shape:
                    return None
                if v["groups"] != first["groups"] or any(s["groups"] != first["groups"] for s in v["key_servers"]):
                    return None
            if len(shape) != len(names) or (seq is not None and first["groups"][GROUP]["seq"] != seq):
                return None
            return views

        try:
            return lab.wait_for(one_view, timeout, f"one cluster view on {names} (SEQ {seq})", logs=tuple(names))
        except AssertionError as e:
            raise AssertionError(f"{e}\nthe views last seen: {json.dumps(seen, indent=1)[:6000]}") from None

    def rekey(self, name):
        r = self.lab.ctl("ks", "ks", "rekey", GROUP, name=name)
        return r["seq"]

    def wait_member_seq(self, gm, seq, timeout=10):
        lab = self.lab
        return lab.wait_for(lambda: (s := lab.ctl(gm, "gm", "status", "--show-keys"))["last_seq"] == seq and s,
                            timeout, f"{gm} to hold SEQ {seq}", logs=(gm, *BY_NAME))

    def complete_capture(self):
        """Ends the running capture (tcpdump writes the last packets it holds) after starting the
        next, so that no moment goes uncaptured; checks that the kernel dropped none of it."""
        cls, lab = type(self), self.lab
        done = cls.capture
        cls.capture = cls.start_capture(len(cls.captures) + 1)
        # tcpdump hands over a packet up to a second late (its buffer's timeout) and, told to stop,
        # writes nothing more: the last second is in the next capture too.
        time.sleep(2)
        lab.stop_capture(done)
        cls.captures.append(done)
        stats = Path(str(done) + ".stderr").read_text()
        dropped = re.search(r"(\d+) packets? dropped by kernel", stats)
        self.assertTrue(dropped and dropped.group(1) == "0", f"{done.name}: tcpdump lost packets: {stats}")

    def pushes(self, live=False):
        """(time, source, destination, datagram) of every GROUPKEY-PUSH a key server sent, in the
        completed captures (LIVE: and what the running one holds yet), in time order."""
        seen = set()
        for path in [*self.captures, *([self.capture] if live else [])]:
            for d in udp_datagrams(path, at=True):
                if d[0] in KS_ADDRESSES and d[1] == 848 and len(d[4]) > HEADER and d[4][18] == GROUPKEY_PUSH:
                    seen.add((d[5], d[0], d[2], d[4]))  # the captures overlap a moment
        return sorted(seen, key=lambda p: p[0])

    def check_pushes(self, live=False):
        """Every push so far: no (KEK SPI, SEQ) with two contents; SEQ never goes back, per key
        server or across them. Returns the pushes with their SEQ: (time, source, dest, datagram, seq)."""
        if not live:
            self.complete_capture()
        for k in KSS:
            if self.lab.alive(k.name):
                self.group(k.name, keys=True)
        out, contents, last, last_by = [], {}, 0, {}
        for t, src, dst, d in self.pushes(live):
            kek = bytes(d[:16])
            self.assertIn(kek, self.keks, f"a push from {src} under a KEK no key server showed: {kek.hex()}")
            seq = seq_of(d, self.keks[kek])
            first = contents.setdefault((kek, seq), d)
            self.assertEqual(first, d, f"(KEK SPI {kek.hex()}, SEQ {seq}) was sent with two contents "
                                       f"(the second by {KS_ADDRESSES[src]} to {dst} at {t:.3f})")
            self.assertGreaterEqual(seq, last_by.get(src, 0), f"{KS_ADDRESSES[src]} sent SEQ {seq} after "
                                                              f"SEQ {last_by.get(src)} (to {dst} at {t:.3f})")
            self.assertGreaterEqual(seq, last, f"SEQ {seq} from {KS_ADDRESSES[src]} at {t:.3f} after another key "
                                               f"server had sent SEQ {last}")
            last_by[src] = last = seq
            out.append((t, src, dst, d, seq))
        return out

    def nft(self, *rule):
        self.lab.sh("ks", "nft", *rule)

    def drop_rule(self, chain, *match):
        """Adds a counted drop rule to CHAIN; returns its handle."""
        out = self.lab.sh("ks", "nft", "--echo", "--handle", "add", "rule", *NFT_TABLE, chain, *match,
                          "counter", "drop").stdout
        return int(re.search(r"# handle (\d+)", out).group(1))

    def delete_rule(self, chain, handle):
        """Deletes a drop_rule; returns how many packets it dropped."""
        listing = self.lab.sh("ks", "nft", "--handle", "list", "chain", *NFT_TABLE, chain).stdout
        m = re.search(rf"counter packets (\d+) bytes \d+ drop # handle {handle}\b", listing)
        self.nft("delete", "rule", *NFT_TABLE, chain, "handle", str(handle))
        return int(m.group(1)) if m else 0

    def partition(self, k):
        """Drops every TCP segment between K's etcd address and etcd's client ports; the handles."""
        ports = "{ " + ", ".join(str(p) for p in self.etcd.client_ports) + " }"
        return [self.drop_rule("out", "ip", "daddr", k.etcd_host, "tcp", "dport", ports),
                self.drop_rule("out", "ip", "saddr", k.etcd_host, "tcp", "sport", ports)]

    def newest_tek(self, g):
        return max(g["tek"], key=lambda t: t["remaining_s"])

    @staticmethod
    def held_keys(g):
        """A group's SEQ, KEK and TEKs as `ks group --show-keys` shows them, without the seconds remaining:
        two key servers asked a moment apart hold the same keys but may count a different second."""
        def timeless(d):
            return {k: v for k, v in d.items() if k != "remaining_s"}
        return g["seq"], timeless(g["kek"]), [timeless(t) for t in g["tek"]]

    # -- acceptance ---------------------------------------------------------------

    def test_1_the_100_is_primary_and_every_key_server_shows_one_view(self):
        lab = self.lab
        self.assertEqual(self.primary(), "ks1")
        views = self.same_view()
        for k in KSS:
            v = views[k.name]
            self.assertEqual(v["role"], "primary" if k.name == "ks1" else "secondary", v)
            self.assertEqual([(s["name"], s["address"], s["priority"]) for s in v["key_servers"]],
                             [(x.name, x.address, x.priority) for x in KSS], v)
            self.assertTrue(v["etcd"]["reachable"], v)
            self.assertEqual(len(v["etcd"]["members"]), 3, v)
            self.assertEqual(sum(m["leader"] for m in v["etcd"]["members"]), 1, v)
        # Members registered at each key server hold the same keys: gm3 (ks2) and gm4 (ks3) here,
        # the 1,000 at ks1 from gm-swarm's own account in test 2.
        reference = self.registration_keys["ks1"]
        for k in KSS:
            g = self.registration_keys[k.name]
            self.assertEqual(self.held_keys(g), self.held_keys(reference),
                             f"{k.name} holds other keys than ks1")
        tek = self.newest_tek(reference)
        for gm in ("gm3", "gm4"):
            st = lab.ctl(gm, "gm", "status", "--show-keys")
            mine = {t["spi"]: t for t in st["tek"]}
            self.assertIn(tek["spi"], mine, f"{gm}: {st}")
            self.assertEqual(mine[tek["spi"]]["keys"], tek["keys"], f"{gm} holds other TEK keys")
            self.assertEqual(st["kek"]["spi"], reference["kek"]["spi"], st)
            self.assertEqual(st["kek"]["keys"], reference["kek"]["keys"], f"{gm} holds another KEK")
        # Members are written to etcd lazily (ks/key_server.h: at most one save a second, spaced further by
        # what the last save cost), so gm3 and gm4 reach ks1's table some seconds after they registered.
        start = time.time()
        seen = {}

        def all_members():
            seen.update(members=self.members("ks1"))
            m = seen["members"]
            return all(a in m for a in GM_ADDRESS.values()) and len(m) == SWARM_MEMBERS + 2

        try:
            lab.wait_for(all_members, 30, "the members registered at ks2 and ks3 to reach ks1's table",
                         logs=("ks1", "ks2", "ks3"))
        except AssertionError as e:
            missing = [a for a in GM_ADDRESS.values() if a not in seen["members"]]
            raise AssertionError(f"ks1 holds {len(seen['members'])} members, missing {missing}\n{e}") from None
        print(f"\ncoop: ks1's table held all {SWARM_MEMBERS + 2} members {time.time() - start:.1f} s after the check began",
              flush=True)

    def test_2_primary_killed_during_a_rekey_of_1000(self):
        lab = self.lab
        self.assertEqual(self.primary(), "ks1")
        handle = self.drop_rule("in", "ip", "saddr", UNACKED, "ip", "daddr", KSS[0].address, "udp", "dport", "848")
        seq1 = self.rekey("ks1")
        # The rekey is under way and unfinished: 255 acknowledgements never arrive.
        g = lab.wait_for(lambda: (g := self.group("ks1"))["last_rekey"]["seq"] == seq1
                         and g["last_rekey"]["acked"] >= SWARM_MEMBERS - 255 and g, 10,
                         f"ks1's rekey SEQ {seq1} to reach the members that can answer", logs=("ks1", "swarm"))
        self.assertLess(g["last_rekey"]["acked"], g["last_rekey"]["members"], g["last_rekey"])
        ks1 = lab.procs["ks1"][0]
        killed_at = time.time()
        ks1.send_signal(signal.SIGKILL)
        ks1.wait()
        lab.procs.pop("ks1")
        # A secondary is primary within the lease TTL + 1 s: the best live one, ks2.
        line = lab.wait_log("ks2", r"key server ks2 .* is now the primary", TTL + 10, "ks2 to become primary")
        became = log_time(self.log_lines("ks2", r"key server ks2 .* is now the primary")[-1])
        self.assertLessEqual(became - killed_at, TTL + 1, f"ks2 primary {became - killed_at:.3f} s after the kill "
                                                          f"({line.group(0)})")
        # It finishes the rekey: every member acknowledged SEQ 1 to one primary or the other.
        lab.wait_for(lambda: all((m["last_acked_seq"] or 0) >= seq1 for m in self.members("ks2").values()), 15,
                     f"every member to have acknowledged SEQ {seq1}", logs=("ks2", "swarm"))
        seq2 = self.rekey("ks2")
        self.assertGreater(seq2, seq1)
        p = lab.procs["swarm"][0]
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            self.fail(f"gm-swarm did not finish its two rekeys\n{lab.logs('swarm', 'ks2')}")
        swarm = json.loads(self.swarm_json.read_text())
        self.assertEqual(p.returncode, 0, lab.logs("swarm"))
        self.assertEqual([(r["seq"], r["members_acked"]) for r in swarm["rekeys"]],
                         [(seq1, SWARM_MEMBERS), (seq2, SWARM_MEMBERS)], swarm["rekeys"])
        # Acceptance 1 for the members of ks1: all registered with ks1's keys.
        reg = self.registration_keys["ks1"]
        self.assertEqual(len(swarm["registered_keys"]), 1, swarm["registered_keys"])
        self.assertEqual(swarm["registered_keys"][0]["members"], SWARM_MEMBERS)
        self.assertEqual(swarm["registered_keys"][0]["tek"], {k: self.newest_tek(reg)[k] for k in ("spi", "keys")})
        self.assertEqual(swarm["registered_keys"][0]["kek"], {k: reg["kek"][k] for k in ("spi", "keys")})
        # Every member ends on the same TEK: the new primary's.
        g = self.group("ks2", keys=True)
        self.assertEqual(g["seq"], seq2)
        self.assertEqual(len(swarm["final_keys"]), 1, swarm["final_keys"])
        self.assertEqual(swarm["final_keys"][0]["members"], SWARM_MEMBERS)
        self.assertEqual(swarm["final_keys"][0]["tek"], {k: self.newest_tek(g)[k] for k in ("spi", "keys")})
        self.assertEqual(swarm["final_keys"][0]["kek"], {k: g["kek"][k] for k in ("spi", "keys")})
        # gm3 (registered at ks2) and gm4 (at ks3) followed SEQ 1 from ks1 and SEQ 2 from ks2.
        for gm, registered_at in (("gm3", KSS[1].address), ("gm4", KSS[2].address)):
            st = self.wait_member_seq(gm, seq2)
            self.assertEqual({t["spi"]: t["keys"] for t in st["tek"]}.get(self.newest_tek(g)["spi"]),
                             self.newest_tek(g)["keys"], st)
            log = lab.log(gm)
            self.assertRegex(log, rf"Received rekey SEQ {seq1} for group {GROUP} from KS {re.escape(KSS[0].address)}:")
            self.assertRegex(log, rf"Received rekey SEQ {seq2} for group {GROUP} from KS {re.escape(KSS[1].address)}:")
            self.assertNotIn("Registering again", log, lab.logs(gm))
            self.assertEqual(re.findall(r"Registration to KS (\S+) complete", log), [registered_at], lab.logs(gm))
        # The capture: the new primary sent the dead one's SEQ 1 again, the same bytes.
        sent = self.check_pushes()
        by = {(KS_ADDRESSES[src], seq) for _, src, _, _, seq in sent}
        self.assertIn(("ks1", seq1), by)
        self.assertIn(("ks2", seq1), by, "ks2 did not finish ks1's rekey")
        self.assertIn(("ks2", seq2), by)
        first = min(t for t, src, _, _, seq in sent if src == KSS[1].address)
        print(f"\ncoop: ks1 killed during SEQ {seq1} to {g['last_rekey']['members']} members; ks2 primary "
              f"{became - killed_at:.3f} s later, its first push {first - killed_at:.3f} s later; "
              f"{len(sent)} pushes captured so far "
              f"({sum(1 for p in sent if p[4] == seq1)} of SEQ {seq1}, {sum(1 for p in sent if p[4] == seq2)} of "
              f"SEQ {seq2}); {self.delete_rule('in', handle)} acks to ks1 dropped", flush=True)
        self.assertLessEqual(first - killed_at, TTL + 1, "ks2's first push came later than TTL + 1 s after the kill")
        # ks1 back: a secondary (the primary keeps its role until it is lost).
        self.start_key_server(KSS[0])
        lab.wait_log("ks1", r"is a secondary|cluster primary is now ks2|state restored", 10)
        time.sleep(TTL + 1)  # it may stand only after a TTL
        self.assertEqual(self.primary(), "ks2")
        self.same_view(seq=seq2)

    def test_3_primary_cut_off_from_etcd(self):
        lab = self.lab
        self.assertEqual(self.primary(), "ks2")
        old, new = KSS[1], KSS[0]
        seq3 = self.rekey(old.name)
        # Its rekey goes out and, to the 1,000 members gm-swarm left behind, is retransmitted each second.
        lab.wait_log(old.name, rf"Sending rekey SEQ {seq3} ", 5)
        time.sleep(0.5)
        handles = self.partition(old)
        cut_at = time.time()
        try:
            lab.wait_for(lambda: self.cluster(new.name)["role"] == "primary", TTL + 10, f"{new.name} to take over",
                         logs=tuple(BY_NAME))
            took_over = log_time(self.log_lines(new.name, rf"key server {new.name} .* is now the primary")[-1])
            # The cut-off key server stands down by itself (it says so once its loop is not waiting on etcd)
            # and refuses a rekey.
            lab.wait_log(old.name, r"stands down as primary", 2 * TTL + 5)
            stood_down = log_time(self.log_lines(old.name, r"stands down as primary")[-1])
            r = lab.ctl("ks", "ks", "rekey", GROUP, name=old.name, check=False)
            self.assertFalse(r.get("ok", True), r)
            seq4 = self.rekey(new.name)
            for gm in ("gm3", "gm4"):
                self.wait_member_seq(gm, seq4)
        finally:
            dropped = sum(self.delete_rule("out", h) for h in handles)
        healed_at = time.time()

        def rejoined():
            v = self.cluster(old.name)
            return v["lease_valid"] and v["role"] == "secondary" and v["primary"] == new.name and \
                v["groups"][GROUP]["seq"] == seq4

        lab.wait_for(rejoined, 15, f"{old.name} back as a secondary", logs=(old.name,))
        self.same_view(seq=seq4)
        time.sleep(TTL)  # room for anything stale it might still send
        self.same_view(seq=seq4)
        sent = self.check_pushes()
        late = [(round(t - cut_at, 3), dst, seq) for t, src, dst, _, seq in sent
                if src == old.address and t > cut_at + TTL]
        self.assertFalse(late, f"{old.name} sent {len(late)} pushes after its lease could have ended (TTL {TTL} s "
                               f"after the cut); the first (seconds after the cut, to, SEQ): {late[:5]}")
        during = [t for t, src, _, _, _ in sent if src == old.address and cut_at < t]
        last = max(during, default=None)
        print(f"\ncoop: {old.name} cut off from etcd ({dropped} segments dropped); it sent {len(during)} pushes "
              f"after the cut, the last {last - cut_at if last else float('nan'):.3f} s after it; logged its "
              f"stand-down {stood_down - cut_at:.3f} s after it; {new.name} primary {took_over - cut_at:.3f} s "
              f"after it; "
              f"healed {healed_at - cut_at:.1f} s after it, back as a secondary; {len(sent)} pushes captured so far",
              flush=True)
        self.assertIn((new.address, seq3), {(src, seq) for _, src, _, _, seq in sent},
                      f"{new.name} did not finish the cut-off primary's rekey")

    def test_4_etcd_member_and_leader_killed(self):
        lab, etcd = self.lab, self.etcd
        seqs = []

        def goes_on(what):
            primary = self.primary()
            seq = self.rekey(primary)
            for gm in ("gm3", "gm4"):
                self.wait_member_seq(gm, seq)
            self.same_view(seq=seq)
            seqs.append((what, primary, seq))

        leader = etcd.leader()
        follower = (leader + 1) % 3
        etcd.kill(follower)
        goes_on(f"etcd member {etcd.names[follower]} killed")
        etcd.start(follower)
        lab.wait_for(lambda: etcd.status(follower, timeout=2), 20, "the killed etcd member back")
        goes_on(f"etcd member {etcd.names[follower]} restarted")
        leader = etcd.leader()
        etcd.kill(leader)
        new_leader = etcd.leader()
        self.assertNotEqual(new_leader, leader)
        goes_on(f"etcd leader {etcd.names[leader]} killed, {etcd.names[new_leader]} leads")
        etcd.start(leader)
        lab.wait_for(lambda: etcd.status(leader, timeout=2), 20, "the killed etcd leader back")
        goes_on(f"etcd member {etcd.names[leader]} restarted")
        print("\ncoop: " + "; ".join(f"{w}: {p} rekeyed SEQ {s}" for w, p, s in seqs), flush=True)
        # Nothing lost: SEQ went up by one per rekey, every key server holds the same keys and both members.
        self.assertEqual([s for _, _, s in seqs], list(range(seqs[0][2], seqs[0][2] + 4)))
        groups = [self.group(k.name, keys=True) for k in KSS]
        for g in groups[1:]:
            self.assertEqual(self.held_keys(g), self.held_keys(groups[0]))
        for k in KSS:
            # Members' records follow the primary's lazy saves through etcd.
            lab.wait_for(lambda: all(self.members(k.name)[a]["last_acked_seq"] == seqs[-1][2]
                                     for a in GM_ADDRESS.values()), 10,
                         f"{k.name} to record both members' acknowledgement of SEQ {seqs[-1][2]}", logs=(k.name,))
        for gm in ("gm3", "gm4"):
            self.assertNotIn("Registering again", lab.log(gm), lab.logs(gm))
        self.check_pushes()

    def test_6_etcd_holds_no_key_bytes(self):
        lab = self.lab
        out = lab.sh("ks", "env", "ETCDCTL_API=3", self.etcd.etcdctl, "--endpoints", self.etcd.endpoints()[0],
                     "get", "--prefix", "/covey", "-w", "json").stdout
        kvs = json.loads(out)["kvs"]
        keys = {base64.b64decode(kv["key"]).decode() for kv in kvs}
        dump = b"\n".join(base64.b64decode(kv["key"]) + b" " + base64.b64decode(kv.get("value", ""))
                          for kv in kvs)
        self.assertIn("/covey/group/134/keys", keys)
        self.assertIn("/covey/group/134/member/10.1.23.3", keys)
        secrets = {}
        for k in KSS:
            g = self.group(k.name, keys=True)
            secrets[f"{k.name} KEK"] = g["kek"]["keys"]["algorithm_key"]
            for t in g["tek"]:
                secrets[f"{k.name} TEK {t['spi']} encryption"] = t["keys"]["encryption"]
                secrets[f"{k.name} TEK {t['spi']} integrity"] = t["keys"]["integrity"]
            # Not secret, and there (each key server announces it): the search finds what is there.
            self.assertIn(g["kek"]["spi"].encode(), dump.lower())
        secrets["sealing key"] = self.sealing_key.read_text().strip()
        der = subprocess.run(["openssl", "pkey", "-in", str(lab.rekey_key), "-outform", "DER"], capture_output=True,
                             check=True).stdout
        forms = {}
        for what, hexed in secrets.items():
            raw = bytes.fromhex(hexed)
            forms[what] = [raw, hexed.lower().encode(), hexed.upper().encode(), base64.b64encode(raw)]
            if what.endswith("KEK"):  # IV then key: the key alone too
                forms[what + " key part"] = [raw[16:], raw[16:].hex().encode()]
        forms["signing key (DER)"] = [der, base64.b64encode(der)[:64]]
        for what, variants in forms.items():
            for v in variants:
                self.assertNotIn(v, dump, f"etcd holds the {what}")
        print(f"\ncoop: {len(kvs)} etcd keys, {len(dump)} bytes: none of {len(forms)} secrets in any form", flush=True)

    def test_7_a_returning_primary_sends_nothing_stale(self):
        # The key server cut off in test 3 is elected again: it resumes nothing from its first term.
        lab = self.lab
        before = self.primary()
        self.assertEqual(before, "ks1")
        lab.stop("ks1")  # SIGTERM: it leaves etcd, and ks2 is elected at once
        self.assertEqual(self.primary(), "ks2")
        time.sleep(2)
        seq = self.rekey("ks2")
        for gm in ("gm3", "gm4"):
            self.wait_member_seq(gm, seq)
        sent = self.check_pushes()
        last = max(t for t, src, _, _, _ in sent if src == KSS[0].address)
        stale = [(round(t - last, 3), s) for t, src, _, _, s in sent if src == KSS[1].address and t > last and s < seq]
        self.assertEqual(stale, [], "ks2, primary again, sent older SEQs (seconds after ks1's last push, SEQ)")


if __name__ == "__main__":
    unittest.main()
