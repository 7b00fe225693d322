// Diffie-Hellman: RFC 5903 test vectors, MODP agreement checked with plain
// modular exponentiation, and rejection of bad peer public values.
#include <gtest/gtest.h>
#include <openssl/bn.h>

#include <memory>

#include "crypto/dh.h"

namespace covey::crypto {
namespace {

Bytes hex(std::string_view s) {
  Bytes b;
  EXPECT_TRUE(from_hex(s, b)) << s;
  return b;
}

Bytes cat(const Bytes& a, const Bytes& b) {
  Bytes out = a;
  append(out, b);
  return out;
}

DhGroup group(std::uint16_t id) {
  auto g = DhGroup::from_id(id);
  EXPECT_TRUE(g) << g.error();
  return *g;
}

// --- RFC 5903 section 8 ------------------------------------------------------

struct EcpVector {
  std::uint16_t group;
  const char *i, *gix, *giy, *r, *grx, *gry, *girx;
};

const EcpVector kRfc5903[] = {
    {19, "C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433",
     "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180",
     "5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
     "C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53",
     "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63",
     "56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
     "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE"},
    {20, "099F3C7034D4A2C699884D73A375A67F7624EF7C6B3C0F160647B67414DCE655E35B538041E649EE3FAEF896783AB194",
     "667842D7D180AC2CDE6F74F37551F55755C7645C20EF73E31634FE72B4C55EE6DE3AC808ACB4BDB4C88732AEE95F41AA",
     "9482ED1FC0EEB9CAFC4984625CCFC23F65032149E0E144ADA024181535A0F38EEB9FCFF3C2C947DAE69B4C634573A81C",
     "41CB0779B4BDB85D47846725FBEC3C9430FAB46CC8DC5060855CC9BDA0AA2942E0308312916B8ED2960E4BD55A7448FC",
     "E558DBEF53EECDE3D3FCCFC1AEA08A89A987475D12FD950D83CFA41732BC509D0D1AC43A0336DEF96FDA41D0774A3571",
     "DCFBEC7AACF3196472169E838430367F66EEBE3C6E70C416DD5F0C68759DD1FFF83FA40142209DFF5EAAD96DB9E6386C",
     "11187331C279962D93D604243FD592CB9D0A926F422E47187521287E7156C5C4D603135569B9E9D09CF5D4A270F59746"},
};

TEST(CryptoDhTest, Rfc5903Vectors) {
  for (const auto& v : kRfc5903) {
    const DhGroup g = group(v.group);
    const Bytes gi = cat(hex(v.gix), hex(v.giy));
    const Bytes gr = cat(hex(v.grx), hex(v.gry));
    // import_key_pair fails unless OpenSSL computes the same g^i from i.
    auto initiator = g.import_key_pair(hex(v.i), gi);
    ASSERT_TRUE(initiator) << initiator.error();
    auto responder = g.import_key_pair(hex(v.r), gr);
    ASSERT_TRUE(responder) << responder.error();
    EXPECT_EQ(initiator->public_value(), gi);

    auto s_i = initiator->shared_secret(gr);
    auto s_r = responder->shared_secret(gi);
    ASSERT_TRUE(s_i) << s_i.error();
    ASSERT_TRUE(s_r) << s_r.error();
    // Section 7: the shared secret is girx alone, not girx|giry.
    EXPECT_EQ(to_hex(*s_i), to_hex(hex(v.girx))) << g.name();
    EXPECT_EQ(to_hex(*s_r), to_hex(hex(v.girx))) << g.name();
    EXPECT_EQ(s_i->size(), g.shared_secret_size());
  }
}

TEST(CryptoDhTest, ImportRejectsPublicValueThatIsNotGToThePrivate) {
  const auto& v = kRfc5903[0];
  const DhGroup g = group(19);
  // g^r is on the curve but is not g^i.
  auto wrong = g.import_key_pair(hex(v.i), cat(hex(v.grx), hex(v.gry)));
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().find("ECP group 19"), std::string::npos) << wrong.error();
}

TEST(CryptoDhTest, GeneratedKeysAgreeInEveryGroup) {
  for (std::uint16_t id : std::initializer_list<std::uint16_t>{2, 5, 14, 19, 20}) {
    const DhGroup g = group(id);
    auto a = g.generate();
    auto b = g.generate();
    ASSERT_TRUE(a) << a.error();
    ASSERT_TRUE(b) << b.error();
    EXPECT_EQ(a->public_value().size(), g.public_value_size()) << g.name();
    EXPECT_TRUE(g.validate_peer_public_value(a->public_value())) << g.name();
    auto ab = a->shared_secret(b->public_value());
    auto ba = b->shared_secret(a->public_value());
    ASSERT_TRUE(ab) << ab.error();
    ASSERT_TRUE(ba) << ba.error();
    EXPECT_EQ(ab->size(), g.shared_secret_size()) << g.name();
    EXPECT_EQ(to_hex(*ab), to_hex(*ba)) << g.name();
    EXPECT_NE(a->public_value(), b->public_value());
  }
}

// A validated value carries its group: one of another group (a peer that
// switched groups between messages) is refused, not fed to OpenSSL.
TEST(CryptoDhTest, SharedSecretRefusesAPeerValueOfAnotherGroup) {
  auto p256 = group(19).generate();
  auto p384 = group(20).generate();
  ASSERT_TRUE(p256 && p384);
  auto peer = group(20).validate_peer_public_value(p384->public_value());
  ASSERT_TRUE(peer) << peer.error();
  auto s = p256->shared_secret(*peer);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), "ECP group 19: peer public value is of ECP group 20");
  EXPECT_TRUE(p384->shared_secret(*peer));
}

