// Signatures: RFC 4754 ECDSA vectors, the raw PKCS#1 v1.5 encoding IKEv1 and
// GDOI use, and sign/verify/tamper round trips for every scheme.
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "crypto/sign.h"

namespace covey::crypto {
namespace {

Bytes hex(std::string_view s) {
  Bytes b;
  EXPECT_TRUE(from_hex(s, b)) << s;
  return b;
}

Bytes digest_of(HashAlgorithm h, std::string_view text) {
  auto d = digest(h, {as_bytes(text)});
  EXPECT_TRUE(d) << d.error();
  return d ? *d : Bytes{};
}

// Keys are generated once: RSA key generation is the slow part of this suite.
class CryptoSignTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto rsa = PrivateKey::generate_rsa(2048);
    auto rsa2 = PrivateKey::generate_rsa(2048);
    auto p256 = PrivateKey::generate_ec(EcCurve::P256);
    auto p384 = PrivateKey::generate_ec(EcCurve::P384);
    ASSERT_TRUE(rsa && rsa2 && p256 && p384);
    rsa_ = new PrivateKey(std::move(*rsa));
    other_rsa_ = new PrivateKey(std::move(*rsa2));
    p256_ = new PrivateKey(std::move(*p256));
    p384_ = new PrivateKey(std::move(*p384));
  }
  static void TearDownTestSuite() {
    delete rsa_;
    delete other_rsa_;
    delete p256_;
    delete p384_;
  }

  static PublicKey public_of(const PrivateKey& key) {
    auto pub = key.public_key();
    EXPECT_TRUE(pub) << pub.error();
    return std::move(*pub);
  }

  static const PrivateKey& key_for(SignatureScheme s) {
    if (s == SignatureScheme::EcdsaP256) return *p256_;
    if (s == SignatureScheme::EcdsaP384) return *p384_;
    return *rsa_;
  }

  static inline PrivateKey* rsa_ = nullptr;
  static inline PrivateKey* other_rsa_ = nullptr;
  static inline PrivateKey* p256_ = nullptr;
  static inline PrivateKey* p384_ = nullptr;
};

struct SchemeCase {
  SignatureScheme scheme;
  HashAlgorithm hash;
  std::size_t signature_size;
};

const SchemeCase kSchemes[] = {
    {SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha1, 256},
    {SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha256, 256},
    {SignatureScheme::RsaPss, HashAlgorithm::Sha256, 256},
    {SignatureScheme::RsaPss, HashAlgorithm::Sha384, 256},
    {SignatureScheme::EcdsaP256, HashAlgorithm::Sha256, 64},
    {SignatureScheme::EcdsaP384, HashAlgorithm::Sha384, 96},
};

TEST_F(CryptoSignTest, RoundTripAndTamperRejection) {
  for (const auto& c : kSchemes) {
    SCOPED_TRACE(std::string(name(c.scheme)) + " " + std::string(name(c.hash)));
    const PrivateKey& key = key_for(c.scheme);
    const PublicKey pub = public_of(key);
    const Bytes hash = digest_of(c.hash, "HASH_I stand-in");

    auto sig = sign_hash(key, c.scheme, c.hash, hash);
    ASSERT_TRUE(sig) << sig.error();
    EXPECT_EQ(sig->size(), c.signature_size);
    auto ok = verify_hash(pub, c.scheme, c.hash, hash, *sig);
    EXPECT_TRUE(ok) << ok.error();

    Bytes bad_sig = *sig;
    bad_sig[bad_sig.size() / 2] ^= 0x01;
    auto r = verify_hash(pub, c.scheme, c.hash, hash, bad_sig);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), "verify " + std::string(name(c.scheme)) + ": signature does not verify");

    Bytes bad_hash = hash;
    bad_hash[0] ^= 0x80;
    EXPECT_FALSE(verify_hash(pub, c.scheme, c.hash, bad_hash, *sig));

    Bytes short_sig(sig->begin(), sig->end() - 1);
    EXPECT_FALSE(verify_hash(pub, c.scheme, c.hash, hash, short_sig));
  }
}

TEST_F(CryptoSignTest, WrongKeyDoesNotVerify) {
  const Bytes hash = digest_of(HashAlgorithm::Sha1, "x");
  auto sig = sign_hash(*rsa_, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha1, hash);
  ASSERT_TRUE(sig) << sig.error();
  EXPECT_FALSE(
      verify_hash(public_of(*other_rsa_), SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha1, hash, *sig));
}

