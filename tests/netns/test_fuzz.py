"""10,000 random and 10,000 mutated datagrams at UDP 848 leave the key
server running and serving a registration afterwards.

The mutations start from the datagrams of a real registration, captured on
the transit router. They are sent from gm3's own address and port after gm3
has stopped, so the key server still holds gm3's phase-1 SA and mutated
GROUPKEY-PULL messages reach decryption rather than the cookie lookup."""

import json
import os
import random
import subprocess
import sys
import unittest
from pathlib import Path

from captures import udp_datagrams
from netns_lab import GM_ADDRESS, Lab, gm_config, ks_config

HERE = Path(__file__).resolve().parent
RANDOM, MUTATED = 10_000, 10_000


def udp_counters(lab, node):
    """The Udp: line of NODE's /proc/net/snmp as a dict."""
    lines = [line.split() for line in lab.sh(node, "cat", "/proc/net/snmp").stdout.splitlines()
             if line.startswith("Udp:")]
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:])}


class FuzzTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        lab = cls.lab = Lab("fuzz")
        cls.addClassCleanup(lab.down)
        lab.up()
        lab.start_ks(ks_config(lab, authorization=list(GM_ADDRESS.values())), log_level="debug")
        pcap = lab.start_capture("r2", "ks0", "seeds.pcap")
        lab.start_gm("gm3", gm_config(lab, "gm3"))
        lab.wait_registered("gm3")
        lab.wait_for(lambda: len(udp_datagrams(pcap)) >= 10, 5, "tcpdump to write the registration")
        lab.stop_capture(pcap)
        lab.stop("gm3")
        cls.seeds = [d[4] for d in udp_datagrams(pcap)]
        cls.seed_file = lab.write("seeds.hex", "".join(d.hex() + "\n" for d in cls.seeds))
        cls.rng = int(os.environ.get("COVEY_NETNS_FUZZ_RNG", random.randrange(1 << 32)))

    def test_key_server_survives_and_serves_a_registration(self):
        lab = self.lab
        how = (f"fuzz rng {self.rng} (rerun with COVEY_NETNS_FUZZ_RNG={self.rng}; the seeds are a fresh "
               f"capture each run, kept with COVEY_NETNS_KEEP=1 in {self.seed_file})")
        self.assertGreaterEqual(len(self.seeds), 10, "the registration capture is too short to seed mutations")
        before = udp_counters(lab, "ks")
        log_start = len(lab.log("ks"))
        r = subprocess.run(lab.exec_args("gm3", sys.executable, HERE / "datagram_fuzz.py", "--seeds", self.seed_file,
                                         "--source", "10.1.23.3:848", "--target", "10.1.12.1:848",
                                         "--random", RANDOM, "--mutated", MUTATED, "--rng", self.rng,
                                         "--receiver-pid", lab.procs["ks"][0].pid),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, f"the sender failed: {r.stderr}")
        summary = json.loads(r.stdout)
        self.assertEqual(summary["sent"], RANDOM + MUTATED, summary)

        # Every datagram reached the key server's socket, none dropped for a full buffer...
        after = lab.wait_for(lambda: (lambda c: c if c["InDatagrams"] - before["InDatagrams"] >= RANDOM + MUTATED
                                      else None)(udp_counters(lab, "ks")), 10,
                             "the KS namespace to receive every datagram", logs=("ks",))
        self.assertEqual(after["RcvbufErrors"] - before["RcvbufErrors"], 0,
                         f"datagrams dropped at the KS socket, so not all were tested: {before} -> {after}")
        # ...and the key server read them: each one it drops is logged at debug level.
        lab.wait_for(lambda: len(lab.log("ks")[log_start:].splitlines()) >= (RANDOM + MUTATED) // 2, 10,
                     "the KS to log at least half of the datagrams as handled", logs=("ks",))

        self.assertTrue(lab.alive("ks"), f"covey-ks died under fuzzing; {how}\n{lab.logs('ks')}")
        self.assertNotRegex(lab.log("ks")[log_start:], r"covey-ks error:", f"{how}\n{lab.logs('ks')}")
        reply = lab.ctl("ks", "ks", "group")
        self.assertTrue(reply["ok"], reply)

        # A member that never registered, and gm3 again over its old SA's address.
        lab.start_gm("gm4", gm_config(lab, "gm4"))
        lab.start_gm("gm3", gm_config(lab, "gm3"), name="gm3")
        for gm in GM_ADDRESS:
            lab.wait_registered(gm)
        # The same keys. The times are each member's own reading: remaining_s
        # at its status call, and activates_at and lifetime_s from the whole
        # seconds of lifetime the KS sent at its registration, so two members
        # may differ by a second there.
        timed = ("remaining_s", "activates_at", "deactivates_at", "lifetime_s")
        teks = [lab.ctl(gm, "gm", "status", "--show-keys")["tek"] for gm in GM_ADDRESS]
        st = [[{k: v for k, v in t.items() if k not in timed} for t in tek] for tek in teks]
        self.assertEqual(st[0], st[1], f"{how}: members disagree on the TEK after fuzzing")
        for a, b in zip(*teks):
            for k in ("activates_at", "deactivates_at"):
                self.assertLessEqual(abs(a[k] - b[k]), 1, f"{how}: members disagree on the TEK's {k}: {a} {b}")
        self.assertTrue(lab.alive("ks"), f"{how}\n{lab.logs('ks')}")


if __name__ == "__main__":
    unittest.main()
