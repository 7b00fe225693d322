"""With the first key server down, a member registers with the second
within its retransmission budget, without waiting out a backoff."""

import re
import time
import unittest

from netns_lab import Lab, gm_config, ks_config

FIRST, SECOND = "10.1.12.1", "10.1.12.11"
# The member gives a silent KS its first message and 4 retransmissions 2 s
# apart (gm/registrar.h), then moves to the next KS at once.
GIVE_UP_S = 10
SLACK_S = 5


class FailoverTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        lab = cls.lab = Lab("failover")
        cls.addClassCleanup(lab.down)
        lab.up()
        # The second KS shares the KS node; nothing answers on the first address.
        lab.sh("ks", "ip", "addr", "add", f"{SECOND}/24", "dev", "eth0")
        lab.start_ks(ks_config(lab, name="ks2", address=SECOND, listen=[SECOND]), name="ks2")
        cls.started = time.monotonic()
        lab.start_gm("gm3", gm_config(lab, "gm3", key_servers=[FIRST, SECOND]))
        lab.wait_registered("gm3", ks=SECOND, timeout=GIVE_UP_S + SLACK_S)
        cls.took = time.monotonic() - cls.started

    def test_only_the_second_address_is_served(self):
        log = self.lab.log("ks2")
        self.assertIn(f"listening on UDP {SECOND}:848", log, self.lab.logs("ks2"))
        self.assertNotRegex(log, r"listening on UDP (0\.0\.0\.0|10\.1\.12\.1:)", self.lab.logs("ks2"))

    def test_member_tries_the_first_then_registers_with_the_second(self):
        log = self.lab.log("gm3")
        order = [f"Registering to group 134 with KS {FIRST}:848",
                 f"KS {FIRST}:848 did not answer",
                 f"Registering to group 134 with KS {SECOND}:848",
                 f"Phase 1 SA with KS {SECOND} established",
                 f"Registration to KS {SECOND} complete"]
        at = [log.find(line) for line in order]
        self.assertTrue(all(a >= 0 for a in at) and at == sorted(at),
                        f"expected these lines in this order: {order}\n{self.lab.logs('gm3')}")
        self.assertNotIn(f"Registration to KS {FIRST} ", log)

    def test_registered_within_the_backoff(self):
        self.assertLess(self.took, GIVE_UP_S + SLACK_S, self.lab.logs("gm3"))
        # Moving to the second KS needs no backoff round: that comes only after every KS failed.
        log = self.lab.log("gm3")
        done = log.find(f"Registration to KS {SECOND} complete")
        self.assertNotIn("all key servers failed", log[:done], self.lab.logs("gm3"))

    def test_status_shows_the_second_key_server_active(self):
        s = self.lab.ctl("gm3", "gm", "status")
        self.assertEqual(s["state"], "registered", s)
        self.assertEqual(s["key_servers"], [{"address": f"{FIRST}:848", "active": False},
                                            {"address": f"{SECOND}:848", "active": True}], s)
        self.assertEqual(len(s["tek"]), 1, s)
        ks = self.lab.ctl("ks", "ks", "group", name="ks2")["groups"][0]
        self.assertEqual(s["tek"][0]["spi"], ks["tek"][0]["spi"], (s, ks))
        members = self.lab.ctl("ks", "ks", "members", name="ks2")["groups"][0]["members"]
        self.assertEqual([m["address"] for m in members], ["10.1.23.3"], members)
        self.assertTrue(re.search(r"Registration of GM 10\.1\.23\.3 complete", self.lab.log("ks2")), self.lab.logs("ks2"))


if __name__ == "__main__":
    unittest.main()
