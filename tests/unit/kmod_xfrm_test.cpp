// kmod-free/xfrm_msg: the XFRM netlink messages covey sends and the
// answers it parses, checked byte for byte against the kernel's uapi
// structs; no socket, no root.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <map>

#include "gm/kernel_sa.h"
#include "kmod-free/xfrm_msg.h"

using namespace covey;
using namespace covey::kmod;
// The TEK's transform and keys in the kernel's words: the member's side.
using covey::gm::esp_algorithms;
using covey::gm::group_sa_pair;
using Cipher = gdoi::TekTransform::Cipher;
using Integrity = gdoi::TekTransform::Integrity;

namespace {

Address ip(const char* text) { return *Address::parse(text); }

crypto::SecretBytes key(std::size_t n, std::uint8_t first) {
  crypto::SecretBytes k(n);
  for (std::size_t i = 0; i < n; ++i) k.data()[i] = static_cast<std::uint8_t>(first + i);
  return k;
}

gdoi::Tek tek(std::uint32_t spi, std::size_t enc, std::size_t integ) {
  gdoi::Tek t;
  t.spi = spi;
  t.encryption_key = key(enc, 0x10);
  t.integrity_key = key(integ, 0x80);
  return t;
}

const GroupAnchors kAnchors{ip("10.1.23.3"), ip("169.254.77.1"), ip("169.254.77.2")};
constexpr std::uint32_t kReqid = 0xc0e00001;

// A message's attributes after its fixed header, in order, by type.
struct Attr {
  std::uint16_t type;
  std::uint16_t len;  // nla_len
  const std::uint8_t* payload;
};
std::vector<Attr> attrs(ByteView msg, std::size_t header) {
  std::vector<Attr> out;
  std::size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(header);
  while (off + sizeof(nlattr) <= msg.size()) {
    nlattr a;
    std::memcpy(&a, msg.data() + off, sizeof a);
    EXPECT_GE(a.nla_len, sizeof(nlattr));
    EXPECT_LE(off + a.nla_len, msg.size());
    if (a.nla_len < sizeof(nlattr) || off + a.nla_len > msg.size()) break;
    out.push_back({a.nla_type, a.nla_len, msg.data() + off + NLA_HDRLEN});
    off += NLA_ALIGN(a.nla_len);
  }
  EXPECT_EQ(off, msg.size()) << "attributes must end exactly at nlmsg_len";
  return out;
}

template <class T>
T header_of(ByteView msg) {
  T t;
  std::memcpy(&t, msg.data() + NLMSG_HDRLEN, sizeof t);
  return t;
}

nlmsghdr nlh_of(ByteView msg) {
  nlmsghdr h;
  std::memcpy(&h, msg.data(), sizeof h);
  return h;
}

}  // namespace

// ---- algorithm mapping ----

TEST(KmodEspAlgorithms, MapsEveryCbcTransformToTheKernelsNamesKeySizesAndTruncation) {
  struct Row {
    Cipher c;
    Integrity i;
    const char* enc;
    std::size_t enc_bytes;
    const char* auth;
    std::size_t auth_bytes;
    std::uint32_t trunc;
  };
  const Row rows[] = {
      {Cipher::Aes128Cbc, Integrity::HmacSha1_96, "cbc(aes)", 16, "hmac(sha1)", 20, 96},
      {Cipher::Aes128Cbc, Integrity::HmacSha256_128, "cbc(aes)", 16, "hmac(sha256)", 32, 128},
      {Cipher::Aes256Cbc, Integrity::HmacSha1_96, "cbc(aes)", 32, "hmac(sha1)", 20, 96},
      {Cipher::Aes256Cbc, Integrity::HmacSha256_128, "cbc(aes)", 32, "hmac(sha256)", 32, 128},
      {Cipher::TripleDesCbc, Integrity::HmacSha1_96, "cbc(des3_ede)", 24, "hmac(sha1)", 20, 96},
      {Cipher::TripleDesCbc, Integrity::HmacSha256_128, "cbc(des3_ede)", 24, "hmac(sha256)", 32, 128},
  };
  for (const auto& r : rows) {
    gdoi::TekTransform t{r.c, r.i};
    auto a = esp_algorithms(t);
    ASSERT_TRUE(a) << t.str() << ": " << a.error();
    EXPECT_EQ(a->encryption, r.enc) << t.str();
    EXPECT_EQ(a->encryption_key_bytes, r.enc_bytes) << t.str();
    EXPECT_EQ(a->integrity, r.auth) << t.str();
    EXPECT_EQ(a->integrity_key_bytes, r.auth_bytes) << t.str();
    EXPECT_EQ(a->truncation_bits, r.trunc) << t.str();
  }
  EXPECT_EQ(esp_algorithms({Cipher::Aes256Cbc, Integrity::HmacSha256_128})->name, "AES-256-CBC with HMAC-SHA-256-128");
  EXPECT_EQ(esp_algorithms({Cipher::TripleDesCbc, Integrity::HmacSha1_96})->name, "3DES-CBC with HMAC-SHA1-96");
}

TEST(KmodEspAlgorithms, RefusesGcmAndCbcWithoutIntegrityWithTheReason) {
  auto gcm = esp_algorithms({Cipher::AesGcm256, Integrity::None});
  ASSERT_FALSE(gcm);
  EXPECT_NE(gcm.error().find("esp-gcm-256"), std::string::npos) << gcm.error();
  EXPECT_NE(gcm.error().find("sender-ID IVs"), std::string::npos) << gcm.error();
  auto bare = esp_algorithms({Cipher::Aes128Cbc, Integrity::None});
  ASSERT_FALSE(bare);
  EXPECT_NE(bare.error().find("without an integrity transform"), std::string::npos) << bare.error();
}

// ---- the inner MTU, as the kernel's xfrm_state_mtu() computes it ----