TEST(CryptoDhTest, SizesFollowRfcs) {
  EXPECT_EQ(group(2).public_value_size(), 128u);   // 1024-bit Second Oakley Group
  EXPECT_EQ(group(5).public_value_size(), 192u);   // 1536-bit
  EXPECT_EQ(group(14).public_value_size(), 256u);  // 2048-bit
  EXPECT_EQ(group(19).public_value_size(), 64u);   // x|y, 256 bits each
  EXPECT_EQ(group(20).public_value_size(), 96u);   // x|y, 384 bits each
  EXPECT_EQ(group(19).shared_secret_size(), 32u);
  EXPECT_EQ(group(20).shared_secret_size(), 48u);
  EXPECT_EQ(group(14).shared_secret_size(), 256u);
}

TEST(CryptoDhTest, UnsupportedGroupsAreNamed) {
  for (std::uint16_t id : std::initializer_list<std::uint16_t>{0, 1, 3, 4, 15, 21, 24}) {
    auto g = DhGroup::from_id(id);
    ASSERT_FALSE(g) << id;
    EXPECT_NE(g.error().find("group " + std::to_string(id)), std::string::npos) << g.error();
  }
}

// --- MODP against OpenSSL's BIGNUM arithmetic ---------------------------------

using Bn = std::unique_ptr<BIGNUM, decltype(&BN_free)>;
using BnCtx = std::unique_ptr<BN_CTX, decltype(&BN_CTX_free)>;

// OpenSSL's own copies of the primes (crypto/bn/bn_const.c): an independent
// source for the constants covey copied from the RFC text.
Bn openssl_prime(std::uint16_t id) {
  BIGNUM* p = id == 2   ? BN_get_rfc2409_prime_1024(nullptr)
              : id == 5 ? BN_get_rfc3526_prime_1536(nullptr)
                        : BN_get_rfc3526_prime_2048(nullptr);
  return Bn(p, BN_free);
}

Bytes padded(const BIGNUM* n, std::size_t size) {
  Bytes out(size);
  EXPECT_GE(BN_bn2binpad(n, out.data(), static_cast<int>(size)), 0);
  return out;
}

Bytes bn_plus(const BIGNUM* p, long delta, std::size_t size) {
  Bn v(BN_dup(p), BN_free);
  if (delta >= 0) {
    BN_add_word(v.get(), static_cast<BN_ULONG>(delta));
  } else {
    BN_sub_word(v.get(), static_cast<BN_ULONG>(-delta));
  }
  if (BN_num_bytes(v.get()) > static_cast<int>(size)) return Bytes(size + 1, 0xff);
  return padded(v.get(), size);
}

TEST(CryptoDhTest, ModpValidationBoundsPinThePrime) {
  for (std::uint16_t id : std::initializer_list<std::uint16_t>{2, 5, 14}) {
    const DhGroup g = group(id);
    const std::size_t n = g.public_value_size();
    Bn p = openssl_prime(id);
    ASSERT_TRUE(p);
    Bn zero(BN_new(), BN_free);
    BN_zero(zero.get());

    // Accepting p-2 and 2 but rejecting p-1 only works if covey's p is OpenSSL's p.
    EXPECT_TRUE(g.validate_peer_public_value(bn_plus(p.get(), -2, n))) << g.name();
    EXPECT_TRUE(g.validate_peer_public_value(bn_plus(zero.get(), 2, n))) << g.name();
    for (long bad : {0L, 1L}) {
      auto r = g.validate_peer_public_value(bn_plus(zero.get(), bad, n));
      ASSERT_FALSE(r) << g.name() << " y=" << bad;
      EXPECT_EQ(r.error(), g.name() + " peer public value is not in the range 1 < y < p-1");
    }
    EXPECT_FALSE(g.validate_peer_public_value(bn_plus(p.get(), -1, n))) << g.name() << " y=p-1";
    EXPECT_FALSE(g.validate_peer_public_value(padded(p.get(), n))) << g.name() << " y=p";
    EXPECT_FALSE(g.validate_peer_public_value(Bytes(n, 0xff))) << g.name() << " y>p";

    // RFC 2409 section 5: the KE value is exactly the prime's length.
    for (std::size_t len : {n - 1, n + 1, std::size_t{0}}) {
      Bytes y(len, 0);
      if (!y.empty()) y.back() = 2;
      auto r = g.validate_peer_public_value(y);
      ASSERT_FALSE(r) << g.name() << " length " << len;
      EXPECT_EQ(r.error(), g.name() + " peer public value is " + std::to_string(len) + " bytes, must be " +
                               std::to_string(n));
    }
    // The key pair refuses the same values.
    auto kp = g.generate();
    ASSERT_TRUE(kp) << kp.error();
    EXPECT_FALSE(kp->shared_secret(bn_plus(zero.get(), 1, n)));
    EXPECT_FALSE(kp->shared_secret(bn_plus(p.get(), -1, n)));
  }
}

