// GDOI GROUPKEY-PUSH protection: the rekey SIG and KEK encryption. (The PULL
// HASHes and the rekey hash input are checked against Python in
// crypto_ikev1_test.)
#include <gtest/gtest.h>

#include "crypto/gdoi.h"
#include "crypto/ikev1.h"
#include "crypto/random.h"

namespace covey::crypto {
namespace {

Bytes hex(std::string_view s) {
  Bytes b;
  EXPECT_TRUE(from_hex(s, b)) << s;
  return b;
}

// An ISAKMP header for a push: cookies, next payload SEQ (15), version 1.0,
// exchange 33 (GROUPKEY-PUSH), flags, M-ID 0, and a length.
Bytes push_header(std::uint8_t flags, std::uint32_t length) {
  Bytes h = hex("00112233445566778899aabbccddeeff");
  append(h, Bytes{15, 0x10, 33, flags, 0, 0, 0, 0});
  append(h, Bytes{static_cast<std::uint8_t>(length >> 24), static_cast<std::uint8_t>(length >> 16),
                  static_cast<std::uint8_t>(length >> 8), static_cast<std::uint8_t>(length)});
  return h;
}

TEST(CryptoGdoiTest, RekeySignedDataSetsEncryptionFlagAndUnpaddedLength) {
  const Bytes payloads = hex("0f000008000000070102030405");
  auto data = gdoi::rekey_signed_data(push_header(0x00, 9999), payloads, 300);
  ASSERT_TRUE(data) << data.error();
  Bytes expected(5);
  std::copy_n("rekey", 5, expected.begin());
  append(expected, push_header(0x01, 300));
  append(expected, payloads);
  EXPECT_EQ(to_hex(*data), to_hex(expected));
  // Same result from a header that already has the flag and the padded length.
  auto again = gdoi::rekey_signed_data(push_header(0x01, 304), payloads, 300);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *data);
}

TEST(CryptoGdoiTest, RekeySignedDataRejectsBadInput) {
  auto short_hdr = gdoi::rekey_signed_data(Bytes(27, 0), {}, 100);
  ASSERT_FALSE(short_hdr);
  EXPECT_EQ(short_hdr.error(), "rekey signature: ISAKMP header is 27 bytes, must be 28");
  auto short_len = gdoi::rekey_signed_data(push_header(1, 0), Bytes(40, 0), 28 + 40 + 3);
  ASSERT_FALSE(short_len);
  EXPECT_NE(short_len.error().find("too short"), std::string::npos) << short_len.error();
}

TEST(CryptoGdoiTest, RekeySignatureRoundTripEveryScheme) {
  auto rsa = PrivateKey::generate_rsa(2048);
  auto p256 = PrivateKey::generate_ec(EcCurve::P256);
  auto p384 = PrivateKey::generate_ec(EcCurve::P384);
  ASSERT_TRUE(rsa && p256 && p384);
  const struct {
    const PrivateKey* key;
    SignatureScheme scheme;
    HashAlgorithm hash;
  } cases[] = {
      {&*rsa, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha1},
      {&*rsa, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha256},
      {&*rsa, SignatureScheme::RsaPss, HashAlgorithm::Sha256},
      {&*p256, SignatureScheme::EcdsaP256, HashAlgorithm::Sha256},
      {&*p384, SignatureScheme::EcdsaP384, HashAlgorithm::Sha384},
  };
  const Bytes payloads = hex("0f0000080000000101000010000000000000000000000000");
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(name(c.scheme)));
    auto pub = c.key->public_key();
    ASSERT_TRUE(pub);
    const std::uint32_t unpadded = 28 + static_cast<std::uint32_t>(payloads.size()) + 4 + 256;
    auto sig = gdoi::sign_rekey(*c.key, c.scheme, c.hash, push_header(0, 0), payloads, unpadded);
    ASSERT_TRUE(sig) << sig.error();
    // The receiver sees the header as sent: encrypted flag, padded length.
    auto ok =
        gdoi::verify_rekey(*pub, c.scheme, c.hash, push_header(1, unpadded + 4), payloads, unpadded, *sig);
    EXPECT_TRUE(ok) << ok.error();