TEST(KmodEspInnerMtu, MatchesHandComputedValues) {
  // 1500, AES-256-CBC / HMAC-SHA-256-128, outer IPv4: header 20 + 8 + 16 (IV)
  // = 44, ICV 16: (1500 - 60) = 1440, a multiple of 16; less pad length and
  // next header: 1438. The stamped TCP MSS: 1438 - 20 - 20 - 12 = 1386.
  const auto aes256 = *esp_algorithms({Cipher::Aes256Cbc, Integrity::HmacSha256_128});
  EXPECT_EQ(esp_tunnel_inner_mtu(1500, aes256, 4), 1438u);
  // AES-128 / HMAC-SHA1-96: ICV 12, (1500 - 56) = 1444 -> 1440 -> 1438.
  EXPECT_EQ(esp_tunnel_inner_mtu(1500, *esp_algorithms({Cipher::Aes128Cbc, Integrity::HmacSha1_96}), 4),
            1438u);
  // 3DES (block and IV 8) / HMAC-SHA1-96: header 36, (1500 - 48) = 1452 -> 1448 -> 1446.
  EXPECT_EQ(esp_tunnel_inner_mtu(1500, *esp_algorithms({Cipher::TripleDesCbc, Integrity::HmacSha1_96}), 4),
            1446u);
  // 3DES / HMAC-SHA-256-128: (1500 - 52) = 1448 -> 1446.
  EXPECT_EQ(esp_tunnel_inner_mtu(1500, *esp_algorithms({Cipher::TripleDesCbc, Integrity::HmacSha256_128}), 4),
            1446u);
  // Outer IPv6: header 64, (1500 - 80) = 1420 -> 1408 -> 1406.
  EXPECT_EQ(esp_tunnel_inner_mtu(1500, aes256, 6), 1406u);
  // 1400: (1400 - 60) = 1340 -> 1328 -> 1326; jumbo 9000: 8940 -> 8928 -> 8926.
  EXPECT_EQ(esp_tunnel_inner_mtu(1400, aes256, 4), 1326u);
  EXPECT_EQ(esp_tunnel_inner_mtu(9000, aes256, 4), 8926u);
  // Too small for one block of payload, or a cipher it does not know: 0.
  EXPECT_EQ(esp_tunnel_inner_mtu(75, aes256, 4), 0u);
  EXPECT_EQ(esp_tunnel_inner_mtu(76, aes256, 4), 14u);
  EspAlgorithms other = aes256;
  other.encryption = "cbc(twofish)";
  EXPECT_EQ(esp_tunnel_inner_mtu(1500, other, 4), 0u);
}

// The ESP tunnel packet an inner packet becomes, laid out byte by byte
// (RFC 4303 2, 2.4): outer header, SPI, sequence number, IV, payload,
// padding, pad length, next header, ICV. The inner MTU is the largest
// inner packet whose ESP packet fits: checked at every outer MTU.
TEST(KmodEspInnerMtu, IsTheLargestInnerPacketThatFitsAtEveryMtu) {
  for (Cipher c : {Cipher::Aes128Cbc, Cipher::Aes256Cbc, Cipher::TripleDesCbc}) {
    for (Integrity i : {Integrity::HmacSha1_96, Integrity::HmacSha256_128}) {
      const auto alg = *esp_algorithms({c, i});
      const std::uint32_t block = c == Cipher::TripleDesCbc ? 8 : 16;
      for (std::uint8_t family : {std::uint8_t{4}, std::uint8_t{6}}) {
        auto outer_size = [&](std::uint32_t inner) {
          std::uint32_t encrypted = inner + 2;               // pad length, next header
          encrypted += (block - encrypted % block) % block;  // padding to the block
          return (family == 6 ? 40u : 20u) + 4 + 4 + block + encrypted + alg.truncation_bits / 8;
        };
        for (std::uint32_t mtu = 576; mtu <= 9216; ++mtu) {
          const std::uint32_t inner = esp_tunnel_inner_mtu(mtu, alg, family);
          ASSERT_LE(outer_size(inner), mtu) << alg.name << " IPv" << int(family) << " MTU " << mtu;
          ASSERT_GT(outer_size(inner + 1), mtu) << alg.name << " IPv" << int(family) << " MTU " << mtu;
        }
      }
    }
  }
}

// ---- the group SA pair ----

TEST(KmodGroupSa, PairHasOneSpiAndReqidOutboundLocalToGroupInboundGroupToIn) {
  gdoi::Tek t = tek(0x1a2b3c4d, 32, 32);
  auto pair = group_sa_pair(t, {Cipher::Aes256Cbc, Integrity::HmacSha256_128}, kAnchors, kReqid, {0xe00, 0xf00});
  ASSERT_TRUE(pair) << pair.error();
  const EspState& out = pair->outbound;
  const EspState& in = pair->inbound;
  EXPECT_EQ(out.spi, 0x1a2b3c4du);
  EXPECT_EQ(in.spi, 0x1a2b3c4du);
  EXPECT_EQ(out.reqid, kReqid);
  EXPECT_EQ(in.reqid, kReqid);
  EXPECT_EQ(out.source, kAnchors.local);
  EXPECT_EQ(out.destination, kAnchors.group);
  EXPECT_EQ(in.source, kAnchors.group);
  EXPECT_EQ(in.destination, kAnchors.in);
  EXPECT_EQ(out.mark, (Mark{0xe00, 0xf00}));
  EXPECT_EQ(in.mark, (Mark{0, 0xf00}));
  EXPECT_EQ(out.encryption, "cbc(aes)");
  EXPECT_EQ(out.integrity, "hmac(sha256)");
  EXPECT_EQ(out.truncation_bits, 128u);
  // Borrowed, not copied: the keys stay in the TEK's SecretBytes.
  EXPECT_EQ(out.encryption_key.data(), t.encryption_key.data());
  EXPECT_EQ(in.integrity_key.data(), t.integrity_key.data());
  EXPECT_EQ(out.describe(),
            "ESP SPI 0x1a2b3c4d 10.1.23.3 -> 169.254.77.1 reqid 0xc0e00001 mark 0xe00/0xf00 cbc(aes)/hmac(sha256)");
}

TEST(KmodGroupSa, RefusesKeysOfTheWrongLengthNamingSpiAlgorithmAndBothLengths) {
  auto short_enc = group_sa_pair(tek(0x1a2b3c4d, 16, 32), {Cipher::Aes256Cbc, Integrity::HmacSha256_128}, kAnchors,
                                 kReqid, kDefaultSteeringMark);
  ASSERT_FALSE(short_enc);
  EXPECT_EQ(short_enc.error(),
            "TEK SPI 0x1a2b3c4d: AES-256-CBC with HMAC-SHA-256-128 needs a 32-byte encryption key, the TEK has 16 bytes");
  auto long_auth = group_sa_pair(tek(0x42, 24, 32), {Cipher::TripleDesCbc, Integrity::HmacSha1_96}, kAnchors, kReqid,
                                 kDefaultSteeringMark);
  ASSERT_FALSE(long_auth);
  EXPECT_EQ(long_auth.error(),
            "TEK SPI 0x00000042: 3DES-CBC with HMAC-SHA1-96 needs a 20-byte integrity key, the TEK has 32 bytes");
  auto gcm = group_sa_pair(tek(0x42, 36, 0), {Cipher::AesGcm256, Integrity::None}, kAnchors, kReqid, kDefaultSteeringMark);
  ASSERT_FALSE(gcm);
  EXPECT_EQ(gcm.error().rfind("TEK SPI 0x00000042: transform esp-gcm-256", 0), 0u) << gcm.error();
}

TEST(KmodGroupSa, RefusesMixedFamiliesAndAMarkOutsideItsMask) {
  GroupAnchors mixed = kAnchors;
  mixed.in = ip("2001:db8::1");
  auto r = group_sa_pair(tek(1, 32, 32), {}, mixed, kReqid, kDefaultSteeringMark);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("not of one family"), std::string::npos) << r.error();
  auto m = group_sa_pair(tek(1, 32, 32), {}, kAnchors, kReqid, {0x1e00, 0xf00});
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().find("0x1e00/0xf00"), std::string::npos) << m.error();
}

