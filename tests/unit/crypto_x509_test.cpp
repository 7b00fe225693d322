// X.509 for IKEv1 signature authentication: certificates read and described,
// chains judged against a CA file with OpenSSL's reasons, and our own signer
// loaded from PEM files. The PKI is made by the test (tests/common/test_ca).
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "crypto/x509.h"
#include "ike/certificates.h"
#include "test_ca.h"

#include <algorithm>

using namespace covey;
using namespace std::chrono_literals;
using covey::crypto::Certificate;
using covey::crypto::CertificateAuthority;
using covey::test_pki::Issued;
using covey::test_pki::LeafOptions;
using covey::test_pki::ScratchDir;
using covey::test_pki::TestCa;

namespace {

constexpr const char* kCaPath = "/etc/covey/ca.pem";

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// One RSA key for every leaf that does not test keys: generation is slow.
const crypto::PrivateKey& shared_key() {
  static const crypto::PrivateKey key = crypto::PrivateKey::generate_rsa(2048).value();
  return key;
}

LeafOptions fast(LeafOptions o = {}) {
  o.reuse_key = &shared_key();
  return o;
}

const TestCa& lab_ca() {
  static const TestCa ca("covey lab CA");
  return ca;
}

CertificateAuthority trust(const TestCa& ca) { return CertificateAuthority::from_pem(ca.pem(), kCaPath).value(); }

std::string reason(int x509_error) { return X509_verify_cert_error_string(x509_error); }

}  // namespace

TEST(Certificate, SubjectIsRfc2253TextAndDerIsTheNameAsEncoded) {
  Issued gm = lab_ca().issue("gm3", fast());
  EXPECT_EQ(gm.cert.subject(), "CN=gm3,O=covey lab");
  EXPECT_EQ(gm.cert.issuer(), "CN=covey lab CA,O=covey lab");

  // The DER decodes to the certificate's own Name and appears verbatim in
  // the certificate: what the peer compares ID_DER_ASN1_DN against.
  const Bytes& der = gm.cert.subject_der();
  const unsigned char* p = der.data();
  X509_NAME* name = d2i_X509_NAME(nullptr, &p, static_cast<long>(der.size()));
  ASSERT_NE(name, nullptr);
  EXPECT_EQ(p, der.data() + der.size());
  EXPECT_EQ(X509_NAME_cmp(name, X509_get_subject_name(gm.cert.get())), 0);
  X509_NAME_free(name);
  const Bytes& whole = gm.cert.to_der();
  EXPECT_NE(std::search(whole.begin(), whole.end(), der.begin(), der.end()), whole.end());
}

TEST(Certificate, UnicodeSubjectStaysReadable) {
  Issued gm = lab_ca().issue("gm-zürich", fast());
  EXPECT_EQ(gm.cert.subject(), "CN=gm-zürich,O=covey lab");
}

TEST(Certificate, ValidityPeriodIsReadToTheSecond) {
  LeafOptions o = fast();
  o.valid_from = -2h;
  o.valid_for = 48h;
  const auto before = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  Issued gm = lab_ca().issue("gm3", o);
  const auto after = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  EXPECT_GE(gm.cert.not_before(), before - 2h);
  EXPECT_LE(gm.cert.not_before(), after - 2h);
  EXPECT_EQ(gm.cert.not_after() - gm.cert.not_before(), std::chrono::seconds(48h));
}

TEST(Certificate, PemAndDerRoundTrip) {
  Issued gm = lab_ca().issue("gm3", fast());
  auto from_pem = Certificate::from_pem(gm.cert_pem());
  ASSERT_TRUE(from_pem.ok()) << from_pem.error();
  EXPECT_EQ(from_pem->to_der(), gm.cert.to_der());
  auto from_der = Certificate::from_der(gm.cert.to_der());
  ASSERT_TRUE(from_der.ok()) << from_der.error();
  EXPECT_EQ(from_der->subject(), "CN=gm3,O=covey lab");

  // A key block before the certificate is skipped, as in a combined file.
  auto combined = Certificate::from_pem(gm.key_pem() + gm.cert_pem());
  ASSERT_TRUE(combined.ok()) << combined.error();
  EXPECT_EQ(combined->to_der(), gm.cert.to_der());
}