    // A receiver that hashed the padded length would not verify.
    auto wrong_len =
        gdoi::verify_rekey(*pub, c.scheme, c.hash, push_header(1, 0), payloads, unpadded + 4, *sig);
    ASSERT_FALSE(wrong_len);
    EXPECT_EQ(wrong_len.error(),
              "GROUPKEY-PUSH SIG: verify " + std::string(name(c.scheme)) + ": signature does not verify");
    Bytes tampered = payloads;
    tampered.back() ^= 1;
    EXPECT_FALSE(gdoi::verify_rekey(*pub, c.scheme, c.hash, push_header(1, 0), tampered, unpadded, *sig));
  }
}

// The signature is over the hash of the signed data, as sign_hash would make it.
TEST(CryptoGdoiTest, RekeySignatureIsSignatureOfTheRekeyHash) {
  auto rsa = PrivateKey::generate_rsa(2048);
  ASSERT_TRUE(rsa);
  const Bytes payloads = hex("0f00000800000003");
  auto sig = gdoi::sign_rekey(*rsa, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha1, push_header(0, 0),
                              payloads, 100);
  auto data = gdoi::rekey_signed_data(push_header(0, 0), payloads, 100);
  ASSERT_TRUE(sig && data);
  auto hash = digest(HashAlgorithm::Sha1, {*data});
  ASSERT_TRUE(hash);
  auto direct = sign_hash(*rsa, SignatureScheme::RsaPkcs1Raw, HashAlgorithm::Sha1, *hash);
  ASSERT_TRUE(direct);
  EXPECT_EQ(*sig, *direct);  // PKCS#1 v1.5 is deterministic
}

TEST(CryptoGdoiTest, KekEncryptionUsesTheIvBeforeTheKey) {
  for (CipherAlgorithm cipher :
       {CipherAlgorithm::Aes128Cbc, CipherAlgorithm::Aes256Cbc, CipherAlgorithm::TripleDesCbc}) {
    SCOPED_TRACE(std::string(name(cipher)));
    auto iv = random_bytes(block_size(cipher));
    auto key = random_secret(key_size(cipher));
    ASSERT_TRUE(iv && key);
    Bytes kek_algorithm_key = *iv;
    append(kek_algorithm_key, *key);
    const Bytes payloads = hex("0f00000800000005010000200000000100000001000000000000000000000000000003");

    auto ct = gdoi::kek_encrypt(cipher, kek_algorithm_key, payloads);
    ASSERT_TRUE(ct) << ct.error();
    // Same as plain CBC with that IV and key over the zero-padded payloads.
    auto manual = cbc_encrypt(cipher, *key, *iv, ikev1::pad_payloads(cipher, payloads));
    ASSERT_TRUE(manual);
    EXPECT_EQ(*ct, *manual);

    auto pt = gdoi::kek_decrypt(cipher, kek_algorithm_key, *ct);
    ASSERT_TRUE(pt) << pt.error();
    ASSERT_GE(pt->size(), payloads.size());
    EXPECT_EQ(to_hex(ByteView(*pt).first(payloads.size())), to_hex(payloads));

    auto bad = gdoi::kek_decrypt(cipher, ByteView(kek_algorithm_key).first(key_size(cipher)), *ct);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error(), "KEK decrypt: KEK_ALGORITHM_KEY is " + std::to_string(key_size(cipher)) +
                               " bytes, " + std::string(name(cipher)) + " needs a " +
                               std::to_string(block_size(cipher)) + "-byte IV and a " +
                               std::to_string(key_size(cipher)) + "-byte key");
  }
}

}  // namespace
}  // namespace covey::crypto
