"""Phase 1 with RSA signatures: a CA made here with the openssl CLI (RSA
2048), certificates for ks, gm3 and gm4, and no pre-shared key anywhere."""

import unittest

from netns_lab import GM_ADDRESS, Lab, gm_config, ks_config, make_pki


class CertificateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        lab = cls.lab = Lab("cert")
        cls.addClassCleanup(lab.down)
        lab.up()
        cls.pki = make_pki(lab.run / "pki")
        cls.rogue = make_pki(lab.run / "rogue-pki", names=("gm4",), ca_name="not the covey test CA")
        lab.start_ks(ks_config(lab, authorization=list(GM_ADDRESS.values()), pki=cls.pki, psk=None))
        for gm in GM_ADDRESS:
            lab.start_gm(gm, gm_config(lab, gm, pki=cls.pki, psk=None))
        for gm in GM_ADDRESS:
            lab.wait_registered(gm)

    def test_configs_have_no_pre_shared_key(self):
        for name in ("ks", "gm3", "gm4"):
            text = (self.lab.run / f"{name}.toml").read_text()
            self.assertNotIn("pre_shared_key", text)
            self.assertIn("certificate", text)

    def test_phase_1_is_authenticated_by_signatures(self):
        ks_log = self.lab.log("ks")
        for gm, address in GM_ADDRESS.items():
            self.assertRegex(ks_log, rf"Phase 1 SA with GM {address}:848 \(.*CN ?= ?{gm}\b.*\) established: .*rsa-sig",
                             self.lab.logs("ks"))
            self.assertRegex(self.lab.log(gm), r"Phase 1 SA with KS 10\.1\.12\.1 established: .*rsa-sig", self.lab.logs(gm))
            self.assertNotRegex(self.lab.log(gm), r"\bpsk\b", self.lab.logs(gm))

    def test_members_registered_with_the_same_tek(self):
        st = {gm: self.lab.ctl(gm, "gm", "status", "--show-keys") for gm in GM_ADDRESS}
        for gm, s in st.items():
            self.assertEqual(s["state"], "registered", s)
        held = {gm: [(t["spi"], t["keys"]) for t in s["tek"]] for gm, s in st.items()}
        self.assertEqual(len(held["gm3"]), 1, st)
        self.assertEqual(held["gm3"], held["gm4"], st)
        members = self.lab.ctl("ks", "ks", "members")["groups"][0]["members"]
        self.assertEqual(sorted(m["address"] for m in members), sorted(GM_ADDRESS.values()), members)

    def test_certificate_from_another_ca_is_refused(self):
        lab = self.lab
        since = len(lab.log("ks"))
        rogue = dict(self.pki, **{"gm4.crt": self.rogue["gm4.crt"], "gm4.key": self.rogue["gm4.key"]})
        lab.stop("gm4")
        self.addCleanup(self._restore_gm4)
        lab.start_gm("gm4", gm_config(lab, "gm4", name="gm4-rogue", pki=rogue, psk=None), name="gm4-rogue")
        lab.wait_log("ks", r"Main Mode with 10\.1\.24\.4:848 failed at message 5: .*certificate", 10,
                     "the KS to refuse gm4's certificate from another CA", since=since)
        self.assertNotRegex(lab.log("ks")[since:], r"Phase 1 SA with GM 10\.1\.24\.4", lab.logs("ks"))
        self.assertNotEqual(lab.ctl("gm4", "gm", "status", name="gm4-rogue")["state"], "registered")

    def _restore_gm4(self):
        self.lab.stop("gm4-rogue")
        self.lab.start_gm("gm4", gm_config(self.lab, "gm4", pki=self.pki, psk=None))
        self.lab.wait_registered("gm4")


if __name__ == "__main__":
    unittest.main()