TEST(Certificate, MalformedInputIsRefusedWithTheReason) {
  Issued gm = lab_ca().issue("gm3", fast());
  Bytes trailing = gm.cert.to_der();
  trailing.push_back(0);
  auto t = Certificate::from_der(trailing);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(contains(t.error(), "trailing bytes")) << t.error();

  Bytes cut(gm.cert.to_der().begin(), gm.cert.to_der().end() - 10);
  auto c = Certificate::from_der(cut);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(contains(c.error(), "not an X.509 certificate")) << c.error();

  auto none = Certificate::from_pem("hello\n");
  ASSERT_FALSE(none.ok());
  EXPECT_TRUE(contains(none.error(), "BEGIN CERTIFICATE")) << none.error();
}

TEST(Certificate, BundleReadsEveryCertificateAndRefusesADamagedOne) {
  Issued gm = lab_ca().issue("gm3", fast());
  auto both = Certificate::all_from_pem(gm.cert_pem() + lab_ca().pem());
  ASSERT_TRUE(both.ok()) << both.error();
  ASSERT_EQ(both->size(), 2u);
  EXPECT_EQ((*both)[1].subject(), "CN=covey lab CA,O=covey lab");

  std::string damaged = lab_ca().pem();
  damaged.replace(damaged.find('\n') + 5, 4, "!!!!");  // bad base64 in the second certificate
  auto bad = Certificate::all_from_pem(gm.cert_pem() + damaged);
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(contains(bad.error(), "certificate 2: malformed")) << bad.error();

  auto empty = Certificate::all_from_pem(gm.key_pem());
  ASSERT_FALSE(empty.ok());
  EXPECT_TRUE(contains(empty.error(), "no \"BEGIN CERTIFICATE\" block")) << empty.error();
}

TEST(Certificate, PublicKeyVerifiesTheHoldersSignature) {
  Issued gm = lab_ca().issue("gm3", fast());
  EXPECT_EQ(gm.cert.key_type(), "RSA");
  EXPECT_EQ(gm.cert.key_bits(), 2048u);
  EXPECT_TRUE(gm.cert.matches(gm.key));
  EXPECT_FALSE(gm.cert.matches(lab_ca().key()));

  const Bytes hash(32, 0x5a);
  auto sig = crypto::sign_hash(gm.key, crypto::SignatureScheme::RsaPkcs1Raw, crypto::HashAlgorithm::Sha256, hash);
  ASSERT_TRUE(sig.ok()) << sig.error();
  auto pub = gm.cert.public_key();
  ASSERT_TRUE(pub.ok()) << pub.error();
  EXPECT_TRUE(crypto::verify_hash(*pub, crypto::SignatureScheme::RsaPkcs1Raw, crypto::HashAlgorithm::Sha256, hash, *sig)
                  .ok());

  LeafOptions ec;
  ec.ec_key = true;
  Issued ec_gm = lab_ca().issue("gm-ec", ec);
  EXPECT_EQ(ec_gm.cert.key_type(), "EC");
  EXPECT_EQ(ec_gm.cert.key_bits(), 256u);
  EXPECT_FALSE(ec_gm.cert.matches(gm.key));
}

TEST(CertificateAuthority, LeafIssuedByTheCaVerifies) {
  Issued gm = lab_ca().issue("gm3", fast());
  auto ok = trust(lab_ca()).verify(gm.cert);
  EXPECT_TRUE(ok.ok()) << ok.error();
}

