"""GDOI over IPv6 beside IPv4 (issue 12, control plane), with real daemons in
the dual-stack lab. One key server listens on 10.1.12.1 and 2001:db8:12::1;
gm3 registers over IPv6, gm4 over IPv4, into one group whose ACL mixes
both families in order. Both hold that ACL as written, the key server
knows gm3 by its IPv6 address, and a unicast rekey reaches gm3 over IPv6
from the address it registered to and is acknowledged with its
ID_IPV6_ADDR. Then, on a bridge in r2's namespace (as test_multicast.py,
no multicast routing: the lab's r2 runs no MLD router), rekeys go by
multicast to the site-local group ff05::1:3 with the configured hop
limit, and an IPv6 member and an IPv4 one both join it with MLD and
follow them."""

import subprocess
import unittest

from captures import decode, udp_datagrams
from netns_lab import COVEYCTL, Lab, gm_config, ks_config
from pushes import GROUPKEY_PUSH, pushes
from test_rekey import ks_group, ks_members

KS4, KS6 = "10.1.12.1", "2001:db8:12::1"
GM3, GM4 = "2001:db8:23::3", "10.1.24.4"
GROUPKEY_PUSH_ACK = 35

# A Cisco ACL pair in one list: the IPv4 entries and the IPv6 ones, each
# family's GDOI traffic in clear first. The member must hold them in order.
ACL = ("deny udp any eq 848 any eq 848",
       "deny udp 2001:db8::/32 eq 848 2001:db8::/32 eq 848",
       "permit ip 192.168.0.0/16 192.168.0.0/16",
       "permit ipv6 2001:db8:3::/64 2001:db8:4::/64",
       "permit tcp 10.9.0.0/16 10.8.0.0/16 eq 443",
       "permit ipv6 2001:db8:4::/64 2001:db8:3::/64")
# As AclEntry::str() prints them back: "ipv6" with addresses is "ip".
ACL_HELD = [a.replace("permit ipv6 ", "permit ip ") for a in ACL]


def gm_status(lab, gm):
    return lab.ctl(gm, "gm", "status")


class DualStackRegistrationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        lab = cls.lab = Lab("ipv6")
        cls.addClassCleanup(lab.down)
        lab.up()
        lab.start_ks(ks_config(lab, address=KS4, listen=[KS4, KS6], authorization=[GM4, "2001:db8:23::/64"],
                               acl=ACL, rekey=["retransmit_period = 1", "retransmit_count = 2"]))
        # Every datagram on gm3's link: it must all be IPv6. A push of this
        # ACL (six entries) is 1.5 kB: the key server sends it in two IPv6
        # fragments, whose second has no UDP header to match.
        cls.pcap = lab.start_capture("r2", "gm3", "gm3.pcap", "udp port 848 or (ip6 and ip6[6] == 44)")
        lab.start_gm("gm3", gm_config(lab, "gm3", key_servers=(KS6,), local_address=GM3))
        lab.start_gm("gm4", gm_config(lab, "gm4"))
        lab.wait_registered("gm3", ks=KS6)
        lab.wait_registered("gm4", ks=KS4)

    def test_1_members_of_both_families_hold_one_policy_in_order(self):
        lab = self.lab
        members = ks_members(lab)
        self.assertEqual(set(members), {GM3, GM4}, members)
        self.assertEqual(members[GM3]["identity"], GM3, members)  # Main Mode ID_IPV6_ADDR
        self.assertEqual(members[GM3]["registered_to"], KS6, members)
        self.assertEqual(members[GM4]["registered_to"], KS4, members)
        st3, st4 = gm_status(lab, "gm3"), gm_status(lab, "gm4")
        self.assertEqual(st3["acl"], ACL_HELD, st3)
        self.assertEqual(st4["acl"], ACL_HELD, st4)
        self.assertEqual({t["spi"] for t in st3["tek"]}, {t["spi"] for t in st4["tek"]})
        # The operator's table says who came by which address.
        text = subprocess.run(lab.exec_args("ks", str(COVEYCTL), "ks", "members", "--socket", lab.socket("ks")),
                              capture_output=True, text=True, timeout=15, check=True).stdout
        self.assertIn("VIA KS", text)
        self.assertRegex(text, rf"\n  {GM3} .* {KS6} ")

    def test_2_unicast_rekey_is_acknowledged_over_ipv6(self):
        lab = self.lab
        seq = lab.ctl("ks", "ks", "rekey", "GET_VPN")["seq"]
        lab.wait_for(lambda: all((ks_members(lab).get(a) or {}).get("last_acked_seq") == seq for a in (GM3, GM4)), 5,
                     f"both members to acknowledge SEQ {seq}", logs=("ks", "gm3", "gm4"))
        self.assertEqual(gm_status(lab, "gm3")["last_seq"], seq)
        self.assertEqual(ks_group(lab)["last_rekey"]["acked"], 2)
        lab.stop_capture(self.pcap)
        datagrams = udp_datagrams(self.pcap)
        self.assertTrue(datagrams, "nothing captured on gm3's link")
        self.assertEqual({(d[0], d[2]) for d in datagrams}, {(GM3, KS6), (KS6, GM3)},
                         "gm3's GDOI traffic is not all between its and the key server's IPv6 addresses")
        self.assertTrue(pushes(datagrams, to=GM3), "no GROUPKEY-PUSH to gm3 over IPv6")
        doc = decode(self.pcap, lab.keylog("ks"))
        acks = [m for m in doc["messages"] if m.get("header", {}).get("exchange") == GROUPKEY_PUSH_ACK]
        self.assertTrue(acks, "no GROUPKEY-PUSH-ACK from gm3")
        ids = [p for m in acks for p in m["payloads"] if p.get("name") == "ID"]
        self.assertTrue(ids, acks)
        for p in ids:
            self.assertEqual((p["id_type_name"], p["text"]), ("ID_IPV6_ADDR", GM3), p)
        seqs = [p for m in acks for p in m["payloads"] if p.get("name") == "SEQ"]
        self.assertIn(seq, [p["sequence_number"] for p in seqs], seqs)


