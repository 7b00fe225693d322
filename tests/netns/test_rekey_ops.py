"""Rekeys on demand and what can go wrong around them (issue: rekey):
- a push lost on the way to gm4 is retransmitted and acknowledged;
- a replayed push, a push with one bit flipped and a push signed by
  another key are refused, each logged with its reason and counted, and
  leave gm4's keys as they were; the genuine push is then accepted;
- after kill -9 and a restart from its state file the KS rekeys with a
  higher SEQ, and both members follow without registering again;
- a signing-key rollover (a reload with a new key file): both members
  follow a rekey, the rollover and two rekeys after it, registered once,
  and a push signed with the old key afterwards is refused as retired;
- `coveyctl ks remove-member` leaves gm4 behind: gm3 holds a KEK and TEK
  that gm4 does not;
- a policy change rekeys on `coveyctl ks reload` and on SIGHUP, members
  take the new ACL, and a broken configuration is refused whole while the
  KS goes on with the old one."""

import hashlib
import re
import signal
import subprocess
import unittest

from cryptography.hazmat.primitives import serialization

from captures import udp_datagrams
from netns_lab import GM_ADDRESS, Lab, gm_config, ks_config
from pushes import flip_bit, forge, pushes, send_from_ks
from test_rekey import block_ks, ks_group, ks_members, unblock_ks

GM4 = GM_ADDRESS["gm4"]
GM3 = GM_ADDRESS["gm3"]


def registrations(lab, gm):
    return len(re.findall("Registration to KS 10.1.12.1 complete", lab.log(gm)))


class OperatorRekeyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        lab = cls.lab = Lab("rekeyops")
        cls.addClassCleanup(lab.down)
        lab.up()
        cls.ks_toml = ks_config(lab, authorization=list(GM_ADDRESS.values()),
                                rekey=["retransmit_period = 2", "retransmit_count = 2"])
        lab.start_ks(cls.ks_toml)
        for gm in GM_ADDRESS:
            lab.start_gm(gm, gm_config(lab, gm))
        for gm in GM_ADDRESS:
            lab.wait_registered(gm)

    def rekey(self):
        return self.lab.ctl("ks", "ks", "rekey", "GET_VPN")["seq"]

    def wait_acked(self, address, seq, timeout=5):
        self.lab.wait_for(lambda: (ks_members(self.lab).get(address) or {}).get("last_acked_seq") == seq, timeout,
                          f"{address} to acknowledge SEQ {seq}", logs=("ks", "gm3", "gm4"))

    def gm(self, gm, keys=False):
        return self.lab.ctl(gm, "gm", "status", *(["--show-keys"] if keys else []))

    def test_1_lost_push_is_retransmitted_and_acknowledged(self):
        lab = self.lab
        block_ks(lab, "gm4")
        try:
            seq = self.rekey()
            self.wait_acked(GM3, seq)  # the pushes are out; gm4's was dropped
            self.assertNotEqual(ks_members(lab)[GM4]["last_acked_seq"], seq)
        finally:
            dropped = unblock_ks(lab, "gm4")
        self.assertGreaterEqual(dropped, 1, "the push to gm4 was not dropped")
        self.wait_acked(GM4, seq, timeout=6)  # the retransmission, period 2 s
        self.assertEqual(self.gm("gm4")["last_seq"], seq)

    def test_2_forged_replayed_and_damaged_pushes_are_refused(self):
        lab = self.lab
        cap = lab.start_capture("r2", "gm4", "pushes.pcap")
        seq_a = self.rekey()
        self.wait_acked(GM4, seq_a)
        # A push gm4 never saw: dropped on its way in, retransmissions included (period 2 s, count 2).
        block_ks(lab, "gm4")
        try:
            seq_c = self.rekey()
            self.wait_acked(GM3, seq_c)
            lab.wait_for(lambda: len(pushes(udp_datagrams(cap), to=GM4)) >= 4, 8,
                         "the push to gm4 and its two retransmissions on r2")
        finally:
            unblock_ks(lab, "gm4")
        lab.stop_capture(cap)
        seen = pushes(udp_datagrams(cap), to=GM4)
        old, fresh = seen[0], seen[-1]
        self.assertEqual(seen[1:], [fresh] * (len(seen) - 1), "retransmissions differ from the push")
        kek = bytes.fromhex(ks_group(lab, keys=True)["kek"]["keys"]["algorithm_key"])

        def keys(st):  # what a refused push must leave alone (remaining_s moves by itself)
            return ([(t["spi"], t["keys"]) for t in st["tek"]], st["kek"]["spi"], st["kek"]["keys"], st["last_seq"])

        def refused(what, datagram, reasons):
            before = self.gm("gm4", keys=True)
            logged0 = len(re.findall("Refused GROUPKEY-PUSH", lab.log("gm4")))
            send_from_ks(lab, datagram, GM4)
            lab.wait_for(lambda: len(re.findall("Refused GROUPKEY-PUSH", lab.log("gm4"))) > logged0, 5,
                         f"gm4 to refuse {what}", logs=("gm4",))
            after = self.gm("gm4", keys=True)
            grown = [r for r in after["pushes_refused"] if after["pushes_refused"][r] > before["pushes_refused"][r]]
            self.assertEqual(len(grown), 1, f"{what}: counters {before['pushes_refused']} -> {after['pushes_refused']}")
            self.assertIn(grown[0], reasons, f"{what} refused as {grown[0]}")
            self.assertEqual(keys(after), keys(before), f"{what} changed gm4's keys")

        self.assertEqual(self.gm("gm4")["last_seq"], seq_a)
        refused("a bit flipped", flip_bit(fresh), ("bad_signature", "malformed", "undecryptable"))
        refused("a fresh SEQ signed by another key", forge(fresh, kek, seq_c + 100), ("bad_signature",))
        # The genuine push still works: the refusals were about the damage, not the route.
        send_from_ks(lab, fresh, GM4)
        lab.wait_for(lambda: self.gm("gm4")["last_seq"] == seq_c, 5, f"gm4 to accept SEQ {seq_c}", logs=("gm4",))
        # Now SEQ seq_a is behind the last accepted: a replay, not a retransmission.
        refused(f"a replay of SEQ {seq_a}", old, ("replay",))

    def test_3_restart_after_kill_continues_the_group(self):
        lab = self.lab
        seq_before = ks_group(lab)["seq"]
        regs = {gm: registrations(lab, gm) for gm in GM_ADDRESS}
        p, _ = lab.procs["ks"]
        p.kill()  # SIGKILL of `ip netns exec`, which exec'd covey-ks: the KS itself
        p.wait()
        lab.start_ks(self.ks_toml)
        self.assertEqual(sorted(ks_members(lab)), sorted(GM_ADDRESS.values()), "members lost in the restart")
        seq = self.rekey()
        self.assertGreater(seq, seq_before)
        for address in GM_ADDRESS.values():
            self.wait_acked(address, seq)
        for gm in GM_ADDRESS:
            self.assertEqual(self.gm(gm)["last_seq"], seq)
            self.assertEqual(registrations(lab, gm), regs[gm], f"{gm} registered again:\n{lab.logs(gm)}")

    def test_3a_signing_key_rollover(self):
        lab = self.lab
        regs = {gm: registrations(lab, gm) for gm in GM_ADDRESS}

        def signing_key_id(pem_path):  # SHA-256 of the DER public key, as covey names it
            key = serialization.load_pem_private_key(pem_path.read_bytes(), None)
            der = key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
            return key, hashlib.sha256(der).hexdigest()

        def follow(seq, reason):
            g = ks_group(lab, keys=True)
            self.assertEqual(g["last_rekey"]["reason"], reason, g)
            for address in GM_ADDRESS.values():
                self.wait_acked(address, seq)
            for gm in GM_ADDRESS:
                st = self.gm(gm, keys=True)
                self.assertEqual(st["last_seq"], seq, st)
                self.assertEqual(st["kek"]["spi"], g["kek"]["spi"], st)
                self.assertEqual(st["kek"]["signing_key"], g["kek"]["signing_key"], st)
                newest = max(g["tek"], key=lambda t: t["remaining_s"])
                self.assertIn((newest["spi"], newest["keys"]), [(t["spi"], t["keys"]) for t in st["tek"]], st)
            return g

        old_key, old_id = signing_key_id(lab.rekey_key)
        self.assertEqual(ks_group(lab)["kek"]["signing_key"], old_id)
        follow(self.rekey(), "operator")

        # The rollover: a new key file, named in the configuration, and a reload.
        new_pem = lab.run / "ks-rekey-2.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", str(new_pem)], check=True, capture_output=True)
        new_pem.chmod(0o600)
        _, new_id = signing_key_id(new_pem)
        toml = self.ks_toml.replace(f'signing_key = "{lab.rekey_key}"', f'signing_key = "{new_pem}"')
        self.assertNotEqual(toml, self.ks_toml)
        lab.write("ks.toml", toml)
        type(self).ks_toml = toml  # the later tests reload and restart with it
        reply = lab.ctl("ks", "ks", "reload")
        self.assertEqual(reply.get("rolled_over"), ["GET_VPN"], reply)
        g = follow(ks_group(lab)["last_rekey"]["seq"], "signing-key")
        self.assertEqual(g["kek"]["signing_key"], new_id, g)
        lab.wait_log("ks", f"new signing key SHA-256 {new_id}", 2, "the KS to log the rollover")
        for gm in GM_ADDRESS:
            lab.wait_log(gm, f"new rekey signing key SHA-256 {new_id}", 2, f"{gm} to log the new key")

        # Two rekeys signed with the new key; the one before gm4's is captured to forge from.
        follow(self.rekey(), "operator")
        cap = lab.start_capture("r2", "gm4", "rollover.pcap")
        seq = self.rekey()
        follow(seq, "operator")
        lab.wait_for(lambda: pushes(udp_datagrams(cap), to=GM4), 5, "the push to gm4 on r2")
        lab.stop_capture(cap)
        for gm in GM_ADDRESS:
            self.assertEqual(registrations(lab, gm), regs[gm], f"{gm} registered again:\n{lab.logs(gm)}")
            self.assertEqual(regs[gm], 1, f"{gm} registered {regs[gm]} times before the rollover")

        # A fresh SEQ under the current KEK, signed with the retired key: refused, counted, logged.
        kek = bytes.fromhex(ks_group(lab, keys=True)["kek"]["keys"]["algorithm_key"])
        forged = forge(pushes(udp_datagrams(cap), to=GM4)[-1], kek, seq + 100, key=old_key)
        before = self.gm("gm4", keys=True)
        logged = len(re.findall("retired signing key", lab.log("gm4")))
        send_from_ks(lab, forged, GM4)
        lab.wait_for(lambda: len(re.findall("retired signing key", lab.log("gm4"))) > logged, 5,
                     "gm4 to refuse the push signed with the old key", logs=("gm4",))
        after = self.gm("gm4", keys=True)
        grown = {r: after["pushes_refused"][r] - before["pushes_refused"].get(r, 0) for r in after["pushes_refused"]}
        self.assertEqual({r: n for r, n in grown.items() if n}, {"retired_signing_key": 1}, after["pushes_refused"])
        line = [ln for ln in lab.log("gm4").splitlines() if "retired signing key" in ln][-1]
        for part in ("Refused GROUPKEY-PUSH from 10.1.12.1 for group GET_VPN", f"SEQ {seq + 100}", old_id, new_id):
            self.assertIn(part, line)

        def keys(st):  # what a refused push must leave alone (remaining_s moves by itself)
            return ([(t["spi"], t["keys"]) for t in st["tek"]], st["kek"]["spi"], st["kek"]["keys"],
                    st["kek"]["signing_key"], st["last_seq"])

        self.assertEqual(keys(after), keys(before), "the push signed with the old key changed gm4's keys")

    def test_4_removed_member_cannot_follow(self):
        lab = self.lab
        gm4_before = self.gm("gm4", keys=True)
        ks_before = {t["spi"] for t in ks_group(lab)["tek"]}
        seq = lab.ctl("ks", "ks", "remove-member", GM4)["seq"]
        self.assertNotIn(GM4, ks_members(lab))
        self.wait_acked(GM3, seq)
        g = ks_group(lab, keys=True)
        new = [t for t in g["tek"] if t["spi"] not in ks_before]
        self.assertEqual(len(new), 1, f"remove-member made {len(new)} TEKs: {g['tek']}")
        gm3 = self.gm("gm3", keys=True)
        gm4 = self.gm("gm4", keys=True)
        self.assertEqual(gm3["kek"]["spi"], g["kek"]["spi"])
        self.assertNotEqual(gm3["kek"]["spi"], gm4_before["kek"]["spi"], "remove-member kept the KEK")
        self.assertNotEqual(gm3["kek"]["keys"], gm4["kek"]["keys"], "gm4 holds the new KEK")
        self.assertIn(new[0]["spi"], {t["spi"] for t in gm3["tek"]}, "gm3 lacks the new TEK")
        self.assertNotIn(new[0]["spi"], {t["spi"] for t in gm4["tek"]}, "gm4 holds the new TEK")
        self.assertNotIn(new[0]["keys"], [t.get("keys") for t in gm4["tek"]], "gm4 holds the new TEK's keys")

    def test_5_policy_change_on_reload_and_sighup(self):
        lab = self.lab
        acl = 'acl = ["deny udp any eq 848 any eq 848", "permit ip 192.168.0.0/16 192.168.0.0/16"]'
        self.assertIn(acl, self.ks_toml)

        def reconfigure(new_acl):
            lab.write("ks.toml", self.ks_toml.replace(acl, new_acl))

        def gm3_acl():
            return [str(e) for e in self.gm("gm3")["acl"]]

        before = gm3_acl()
        reconfigure('acl = ["deny udp any eq 848 any eq 848", "deny icmp any any", '
                    '"permit ip 192.168.0.0/16 192.168.0.0/16"]')
        reply = lab.ctl("ks", "ks", "reload")
        self.assertEqual(reply.get("rekeyed"), ["GET_VPN"], reply)
        g = ks_group(lab)
        self.assertEqual(g["last_rekey"]["reason"], "policy-change", g)
        self.wait_acked(GM3, g["last_rekey"]["seq"])
        lab.wait_for(lambda: len(gm3_acl()) == len(before) + 1, 5, "gm3 to hold the three-entry ACL", logs=("gm3",))

        # SIGHUP does the same.
        seq = g["last_rekey"]["seq"]
        reconfigure('acl = ["deny udp any eq 848 any eq 848", "permit ip 192.168.0.0/16 192.168.0.0/16"]')
        lab.procs["ks"][0].send_signal(signal.SIGHUP)
        lab.wait_for(lambda: (ks_group(lab).get("last_rekey") or {}).get("seq", 0) > seq, 5,
                     "a rekey after SIGHUP", logs=("ks",))
        lab.wait_for(lambda: gm3_acl() == before, 5, "gm3 to hold the two-entry ACL again", logs=("gm3",))

        # A broken file changes nothing, and says what is wrong.
        seq = ks_group(lab)["last_rekey"]["seq"]
        reconfigure('acl = ["permit ip 192.168.0.0/33 any"]')
        r = lab.ctl("ks", "ks", "reload", check=False)
        self.assertFalse(r.get("ok"), r)
        self.assertIn("192.168.0.0/33", r.get("error", ""), r)
        self.assertTrue(lab.alive("ks"))
        self.assertEqual(ks_group(lab)["last_rekey"]["seq"], seq, "a refused reload rekeyed")
        self.assertEqual(gm3_acl(), before)


if __name__ == "__main__":
    unittest.main()
