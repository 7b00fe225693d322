// CBC encryption against published vectors, and the whole-block contract.
#include <gtest/gtest.h>

#include "crypto/cipher.h"

namespace covey::crypto {
namespace {

Bytes hex(std::string_view s) {
  Bytes b;
  EXPECT_TRUE(from_hex(s, b)) << s;
  return b;
}

struct CbcVector {
  const char* source;
  CipherAlgorithm cipher;
  const char* key;
  const char* iv;
  const char* plaintext;
  const char* ciphertext;
};

const CbcVector kVectors[] = {
    // NIST SP 800-38A appendix F.2.1 (CBC-AES128.Encrypt) and F.2.5 (CBC-AES256.Encrypt).
    {"SP 800-38A F.2.1", CipherAlgorithm::Aes128Cbc, "2b7e151628aed2a6abf7158809cf4f3c",
     "000102030405060708090a0b0c0d0e0f",
     "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
     "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
     "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
     "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7"},
    {"SP 800-38A F.2.5", CipherAlgorithm::Aes256Cbc,
     "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "000102030405060708090a0b0c0d0e0f",
     "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
     "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
     "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
     "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b"},
    // RFC 3602 section 4, cases 1 to 4 (AES-128-CBC).
    {"RFC 3602 case 1", CipherAlgorithm::Aes128Cbc, "06a9214036b8a15b512e03d534120006",
     "3dafba429d9eb430b422da802c9fac41", "53696e676c6520626c6f636b206d7367",  // "Single block msg"
     "e353779c1079aeb82708942dbe77181a"},
    {"RFC 3602 case 2", CipherAlgorithm::Aes128Cbc, "c286696d887c9aa0611bbb3e2025a45a",
     "562e17996d093d28ddb3ba695a2e6f58", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1"},
    {"RFC 3602 case 3", CipherAlgorithm::Aes128Cbc, "6c3ea0477630ce21a2ce334aa746c2cd",
     "c782dc4c098c66cbd9cd27d825682c81",
     // "This is a 48-byte message (exactly 3 AES blocks)"
     "5468697320697320612034382d62797465206d657373616765202865786163746c7920332041455320626c6f636b7329",
     "d0a02b3836451753d493665d33f0e8862dea54cdb293abc7506939276772f8d5021c19216bad525c8579695d83ba2684"},
    {"RFC 3602 case 4", CipherAlgorithm::Aes128Cbc, "56e47a38c5598974bc46903dba290349",
     "8ce82eefbea0da3c44699ed7db51b7d9",
     "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
     "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf",
     "c30e32ffedc0774e6aff6af0869f71aa0f3af07a9a31a9c684db207eb0ef8e4e"
     "35907aa632c3ffdf868bb7b29d3d46ad83ce9f9a102ee99d49a53e87f4c3da55"},
};

TEST(CryptoCipherTest, PublishedCbcVectors) {
  for (const auto& v : kVectors) {
    auto c = cbc_encrypt(v.cipher, hex(v.key), hex(v.iv), hex(v.plaintext));
    ASSERT_TRUE(c) << v.source << ": " << c.error();
    EXPECT_EQ(to_hex(*c), v.ciphertext) << v.source;
    auto p = cbc_decrypt(v.cipher, hex(v.key), hex(v.iv), hex(v.ciphertext));
    ASSERT_TRUE(p) << v.source << ": " << p.error();
    EXPECT_EQ(to_hex(*p), v.plaintext) << v.source;
  }
}

// NIST SP 800-67 Rev. 1 appendix B publishes a three-key TDEA example in ECB
// mode: keys 0123456789ABCDEF, 23456789ABCDEF01, 456789ABCDEF0123, plaintext
// "The qufck brown fox jump", ciphertext A826FD8CE53B855F CCE21C8112256FE6
// 68D5C05DD9B6B900 (also reproduced with `openssl enc -des-ede3 -nopad`).
// CBC with a zero IV turns into that ECB computation when each plaintext block
// is first XORed with the previous ciphertext block, which CBC then undoes.
TEST(CryptoCipherTest, TripleDesFromSp80067Example) {
  const Bytes key = hex("0123456789abcdef23456789abcdef01456789abcdef0123");
  const std::string_view text = "The qufck brown fox jump";
  const Bytes ecb_plain(text.begin(), text.end());
  const Bytes ecb_cipher = hex("a826fd8ce53b855fcce21c8112256fe668d5c05dd9b6b900");
  Bytes cbc_plain = ecb_plain;
  for (std::size_t i = 8; i < cbc_plain.size(); ++i) cbc_plain[i] ^= ecb_cipher[i - 8];
  const Bytes zero_iv(8, 0);

  auto c = cbc_encrypt(CipherAlgorithm::TripleDesCbc, key, zero_iv, cbc_plain);
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(to_hex(*c), to_hex(ecb_cipher));
  auto p = cbc_decrypt(CipherAlgorithm::TripleDesCbc, key, zero_iv, ecb_cipher);
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(to_hex(*p), to_hex(cbc_plain));
}

TEST(CryptoCipherTest, SizesPerAlgorithm) {
  EXPECT_EQ(key_size(CipherAlgorithm::Aes128Cbc), 16u);
  EXPECT_EQ(key_size(CipherAlgorithm::Aes256Cbc), 32u);
  EXPECT_EQ(key_size(CipherAlgorithm::TripleDesCbc), 24u);
  EXPECT_EQ(block_size(CipherAlgorithm::Aes128Cbc), 16u);
  EXPECT_EQ(block_size(CipherAlgorithm::Aes256Cbc), 16u);
  EXPECT_EQ(block_size(CipherAlgorithm::TripleDesCbc), 8u);
}

TEST(CryptoCipherTest, RejectsPartialBlocksAndWrongSizes) {
  for (CipherAlgorithm cipher :
       {CipherAlgorithm::Aes128Cbc, CipherAlgorithm::Aes256Cbc, CipherAlgorithm::TripleDesCbc}) {
    const Bytes key(key_size(cipher), 0x42);
    const Bytes iv(block_size(cipher), 0x24);
    const Bytes partial(block_size(cipher) + 1, 0);
    auto d = cbc_decrypt(cipher, key, iv, partial);
    ASSERT_FALSE(d) << name(cipher);
    EXPECT_NE(d.error().find("not a multiple of the " + std::to_string(block_size(cipher)) + "-byte block"),
              std::string::npos)
        << d.error();
    EXPECT_NE(d.error().find(std::string(name(cipher))), std::string::npos) << d.error();
    EXPECT_FALSE(cbc_encrypt(cipher, key, iv, partial));
    EXPECT_FALSE(cbc_encrypt(cipher, Bytes(key.size() - 1, 0), iv, Bytes(block_size(cipher), 0)));
    EXPECT_FALSE(cbc_decrypt(cipher, key, Bytes(iv.size() + 1, 0), Bytes(block_size(cipher), 0)));
    // Empty input is a whole number of blocks.
    auto empty = cbc_encrypt(cipher, key, iv, {});
    ASSERT_TRUE(empty) << empty.error();
    EXPECT_TRUE(empty->empty());
  }
}

TEST(CryptoCipherTest, LastCipherBlockIsTheNextIv) {
  const Bytes ciphertext = hex("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2");
  EXPECT_EQ(to_hex(last_cipher_block(CipherAlgorithm::Aes128Cbc, ciphertext)),
            "5086cb9b507219ee95db113a917678b2");
  EXPECT_EQ(to_hex(last_cipher_block(CipherAlgorithm::TripleDesCbc, ciphertext)), "95db113a917678b2");
  EXPECT_TRUE(last_cipher_block(CipherAlgorithm::Aes128Cbc, hex("0102")).empty());
}

}  // namespace
}  // namespace covey::crypto
