"""Scheduled rekeys by multicast (issue: rekey): the KS, gm3 and gm4 share a
bridge (in r2's namespace, IGMP snooping off), register over it, and with
a 20 s TEK lifetime both members follow three consecutive rekeys, each one
datagram to the group address 239.192.1.1, with the configured TTL, that
nobody acknowledges."""

import subprocess
import unittest

from captures import udp_datagrams
from netns_lab import Lab, gm_config, ks_config
from pushes import pushes
from test_rekey import TEK_LIFETIME, ks_group

BRIDGE = {"ks": "10.1.100.1", "gm3": "10.1.100.3", "gm4": "10.1.100.4"}
GROUP_ADDRESS = "239.192.1.1"
TTL = 4


def add_bridge(lab):
    lab.sh("r2", "ip", "link", "add", "mc0", "type", "bridge", "mcast_snooping", "0")
    lab.sh("r2", "ip", "link", "set", "mc0", "up")
    for node, address in BRIDGE.items():
        port = f"mc{node}"
        subprocess.run(["ip", "link", "add", "mc", "netns", lab.ns(node), "type", "veth", "peer", "name", port,
                        "netns", lab.ns("r2")], check=True)
        lab.sh(node, "ip", "addr", "add", f"{address}/24", "dev", "mc")
        lab.sh(node, "ip", "link", "set", "mc", "up")
        lab.sh("r2", "ip", "link", "set", port, "master", "mc0")
        lab.sh("r2", "ip", "link", "set", port, "up")


class MulticastRekeyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        lab = cls.lab = Lab("mcast")
        cls.addClassCleanup(lab.down)
        lab.up()
        add_bridge(lab)
        members = [BRIDGE["gm3"], BRIDGE["gm4"]]
        lab.start_ks(ks_config(lab, address=BRIDGE["ks"], authorization=members, lifetime=TEK_LIFETIME,
                               rekey=['transport = "multicast"', f'address = "{GROUP_ADDRESS}"', f"ttl = {TTL}"]))
        cls.pcap = lab.start_capture("r2", "mcgm4", "multicast.pcap")
        for gm in ("gm3", "gm4"):
            lab.start_gm(gm, gm_config(lab, gm, key_servers=(BRIDGE["ks"],), local_address=BRIDGE[gm]))
        for gm in ("gm3", "gm4"):
            lab.wait_registered(gm, ks=BRIDGE["ks"])

    def test_members_follow_three_multicast_rekeys(self):
        lab = self.lab
        seq = ks_group(lab)["seq"]
        for step in range(1, 4):
            g = lab.wait_for(lambda: (x := ks_group(lab, keys=True)).get("last_rekey")
                             and x["last_rekey"]["seq"] >= seq + step and x, TEK_LIFETIME + 5,
                             f"multicast rekey {step}", logs=("ks",))
            last = g["last_rekey"]
            self.assertEqual(last["transport"], "multicast", g)
            self.assertEqual(last["reason"], "tek-lifetime", g)
            newest = max(g["tek"], key=lambda t: t["remaining_s"])
            for gm in ("gm3", "gm4"):
                st = lab.wait_for(lambda: (s := lab.ctl(gm, "gm", "status", "--show-keys"))["last_seq"] == last["seq"]
                                  and s, 5, f"{gm} to follow SEQ {last['seq']}", logs=(gm, "ks"))
                mine = {t["spi"]: t for t in st["tek"]}
                self.assertIn(newest["spi"], mine, st)
                self.assertEqual(mine[newest["spi"]]["keys"], newest["keys"])
                self.assertEqual(st["acks_sent"], 0, "a multicast rekey was acknowledged")
        lab.stop_capture(self.pcap)
        sent = [d for d in udp_datagrams(self.pcap, ttl=True) if d[2] == GROUP_ADDRESS]
        self.assertGreaterEqual(len(pushes(sent)), 3, f"no multicast pushes on the bridge: {sent[:3]}")
        self.assertTrue(all(d[0] == BRIDGE["ks"] for d in sent), "multicast pushes from another source")
        # A bridge does not route: the configured TTL arrives as sent.
        self.assertEqual({d[5] for d in sent}, {TTL}, "multicast pushes with another TTL than configured")


if __name__ == "__main__":
    unittest.main()
