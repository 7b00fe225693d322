// IKEv1 Main Mode with RSA signatures (RFC 2409 5.1) between covey's GM and
// KS, in memory, with certificates from a CA the test makes: both sides must
// derive the same ISAKMP SA and learn each other's subject, and each way a
// peer's proof can be wrong must be refused with its own notification.
#include <gtest/gtest.h>

#include "ike/certificates.h"
#include "ike/main_mode.h"
#include "test_ca.h"
#include "wire/message.h"

using namespace covey;
using namespace covey::ike;
using namespace std::chrono_literals;
using covey::crypto::CipherAlgorithm;
using covey::crypto::HashAlgorithm;
using covey::test_pki::Issued;
using covey::test_pki::LeafOptions;
using covey::test_pki::TestCa;

namespace {

constexpr const char* kCaPath = "/etc/covey/ca.pem";

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

const TestCa& lab_ca() {
  static const TestCa ca("covey lab CA");
  return ca;
}
const Issued& gm_cert() {
  static const Issued gm = lab_ca().issue("gm3");
  return gm;
}
const Issued& ks_cert() {
  static const Issued ks = lab_ca().issue("ks1");
  return ks;
}

crypto::PrivateKey copy(const crypto::PrivateKey& key) {
  return crypto::PrivateKey::from_pem(key.to_pem().value()).value();
}

// Credentials that sign as `who` and trust the lab CA. key and id override
// what goes on the wire, to forge a SIG or an ID.
std::shared_ptr<Credentials> signing(const Issued& who, const crypto::PrivateKey* key = nullptr,
                                     const Bytes* id = nullptr) {
  auto c = std::make_shared<Credentials>();
  c->signer = std::make_shared<Credentials::Signer>(
      Credentials::Signer{copy(key ? *key : who.key), who.cert.to_der(), id ? *id : who.cert.subject_der()});
  auto ca = std::make_shared<const crypto::CertificateAuthority>(
      crypto::CertificateAuthority::from_pem(lab_ca().pem(), kCaPath).value());
  c->verify_certificate = make_verifier(std::move(ca));
  return c;
}

Phase1Transform rsa(CipherAlgorithm c, HashAlgorithm h, std::uint16_t group) {
  Phase1Transform t;
  t.cipher = c;
  t.hash = h;
  t.auth = AuthMethod::RsaSignature;
  t.dh_group = group;
  return t;
}

const Phase1Transform kDefault = rsa(CipherAlgorithm::Aes256Cbc, HashAlgorithm::Sha256, 19);

// The GM initiates to the KS at 10.1.12.1; `tamper` may change a datagram
// to the KS before it is delivered (index: 0 for message 1, 1 for 3, 2 for 5).
struct Exchange {
  MainMode gm, ks;
  std::optional<Phase1Sa> gm_sa, ks_sa;
  std::optional<Failure> gm_fail, ks_fail;
  std::vector<Bytes> wire;
  std::function<void(int, Bytes&)> tamper = [](int, Bytes&) {};

  Exchange(std::shared_ptr<Credentials> gm_creds, std::shared_ptr<Credentials> ks_creds,
           Phase1Transform t = kDefault)
      : gm(MainMode::initiator({t}, std::move(gm_creds), Endpoint{*Address::parse("10.1.12.1"), 848},
                               *Address::parse("10.1.23.3"))),
        ks(MainMode::responder({t}, std::move(ks_creds), Endpoint{*Address::parse("10.1.23.3"), 848},
                               *Address::parse("10.1.12.1"))) {}

  void run() {
    auto first = gm.start();
    ASSERT_TRUE(first.ok()) << first.error();
    Bytes to_ks = *first;
    for (int i = 0; i < 3 && !to_ks.empty(); ++i) {
      tamper(i, to_ks);
      wire.push_back(to_ks);
      Step s = ks.receive(to_ks, 1000);
      if (s.established) ks_sa = std::move(s.established);
      if (s.failure) ks_fail = s.failure;
      to_ks.clear();
      if (!s.send) break;
      wire.push_back(*s.send);
      Step g = gm.receive(*s.send, 1000);
      if (g.established) gm_sa = std::move(g.established);
      if (g.failure) gm_fail = g.failure;
      if (g.send) to_ks = *g.send;
    }
  }
};

}  // namespace