// ---- NEWSA / UPDSA ----

TEST(KmodXfrmMessage, NewSaLaysOutUsersaInfoAlgorithmsWithTruncationAndMark) {
  gdoi::Tek t = tek(0x1a2b3c4d, 32, 32);
  auto pair = group_sa_pair(t, {Cipher::Aes256Cbc, Integrity::HmacSha256_128}, kAnchors, kReqid, {0xe00, 0xf00});
  ASSERT_TRUE(pair);
  pair->outbound.hard_lifetime_s = 7200;
  auto built = build_new_sa(pair->outbound, 77);
  ASSERT_TRUE(built) << built.error();
  ByteView msg = built->view();

  nlmsghdr h = nlh_of(msg);
  EXPECT_EQ(h.nlmsg_len, msg.size());
  EXPECT_EQ(h.nlmsg_type, XFRM_MSG_NEWSA);
  EXPECT_EQ(h.nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
  EXPECT_EQ(h.nlmsg_seq, 77u);

  auto info = header_of<xfrm_usersa_info>(msg);
  EXPECT_EQ(ntohl(info.id.spi), 0x1a2b3c4du);
  EXPECT_EQ(info.id.proto, IPPROTO_ESP);
  EXPECT_EQ(std::memcmp(&info.id.daddr.a4, kAnchors.group.bytes.data(), 4), 0);
  EXPECT_EQ(std::memcmp(&info.saddr.a4, kAnchors.local.bytes.data(), 4), 0);
  EXPECT_EQ(info.family, AF_INET);
  EXPECT_EQ(info.mode, XFRM_MODE_TUNNEL);
  EXPECT_EQ(info.reqid, kReqid);
  EXPECT_EQ(info.replay_window, 0);
  EXPECT_EQ(info.flags, XFRM_STATE_AF_UNSPEC) << "tunnel state for inner IPv4 and IPv6, no ESN";
  EXPECT_EQ(info.sel.family, AF_UNSPEC);
  EXPECT_EQ(info.lft.hard_add_expires_seconds, 7200u);
  EXPECT_EQ(info.lft.soft_add_expires_seconds, 0u);
  EXPECT_EQ(info.lft.hard_byte_limit, XFRM_INF);
  EXPECT_EQ(info.lft.hard_packet_limit, XFRM_INF);

  auto a = attrs(msg, sizeof(xfrm_usersa_info));
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].type, XFRMA_ALG_CRYPT);
  EXPECT_EQ(a[0].len, NLA_HDRLEN + sizeof(xfrm_algo) + 32);
  xfrm_algo crypt;
  std::memcpy(&crypt, a[0].payload, sizeof crypt);
  EXPECT_STREQ(crypt.alg_name, "cbc(aes)");
  EXPECT_EQ(crypt.alg_key_len, 256u);
  EXPECT_EQ(std::memcmp(a[0].payload + sizeof(xfrm_algo), t.encryption_key.data(), 32), 0);

  EXPECT_EQ(a[1].type, XFRMA_ALG_AUTH_TRUNC);
  EXPECT_EQ(a[1].len, NLA_HDRLEN + sizeof(xfrm_algo_auth) + 32);
  xfrm_algo_auth auth;
  std::memcpy(&auth, a[1].payload, sizeof auth);
  EXPECT_STREQ(auth.alg_name, "hmac(sha256)");
  EXPECT_EQ(auth.alg_key_len, 256u);
  EXPECT_EQ(auth.alg_trunc_len, 128u);
  EXPECT_EQ(std::memcmp(a[1].payload + sizeof(xfrm_algo_auth), t.integrity_key.data(), 32), 0);

  EXPECT_EQ(a[2].type, XFRMA_MARK);
  EXPECT_EQ(a[2].len, NLA_HDRLEN + sizeof(xfrm_mark));
  xfrm_mark m;
  std::memcpy(&m, a[2].payload, sizeof m);
  EXPECT_EQ(m.v, 0xe00u);
  EXPECT_EQ(m.m, 0xf00u);
}

TEST(KmodXfrmMessage, TripleDesWithSha1CarriesA192BitKeyAnd96BitTruncation) {
  gdoi::Tek t = tek(0x3de5, 24, 20);
  auto pair = group_sa_pair(t, {Cipher::TripleDesCbc, Integrity::HmacSha1_96}, kAnchors, kReqid, kDefaultSteeringMark);
  ASSERT_TRUE(pair) << pair.error();
  auto built = build_update_sa(pair->inbound, 9);
  ASSERT_TRUE(built);
  ByteView msg = built->view();
  EXPECT_EQ(nlh_of(msg).nlmsg_type, XFRM_MSG_UPDSA);
  auto info = header_of<xfrm_usersa_info>(msg);
  EXPECT_EQ(std::memcmp(&info.id.daddr.a4, kAnchors.in.bytes.data(), 4), 0);
  EXPECT_EQ(std::memcmp(&info.saddr.a4, kAnchors.group.bytes.data(), 4), 0);
  EXPECT_EQ(info.lft.hard_add_expires_seconds, 0u);
  auto a = attrs(msg, sizeof(xfrm_usersa_info));
  ASSERT_EQ(a.size(), 3u);
  xfrm_algo crypt;
  std::memcpy(&crypt, a[0].payload, sizeof crypt);
  EXPECT_STREQ(crypt.alg_name, "cbc(des3_ede)");
  EXPECT_EQ(crypt.alg_key_len, 192u);
  xfrm_algo_auth auth;
  std::memcpy(&auth, a[1].payload, sizeof auth);
  EXPECT_STREQ(auth.alg_name, "hmac(sha1)");
  EXPECT_EQ(auth.alg_key_len, 160u);
  EXPECT_EQ(auth.alg_trunc_len, 96u);
  // A 20-byte key: the attribute is exactly header, struct and key.
  EXPECT_EQ(a[1].len, NLA_HDRLEN + sizeof(xfrm_algo_auth) + 20);
  xfrm_mark m;
  std::memcpy(&m, a[2].payload, sizeof m);
  EXPECT_EQ(m.v, 0u);
  EXPECT_EQ(m.m, 0xf00u);
}

TEST(KmodXfrmMessage, IPv6OuterAddressesFillAllSixteenBytes) {
  GroupAnchors v6{ip("2001:db8::1"), ip("2001:db8::2"), ip("2001:db8::3")};
  gdoi::Tek t = tek(7, 32, 32);
  auto pair = group_sa_pair(t, {}, v6, kReqid, kDefaultSteeringMark);
  ASSERT_TRUE(pair);
  auto built = build_new_sa(pair->outbound, 1);
  ASSERT_TRUE(built);
  auto info = header_of<xfrm_usersa_info>(built->view());
  EXPECT_EQ(info.family, AF_INET6);
  EXPECT_EQ(std::memcmp(&info.id.daddr, v6.group.bytes.data(), 16), 0);
  EXPECT_EQ(std::memcmp(&info.saddr, v6.local.bytes.data(), 16), 0);
}

