// IKEv1 (RFC 2409) and GDOI (RFC 6407) derivations against expected values
// that data/crypto/ikev1_kat.py computes from the same inputs with Python's
// hashlib and hmac; plus IKEv1 padding and message encryption.
#include <gtest/gtest.h>

#include "python_kat.h"

#include <cstdio>
#include <map>
#include <sstream>
#include <string>

#include "crypto/gdoi.h"
#include "crypto/ikev1.h"

namespace covey::crypto {
namespace {

// Values computed by data/crypto/ikev1_kat.py with Python's hashlib and hmac.
const fixtures::PythonKat& kat_values() {
  static const fixtures::PythonKat kat(COVEY_TEST_DATA "/crypto/ikev1_kat.py");
  return kat;
}

struct Algorithms {
  const char* name;
  HashAlgorithm hash;
};
const Algorithms kHashes[] = {
    {"sha1", HashAlgorithm::Sha1}, {"sha256", HashAlgorithm::Sha256}, {"sha384", HashAlgorithm::Sha384}};

struct Ciphers {
  const char* name;
  CipherAlgorithm cipher;
};
const Ciphers kCiphers[] = {{"aes128", CipherAlgorithm::Aes128Cbc},
                            {"aes256", CipherAlgorithm::Aes256Cbc},
                            {"3des", CipherAlgorithm::TripleDesCbc}};

std::uint32_t m_id(const fixtures::PythonKat& kat) {
  const Bytes b = kat["in.m_id"];
  return b.size() == 4
             ? std::uint32_t{b[0]} << 24 | std::uint32_t{b[1]} << 16 | std::uint32_t{b[2]} << 8 | b[3]
             : 0;
}

class CryptoIkev1KatTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(kat.error(), "") << "the Python reference values are required"; }
  const fixtures::PythonKat& kat = kat_values();
};

TEST_F(CryptoIkev1KatTest, Skeyid) {
  for (const auto& h : kHashes) {
    SCOPED_TRACE(h.name);
    auto psk = ikev1::skeyid_psk(h.hash, kat["in.psk"], kat["in.ni_b"], kat["in.nr_b"]);
    ASSERT_TRUE(psk) << psk.error();
    EXPECT_EQ(to_hex(*psk), to_hex(kat[std::string("skeyid_psk.") + h.name]));
    auto sig = ikev1::skeyid_sig(h.hash, kat["in.ni_b"], kat["in.nr_b"], kat["in.g_xy"]);
    ASSERT_TRUE(sig) << sig.error();
    EXPECT_EQ(to_hex(*sig), to_hex(kat[std::string("skeyid_sig.") + h.name]));
  }
}

TEST_F(CryptoIkev1KatTest, SkeyidDae) {
  for (const auto& h : kHashes) {
    SCOPED_TRACE(h.name);
    const Bytes skeyid = kat[std::string("skeyid_sig.") + h.name];
    auto keys = ikev1::derive_skeyid_dae(h.hash, skeyid, kat["in.g_xy"], kat["in.cky_i"], kat["in.cky_r"]);
    ASSERT_TRUE(keys) << keys.error();
    EXPECT_EQ(to_hex(keys->d), to_hex(kat[std::string("skeyid_d.") + h.name]));
    EXPECT_EQ(to_hex(keys->a), to_hex(kat[std::string("skeyid_a.") + h.name]));
    EXPECT_EQ(to_hex(keys->e), to_hex(kat[std::string("skeyid_e.") + h.name]));
  }
}

// Appendix B: SHA-1 is too short for AES-256 and 3DES (expansion), SHA-256
// exactly fits AES-256 and more than fits 3DES (truncation).
TEST_F(CryptoIkev1KatTest, EncryptionKeyAppendixB) {
  for (const auto& h : kHashes) {
    const Bytes skeyid_e = kat[std::string("skeyid_e.") + h.name];
    for (const auto& c : kCiphers) {
      SCOPED_TRACE(std::string(h.name) + " " + c.name);
      auto key = ikev1::encryption_key(h.hash, skeyid_e, c.cipher);
      ASSERT_TRUE(key) << key.error();
      EXPECT_EQ(key->size(), key_size(c.cipher));
      EXPECT_EQ(to_hex(*key), to_hex(kat[std::string("enc_key.") + h.name + "." + c.name]));
    }
  }
}