TEST_F(CryptoSignTest, PssAndPkcs1AreNotInterchangeable) {
  const PublicKey pub = public_of(*rsa_);
  const Bytes hash = digest_of(HashAlgorithm::Sha256, "x");
  auto pss = sign_hash(*rsa_, SignatureScheme::RsaPss, HashAlgorithm::Sha256, hash);
  auto v15 = sign_hash(*rsa_, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha256, hash);
  ASSERT_TRUE(pss && v15);
  EXPECT_FALSE(verify_hash(pub, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha256, hash, *pss));
  EXPECT_FALSE(verify_hash(pub, SignatureScheme::RsaPss, HashAlgorithm::Sha256, hash, *v15));
  // PSS is randomised; PKCS#1 v1.5 is not.
  auto pss2 = sign_hash(*rsa_, SignatureScheme::RsaPss, HashAlgorithm::Sha256, hash);
  auto v15b = sign_hash(*rsa_, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha256, hash);
  ASSERT_TRUE(pss2 && v15b);
  EXPECT_NE(*pss, *pss2);
  EXPECT_EQ(*v15, *v15b);
}

// The "raw" PKCS#1 v1.5 signature must open, with the public exponent, to
// 00 01 FF..FF 00 | hash: type-1 padding and no DigestInfo (RFC 2409 and
// gdoid sign the bare hash). Checked here with BIGNUM arithmetic, not EVP.
TEST_F(CryptoSignTest, RsaPkcs1RawHasNoDigestInfo) {
  const Bytes hash = digest_of(HashAlgorithm::Sha1, "rekey");
  auto sig = sign_hash(*rsa_, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha1, hash);
  ASSERT_TRUE(sig) << sig.error();

  BIGNUM* n_raw = nullptr;
  BIGNUM* e_raw = nullptr;
  ASSERT_EQ(EVP_PKEY_get_bn_param(rsa_->get(), OSSL_PKEY_PARAM_RSA_N, &n_raw), 1);
  ASSERT_EQ(EVP_PKEY_get_bn_param(rsa_->get(), OSSL_PKEY_PARAM_RSA_E, &e_raw), 1);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> n(n_raw, BN_free), e(e_raw, BN_free), s(nullptr, BN_free),
      m(BN_new(), BN_free);
  std::unique_ptr<BN_CTX, decltype(&BN_CTX_free)> ctx(BN_CTX_new(), BN_CTX_free);
  s.reset(BN_bin2bn(sig->data(), static_cast<int>(sig->size()), nullptr));
  ASSERT_TRUE(s && m && ctx);
  ASSERT_EQ(BN_mod_exp(m.get(), s.get(), e.get(), n.get(), ctx.get()), 1);
  Bytes em(256);
  ASSERT_EQ(BN_bn2binpad(m.get(), em.data(), 256), 256);

  Bytes expected = {0x00, 0x01};
  expected.insert(expected.end(), 256 - 3 - hash.size(), 0xff);
  expected.push_back(0x00);
  append(expected, hash);
  EXPECT_EQ(to_hex(em), to_hex(expected));
}