// IPv6 traffic keeps its addresses only in IPv6 states: the member's
// second pair, IPv6 anchors outside and in, for inner IPv6 (and inner
// IPv4 too: the state's selector is AF_UNSPEC either way).
TEST(KmodXfrmMessage, IPv6PairAndPoliciesUseTheIPv6AnchorsThroughout) {
  GroupAnchors v6{ip("fd00:c0e1:77::1"), ip("fd00:c0e1:77::2"), ip("fd00:c0e1:77::3")};
  gdoi::Tek t = tek(0x1a2b3c4d, 32, 32);
  auto pair = group_sa_pair(t, {Cipher::Aes256Cbc, Integrity::HmacSha256_128}, v6, kReqid, kDefaultSteeringMark);
  ASSERT_TRUE(pair);
  auto in = build_new_sa(pair->inbound, 2);
  ASSERT_TRUE(in) << in.error();
  auto info = header_of<xfrm_usersa_info>(in->view());
  EXPECT_EQ(info.family, AF_INET6);
  EXPECT_EQ(info.id.spi, htonl(0x1a2b3c4d));
  EXPECT_EQ(std::memcmp(&info.id.daddr, v6.in.bytes.data(), 16), 0);
  EXPECT_EQ(std::memcmp(&info.saddr, v6.group.bytes.data(), 16), 0);
  EXPECT_EQ(info.sel.family, AF_UNSPEC);
  EXPECT_EQ(info.flags & XFRM_STATE_AF_UNSPEC, XFRM_STATE_AF_UNSPEC);
  EXPECT_EQ(info.mode, XFRM_MODE_TUNNEL);
  EXPECT_EQ(info.replay_window, 0);

  GroupPolicies p = group_policies(v6, 6, kReqid, kDefaultSteeringMark, 0xffff);
  for (const Policy* pol : {&p.out, &p.in, &p.fwd}) {
    SCOPED_TRACE(pol->describe());
    auto built = build_new_policy(*pol, 3);
    ASSERT_TRUE(built) << built.error();
    auto pi = header_of<xfrm_userpolicy_info>(*built);
    EXPECT_EQ(pi.sel.family, AF_INET6);
    EXPECT_EQ(pi.sel.prefixlen_s, 0);
    EXPECT_EQ(pi.sel.prefixlen_d, 0);
    auto a = attrs(*built, sizeof(xfrm_userpolicy_info));
    ASSERT_GE(a.size(), 1u);
    ASSERT_EQ(a[0].type, XFRMA_TMPL);
    xfrm_user_tmpl tm;
    std::memcpy(&tm, a[0].payload, sizeof tm);
    EXPECT_EQ(tm.family, AF_INET6);
    const GroupAnchors expect = pol == &p.out ? GroupAnchors{v6.local, v6.group, v6.in} : GroupAnchors{v6.group, v6.in, v6.in};
    EXPECT_EQ(std::memcmp(&tm.saddr, expect.local.bytes.data(), 16), 0);
    EXPECT_EQ(std::memcmp(&tm.id.daddr, expect.group.bytes.data(), 16), 0);
  }
  // Removing it later: the lookup goes to the IPv6 anchor, all 16 bytes.
  Bytes del = build_delete_sa({v6.in, 0x1a2b3c4d, 50, {0, 0xf00}}, 4);
  auto id = header_of<xfrm_usersa_id>(del);
  EXPECT_EQ(id.family, AF_INET6);
  EXPECT_EQ(std::memcmp(&id.daddr, v6.in.bytes.data(), 16), 0);
}

TEST(KmodXfrmMessage, RefusesMalformedStatesBeforeTheKernelSeesThem) {
  gdoi::Tek t = tek(7, 32, 32);
  auto pair = group_sa_pair(t, {}, kAnchors, kReqid, kDefaultSteeringMark);
  ASSERT_TRUE(pair);
  EspState s = pair->outbound;
  s.spi = 0;
  auto zero = build_new_sa(s, 1);
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.error().find("SPI 0 is reserved"), std::string::npos) << zero.error();
  s = pair->outbound;
  s.truncation_bits = 100;
  auto odd = build_new_sa(s, 1);
  ASSERT_FALSE(odd);
  EXPECT_NE(odd.error().find("100 bits"), std::string::npos) << odd.error();
  s = pair->outbound;
  s.encryption = std::string(64, 'a');
  EXPECT_FALSE(build_new_sa(s, 1));
  s = pair->outbound;
  s.destination = ip("2001:db8::9");
  auto mixed = build_new_sa(s, 1);
  ASSERT_FALSE(mixed);
  EXPECT_NE(mixed.error().find("different families"), std::string::npos);
  EXPECT_EQ(mixed.error().find(to_hex(t.encryption_key.view())), std::string::npos) << "errors never carry keys";
}

// ---- DELSA, policies ----

TEST(KmodXfrmMessage, DeleteSaCarriesDestinationSpiProtocolAndLookupMark) {
  Bytes msg = build_delete_sa({ip("169.254.77.1"), 0x1a2b3c4d, IPPROTO_ESP, {0xe00, 0xf00}}, 5);
  EXPECT_EQ(nlh_of(msg).nlmsg_type, XFRM_MSG_DELSA);
  EXPECT_EQ(nlh_of(msg).nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
  auto id = header_of<xfrm_usersa_id>(msg);
  EXPECT_EQ(ntohl(id.spi), 0x1a2b3c4du);
  EXPECT_EQ(id.proto, IPPROTO_ESP);
  EXPECT_EQ(id.family, AF_INET);
  EXPECT_EQ(std::memcmp(&id.daddr.a4, ip("169.254.77.1").bytes.data(), 4), 0);
  auto a = attrs(msg, sizeof(xfrm_usersa_id));
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].type, XFRMA_MARK);
}

// Changing or deleting one SA is a lookup of that one SA, never a dump:
// GETSA with the same key as the DELSA/UPDSA that follows.
TEST(KmodXfrmMessage, GetSaIsOneLookupByDestinationSpiProtocolAndMarkNotADump) {
  const StateId id{ip("169.254.77.1"), 0x1a2b3c4d, IPPROTO_ESP, {0xe00, 0xf00}};
  Bytes msg = build_get_sa(id, 6);
  EXPECT_EQ(nlh_of(msg).nlmsg_type, XFRM_MSG_GETSA);
  EXPECT_EQ(nlh_of(msg).nlmsg_flags, NLM_F_REQUEST);  // no NLM_F_DUMP; the answer is the state or an error
  EXPECT_EQ(nlh_of(msg).nlmsg_seq, 6u);
  auto sid = header_of<xfrm_usersa_id>(msg);
  EXPECT_EQ(ntohl(sid.spi), 0x1a2b3c4du);
  EXPECT_EQ(sid.proto, IPPROTO_ESP);
  EXPECT_EQ(sid.family, AF_INET);
  EXPECT_EQ(std::memcmp(&sid.daddr.a4, ip("169.254.77.1").bytes.data(), 4), 0);
  auto a = attrs(msg, sizeof(xfrm_usersa_id));
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].type, XFRMA_MARK);
  xfrm_mark m;
  std::memcpy(&m, a[0].payload, sizeof m);
  EXPECT_EQ(m.v, 0xe00u);
  EXPECT_EQ(m.m, 0xf00u);
  // The DELSA that follows carries the very same key.
  Bytes del = build_delete_sa(id, 7);
  ASSERT_EQ(del.size(), msg.size());
  EXPECT_EQ(std::memcmp(del.data() + NLMSG_HDRLEN, msg.data() + NLMSG_HDRLEN, msg.size() - NLMSG_HDRLEN), 0);
}