TEST(MainModeSignatures, BothSidesEstablishTheSameSaAndLearnTheSubjects) {
  for (auto t : {kDefault, rsa(CipherAlgorithm::Aes128Cbc, HashAlgorithm::Sha1, 14),
                 rsa(CipherAlgorithm::Aes256Cbc, HashAlgorithm::Sha384, 20)}) {
    SCOPED_TRACE(t.str());
    Exchange x(signing(gm_cert()), signing(ks_cert()), t);
    x.run();
    ASSERT_FALSE(x.ks_fail) << x.ks_fail->reason;
    ASSERT_FALSE(x.gm_fail) << x.gm_fail->reason;
    ASSERT_TRUE(x.gm_sa && x.ks_sa);
    EXPECT_EQ(x.wire.size(), 6u);
    EXPECT_EQ(x.ks_sa->transform, t);
    EXPECT_TRUE(crypto::equal_constant_time(x.gm_sa->skeyid_d, x.ks_sa->skeyid_d));
    EXPECT_TRUE(crypto::equal_constant_time(x.gm_sa->skeyid_a, x.ks_sa->skeyid_a));
    EXPECT_TRUE(crypto::equal_constant_time(x.gm_sa->key, x.ks_sa->key));
    EXPECT_EQ(x.gm_sa->last_phase1_block, x.ks_sa->last_phase1_block);

    EXPECT_EQ(x.ks_sa->peer_subject, "CN=gm3,O=covey lab");
    EXPECT_EQ(x.gm_sa->peer_subject, "CN=ks1,O=covey lab");
    EXPECT_EQ(x.ks_sa->peer_id.type, static_cast<std::uint8_t>(wire::IdType::DerAsn1Dn));
    EXPECT_EQ(x.ks_sa->peer_id.data, gm_cert().cert.subject_der());
    EXPECT_EQ(x.gm_sa->peer_id.data, ks_cert().cert.subject_der());
  }
}

TEST(MainModeSignatures, KeyExchangeMessagesRequestX509Certificates) {
  Exchange x(signing(gm_cert()), signing(ks_cert()));
  x.run();
  ASSERT_GE(x.wire.size(), 4u);
  for (std::size_t i : {2u, 3u}) {
    auto m = wire::decode_message(x.wire[i]);
    ASSERT_TRUE(m.ok()) << m.error().message();
    const wire::CertificateRequestPayload* req = nullptr;
    for (const auto& p : m->payloads)
      if (auto* r = std::get_if<wire::CertificateRequestPayload>(&p)) req = r;
    ASSERT_NE(req, nullptr) << "message " << i + 1;
    EXPECT_EQ(req->type, wire::kCertX509Signature);
  }
}

TEST(MainModeSignatures, CertificateFromAnotherCaIsInvalidCertificate) {
  TestCa other("rogue CA");
  LeafOptions same_key;
  same_key.reuse_key = &gm_cert().key;
  Exchange x(signing(other.issue("gm3", same_key)), signing(ks_cert()));
  x.run();
  ASSERT_TRUE(x.ks_fail);
  EXPECT_EQ(x.ks_fail->notify, wire::NotifyType::InvalidCertificate);
  EXPECT_TRUE(contains(x.ks_fail->reason, "message 5: certificate CN=gm3,O=covey lab does not chain to the CA in "
                                          "/etc/covey/ca.pem: unable to get local issuer certificate"))
      << x.ks_fail->reason;
  EXPECT_FALSE(x.ks_sa);
  EXPECT_FALSE(x.gm_sa);
  // The KS says why, in a clear notification (RFC 2409 5.7).
  auto n = wire::decode_message(x.wire.back());
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(std::get<wire::NotificationPayload>(n->payloads[0]).type,
            static_cast<std::uint16_t>(wire::NotifyType::InvalidCertificate));
}

TEST(MainModeSignatures, ExpiredCertificateIsInvalidCertificate) {
  LeafOptions expired;
  expired.reuse_key = &gm_cert().key;
  expired.valid_from = -48h;
  expired.valid_for = 24h;
  Exchange x(signing(lab_ca().issue("gm3", expired)), signing(ks_cert()));
  x.run();
  ASSERT_TRUE(x.ks_fail);
  EXPECT_EQ(x.ks_fail->notify, wire::NotifyType::InvalidCertificate);
  EXPECT_TRUE(contains(x.ks_fail->reason, "certificate CN=gm3,O=covey lab is refused by the CA in "
                                          "/etc/covey/ca.pem: certificate has expired"))
      << x.ks_fail->reason;
}