TEST_F(CryptoIkev1KatTest, HashIAndHashR) {
  const Bytes g_xi = kat["in.g_xi"], g_xr = kat["in.g_xr"], cky_i = kat["in.cky_i"], cky_r = kat["in.cky_r"],
              sai_b = kat["in.sai_b"];
  const ikev1::Phase1Transcript t{g_xi, g_xr, cky_i, cky_r, sai_b};
  for (const auto& h : kHashes) {
    SCOPED_TRACE(h.name);
    const Bytes skeyid = kat[std::string("skeyid_sig.") + h.name];
    auto hi = ikev1::hash_i(h.hash, skeyid, t, kat["in.idii_b"]);
    auto hr = ikev1::hash_r(h.hash, skeyid, t, kat["in.idir_b"]);
    ASSERT_TRUE(hi && hr);
    EXPECT_EQ(to_hex(*hi), to_hex(kat[std::string("hash_i.") + h.name]));
    EXPECT_EQ(to_hex(*hr), to_hex(kat[std::string("hash_r.") + h.name]));
  }
}

TEST_F(CryptoIkev1KatTest, Phase1AndPhase2Iv) {
  for (const auto& h : kHashes) {
    for (const auto& c : kCiphers) {
      SCOPED_TRACE(std::string(h.name) + " " + c.name);
      auto iv1 = ikev1::phase1_iv(h.hash, c.cipher, kat["in.g_xi"], kat["in.g_xr"]);
      ASSERT_TRUE(iv1) << iv1.error();
      EXPECT_EQ(to_hex(*iv1), to_hex(kat[std::string("phase1_iv.") + h.name + "." + c.name]));
      const Bytes last = block_size(c.cipher) == 16 ? kat["in.last_p1_block_16"] : kat["in.last_p1_block_8"];
      auto iv2 = ikev1::phase2_iv(h.hash, c.cipher, last, m_id(kat));
      ASSERT_TRUE(iv2) << iv2.error();
      EXPECT_EQ(to_hex(*iv2), to_hex(kat[std::string("phase2_iv.") + h.name + "." + c.name]));
    }
  }
}

TEST_F(CryptoIkev1KatTest, GdoiPullHashes) {
  const Bytes key = kat["in.skeyid_a"];
  const std::uint32_t mid = m_id(kat);
  const Bytes ni = kat["in.ni"], ni_b = kat["in.ni_b"], nr = kat["in.nr"], nr_b = kat["in.nr_b"];
  for (const auto& h : kHashes) {
    SCOPED_TRACE(h.name);
    const std::string s = std::string(".") + h.name;
    auto h1 = gdoi::hash1(h.hash, key, mid, ni, kat["in.id"]);
    auto h2 = gdoi::hash2(h.hash, key, mid, ni_b, nr, kat["in.sa"]);
    auto h3 = gdoi::hash3(h.hash, key, mid, ni_b, nr_b, {});
    auto h3gap = gdoi::hash3(h.hash, key, mid, ni_b, nr_b, kat["in.gap"]);
    auto h4 = gdoi::hash4(h.hash, key, mid, ni_b, nr_b, {}, kat["in.kd"]);
    auto h4seq = gdoi::hash4(h.hash, key, mid, ni_b, nr_b, kat["in.seq"], kat["in.kd"]);
    ASSERT_TRUE(h1 && h2 && h3 && h3gap && h4 && h4seq);
    EXPECT_EQ(to_hex(*h1), to_hex(kat["gdoi_hash1" + s]));
    EXPECT_EQ(to_hex(*h2), to_hex(kat["gdoi_hash2" + s]));
    EXPECT_EQ(to_hex(*h3), to_hex(kat["gdoi_hash3" + s]));
    EXPECT_EQ(to_hex(*h3gap), to_hex(kat["gdoi_hash3_gap" + s]));
    EXPECT_EQ(to_hex(*h4), to_hex(kat["gdoi_hash4" + s]));
    EXPECT_EQ(to_hex(*h4seq), to_hex(kat["gdoi_hash4_seq" + s]));
  }
}

TEST_F(CryptoIkev1KatTest, GdoiRekeySignedDataHash) {
  const Bytes len = kat["in.push_unpadded_len"];
  ASSERT_EQ(len.size(), 4u);
  const std::uint32_t unpadded =
      std::uint32_t{len[0]} << 24 | std::uint32_t{len[1]} << 16 | std::uint32_t{len[2]} << 8 | len[3];
  auto data = gdoi::rekey_signed_data(kat["in.push_hdr"], kat["in.push_payloads"], unpadded);
  ASSERT_TRUE(data) << data.error();
  for (const auto& h : kHashes) {
    auto d = digest(h.hash, {*data});
    ASSERT_TRUE(d);
    EXPECT_EQ(to_hex(*d), to_hex(kat[std::string("rekey_hash.") + h.name])) << h.name;
  }
}