TEST(KmodXfrmMessage, PolicyLookupAndDeleteGoBySelectorDirectionAndExactMark) {
  GroupPolicies p = group_policies(kAnchors, 4, kReqid, kDefaultSteeringMark, 300);
  auto added = build_new_policy(p.out, 1);
  ASSERT_TRUE(added);
  const auto sel = header_of<xfrm_userpolicy_info>(*added).sel;
  for (Bytes msg : {build_get_policy(p.out.id(), 2), build_delete_policy(p.out.id(), 3)}) {
    auto id = header_of<xfrm_userpolicy_id>(msg);
    EXPECT_EQ(id.index, 0u);  // by selector, not by an index a dump would have given
    EXPECT_EQ(id.dir, XFRM_POLICY_OUT);
    EXPECT_EQ(std::memcmp(&id.sel, &sel, sizeof sel), 0) << "the kernel compares the whole selector";
    auto a = attrs(msg, sizeof(xfrm_userpolicy_id));
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].type, XFRMA_MARK);
    xfrm_mark m;
    std::memcpy(&m, a[0].payload, sizeof m);
    EXPECT_EQ(m.v, 0xe00u);
    EXPECT_EQ(m.m, 0xf00u);
  }
  EXPECT_EQ(nlh_of(build_get_policy(p.out.id(), 2)).nlmsg_type, XFRM_MSG_GETPOLICY);
  EXPECT_EQ(nlh_of(build_get_policy(p.out.id(), 2)).nlmsg_flags, NLM_F_REQUEST);
  EXPECT_EQ(nlh_of(build_delete_policy(p.out.id(), 3)).nlmsg_type, XFRM_MSG_DELPOLICY);
  EXPECT_EQ(nlh_of(build_delete_policy(p.out.id(), 3)).nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
}

TEST(KmodXfrmMessage, GroupPoliciesMatchTheSteeringMarkOutAndCoveysBitsClearInAtLevelUse) {
  GroupPolicies p = group_policies(kAnchors, 4, kReqid, {0xe00, 0xf00}, 4000);
  EXPECT_EQ(p.out.mark, (Mark{0xe00, 0xf00}));
  EXPECT_EQ(p.in.mark, (Mark{0, 0xf00}));
  EXPECT_EQ(p.fwd.mark, (Mark{0, 0xf00}));
  EXPECT_FALSE(p.out.tmpl.optional);
  EXPECT_TRUE(p.in.tmpl.optional);
  EXPECT_TRUE(p.fwd.tmpl.optional);
  EXPECT_EQ(p.out.tmpl.source, kAnchors.local);
  EXPECT_EQ(p.out.tmpl.destination, kAnchors.group);
  EXPECT_EQ(p.in.tmpl.source, kAnchors.group);
  EXPECT_EQ(p.in.tmpl.destination, kAnchors.in);
  EXPECT_EQ(p.fwd.direction, Direction::Fwd);

  auto built = build_new_policy(p.in, 12);
  ASSERT_TRUE(built) << built.error();
  Bytes msg = *built;
  EXPECT_EQ(nlh_of(msg).nlmsg_type, XFRM_MSG_NEWPOLICY);
  auto info = header_of<xfrm_userpolicy_info>(msg);
  EXPECT_EQ(info.sel.family, AF_INET);
  EXPECT_EQ(info.sel.prefixlen_s, 0);
  EXPECT_EQ(info.sel.prefixlen_d, 0);
  EXPECT_EQ(info.dir, XFRM_POLICY_IN);
  EXPECT_EQ(info.action, XFRM_POLICY_ALLOW);
  EXPECT_EQ(info.priority, 4000u);
  EXPECT_EQ(info.lft.hard_packet_limit, XFRM_INF);
  auto a = attrs(msg, sizeof(xfrm_userpolicy_info));
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].type, XFRMA_TMPL);
  EXPECT_EQ(a[0].len, NLA_HDRLEN + sizeof(xfrm_user_tmpl));
  xfrm_user_tmpl t;
  std::memcpy(&t, a[0].payload, sizeof t);
  EXPECT_EQ(t.id.proto, IPPROTO_ESP);
  EXPECT_EQ(t.id.spi, 0u);
  EXPECT_EQ(t.reqid, kReqid);
  EXPECT_EQ(t.mode, XFRM_MODE_TUNNEL);
  EXPECT_EQ(t.optional, 1);
  EXPECT_EQ(t.family, AF_INET);
  EXPECT_EQ(t.aalgos, ~0u);
  EXPECT_EQ(t.ealgos, ~0u);
  EXPECT_EQ(std::memcmp(&t.saddr.a4, kAnchors.group.bytes.data(), 4), 0);
  EXPECT_EQ(std::memcmp(&t.id.daddr.a4, kAnchors.in.bytes.data(), 4), 0);
  EXPECT_EQ(a[1].type, XFRMA_MARK);

  GroupPolicies six = group_policies(kAnchors, 6, kReqid, kDefaultSteeringMark, 1);
  auto v6 = build_new_policy(six.out, 1);
  ASSERT_TRUE(v6) << v6.error();
  EXPECT_EQ(header_of<xfrm_userpolicy_info>(*v6).sel.family, AF_INET6);
}

TEST(KmodXfrmMessage, DeletePolicyUsesTheKernelsIndexAndTheExactMark) {
  PolicyInfo p;
  p.direction = Direction::Fwd;
  p.selector = Selector::any(4);
  p.mark = {0, 0xf00};
  p.index = 18;
  Bytes msg = build_delete_policy(p, 3);
  EXPECT_EQ(nlh_of(msg).nlmsg_type, XFRM_MSG_DELPOLICY);
  auto id = header_of<xfrm_userpolicy_id>(msg);
  EXPECT_EQ(id.index, 18u);
  EXPECT_EQ(id.dir, XFRM_POLICY_FWD);
  EXPECT_EQ(id.sel.family, AF_INET);
  auto a = attrs(msg, sizeof(xfrm_userpolicy_id));
  ASSERT_EQ(a.size(), 1u);
  xfrm_mark m;
  std::memcpy(&m, a[0].payload, sizeof m);
  EXPECT_EQ(m.v, 0u);
  EXPECT_EQ(m.m, 0xf00u);
}

