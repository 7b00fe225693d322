"""Scheduled unicast rekeys (issue: rekey): with a 20 s TEK lifetime both
members follow three consecutive TEK rekeys by GROUPKEY-PUSH, holding the
key server's SPIs and keys at every step, and the KS records both
acknowledgements of each. Then a member whose inbound traffic from the KS
is dropped (nftables) misses three rekeys, the KS drops it from the membership, and
once the path is back it registers again by itself."""

import re
import unittest

from netns_lab import GM_ADDRESS, Lab, gm_config, ks_config

TEK_LIFETIME = 20


def block_ks(lab, gm):
    """Drops every datagram from the KS's port 848 arriving at GM (nftables, input hook)."""
    lab.sh(gm, "nft", "add", "table", "inet", "covey_test")
    lab.sh(gm, "nft", "add", "chain", "inet", "covey_test", "in", "{ type filter hook input priority 0; }")
    lab.sh(gm, "nft", "add", "rule", "inet", "covey_test", "in", "ip", "saddr", "10.1.12.1", "udp", "sport", "848",
           "counter", "drop")


def unblock_ks(lab, gm):
    """Removes block_ks; returns how many datagrams it dropped."""
    out = lab.sh(gm, "nft", "list", "table", "inet", "covey_test").stdout
    lab.sh(gm, "nft", "delete", "table", "inet", "covey_test")
    m = re.search(r"counter packets (\d+)", out)
    return int(m.group(1)) if m else 0


def ks_group(lab, keys=False):
    return lab.ctl("ks", "ks", "group", *(["--show-keys"] if keys else []))["groups"][0]


def ks_members(lab):
    return {m["address"]: m for m in lab.ctl("ks", "ks", "members")["groups"][0]["members"]}


def live_spis(tek_list, states=("pending", "active")):
    return {t["spi"] for t in tek_list if t.get("state", "active") in states}


class ScheduledRekeyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        lab = cls.lab = Lab("rekey")
        cls.addClassCleanup(lab.down)
        lab.up()
        lab.start_ks(ks_config(lab, authorization=list(GM_ADDRESS.values()), lifetime=TEK_LIFETIME,
                               rekey=["retransmit_period = 1", "retransmit_count = 2"]))
        for gm in GM_ADDRESS:
            lab.start_gm(gm, gm_config(lab, gm))
        for gm in GM_ADDRESS:
            lab.wait_registered(gm)

    def wait_rekey(self, seq, timeout):
        """The KS's group once its last rekey is SEQ or later and both members acknowledged it."""
        lab = self.lab

        def done():
            g = ks_group(lab, keys=True)
            last = g.get("last_rekey") or {}
            return g if last.get("seq", 0) >= seq and last.get("acked") == last.get("members") == 2 else None

        return lab.wait_for(done, timeout, f"rekey SEQ {seq} acknowledged by both members", logs=("ks", "gm3", "gm4"))

    def test_1_members_follow_three_tek_rekeys(self):
        lab = self.lab
        seq = ks_group(lab)["seq"]
        seen_teks = set()
        for step in range(1, 4):
            # The KS rekeys TEK_LIFETIME minus its margin after the previous TEK was made.
            g = self.wait_rekey(seq + step, TEK_LIFETIME + 5)
            last = g["last_rekey"]
            self.assertEqual(last["reason"], "tek-lifetime", g)
            self.assertEqual(last["transport"], "unicast", g)
            newest = max(g["tek"], key=lambda t: t["remaining_s"])
            self.assertNotIn(newest["spi"], seen_teks, f"rekey {step} reused a TEK SPI: {g}")
            seen_teks.add(newest["spi"])
            ks_spis = {t["spi"] for t in g["tek"]}
            for gm in GM_ADDRESS:
                st = lab.wait_for(lambda: (s := lab.ctl(gm, "gm", "status", "--show-keys"))["last_seq"] == last["seq"]
                                  and s, 5, f"{gm} to show SEQ {last['seq']}", logs=(gm,))
                mine = {t["spi"]: t for t in st["tek"]}
                self.assertIn(newest["spi"], mine, f"{gm} lacks the new TEK: {st}\nKS: {g}")
                self.assertEqual(mine[newest["spi"]]["keys"], newest["keys"], f"{gm} holds other keys for it")
                self.assertIn(mine[newest["spi"]]["state"], ("pending", "active"), st)
                self.assertTrue(live_spis(st["tek"]) <= ks_spis, f"{gm} uses a TEK the KS no longer has: {st}\n{g}")
                self.assertEqual(st["kek"]["spi"], g["kek"]["spi"], st)
                self.assertGreaterEqual(st["rekeys_since_registration"], step, st)
                self.assertGreaterEqual(st["acks_sent"], step, st)
            members = ks_members(lab)
            for address in GM_ADDRESS.values():
                self.assertEqual(members[address]["last_acked_seq"], last["seq"], members)
                self.assertEqual(members[address]["missed_rekeys"], 0, members)
        for gm in GM_ADDRESS:
            # Pushes kept the members registered: one registration each, no other.
            self.assertEqual(len(re.findall("Registration to KS 10.1.12.1 complete", lab.log(gm))), 1, lab.logs(gm))

    def test_2_three_missed_rekeys_drop_the_member_which_registers_again(self):
        lab = self.lab
        block_ks(lab, "gm4")
        try:
            for _ in range(3):
                seq = lab.ctl("ks", "ks", "rekey", "GET_VPN")["seq"]
                # gm3 still follows; gm4's copy and its two retransmissions are dropped.
                lab.wait_for(lambda: ks_members(lab)["10.1.23.3"]["last_acked_seq"] == seq, 5,
                             f"gm3 to acknowledge SEQ {seq}", logs=("ks", "gm3"))
            # The third miss counts once its retransmissions (period 1 s, count 2) are spent.
            lab.wait_log("ks", r"GM 10\.1\.24\.4 removed from group GET_VPN", 10, "the KS to drop gm4")
            self.assertNotIn("10.1.24.4", ks_members(lab), "gm4 is still a member")
            self.assertEqual(ks_members(lab)["10.1.23.3"]["missed_rekeys"], 0, "gm3 missed a rekey")
        finally:
            dropped = unblock_ks(lab, "gm4")
        # A newer rekey replaces an unacknowledged one: 1 + 1 + 3 (the last with its two retransmissions).
        self.assertGreaterEqual(dropped, 5, "tc dropped fewer datagrams than the three pushes to gm4")
        # The member notices no rekey came before its TEK would expire, and registers again.
        lab.wait_for(lambda: "10.1.24.4" in ks_members(lab), TEK_LIFETIME + 10, "gm4 to register again",
                     logs=("ks", "gm4"))
        self.assertEqual(len(re.findall("Registration to KS 10.1.12.1 complete", lab.log("gm4"))), 2, lab.logs("gm4"))


if __name__ == "__main__":
    unittest.main()