# The multicast bridge: every node both families (no DAD: the addresses are
# ours alone on a bridge we just made).
BRIDGE4 = {"ks": "10.1.100.1", "gm3": "10.1.100.3", "gm4": "10.1.100.4"}
BRIDGE6 = {"ks": "2001:db8:100::1", "gm3": "2001:db8:100::3", "gm4": "2001:db8:100::4"}
GROUP = "ff05::1:3"
HOPS = 4
MLD2_REPORT = 143


def add_bridge(lab):
    lab.sh("r2", "ip", "link", "add", "mc0", "type", "bridge", "mcast_snooping", "0")
    lab.sh("r2", "ip", "link", "set", "mc0", "up")
    for node in BRIDGE4:
        port = f"mc{node}"
        subprocess.run(["ip", "link", "add", "mc", "netns", lab.ns(node), "type", "veth", "peer", "name", port,
                        "netns", lab.ns("r2")], check=True)
        lab.sh(node, "ip", "addr", "add", f"{BRIDGE4[node]}/24", "dev", "mc")
        lab.sh(node, "ip", "-6", "addr", "add", f"{BRIDGE6[node]}/64", "dev", "mc", "nodad")
        lab.sh(node, "ip", "link", "set", "mc", "up")
        lab.sh("r2", "ip", "link", "set", port, "master", "mc0")
        lab.sh("r2", "ip", "link", "set", port, "up")


def link_local(lab, node):
    out = lab.sh(node, "ip", "-6", "-o", "addr", "show", "dev", "mc", "scope", "link").stdout
    return out.split()[3].split("/")[0]


class Ipv6MulticastRekeyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        lab = cls.lab = Lab("ipv6mc")
        cls.addClassCleanup(lab.down)
        lab.up()
        add_bridge(lab)
        lab.start_ks(ks_config(lab, address=BRIDGE4["ks"], listen=[BRIDGE4["ks"], BRIDGE6["ks"]],
                               authorization=[BRIDGE6["gm3"], BRIDGE4["gm4"]],
                               rekey=['transport = "multicast"', f'address = "{GROUP}"', f"ttl = {HOPS}"]))
        # On the bridge itself: it floods every port's multicast (MLD reports included) to it.
        cls.pcap = lab.start_capture("r2", "mc0", "mc0.pcap", "udp port 848 or ip6 protochain 58")
        # gm3 registers over IPv6, gm4 over IPv4; the rekey group is IPv6 for both.
        lab.start_gm("gm3", gm_config(lab, "gm3", key_servers=(BRIDGE6["ks"],), local_address=BRIDGE6["gm3"]))
        lab.start_gm("gm4", gm_config(lab, "gm4", key_servers=(BRIDGE4["ks"],), local_address=BRIDGE4["gm4"]))
        lab.wait_registered("gm3", ks=BRIDGE6["ks"])
        lab.wait_registered("gm4", ks=BRIDGE4["ks"])
        for gm in ("gm3", "gm4"):
            lab.wait_log(gm, rf"Joined multicast group \[{GROUP}\]:848", 5, f"{gm} to join {GROUP}")

    def test_members_of_both_families_follow_multicast_rekeys_to_an_ipv6_group(self):
        lab = self.lab
        g = ks_group(lab)
        self.assertIn(GROUP, str(g.get("rekey")), g)
        for _ in range(2):
            seq = lab.ctl("ks", "ks", "rekey", "GET_VPN")["seq"]
            for gm in ("gm3", "gm4"):
                st = lab.wait_for(lambda: (s := gm_status(lab, gm))["last_seq"] == seq and s, 5,
                                  f"{gm} to follow multicast SEQ {seq}", logs=(gm, "ks"))
                self.assertEqual(st["acks_sent"], 0, "a multicast rekey was acknowledged")
        self.assertEqual(ks_group(lab)["last_rekey"]["transport"], "multicast")
        lab.stop_capture(self.pcap)
        sent = [d for d in udp_datagrams(self.pcap, ttl=True) if d[2] == GROUP]
        self.assertGreaterEqual(len(pushes(sent)), 2, f"no multicast pushes to {GROUP} on the bridge: {sent[:3]}")
        self.assertEqual({d[0] for d in sent}, {BRIDGE6["ks"]}, "multicast pushes from another source")
        self.assertEqual({d[5] for d in sent}, {HOPS}, "multicast pushes with another hop limit than configured")
        self.assertTrue(all(d[4][18] == GROUPKEY_PUSH for d in sent))
        # Both members told the link with MLD (IPV6_JOIN_GROUP), the IPv4-registered one too.
        r = subprocess.run(["tshark", "-r", str(self.pcap), "-Y", f"icmpv6.type == {MLD2_REPORT}", "-T", "fields",
                            "-e", "ipv6.src", "-e", "icmpv6.mldr.mar.multicast_address"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        reporters = {line.split("\t")[0] for line in r.stdout.splitlines() if GROUP in line}
        for gm in ("gm3", "gm4"):
            self.assertIn(link_local(lab, gm), reporters, f"no MLD report for {GROUP} from {gm}: {r.stdout}")


if __name__ == "__main__":
    unittest.main()