TEST(KmodXfrmMessage, DumpRequestsAreBareHeadersWithDumpFlags) {
  Bytes s = build_dump_states(4);
  EXPECT_EQ(s.size(), NLMSG_HDRLEN);
  EXPECT_EQ(nlh_of(s).nlmsg_type, XFRM_MSG_GETSA);
  EXPECT_EQ(nlh_of(s).nlmsg_flags, NLM_F_REQUEST | NLM_F_DUMP);
  EXPECT_EQ(nlh_of(build_dump_policies(4)).nlmsg_type, XFRM_MSG_GETPOLICY);
}

// ---- parsing what the kernel sends ----

TEST(KmodXfrmParse, StateFromADumpMessageKeepsNamesMarkAndTruncationButNoKeys) {
  gdoi::Tek t = tek(0x1a2b3c4d, 32, 20);
  auto pair = group_sa_pair(t, {Cipher::Aes256Cbc, Integrity::HmacSha1_96}, kAnchors, kReqid, {0xe00, 0xf00});
  ASSERT_TRUE(pair);
  auto built = build_new_sa(pair->outbound, 1);  // a dump entry has the same layout
  ASSERT_TRUE(built);
  auto s = parse_state(built->view());
  ASSERT_TRUE(s) << s.error();
  EXPECT_EQ(s->family, 4);
  EXPECT_EQ(s->spi, 0x1a2b3c4du);
  EXPECT_EQ(s->protocol, IPPROTO_ESP);
  EXPECT_EQ(s->mode, XFRM_MODE_TUNNEL);
  EXPECT_EQ(s->reqid, kReqid);
  EXPECT_EQ(s->source, kAnchors.local);
  EXPECT_EQ(s->destination, kAnchors.group);
  EXPECT_EQ(s->mark, (Mark{0xe00, 0xf00}));
  EXPECT_EQ(s->encryption, "cbc(aes)");
  EXPECT_EQ(s->integrity, "hmac(sha1)");
  EXPECT_EQ(s->truncation_bits, 96u);
  EXPECT_EQ(s->replay_window, 0);
  EXPECT_EQ(s->describe().find(to_hex(t.encryption_key.view())), std::string::npos);
}

namespace {

// XFRM_MSG_EXPIRE as net/xfrm/xfrm_user.c (build_expire) lays it out:
// xfrm_user_expire, then the state's mark.
Bytes expire_message(std::uint32_t spi, const char* dst, std::uint32_t reqid, Mark mark, bool hard) {
  Bytes msg(NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(xfrm_user_expire)) + NLA_HDRLEN + sizeof(xfrm_mark));
  nlmsghdr h{};
  h.nlmsg_len = static_cast<std::uint32_t>(msg.size());
  h.nlmsg_type = XFRM_MSG_EXPIRE;
  std::memcpy(msg.data(), &h, sizeof h);
  xfrm_user_expire ue{};
  ue.state.id.spi = htonl(spi);
  ue.state.id.proto = IPPROTO_ESP;
  std::memcpy(&ue.state.id.daddr, ip(dst).bytes.data(), 4);
  std::memcpy(&ue.state.saddr, ip("10.1.23.3").bytes.data(), 4);
  ue.state.family = AF_INET;
  ue.state.mode = XFRM_MODE_TUNNEL;
  ue.state.reqid = reqid;
  ue.hard = hard ? 1 : 0;
  std::memcpy(msg.data() + NLMSG_HDRLEN, &ue, sizeof ue);
  nlattr a{static_cast<std::uint16_t>(NLA_HDRLEN + sizeof(xfrm_mark)), XFRMA_MARK};
  const std::size_t at = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(xfrm_user_expire));
  std::memcpy(msg.data() + at, &a, sizeof a);
  xfrm_mark m{mark.value, mark.mask};
  std::memcpy(msg.data() + at + NLA_HDRLEN, &m, sizeof m);
  return msg;
}

}  // namespace

TEST(KmodXfrmParse, ExpireGivesTheStateItsMarkAndWhetherHard) {
  auto hard = parse_expire(expire_message(0x1a2b3c4d, "169.254.77.1", kReqid, {0xe00, 0xf00}, true));
  ASSERT_TRUE(hard) << hard.error();
  EXPECT_TRUE(hard->hard);
  EXPECT_EQ(hard->state.spi, 0x1a2b3c4du);
  EXPECT_EQ(hard->state.reqid, kReqid);
  EXPECT_EQ(hard->state.destination, ip("169.254.77.1"));
  EXPECT_EQ(hard->state.mark, (Mark{0xe00, 0xf00}));
  EXPECT_TRUE(owns(kDefaultOwnership, hard->state));
  EXPECT_EQ(hard->str(),
            "kernel expired SA spi 0x1a2b3c4d (hard): ESP SPI 0x1a2b3c4d 10.1.23.3 -> 169.254.77.1 reqid 0xc0e00001 mark 0xe00/0xf00");
  auto soft = parse_expire(expire_message(0x1a2b3c4d, "169.254.77.2", kReqid, {0, 0xf00}, false));
  ASSERT_TRUE(soft) << soft.error();
  EXPECT_FALSE(soft->hard);
  EXPECT_NE(soft->str().find("(soft)"), std::string::npos);

  Bytes short_msg = expire_message(1, "10.0.0.1", 1, {}, true);
  short_msg.resize(NLMSG_HDRLEN + sizeof(xfrm_usersa_info) - 4);
  nlmsghdr h;
  std::memcpy(&h, short_msg.data(), sizeof h);
  h.nlmsg_len = static_cast<std::uint32_t>(short_msg.size());
  std::memcpy(short_msg.data(), &h, sizeof h);
  EXPECT_FALSE(parse_expire(short_msg));
  // A state from a dump is no expiry.
  auto built = build_new_sa(group_sa_pair(tek(1, 32, 32), {}, kAnchors, kReqid, kDefaultSteeringMark)->outbound, 1);
  ASSERT_TRUE(built);
  auto wrong = parse_expire(built->view());
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().find("expected XFRM_MSG_EXPIRE"), std::string::npos) << wrong.error();
}

TEST(KmodXfrmParse, RejectsTruncatedAndOverrunningMessages) {
  auto built = build_new_sa(group_sa_pair(tek(1, 32, 32), {}, kAnchors, kReqid, kDefaultSteeringMark)->outbound, 1);
  ASSERT_TRUE(built);
  Bytes msg(built->view().begin(), built->view().end());
  EXPECT_FALSE(parse_state(ByteView(msg).first(NLMSG_HDRLEN + 8)));
  // An attribute that claims more than the message holds.
  Bytes bad = msg;
  std::size_t first_attr = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(xfrm_usersa_info));
  std::uint16_t huge = 0x7ff0;
  std::memcpy(bad.data() + first_attr, &huge, 2);
  auto r = parse_state(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("overruns"), std::string::npos) << r.error();
  auto wrong = parse_policy(msg);
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().find("expected XFRM_MSG_NEWPOLICY"), std::string::npos);
}