// Each row: a certificate the lab CA must refuse, and the words it must use.
TEST(CertificateAuthority, RefusalsNameTheCertificateAndGiveOpenSslsReason) {
  TestCa other("other CA");
  LeafOptions expired = fast();
  expired.valid_from = -48h;
  expired.valid_for = 24h;
  LeafOptions future = fast();
  future.valid_from = 24h;
  LeafOptions encipher_only = fast();
  encipher_only.key_usage = KU_KEY_ENCIPHERMENT;
  struct Case {
    const char* description;
    Issued leaf;
    std::vector<std::string> words;
  };
  Case cases[] = {
      {"self-signed leaf", TestCa::self_signed("gm9", fast()),
       {"certificate CN=gm9,O=covey lab does not chain to the CA in /etc/covey/ca.pem: ",
        reason(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)}},
      {"another CA's leaf", other.issue("gm9", fast()),
       {"certificate CN=gm9,O=covey lab does not chain to the CA in /etc/covey/ca.pem: " +
        reason(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY)}},
      {"expired", lab_ca().issue("gm9", expired),
       {"certificate CN=gm9,O=covey lab is refused by the CA in /etc/covey/ca.pem: " +
            reason(X509_V_ERR_CERT_HAS_EXPIRED),
        "notAfter 20"}},
      {"not yet valid", lab_ca().issue("gm9", future),
       {reason(X509_V_ERR_CERT_NOT_YET_VALID), "notBefore 20"}},
      {"keyUsage without digitalSignature", lab_ca().issue("gm9", encipher_only),
       {"certificate CN=gm9,O=covey lab: keyUsage allows neither digitalSignature nor nonRepudiation"}},
  };
  const CertificateAuthority ca = trust(lab_ca());
  for (const auto& c : cases) {
    SCOPED_TRACE(c.description);
    auto r = ca.verify(c.leaf.cert);
    ASSERT_FALSE(r.ok());
    for (const auto& w : c.words) EXPECT_TRUE(contains(r.error(), w)) << r.error() << "\nlacks: " << w;
  }
}

TEST(CertificateAuthority, VerificationTimeIsConfigurable) {
  LeafOptions o = fast();
  o.valid_from = -48h;
  o.valid_for = 24h;
  Issued gm = lab_ca().issue("gm3", o);
  const CertificateAuthority ca = trust(lab_ca());
  EXPECT_FALSE(ca.verify(gm.cert).ok());
  auto then = ca.verify(gm.cert, {}, gm.cert.not_before() + 1h);
  EXPECT_TRUE(then.ok()) << then.error();
  auto before = ca.verify(gm.cert, {}, gm.cert.not_before() - 1s);
  ASSERT_FALSE(before.ok());
  EXPECT_TRUE(contains(before.error(), reason(X509_V_ERR_CERT_NOT_YET_VALID))) << before.error();
}

TEST(CertificateAuthority, IntermediatesFromThePeerOrASubordinateAnchor) {
  TestCa sub = lab_ca().subordinate("covey region CA");
  Issued gm = sub.issue("gm3", fast());
  const CertificateAuthority root = trust(lab_ca());
  auto alone = root.verify(gm.cert);
  ASSERT_FALSE(alone.ok());
  EXPECT_TRUE(contains(alone.error(), "does not chain")) << alone.error();

  std::vector<Certificate> sent;
  sent.push_back(Certificate::from_der(sub.certificate().to_der()).value());
  auto with_chain = root.verify(gm.cert, sent);
  EXPECT_TRUE(with_chain.ok()) << with_chain.error();

  // An operator may trust the subordinate CA alone, as a Cisco trustpoint can.
  auto sub_only = trust(sub).verify(gm.cert);
  EXPECT_TRUE(sub_only.ok()) << sub_only.error();
}

TEST(CertificateAuthority, LoadsEveryCertificateOfTheFileAndNamesTheFile) {
  ScratchDir dir;
  TestCa other("other CA");
  const std::string path = dir.write("ca.pem", lab_ca().pem() + other.pem());
  auto ca = CertificateAuthority::load(path);
  ASSERT_TRUE(ca.ok()) << ca.error();
  EXPECT_EQ(ca->origin(), path);
  ASSERT_EQ(ca->anchors().size(), 2u);
  EXPECT_TRUE(ca->verify(lab_ca().issue("gm3", fast()).cert).ok());
  EXPECT_TRUE(ca->verify(other.issue("gm4", fast()).cert).ok());
  auto refused = ca->verify(TestCa::self_signed("gm9", fast()).cert);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(contains(refused.error(), "the CA in " + path + ": ")) << refused.error();

  auto missing = CertificateAuthority::load(dir.path() + "/nope.pem");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error(), "CA: cannot open " + dir.path() + "/nope.pem: No such file or directory");

  auto directory = CertificateAuthority::load(dir.path());
  ASSERT_FALSE(directory.ok());
  EXPECT_TRUE(contains(directory.error(), "is not a regular file")) << directory.error();

  auto no_cert = CertificateAuthority::load(dir.write("key.pem", lab_ca().key().to_pem().value()));
  ASSERT_FALSE(no_cert.ok());
  EXPECT_TRUE(contains(no_cert.error(), "CA file " + dir.path() + "/key.pem: ")) << no_cert.error();
}