// RFC 4754 section 8: published ECDSA-256 and ECDSA-384 signatures of "abc".
// The public keys gw are wrapped in the fixed RFC 5480 SubjectPublicKeyInfo
// prefix for the curve, so the test also exercises PublicKey::from_der.
TEST(CryptoSignVectorTest, Rfc4754Signatures) {
  const struct {
    SignatureScheme scheme;
    HashAlgorithm hash;
    const char* spki_prefix;
    const char *gwx, *gwy, *h, *r, *s;
  } cases[] = {
      {SignatureScheme::EcdsaP256, HashAlgorithm::Sha256,
       "3059301306072a8648ce3d020106082a8648ce3d030107034200",
       "2442A5CC0ECD015FA3CA31DC8E2BBC70BF42D60CBCA20085E0822CB04235E970",
       "6FC98BD7E50211A4A27102FA3549DF79EBCB4BF246B80945CDDFE7D509BBFD7D",
       "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
       "CB28E0999B9C7715FD0A80D8E47A77079716CBBF917DD72E97566EA1C066957C",
       "86FA3BB4E26CAD5BF90B7F81899256CE7594BB1EA0C89212748BFF3B3D5B0315"},
      {SignatureScheme::EcdsaP384, HashAlgorithm::Sha384, "3076301006072a8648ce3d020106052b81040022036200",
       "96281BF8DD5E0525CA049C048D345D3082968D10FEDF5C5ACA0C64E6465A97EA5CE10C9DFEC21797415710721F437922",
       "447688BA94708EB6E2E4D59F6AB6D7EDFF9301D249FE49C33096655F5D502FAD3D383B91C5E7EDAA2B714CC99D5743CA",
       "CB00753F45A35E8BB5A03D699AC65007272C32AB0EDED1631A8B605A43FF5BED8086072BA1E7CC2358BAECA134C825A7",
       "FB017B914E29149432D8BAC29A514640B46F53DDAB2C69948084E2930F1C8F7E08E07C9C63F2D21A07DCB56A6AF56EB3",
       "B263A1305E057F984D38726A1B46874109F417BCA112674C528262A40A629AF1CBB9F516CE0FA7D2FF630863A00E8B9F"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(name(c.scheme)));
    Bytes spki = hex(c.spki_prefix);
    spki.push_back(0x04);
    append(spki, hex(c.gwx));
    append(spki, hex(c.gwy));
    auto pub = PublicKey::from_der(spki);
    ASSERT_TRUE(pub) << pub.error();
    auto der = pub->to_der();
    ASSERT_TRUE(der);
    EXPECT_EQ(*der, spki);

    const Bytes h = hex(c.h);
    EXPECT_EQ(to_hex(digest_of(c.hash, "abc")), to_hex(h));
    Bytes sig = hex(c.r);
    append(sig, hex(c.s));
    auto ok = verify_hash(*pub, c.scheme, c.hash, h, sig);
    EXPECT_TRUE(ok) << ok.error();

    sig.back() ^= 0x01;
    EXPECT_FALSE(verify_hash(*pub, c.scheme, c.hash, h, sig));
  }
}

TEST_F(CryptoSignTest, RefusesMismatchedKeyHashAndScheme) {
  const Bytes sha256 = digest_of(HashAlgorithm::Sha256, "x");
  const Bytes sha384 = digest_of(HashAlgorithm::Sha384, "x");

  auto r = sign_hash(*p384_, SignatureScheme::EcdsaP256, HashAlgorithm::Sha256, sha256);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "sign ECDSA-256: key is on curve secp384r1, not P-256");

  r = sign_hash(*p256_, SignatureScheme::EcdsaP256, HashAlgorithm::Sha384, sha384);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "sign ECDSA-256: RFC 4754 pairs ECDSA-256 with SHA-256, not SHA-384");

  r = sign_hash(*p256_, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha256, sha256);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "sign RSA PKCS#1 v1.5: key is not an RSA key");

  r = sign_hash(*rsa_, SignatureScheme::EcdsaP384, HashAlgorithm::Sha384, sha384);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "sign ECDSA-384: key is not an EC key");

  r = sign_hash(*rsa_, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha1, sha256);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "sign RSA PKCS#1 v1.5: hash is 32 bytes, SHA-1 gives 20");
}