TEST(KmodXfrmParse, PolicyFromADumpMessage) {
  GroupPolicies p = group_policies(kAnchors, 4, kReqid, kDefaultSteeringMark, 300);
  auto built = build_new_policy(p.out, 1);
  ASSERT_TRUE(built);
  auto parsed = parse_policy(*built);
  ASSERT_TRUE(parsed) << parsed.error();
  EXPECT_EQ(parsed->direction, Direction::Out);
  EXPECT_EQ(parsed->selector, Selector::any(4));
  EXPECT_EQ(parsed->mark, kDefaultSteeringMark);
  EXPECT_EQ(parsed->priority, 300u);
  ASSERT_EQ(parsed->templates.size(), 1u);
  EXPECT_EQ(parsed->templates[0].reqid, kReqid);
  EXPECT_EQ(parsed->templates[0].source, kAnchors.local);
  EXPECT_EQ(parsed->templates[0].destination, kAnchors.group);
  EXPECT_FALSE(parsed->templates[0].optional);
}

namespace {

// An NLMSG_ERROR as the kernel writes it with NETLINK_EXT_ACK: the
// request's header (capped) or the whole request, then TLVs.
Bytes error_message(int error, ByteView request, bool capped, const char* text, std::optional<std::uint32_t> offs) {
  Bytes m(NLMSG_HDRLEN);
  nlmsgerr err{};
  err.error = error;
  std::memcpy(&err.msg, request.data(), sizeof(nlmsghdr));
  Bytes body(sizeof(int));
  std::memcpy(body.data(), &err.error, sizeof(int));
  Bytes echoed = capped ? Bytes(request.begin(), request.begin() + sizeof(nlmsghdr)) : Bytes(request.begin(), request.end());
  body.insert(body.end(), echoed.begin(), echoed.end());
  auto tlv = [&](std::uint16_t type, const void* data, std::size_t len) {
    nlattr a{static_cast<std::uint16_t>(NLA_HDRLEN + len), type};
    std::size_t at = body.size();
    body.resize(at + NLA_ALIGN(NLA_HDRLEN + len));
    std::memcpy(body.data() + at, &a, sizeof a);
    std::memcpy(body.data() + at + NLA_HDRLEN, data, len);
  };
  std::uint16_t flags = capped ? NLM_F_CAPPED : 0;
  if (text || offs) flags |= NLM_F_ACK_TLVS;
  if (text) tlv(NLMSGERR_ATTR_MSG, text, std::strlen(text) + 1);
  if (offs) tlv(NLMSGERR_ATTR_OFFS, &*offs, 4);
  m.insert(m.end(), body.begin(), body.end());
  nlmsghdr h{static_cast<std::uint32_t>(m.size()), NLMSG_ERROR, flags, nlh_of(request).nlmsg_seq, 0};
  std::memcpy(m.data(), &h, sizeof h);
  return m;
}

}  // namespace

TEST(KmodXfrmParse, AckWithExtendedAckGivesTheKernelsWordsAndTheOffendingAttribute) {
  gdoi::Tek t = tek(0x1a2b3c4d, 32, 32);
  auto request = build_new_sa(group_sa_pair(t, {}, kAnchors, kReqid, kDefaultSteeringMark)->outbound, 41);
  ASSERT_TRUE(request);
  const std::uint32_t crypt_offset = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(xfrm_usersa_info));
  EXPECT_EQ(attribute_at(request->view(), crypt_offset), "XFRMA_ALG_CRYPT");
  EXPECT_EQ(attribute_at(request->view(), 3), "");

  for (bool capped : {true, false}) {
    Bytes m = error_message(-EPROTONOSUPPORT, request->view(), capped, "Requested type not found", crypt_offset);
    auto ack = parse_ack(m);
    ASSERT_TRUE(ack) << ack.error();
    EXPECT_EQ(ack->error, -EPROTONOSUPPORT);
    EXPECT_EQ(ack->message, "Requested type not found") << "capped=" << capped;
    ASSERT_TRUE(ack->offset);
    EXPECT_EQ(*ack->offset, crypt_offset);
    EXPECT_EQ(ack->str(request->view()),
              "\"Requested type not found\" (EPROTONOSUPPORT: Protocol not supported) at XFRMA_ALG_CRYPT");
  }
}

TEST(KmodXfrmParse, AckWithoutExtendedAckStillNamesTheErrno) {
  Bytes request = build_delete_sa({ip("10.0.0.1"), 5, IPPROTO_ESP, {}}, 8);
  auto ack = parse_ack(error_message(-ESRCH, request, true, nullptr, std::nullopt));
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->error, -ESRCH);
  EXPECT_TRUE(ack->message.empty());
  EXPECT_EQ(ack->str(), "ESRCH: No such process");
  auto success = parse_ack(error_message(0, request, true, nullptr, std::nullopt));
  ASSERT_TRUE(success);
  EXPECT_EQ(success->error, 0);

  // NLMSG_DONE ends a dump; its int is the dump's status.
  Bytes done(NLMSG_HDRLEN + sizeof(int), 0);
  nlmsghdr h{static_cast<std::uint32_t>(done.size()), NLMSG_DONE, NLM_F_MULTI, 8, 0};
  std::memcpy(done.data(), &h, sizeof h);
  auto d = parse_ack(done);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->error, 0);
  EXPECT_FALSE(parse_ack(ByteView(done).first(8)));
}

// ---- ownership: what covey may delete ----

namespace {

StateInfo state(std::uint32_t spi, const char* dst, std::uint32_t reqid, Mark mark) {
  StateInfo s;
  s.spi = spi;
  s.destination = ip(dst);
  s.source = ip("10.9.9.9");
  s.protocol = IPPROTO_ESP;
  s.mode = XFRM_MODE_TUNNEL;
  s.reqid = reqid;
  s.mark = mark;
  return s;
}

PolicyInfo policy(Direction d, Mark mark, std::vector<std::uint32_t> reqids, std::uint32_t index) {
  PolicyInfo p;
  p.direction = d;
  p.selector = Selector::any(4);
  p.mark = mark;
  p.index = index;
  for (auto r : reqids) p.templates.push_back({ip("10.0.0.1"), ip("10.0.0.2"), IPPROTO_ESP, XFRM_MODE_TUNNEL, r, false});
  return p;
}

}  // namespace