TEST(LoadSigner, ReadsTheCertificateAndItsKey) {
  ScratchDir dir;
  Issued ks = lab_ca().issue("ks1");
  auto signer = ike::load_signer(dir.write("ks.crt", ks.cert_pem() + lab_ca().pem()), dir.write("ks.key", ks.key_pem()));
  ASSERT_TRUE(signer.ok()) << signer.error();
  EXPECT_EQ(signer->certificate_der, ks.cert.to_der());  // the leaf, not the CA after it
  EXPECT_EQ(signer->subject_der, ks.cert.subject_der());
  EXPECT_TRUE(ks.cert.matches(signer->key));
}

TEST(LoadSigner, RefusesAKeyThatIsNotTheCertificates) {
  ScratchDir dir;
  Issued ks = lab_ca().issue("ks1", fast());
  const std::string cert = dir.write("ks.crt", ks.cert_pem());
  const std::string key = dir.write("other.key", lab_ca().key().to_pem().value());
  auto signer = ike::load_signer(cert, key);
  ASSERT_FALSE(signer.ok());
  EXPECT_EQ(signer.error(), key + ": private key is not the key of certificate CN=ks1,O=covey lab in " + cert);
}

TEST(LoadSigner, RefusesKeysPhaseOneCannotUse) {
  ScratchDir dir;
  LeafOptions ec;
  ec.ec_key = true;
  Issued ec_ks = lab_ca().issue("ks-ec", ec);
  const std::string ec_cert = dir.write("ec.crt", ec_ks.cert_pem());
  auto e = ike::load_signer(ec_cert, dir.write("ec.key", ec_ks.key_pem()));
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error(), ec_cert + ": certificate CN=ks-ec,O=covey lab: key is EC; phase-1 signatures need RSA");

  // PrivateKey refuses to generate short keys; OpenSSL makes one to read.
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<std::size_t>(1024));
  ASSERT_NE(raw, nullptr);
  auto short_key = crypto::PrivateKey::from_pem([&] {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, raw, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<std::size_t>(len));
    BIO_free(bio);
    return pem;
  }());
  EVP_PKEY_free(raw);
  ASSERT_TRUE(short_key.ok()) << short_key.error();
  LeafOptions small;
  small.reuse_key = &*short_key;
  Issued weak = lab_ca().issue("ks-weak", small);
  const std::string weak_cert = dir.write("weak.crt", weak.cert_pem());
  auto w = ike::load_signer(weak_cert, dir.write("weak.key", weak.key_pem()));
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error(), weak_cert + ": certificate CN=ks-weak,O=covey lab: RSA key of 1024 bits is below the 2048 minimum");
}

TEST(LoadSigner, MissingOrWrongFilesAreNamed) {
  ScratchDir dir;
  Issued ks = lab_ca().issue("ks1", fast());
  const std::string cert = dir.write("ks.crt", ks.cert_pem());
  auto no_key = ike::load_signer(cert, dir.path() + "/ks.key");
  ASSERT_FALSE(no_key.ok());
  EXPECT_EQ(no_key.error(), "private key: cannot open " + dir.path() + "/ks.key: No such file or directory");

  auto no_cert = ike::load_signer(dir.path() + "/ks.crt.old", cert);
  ASSERT_FALSE(no_cert.ok());
  EXPECT_EQ(no_cert.error(), "certificate: cannot open " + dir.path() + "/ks.crt.old: No such file or directory");

  // Key and certificate given the wrong way round.
  const std::string key = dir.write("ks.key", ks.key_pem());
  auto swapped = ike::load_signer(key, cert);
  ASSERT_FALSE(swapped.ok());
  EXPECT_TRUE(contains(swapped.error(), key + ": read PEM certificate")) << swapped.error();
}
