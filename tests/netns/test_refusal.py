"""The key server refuses, and says whom and why: a member outside the
authorization list, and a member with the wrong pre-shared key."""

import time
import unittest

from netns_lab import Lab, gm_config, ks_config


class RefusalTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        lab = cls.lab = Lab("refuse")
        cls.addClassCleanup(lab.down)
        lab.up()
        # gm4 (10.1.24.4) is not on the list.
        lab.start_ks(ks_config(lab, authorization=["10.1.23.3"]))

    def setUp(self):
        self.ks_log_start = len(self.lab.log("ks"))
        self.addCleanup(self._stop_members)

    def _stop_members(self):
        for name in list(self.lab.procs):
            if name != "ks":
                self.lab.stop(name)

    def ks_log(self):
        """The key server's log since this test began."""
        return self.lab.log("ks")[self.ks_log_start:]

    def test_member_outside_the_authorization_list_is_refused(self):
        lab = self.lab
        lab.start_gm("gm3", gm_config(lab, "gm3"))
        lab.start_gm("gm4", gm_config(lab, "gm4"))
        lab.wait_registered("gm3")  # the same key server admits the member on its list
        lab.wait_log("ks", r"GM 10\.1\.24\.4:848 registration refused: .*GM 10\.1\.24\.4 is not in the authorization list",
                     10, "the KS to log that it refused gm4 and why", since=self.ks_log_start)
        lab.wait_log("gm4", r"KS 10\.1\.12\.1 refused the registration .*AUTHENTICATION-FAILED", 10)
        self.assertNotRegex(self.ks_log(), r"Registration of GM 10\.1\.24\.4 complete", lab.logs("ks"))
        self.assertNotIn("Registration to KS", lab.log("gm4"), lab.logs("gm4"))

        s = lab.ctl("gm4", "gm", "status", "--show-keys")
        self.assertNotEqual(s["state"], "registered", s)
        self.assertEqual(s["tek"], [], f"gm4 holds a TEK it was refused: {s}")
        self.assertIsNone(s["kek"], s)
        self.assertRegex(s["last_error"] or "", "AUTHENTICATION-FAILED", s)
        members = lab.ctl("ks", "ks", "members")["groups"][0]["members"]
        self.assertEqual([m["address"] for m in members], ["10.1.23.3"], members)

    def test_wrong_pre_shared_key_fails_phase_1(self):
        lab = self.lab
        lab.start_gm("gm3", gm_config(lab, "gm3", name="gm3-wrong-key", psk="not-the-key-the-ks-has"),
                     name="gm3-wrong-key")
        lab.wait_log("ks", r"Main Mode with 10\.1\.23\.3:848 failed at message 5: .*wrong pre-shared key", 10,
                     "the KS to log the phase-1 failure naming 10.1.23.3", since=self.ks_log_start)
        time.sleep(0.5)  # a member that got through anyway would have registered by now
        self.assertNotRegex(self.ks_log(), r"Phase 1 SA with GM 10\.1\.23\.3\S* established", lab.logs("ks"))
        self.assertNotRegex(lab.log("gm3-wrong-key"), r"Phase 1 SA with KS .* established", lab.logs("gm3-wrong-key"))
        s = lab.ctl("gm3", "gm", "status", name="gm3-wrong-key")
        self.assertNotEqual(s["state"], "registered", s)
        self.assertEqual(s["tek"], [], s)

        # The same member with the right key gets in: the key was the only fault.
        lab.stop("gm3-wrong-key")
        lab.start_gm("gm3", gm_config(lab, "gm3", name="gm3-right-key"), name="gm3-right-key")
        lab.wait_registered("gm3-right-key")


if __name__ == "__main__":
    unittest.main()