TEST(KmodOwnership, NeedsBothCoveysReqidAndCoveysMarkMask) {
  const Ownership o = kDefaultOwnership;
  EXPECT_TRUE(owns(o, state(1, "10.0.0.2", 0xc0e00001, {0xe00, 0xf00})));
  EXPECT_TRUE(owns(o, state(1, "10.0.0.2", 0xc0e0ffff, {0, 0xf00})));
  EXPECT_FALSE(owns(o, state(1, "10.0.0.2", 0xc0e00001, {})));               // reqid alone
  EXPECT_FALSE(owns(o, state(1, "10.0.0.2", 0xc0e10000, {0xe00, 0xf00})));   // mark alone
  EXPECT_FALSE(owns(o, state(1, "10.0.0.2", 0xc0e00001, {0xe00, 0xff00})));  // another mask
  StateInfo ah = state(1, "10.0.0.2", 0xc0e00001, {0xe00, 0xf00});
  ah.protocol = IPPROTO_AH;
  EXPECT_FALSE(owns(o, ah));

  EXPECT_TRUE(owns(o, policy(Direction::Out, {0xe00, 0xf00}, {0xc0e00001}, 1)));
  EXPECT_FALSE(owns(o, policy(Direction::Out, {0xe00, 0xf00}, {0xc0e00001, 7}, 1)));  // one foreign template
  EXPECT_FALSE(owns(o, policy(Direction::Out, {0xe00, 0xf00}, {}, 1)));
  EXPECT_FALSE(owns(o, policy(Direction::In, {}, {0xc0e00001}, 1)));
  PolicyInfo with_if = policy(Direction::Out, {0xe00, 0xf00}, {0xc0e00001}, 1);
  with_if.if_id = 3;
  EXPECT_FALSE(owns(o, with_if));
}

TEST(KmodOwnership, FlushPlanDeletesOnlyCoveysAndRefusesAStateAForeignTwinWouldShadow) {
  const Ownership o = kDefaultOwnership;
  std::vector<StateInfo> states = {
      state(0x100, "169.254.77.1", 0xc0e00001, {0xe00, 0xf00}),  // covey's, alone
      state(0x100, "169.254.77.2", 0xc0e00001, {0, 0xf00}),      // covey's, but a foreign twin below matches its lookup
      state(0x100, "169.254.77.2", 5, {}),                       // foreign, no mark: matches every lookup
      state(0x200, "169.254.77.1", 0xc0e00002, {0xe00, 0xf00}),  // covey's; its twin below has a disjoint mark
      state(0x200, "169.254.77.1", 9, {0x100, 0xf00}),           // foreign: lookup 0xe00 & 0xf00 != 0x100
      state(0x300, "10.0.0.9", 0xc0e00003, {}),                  // foreign: covey's reqid without covey's mark
  };
  std::vector<PolicyInfo> policies = {
      policy(Direction::Out, {0xe00, 0xf00}, {0xc0e00001}, 1),
      policy(Direction::In, {0, 0xf00}, {0xc0e00001}, 8),
      policy(Direction::Out, {}, {0xc0e00001}, 9),   // foreign: no mark
      policy(Direction::Out, {0, 0xf00}, {7}, 10),   // foreign: reqid
  };
  FlushPlan plan = plan_flush(states, policies, o);
  ASSERT_EQ(plan.policies.size(), 2u);
  EXPECT_EQ(plan.policies[0].index, 1u);
  EXPECT_EQ(plan.policies[1].index, 8u);
  EXPECT_EQ(plan.foreign_policies, 2u);
  ASSERT_EQ(plan.states.size(), 2u);
  EXPECT_EQ(plan.states[0].spi, 0x100u);
  EXPECT_EQ(plan.states[0].destination, ip("169.254.77.1"));
  EXPECT_EQ(plan.states[1].spi, 0x200u);
  EXPECT_EQ(plan.foreign_states, 3u);
  ASSERT_EQ(plan.refused.size(), 1u);
  EXPECT_NE(plan.refused[0].find("ESP SPI 0x00000100 10.9.9.9 -> 169.254.77.2 reqid 0xc0e00001 mark 0x0/0xf00"), std::string::npos)
      << plan.refused[0];
  EXPECT_NE(plan.refused[0].find("foreign ESP SPI 0x00000100 10.9.9.9 -> 169.254.77.2 reqid 0x00000005"), std::string::npos)
      << plan.refused[0];
}

TEST(KmodOwnership, LookupMatchFollowsTheKernelsMarkRule) {
  const StateId lookup{ip("10.0.0.2"), 0x100, IPPROTO_ESP, {0xe00, 0xf00}};
  EXPECT_TRUE(lookup_would_match(lookup, state(0x100, "10.0.0.2", 1, {})));
  EXPECT_TRUE(lookup_would_match(lookup, state(0x100, "10.0.0.2", 1, {0xe00, 0xf00})));
  EXPECT_TRUE(lookup_would_match(lookup, state(0x100, "10.0.0.2", 1, {0x200, 0x200})));  // a subset of the bits
  EXPECT_FALSE(lookup_would_match(lookup, state(0x100, "10.0.0.2", 1, {0x100, 0xf00})));
  EXPECT_FALSE(lookup_would_match(lookup, state(0x101, "10.0.0.2", 1, {})));
  EXPECT_FALSE(lookup_would_match(lookup, state(0x100, "10.0.0.3", 1, {})));
}

TEST(KmodOwnership, LookupAnswerMustBeCoveysOwnEntryAskedFor) {
  const Ownership o = kDefaultOwnership;
  const StateId id{ip("10.0.0.2"), 0x100, IPPROTO_ESP, {0xe00, 0xf00}};
  EXPECT_TRUE(check_lookup_answer(id, state(0x100, "10.0.0.2", 0xc0e00001, {0xe00, 0xf00}), o));

  auto f = check_lookup_answer(id, state(0x100, "10.0.0.2", 77, {0xe00, 0xf00}), o);
  ASSERT_FALSE(f);
  EXPECT_NE(f.error().find("is not covey's"), std::string::npos) << f.error();

  // A foreign state without a mark matches covey's lookup and, added
  // later, sits first in the kernel's hash chain: the GETSA answers with it.
  auto twin = check_lookup_answer(id, state(0x100, "10.0.0.2", 5, {}), o);
  ASSERT_FALSE(twin);
  EXPECT_EQ(twin.error(),
            "ESP SPI 0x00000100 -> 10.0.0.2 mark 0xe00/0xf00: the kernel's lookup reaches the foreign ESP SPI 0x00000100 "
            "10.9.9.9 -> 10.0.0.2 reqid 0x00000005 first; refusing rather than change it");

  GroupPolicies p = group_policies(kAnchors, 4, kReqid, kDefaultSteeringMark, 300);
  PolicyInfo found = policy(Direction::Out, kDefaultSteeringMark, {kReqid}, 9);
  found.templates[0].source = kAnchors.local;
  found.templates[0].destination = kAnchors.group;
  EXPECT_TRUE(check_lookup_answer(p.out, found, o));
  found.templates[0].reqid = kReqid + 1;  // covey's, but another group's
  auto other = check_lookup_answer(p.out, found, o);
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().find("reaches policy dir out"), std::string::npos) << other.error();
  found.templates[0].reqid = 7;
  auto foreign = check_lookup_answer(p.out, found, o);
  ASSERT_FALSE(foreign);
  EXPECT_NE(foreign.error().find("is not covey's"), std::string::npos) << foreign.error();
}