TEST(MainModeSignatures, KsCertificateIsCheckedByTheGmToo) {
  TestCa other("rogue CA");
  LeafOptions same_key;
  same_key.reuse_key = &ks_cert().key;
  Exchange x(signing(gm_cert()), signing(other.issue("ks1", same_key)));
  x.run();
  EXPECT_TRUE(x.ks_sa);  // the KS was satisfied; the GM is not
  ASSERT_TRUE(x.gm_fail);
  EXPECT_EQ(x.gm_fail->notify, wire::NotifyType::InvalidCertificate);
  EXPECT_TRUE(contains(x.gm_fail->reason, "message 6: certificate CN=ks1,O=covey lab does not chain"))
      << x.gm_fail->reason;
  EXPECT_FALSE(x.gm_sa);
}

TEST(MainModeSignatures, TamperedSigIsInvalidSignature) {
  Exchange x(signing(gm_cert()), signing(ks_cert()));
  // Message 5 is CBC-encrypted ID | CERT | SIG | N. Flipping a ciphertext
  // bit garbles its own plaintext block and flips one bit in the next;
  // with both blocks inside SIG's data the payloads still parse and only
  // the signature is wrong.
  const std::size_t id_len = 4 + 4 + gm_cert().cert.subject_der().size();
  const std::size_t cert_len = 4 + 1 + gm_cert().cert.to_der().size();
  const std::size_t sig_data = id_len + cert_len + 4;
  const std::size_t block = (sig_data + 15) / 16;
  ASSERT_LE((block + 2) * 16, sig_data + 256);  // a 2048-bit SIG spans 16 blocks
  x.tamper = [&](int i, Bytes& d) {
    if (i == 2) d[wire::kHeaderSize + block * 16 + 5] ^= 0x01;
  };
  x.run();
  ASSERT_TRUE(x.ks_fail);
  EXPECT_EQ(x.ks_fail->notify, wire::NotifyType::InvalidSignature) << x.ks_fail->reason;
  EXPECT_TRUE(contains(x.ks_fail->reason, "message 5: SIG over HASH_I does not verify")) << x.ks_fail->reason;
  EXPECT_FALSE(x.ks_sa);
}

TEST(MainModeSignatures, SigByAKeyNotTheCertificatesIsInvalidSignature) {
  Exchange x(signing(gm_cert(), &ks_cert().key), signing(ks_cert()));
  x.run();
  ASSERT_TRUE(x.ks_fail);
  EXPECT_EQ(x.ks_fail->notify, wire::NotifyType::InvalidSignature) << x.ks_fail->reason;
  EXPECT_FALSE(x.ks_sa);
}

TEST(MainModeSignatures, IdNotTheCertificateSubjectIsInvalidIdInformation) {
  // The GM claims to be ks1 but shows its own certificate; the SIG is
  // sound over the ID it sent, so only the ID check can catch it.
  const Bytes claimed = ks_cert().cert.subject_der();
  Exchange x(signing(gm_cert(), nullptr, &claimed), signing(ks_cert()));
  x.run();
  ASSERT_TRUE(x.ks_fail);
  EXPECT_EQ(x.ks_fail->notify, wire::NotifyType::InvalidIdInformation);
  EXPECT_TRUE(contains(x.ks_fail->reason, "ID_DER_ASN1_DN differs from the certificate subject CN=gm3,O=covey lab"))
      << x.ks_fail->reason;
  EXPECT_FALSE(x.ks_sa);
}

TEST(MainModeSignatures, KsWithoutCertificateChoosesNoSignatureProposal) {
  Exchange x(signing(gm_cert()), std::make_shared<Credentials>());
  x.run();
  ASSERT_TRUE(x.ks_fail);
  EXPECT_EQ(x.ks_fail->notify, wire::NotifyType::NoProposalChosen);
  EXPECT_TRUE(contains(x.ks_fail->reason, "no certificate configured")) << x.ks_fail->reason;
}

TEST(MainModeSignatures, GmWithoutCertificateStopsAtMessageTwo) {
  Exchange x(std::make_shared<Credentials>(), signing(ks_cert()));
  x.run();
  ASSERT_TRUE(x.gm_fail);
  EXPECT_EQ(x.gm_fail->notify, wire::NotifyType::NoProposalChosen);
  EXPECT_TRUE(contains(x.gm_fail->reason, "no certificate is configured")) << x.gm_fail->reason;
  EXPECT_EQ(x.wire.size(), 2u);
}