// g^xy is computed here with BN_mod_exp, and covey must return it zero-padded
// to the prime length. The private values are searched until g^xy has a zero
// top byte (about 1 in 256), which OpenSSL's DH would strip by default.
TEST(CryptoDhTest, ModpGroup2SharedSecretKeepsLeadingZeros) {
  const DhGroup g = group(2);
  Bn p = openssl_prime(2);
  BnCtx ctx(BN_CTX_new(), BN_CTX_free);
  Bn two(BN_new(), BN_free), x(BN_new(), BN_free), y(BN_new(), BN_free), gx(BN_new(), BN_free),
      gy(BN_new(), BN_free), gxy(BN_new(), BN_free);
  ASSERT_TRUE(p && ctx && two && x && y && gx && gy && gxy);
  BN_set_word(two.get(), 2);
  BN_set_word(y.get(), 0x5eed);
  BN_mod_exp(gy.get(), two.get(), y.get(), p.get(), ctx.get());

  bool found = false;
  for (BN_ULONG seed = 0x1000; seed < 0x1000 + 20000 && !found; ++seed) {
    BN_set_word(x.get(), seed);
    BN_lshift(x.get(), x.get(), 160);  // a 170-bit-ish private value, below q
    BN_add_word(x.get(), 0xabcdef);
    BN_mod_exp(gxy.get(), gy.get(), x.get(), p.get(), ctx.get());
    found = BN_num_bytes(gxy.get()) < 128;
  }
  ASSERT_TRUE(found);
  BN_mod_exp(gx.get(), two.get(), x.get(), p.get(), ctx.get());

  auto mine = g.import_key_pair(padded(x.get(), static_cast<std::size_t>(BN_num_bytes(x.get()))),
                                padded(gx.get(), 128));
  ASSERT_TRUE(mine) << mine.error();
  auto secret = mine->shared_secret(padded(gy.get(), 128));
  ASSERT_TRUE(secret) << secret.error();
  ASSERT_EQ(secret->size(), 128u);
  EXPECT_EQ(secret->data()[0], 0);
  EXPECT_EQ(to_hex(*secret), to_hex(padded(gxy.get(), 128)));
}

// --- ECP peer validation -------------------------------------------------------

TEST(CryptoDhTest, EcpRejectsBadPeerValues) {
  for (const auto& v : kRfc5903) {
    const DhGroup g = group(v.group);
    const Bytes good = cat(hex(v.grx), hex(v.gry));
    const std::size_t n = good.size();
    ASSERT_TRUE(g.validate_peer_public_value(good));

    Bytes off_curve = good;
    off_curve.back() ^= 0x01;
    auto r = g.validate_peer_public_value(off_curve);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), g.name() + " peer public value is not on the curve");

    // (0, 0): how the point at infinity is sometimes written; not on these curves.
    r = g.validate_peer_public_value(Bytes(n, 0));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), g.name() + " peer public value is not on the curve");

    // 0x04 | x | y: SEC 1 form, one byte too long for IKE.
    Bytes sec1 = {0x04};
    append(sec1, good);
    for (const Bytes& wrong :
         {sec1, Bytes(good.begin(), good.end() - 1), Bytes(good.begin(), good.begin() + n / 2)}) {
      r = g.validate_peer_public_value(wrong);
      ASSERT_FALSE(r);
      EXPECT_EQ(r.error(), g.name() + " peer public value is " + std::to_string(wrong.size()) +
                               " bytes, must be " + std::to_string(n));
    }

    // A coordinate equal to the field prime is out of range even before the curve test.
    Bytes big_x = good;
    std::fill(big_x.begin(), big_x.begin() + static_cast<std::ptrdiff_t>(n / 2), 0xff);
    r = g.validate_peer_public_value(big_x);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), g.name() + " peer public value: x coordinate is not below the field prime");

    auto kp = g.generate();
    ASSERT_TRUE(kp) << kp.error();
    auto s = kp->shared_secret(off_curve);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error(), g.name() + " peer public value is not on the curve");
  }
}

}  // namespace
}  // namespace covey::crypto