TEST_F(CryptoSignTest, PemAndDerRoundTrips) {
  for (const PrivateKey* key : {rsa_, p256_, p384_}) {
    auto pem = key->to_pem();
    ASSERT_TRUE(pem) << pem.error();
    EXPECT_NE(pem->find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
    auto again = PrivateKey::from_pem(*pem);
    ASSERT_TRUE(again) << again.error();

    auto der = public_of(*key).to_der();
    auto der_again = public_of(*again).to_der();
    ASSERT_TRUE(der && der_again);
    EXPECT_EQ(*der, *der_again);
    auto pub = PublicKey::from_der(*der);
    ASSERT_TRUE(pub) << pub.error();
  }
  // A signature from the reloaded key verifies with the original public key.
  auto reloaded = PrivateKey::from_pem(*p256_->to_pem());
  ASSERT_TRUE(reloaded);
  const Bytes hash = digest_of(HashAlgorithm::Sha256, "y");
  auto sig = sign_hash(*reloaded, SignatureScheme::EcdsaP256, HashAlgorithm::Sha256, hash);
  ASSERT_TRUE(sig);
  EXPECT_TRUE(verify_hash(public_of(*p256_), SignatureScheme::EcdsaP256, HashAlgorithm::Sha256, hash, *sig));
}

// from_der keeps the last key it parsed and hands it out again for the same
// DER: that must never give one key's holder another's key, and the shared
// key must verify from several threads at once (the key server's workers).
TEST_F(CryptoSignTest, KeysFromDerAreSharedOnlyForTheSameDer) {
  const Bytes hash = digest_of(HashAlgorithm::Sha256, "shared");
  auto der_a = public_of(*rsa_).to_der();
  auto der_b = public_of(*other_rsa_).to_der();
  auto sig_a = sign_hash(*rsa_, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha256, hash);
  auto sig_b = sign_hash(*other_rsa_, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha256, hash);
  ASSERT_TRUE(der_a && der_b && sig_a && sig_b);
  auto a1 = PublicKey::from_der(*der_a);
  auto a2 = PublicKey::from_der(*der_a);
  auto b = PublicKey::from_der(*der_b);
  auto a3 = PublicKey::from_der(*der_a);
  ASSERT_TRUE(a1 && a2 && b && a3);
  for (const PublicKey* a : {&*a1, &*a2, &*a3}) {
    EXPECT_TRUE(verify_hash(*a, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha256, hash, *sig_a));
    EXPECT_FALSE(verify_hash(*a, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha256, hash, *sig_b));
  }
  EXPECT_TRUE(verify_hash(*b, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha256, hash, *sig_b));
  EXPECT_FALSE(verify_hash(*b, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha256, hash, *sig_a));
  // A prefix of the kept DER, or the kept DER with a byte more, is not the kept key.
  EXPECT_FALSE(PublicKey::from_der(ByteView(*der_a).first(der_a->size() - 1)));
  Bytes longer = *der_a;
  longer.push_back(0);
  EXPECT_FALSE(PublicKey::from_der(longer));

  auto a4_parsed = PublicKey::from_der(*der_a);
  ASSERT_TRUE(a4_parsed);
  const PublicKey& a4 = *a4_parsed;
  a1 = Error{"dropped"};  // the other holders' references go; a4's key stays whole
  a2 = Error{"dropped"};
  std::vector<std::thread> threads;
  std::atomic<int> verified = 0;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i)
        if (verify_hash(a4, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha256, hash, *sig_a)) ++verified;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(verified, 80);
}

TEST_F(CryptoSignTest, PublicKeyPem) {
  const std::string pem =
      "-----BEGIN PUBLIC KEY-----\n"
      "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEJEKlzA7NAV+jyjHcjiu8cL9C1gy8\n"
      "ogCF4IIssEI16XBvyYvX5QIRpKJxAvo1Sd9568tL8ka4CUXN3+fVCbv9fQ==\n"
      "-----END PUBLIC KEY-----\n";
  auto pub = PublicKey::from_pem(pem);  // RFC 4754's ECDSA-256 gw, in PEM
  ASSERT_TRUE(pub) << pub.error();
  auto der = pub->to_der();
  ASSERT_TRUE(der);
  EXPECT_EQ(to_hex(*der),
            "3059301306072a8648ce3d020106082a8648ce3d030107034200"
            "042442a5cc0ecd015fa3ca31dc8e2bbc70bf42d60cbca20085e0822cb04235e970"
            "6fc98bd7e50211a4a27102fa3549df79ebcb4bf246b80945cddfe7d509bbfd7d");
}

TEST(CryptoSignInputTest, RejectsMalformedKeys) {
  EXPECT_FALSE(PrivateKey::from_pem("not a key"));
  EXPECT_FALSE(PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"));
  EXPECT_FALSE(PublicKey::from_der(hex("3000")));
  EXPECT_FALSE(PublicKey::from_der({}));
  auto k = PrivateKey::generate_ec(EcCurve::P256);
  ASSERT_TRUE(k);
  auto pub = k->public_key();
  ASSERT_TRUE(pub);
  auto der = pub->to_der();
  ASSERT_TRUE(der);
  der->push_back(0);
  auto trailing = PublicKey::from_der(*der);
  ASSERT_FALSE(trailing);
  EXPECT_EQ(trailing.error(), "read DER public key: trailing bytes after the SubjectPublicKeyInfo");
  EXPECT_FALSE(PrivateKey::generate_rsa(1024));
}

}  // namespace
}  // namespace covey::crypto