// --- padding and message encryption -------------------------------------------

TEST(CryptoIkev1Test, PaddingIsZerosToTheNextBlockAndNoneWhenAligned) {
  const Bytes payloads = {1, 2, 3, 4, 5};
  EXPECT_EQ(to_hex(ikev1::pad_payloads(CipherAlgorithm::TripleDesCbc, payloads)), "0102030405000000");
  EXPECT_EQ(to_hex(ikev1::pad_payloads(CipherAlgorithm::Aes128Cbc, payloads)),
            "01020304050000000000000000000000");
  const Bytes eight(8, 0xee);
  EXPECT_EQ(ikev1::pad_payloads(CipherAlgorithm::TripleDesCbc, eight), eight);
  EXPECT_TRUE(ikev1::pad_payloads(CipherAlgorithm::Aes256Cbc, {}).empty());
}

TEST(CryptoIkev1Test, EncryptDecryptRoundTripReturnsPaddedPlaintext) {
  for (const auto& c : kCiphers) {
    const Bytes key(key_size(c.cipher), 0x5a);
    const Bytes iv(block_size(c.cipher), 0xa5);
    for (std::size_t len = 0; len <= 2 * block_size(c.cipher) + 1; ++len) {
      SCOPED_TRACE(std::string(c.name) + " length " + std::to_string(len));
      Bytes payloads(len);
      for (std::size_t i = 0; i < len; ++i) payloads[i] = static_cast<std::uint8_t>(i + 1);
      auto ct = ikev1::encrypt_payloads(c.cipher, key, iv, payloads);
      ASSERT_TRUE(ct) << ct.error();
      const std::size_t b = block_size(c.cipher);
      EXPECT_EQ(ct->size(), (len + b - 1) / b * b);
      auto pt = cbc_decrypt(c.cipher, key, iv, *ct);
      ASSERT_TRUE(pt) << pt.error();
      EXPECT_EQ(to_hex(*pt), to_hex(ikev1::pad_payloads(c.cipher, payloads)));
    }
  }
}

TEST(CryptoIkev1Test, DecryptRejectsPartialBlock) {
  const Bytes key(16, 1), iv(16, 2);
  auto pt = cbc_decrypt(CipherAlgorithm::Aes128Cbc, key, iv, Bytes(31, 0));
  ASSERT_FALSE(pt);
  EXPECT_EQ(pt.error(), "decrypt AES-128-CBC: ciphertext length 31 is not a multiple of the 16-byte block");
}

// The IV chain: the next message's IV is the last ciphertext block, so message
// two encrypted alone with that IV equals the tail of one long CBC run.
TEST(CryptoIkev1Test, IvChainsAcrossMessages) {
  const Bytes key(24, 0x11), iv(8, 0x22);
  const Bytes m1(16, 0x33), m2(8, 0x44);
  auto c1 = ikev1::encrypt_payloads(CipherAlgorithm::TripleDesCbc, key, iv, m1);
  ASSERT_TRUE(c1);
  auto c2 = ikev1::encrypt_payloads(CipherAlgorithm::TripleDesCbc, key,
                                    last_cipher_block(CipherAlgorithm::TripleDesCbc, *c1), m2);
  Bytes both = m1;
  append(both, m2);
  auto whole = cbc_encrypt(CipherAlgorithm::TripleDesCbc, key, iv, both);
  ASSERT_TRUE(c2 && whole);
  EXPECT_EQ(to_hex(ByteView(*whole).last(8)), to_hex(*c2));
}

TEST(CryptoIkev1Test, Phase2IvNeedsAWholeBlock) {
  auto iv = ikev1::phase2_iv(HashAlgorithm::Sha1, CipherAlgorithm::Aes128Cbc, Bytes(8, 0), 1);
  ASSERT_FALSE(iv);
  EXPECT_EQ(iv.error(), "phase-2 IV: last phase-1 CBC block is 8 bytes, AES-128-CBC blocks are 16");
}

}  // namespace
}  // namespace covey::crypto
