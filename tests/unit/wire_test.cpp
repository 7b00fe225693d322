// The ISAKMP/GDOI codec: exact layouts against the RFC figures, round trips
// of every payload, and one test per kind of malformed input.
#include <gtest/gtest.h>

#include <random>

#include "samples.h"
#include "wire/message.h"

using namespace covey;
using namespace covey::wire;

namespace {

Bytes hex(std::string_view s) {
  std::string clean;
  for (char c : s)
    if (c != ' ') clean.push_back(c);
  Bytes b;
  EXPECT_TRUE(from_hex(clean, b)) << s;
  return b;
}

template <class T>
T roundtrip_one(const T& p, std::uint8_t exchange) {
  Bytes b = encode_payload(Payload{p}, 0);
  auto chain = decode_payloads(b, static_cast<std::uint8_t>(type_of(Payload{p})), exchange, 0, false);
  EXPECT_TRUE(chain.ok()) << (chain.ok() ? "" : chain.error().message());
  if (!chain.ok()) return T{};
  EXPECT_EQ(chain->payloads.size(), 1u);
  EXPECT_EQ(chain->consumed, b.size());
  return std::get<T>(chain->payloads.at(0));
}

constexpr auto kPull = static_cast<std::uint8_t>(ExchangeType::GroupkeyPull);
constexpr auto kMain = static_cast<std::uint8_t>(ExchangeType::IdentityProtection);

DecodeError decode_error(ByteView datagram) {
  auto m = decode_message(datagram);
  EXPECT_FALSE(m.ok());
  return m.ok() ? DecodeError{} : m.error();
}

}  // namespace

// ------------------------------------------------------ exact layouts

TEST(WireLayout, HeaderFieldsInRfc2408Order) {
  Header h = samples::header(ExchangeType::GroupkeyPull, 0x01020304);
  h.flags = kFlagEncryption;
  h.next_payload = 8;
  h.length = 0x40;
  EXPECT_EQ(encode_header(h), hex("1122334455667788 99aabbccddeeff01 08 10 20 01 01020304 00000040"));
}

TEST(WireLayout, SequenceNumberIsEightOctets) {
  EXPECT_EQ(encode_payload(SequenceNumberPayload{0x01020304}, 0), hex("00 00 0008 01020304"));
}

TEST(WireLayout, GroupIdIsBigEndianKeyId) {
  // RFC 6407 5.1: ID_KEY_ID, 4-octet group id, DOI-specific data zero.
  // (gdoid sends it little-endian; INTEROP.md.)
  EXPECT_EQ(encode_payload(IdentificationPayload::group(134), 0), hex("00 00 000c 0b 00 0000 00000086"));
}

TEST(WireLayout, AttributesTvAndTlv) {
  Bytes out;
  Writer w(out);
  encode_attributes(w, {Attribute::tv(1, 2), Attribute::tlv(4, {0x00, 0x01, 0x51, 0x80}),
                        Attribute::number(2, 86400), Attribute::number(2, 3600)});
  EXPECT_EQ(out, hex("8001 0002  0004 0004 00015180  0002 0004 00015180  8002 0e10"));
}

TEST(WireLayout, SaTekFollowsRfc6407Figure8) {
  GroupSaPayload sa;
  SaTekPayload t;
  t.protocol = 6;
  t.src = GroupIdentity{1, 0, {10, 0, 0, 1}};
  t.dst = GroupIdentity{4, 80, {192, 168, 0, 0, 255, 255, 0, 0}};
  t.transform_id = kEspAes;
  t.spi = 0xdeadbeef;
  t.attributes = {Attribute::tv(ipsec_attr::SaDirection, ipsec_value::Symmetric)};
  sa.teks.push_back(t);
  EXPECT_EQ(encode_payload(sa, 0),
            hex("00 00 0033"                  // SA generic header, length 51
                "00000002 00000000 0010 0000"  // DOI GDOI, Situation 0, SA Attribute Next Payload SAT
                "00 00 0023"                   // SA TEK generic header, length 35
                "01 06"                        // Protocol-ID ESP, Protocol TCP
                "01 0000 04 0a000001"          // SRC: ID_IPV4_ADDR, port 0, Data Len 1 octet, data
                "04 0050 08 c0a80000ffff0000"  // DST: ID_IPV4_ADDR_SUBNET, port 80, Data Len 8
                "0c deadbeef"                  // Transform ID AES, SPI
                "800f 0003"));                 // SA Direction Symmetric
}

TEST(WireLayout, SaKekFollowsRfc6407Figure5) {
  GroupSaPayload sa;
  SaKekPayload k;
  k.protocol = 17;
  k.src = GroupIdentity{1, 848, {10, 1, 12, 1}};
  k.dst = GroupIdentity{1, 848, {239, 1, 1, 1}};
  for (std::uint8_t i = 0; i < 16; ++i) k.spi[i] = i;
  k.attributes = {Attribute::tv(kek_attr::KekAlgorithm, kek_value::KekAlgAes)};
  sa.kek = k;
  EXPECT_EQ(encode_payload(sa, 0),
            hex("00 00 003d 00000002 00000000 000f 0000"
                "00 00 002d"                     // SA KEK, length 45
                "11"                             // Protocol UDP
                "01 0350 04 0a010c01"            // SRC ID
                "01 0350 04 ef010101"            // DST ID (no DST ID Prot: Figure 5 has none)
                "000102030405060708090a0b0c0d0e0f"
                "00000000"                       // RESERVED2
                "8002 0003"));
}

TEST(WireLayout, KeyPacketFollowsRfc6407Figure10) {
  KeyDownloadPayload kd;
  kd.packets.push_back(KeyPacket{1, {0xde, 0xad, 0xbe, 0xef}, {Attribute::tlv(1, {0xaa, 0xbb})}});
  kd.packets.push_back(KeyPacket{4, {}, {Attribute::tv(1, 16)}});
  EXPECT_EQ(encode_payload(kd, 0), hex("00 00 0020 0002 0000"
                                       "01 00 000f 04 deadbeef 0001 0002 aabb"
                                       "04 00 0009 00 8001 0010"));
}

// ------------------------------------------------------ round trips

TEST(WireRoundTrip, EverySampleDatagram) {
  for (const Bytes& d : samples::all_datagrams()) {
    auto m = decode_message(d);
    ASSERT_TRUE(m.ok()) << m.error().message();
    EXPECT_EQ(encode_message(m->header, m->payloads), d);
    // Extents tile the body exactly.
    std::size_t at = kHeaderSize;
    for (const auto& e : m->extents) {
      EXPECT_EQ(e.offset, at);
      at += e.length;
    }
    EXPECT_EQ(at, d.size());
  }
}

TEST(WireRoundTrip, GroupSaWithKekGapTek) {
  GroupSaPayload sa = samples::group_sa();
  EXPECT_EQ(roundtrip_one(sa, kPull), sa);
  sa.kek.reset();
  EXPECT_EQ(roundtrip_one(sa, kPull), sa);
  sa.gap.reset();
  sa.teks.push_back(sa.teks[0]);
  sa.teks[1].spi = 0x12345678;
  sa.teks[1].protocol_id = kGdoiProtoIpsecAh;
  EXPECT_EQ(roundtrip_one(sa, kPull), sa);
}

TEST(WireRoundTrip, Phase1SaWithProposalsAndTransforms) {
  SaPayload sa = samples::phase1_sa();
  EXPECT_EQ(roundtrip_one(sa, kMain), sa);
  sa.doi = kDoiIpsec;
  sa.proposals.push_back(sa.proposals[0]);
  sa.proposals[1].number = 2;
  sa.proposals[1].spi = Bytes(16, 0x42);
  EXPECT_EQ(roundtrip_one(sa, kMain), sa);
}

TEST(WireRoundTrip, SimplePayloads) {
  EXPECT_EQ(roundtrip_one(KeyExchangePayload{Bytes(256, 7)}, kMain).data.size(), 256u);
  EXPECT_EQ(roundtrip_one(HashPayload{Bytes(20, 1)}, kPull), HashPayload{Bytes(20, 1)});
  EXPECT_EQ(roundtrip_one(SignaturePayload{Bytes(64, 2)}, kPull), SignaturePayload{Bytes(64, 2)});
  EXPECT_EQ(roundtrip_one(NoncePayload{Bytes(8, 3)}, kPull), NoncePayload{Bytes(8, 3)});
  EXPECT_EQ(roundtrip_one(VendorIdPayload{{}}, kMain), VendorIdPayload{{}});
  CertificatePayload cert{kCertX509Signature, Bytes(700, 0x30)};
  EXPECT_EQ(roundtrip_one(cert, kMain), cert);
  CertificateRequestPayload req{kCertX509Signature, Bytes(40, 0x31)};
  EXPECT_EQ(roundtrip_one(req, kMain), req);
  EXPECT_EQ(roundtrip_one(SequenceNumberPayload{0xffffffff}, kPull).number, 0xffffffffu);
  GapPayload gap{{Attribute::tv(gap_attr::SenderIdRequest, 4)}};
  EXPECT_EQ(roundtrip_one(gap, kPull), gap);
}

TEST(WireRoundTrip, IdentificationForms) {
  for (auto id : {IdentificationPayload::group(0xfffffffe),
                  IdentificationPayload{1, 17, 848, {10, 1, 23, 3}},
                  IdentificationPayload{4, 0, 0, {192, 168, 3, 0, 255, 255, 255, 0}},
                  IdentificationPayload{5, 0, 0, Bytes(16, 0xfe)},
                  IdentificationPayload{6, 0, 0, Bytes(32, 0xff)},
                  IdentificationPayload{2, 0, 0, {'k', 's', '1'}}}) {
    EXPECT_EQ(roundtrip_one(id, kMain), id);
  }
  EXPECT_EQ(IdentificationPayload::group(134).group_id(), 134u);
  EXPECT_FALSE((IdentificationPayload{1, 0, 0, {1, 2, 3, 4}}.group_id()));
}

TEST(WireRoundTrip, NotifyAndDelete) {
  NotificationPayload n{kDoiIpsec, kProtoIsakmp, static_cast<std::uint16_t>(NotifyType::InitialContact),
                        Bytes(16, 0x0c), {}};
  EXPECT_EQ(roundtrip_one(n, kMain), n);
  NotificationPayload err{kDoiGdoi, 0, static_cast<std::uint16_t>(NotifyType::InvalidIdInformation), {}, {1, 2}};
  EXPECT_EQ(roundtrip_one(err, kMain), err);
  DeletePayload d{kDoiGdoi, 0, 16, {Bytes(16, 1), Bytes(16, 2)}};
  EXPECT_EQ(roundtrip_one(d, kPull), d);
  DeletePayload none{kDoiGdoi, kGdoiProtoIpsecEsp, 4, {}};
  EXPECT_EQ(roundtrip_one(none, kPull), none);
}

TEST(WireRoundTrip, KeyDownloadAllPacketTypes) {
  KeyDownloadPayload kd = samples::key_download();
  LkhDownloadArray down{1, {LkhKey{7, kek_value::KekAlgAes, 1, 2, 3, Bytes(48, 9)},
                            LkhKey{1, kek_value::KekAlgAes, 0, 0, 4, Bytes(48, 8)}}};
  LkhUpdateArray up{1, 7, 3, {LkhKey{3, kek_value::KekAlgAes, 0, 0, 5, Bytes(48, 7)}}};
  kd.packets.push_back(KeyPacket{static_cast<std::uint8_t>(KeyPacketType::Lkh), Bytes(16, 0xa0),
                                 {Attribute::tlv(lkh_key_attr::LkhDownloadArray, encode_lkh(down)),
                                  Attribute::tlv(lkh_key_attr::LkhUpdateArray, encode_lkh(up))}});
  auto back = roundtrip_one(kd, kPull);
  EXPECT_EQ(back, kd);
  const auto& lkh = back.packets.back().attributes;
  auto d2 = decode_lkh_download_array(lkh[0].value, 48);
  ASSERT_TRUE(d2.ok()) << d2.error().message();
  EXPECT_EQ(*d2, down);
  auto u2 = decode_lkh_update_array(lkh[1].value, 48);
  ASSERT_TRUE(u2.ok()) << u2.error().message();
  EXPECT_EQ(*u2, up);
  EXPECT_FALSE(decode_lkh_download_array(lkh[0].value, 47).ok());
  EXPECT_FALSE(decode_lkh_update_array(lkh[1].value, 49).ok());
}

TEST(WireRoundTrip, PaddedBodyStopsAtLastPayload) {
  Bytes body = encode_payloads(samples::pull4());
  std::size_t unpadded = body.size();
  body.insert(body.end(), {0, 0, 0, 0, 0, 0, 0, 5});
  auto chain = decode_payloads(body, static_cast<std::uint8_t>(PayloadType::Hash), kPull, kHeaderSize, true);
  ASSERT_TRUE(chain.ok()) << chain.error().message();
  EXPECT_EQ(chain->consumed, unpadded);
  auto strict = decode_payloads(body, static_cast<std::uint8_t>(PayloadType::Hash), kPull, kHeaderSize, false);
  ASSERT_FALSE(strict.ok());
  EXPECT_EQ(strict.error().offset, kHeaderSize + unpadded);
}

TEST(WireRoundTrip, EncryptedMessageKeepsCiphertext) {
  Header h = samples::header(ExchangeType::GroupkeyPull, 9);
  h.flags = kFlagEncryption;
  h.next_payload = 8;
  h.length = kHeaderSize + 32;
  Bytes d = encode_header(h);
  d.resize(kHeaderSize + 32, 0xcc);
  auto m = decode_message(d);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->payloads.empty());
  EXPECT_EQ(m->ciphertext.size(), 32u);
}

// ------------------------------------------------------ malformed input

TEST(WireErrors, HeaderTruncated) {
  Bytes d = samples::all_datagrams()[1];
  d.resize(27);
  auto e = decode_error(d);
  EXPECT_EQ(e.payload, "ISAKMP header");
  EXPECT_NE(e.reason.find("shorter than the 28-octet header"), std::string::npos);
}

TEST(WireErrors, HeaderLengthDisagreesWithDatagram) {
  Bytes d = samples::all_datagrams()[1];
  d.push_back(0);
  auto e = decode_error(d);
  EXPECT_EQ(e.offset, 24u);
  EXPECT_NE(e.reason.find("Length"), std::string::npos);
}

TEST(WireErrors, BadVersionAndFlags) {
  Bytes d = samples::all_datagrams()[1];
  d[17] = 0x20;
  EXPECT_NE(decode_error(d).reason.find("Major Version 2"), std::string::npos);
  d[17] = 0x11;
  EXPECT_NE(decode_error(d).reason.find("Minor Version 1"), std::string::npos);
  d[17] = 0x10;
  d[19] = 0x08;
  EXPECT_NE(decode_error(d).reason.find("undefined bits"), std::string::npos);
}

TEST(WireErrors, ReservedOctetSet) {
  Bytes d = samples::all_datagrams()[1];  // HASH first, at offset 28
  d[29] = 0x80;
  auto e = decode_error(d);
  EXPECT_EQ(e.payload, "HASH");
  EXPECT_EQ(e.offset, 29u);
  EXPECT_NE(e.reason.find("RESERVED octet is 0x80"), std::string::npos);
}

TEST(WireErrors, PayloadLengthPastEnd) {
  Bytes d = samples::all_datagrams()[1];
  d[30] = 0x7f;  // HASH length 0x7f24
  auto e = decode_error(d);
  EXPECT_EQ(e.payload, "HASH");
  EXPECT_EQ(e.offset, 30u);
  EXPECT_NE(e.reason.find("runs past the end"), std::string::npos);
}

TEST(WireErrors, PayloadLengthShorterThanHeader) {
  Bytes d = samples::all_datagrams()[1];
  d[30] = 0;
  d[31] = 3;
  EXPECT_NE(decode_error(d).reason.find("shorter than its header"), std::string::npos);
}

TEST(WireErrors, ChainPastEndOfMessage) {
  Bytes body = encode_payloads({HashPayload{Bytes(20, 1)}});
  body[0] = static_cast<std::uint8_t>(PayloadType::Nonce);  // announces a NONCE that is not there
  auto r = decode_payloads(body, 8, kPull, 28, false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().payload, "NONCE");
  EXPECT_EQ(r.error().offset, 28u + 24u);
  EXPECT_NE(r.error().reason.find("runs past the end of the message"), std::string::npos);
}

TEST(WireErrors, UnknownPayloadTypeIsRefused) {
  Bytes body = encode_payloads({VendorIdPayload{{1, 2, 3}}});
  auto r = decode_payloads(body, 99, kMain, 0, false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().reason.find("unknown payload type 99"), std::string::npos);
}

TEST(WireErrors, AttributeOfWrongForm) {
  // (KEK_KEY_LIFETIME sent Basic is accepted, as lifetimes are in IKE:
  // interop_gdoid_test.cpp.)
  // TEK_ALGORITHM_KEY is Variable (RFC 6407 5.6.1).
  KeyDownloadPayload kd{{KeyPacket{1, {1, 2, 3, 4}, {Attribute::tv(tek_key_attr::TekAlgorithmKey, 1)}}}};
  Bytes k = encode_payload(kd, 0);
  auto r2 = decode_payloads(k, 17, kPull, 0, false);
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().payload, "KD key packet");

  // Encapsulation Mode is Basic (RFC 2407 4.5).
  GroupSaPayload sa = samples::group_sa();
  sa.teks[0].attributes = {Attribute::tlv(ipsec_attr::EncapsulationMode, {0, 1})};
  auto r3 = decode_payloads(encode_payload(sa, 0), 1, kPull, 0, false);
  ASSERT_FALSE(r3.ok());
  EXPECT_NE(r3.error().reason.find("must be TV (basic) but is TLV"), std::string::npos);
}

TEST(WireErrors, AttributeTruncated) {
  Bytes half = hex("8001");
  Reader r1(half, 40);
  auto a = decode_attributes(r1, AttributeSpace::IpsecSa, "SA TEK");
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().offset, 40u);
  EXPECT_NE(a.error().reason.find("fewer than 4 octets"), std::string::npos);
  Bytes overrun = hex("0001 0010 aabb");  // TLV claims 16 octets, 2 present
  Reader r2(overrun, 0);
  auto b = decode_attributes(r2, AttributeSpace::TekKey, "KD key packet");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().reason.find("length 16 runs past the payload end (2 octets left)"), std::string::npos);
}

TEST(WireErrors, SaAttributePayloadOrder) {
  // SA header | GAP (next: SA KEK) | SA KEK: the SA KEK must come first.
  GroupSaPayload sa = samples::group_sa();
  Bytes gap = encode_payload(GapPayload{sa.gap->attributes}, static_cast<std::uint8_t>(PayloadType::SaKek));
  GroupSaPayload kek_only;
  kek_only.kek = sa.kek;
  Bytes kek_sa = encode_payload(kek_only, 0);
  Bytes out = hex("00 00 0000 00000002 00000000 0016 0000");
  append(out, gap);
  out.insert(out.end(), kek_sa.begin() + 16, kek_sa.end());  // the SA KEK, without its SA header
  out[2] = static_cast<std::uint8_t>(out.size() >> 8);
  out[3] = static_cast<std::uint8_t>(out.size());
  auto r = decode_payloads(out, 1, kPull, 0, false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().payload, "SA");
  EXPECT_NE(r.error().reason.find("SA KEK out of order"), std::string::npos);
}

TEST(WireErrors, GroupSaNeedsKekOrTek) {
  Bytes out = hex("00 00 0010 00000002 00000000 0000 0000");
  auto r = decode_payloads(out, 1, kPull, 0, false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().reason.find("neither SA KEK nor SA TEK"), std::string::npos);
}

TEST(WireErrors, KeyPacketCountMismatch) {
  Bytes b = encode_payload(samples::key_download(), 0);
  b[5] = 9;  // Number of Key Packets
  auto r = decode_payloads(b, 17, kPull, 100, false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().offset, 104u);
  EXPECT_NE(r.error().reason.find("Number of Key Packets is 9 but 3 follow"), std::string::npos);
}

TEST(WireErrors, SidPacketWithSpi) {
  KeyDownloadPayload kd{{KeyPacket{4, {1}, {Attribute::tv(1, 16)}}}};
  auto r = decode_payloads(encode_payload(kd, 0), 17, kPull, 0, false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().reason.find("SID key packet"), std::string::npos);
}

TEST(WireErrors, SequenceNumberLengthMustBeEight) {
  Bytes b = hex("00 00 0009 00000001 00");
  auto r = decode_payloads(b, 18, kPull, 0, false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().reason.find("must be 8"), std::string::npos);
}

TEST(WireErrors, AddressIdOfWrongSize) {
  Bytes b = hex("00 00 000b 01 00 0000 0a0001");  // ID_IPV4_ADDR with 3 octets
  auto r = decode_payloads(b, 5, kMain, 0, false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().reason.find("needs 4 octets"), std::string::npos);
  GroupSaPayload sa = samples::group_sa();
  sa.teks[0].src.data.pop_back();
  auto r2 = decode_payloads(encode_payload(sa, 0), 1, kPull, 0, false);
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().payload, "SA TEK");
  EXPECT_NE(r2.error().reason.find("SRC ID Data Len 7"), std::string::npos);
}

TEST(WireErrors, ProposalTransformCountMismatch) {
  SaPayload sa = samples::phase1_sa();
  Bytes b = encode_payload(sa, 0);
  b[12 + 7] = 5;  // # of Transforms in the first proposal
  auto r = decode_payloads(b, 1, kMain, 0, false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().payload, "Proposal");
  EXPECT_NE(r.error().reason.find("# of Transforms is 5 but 2 follow"), std::string::npos);
}

TEST(WireErrors, DeleteSpiCountDisagreesWithLength) {
  Bytes b = encode_payload(DeletePayload{kDoiGdoi, 1, 4, {{1, 2, 3, 4}}}, 0);
  b[11] = 200;  // # of SPIs
  auto r = decode_payloads(b, 12, kPull, 0, false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().reason.find("200 SPIs of 4 octets"), std::string::npos);
}

TEST(WireErrors, ProposalOrTekOutsideSa) {
  auto r = decode_payloads(hex("00 00 0004"), 16, kPull, 0, false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().reason.find("outside an SA payload"), std::string::npos);
}

// Every prefix and every single-bit flip of every sample either decodes or
// yields an error naming a payload; none reads out of bounds (ASan build).
TEST(WireErrors, TruncationsAndBitFlipsNeverCrash) {
  std::mt19937 rng(12345);
  std::size_t errors = 0;
  for (const Bytes& d : samples::all_datagrams()) {
    for (std::size_t n = 0; n < d.size(); ++n) {
      Bytes cut(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(n));
      auto m = decode_message(cut);
      EXPECT_FALSE(m.ok());
      if (!m.ok()) {
        ++errors;
        EXPECT_FALSE(m.error().payload.empty());
      }
      // The body alone, as if decrypted and padded.
      if (n > kHeaderSize)
        (void)decode_payloads(ByteView(cut).subspan(kHeaderSize), d[16], d[18], kHeaderSize, true);
    }
    for (std::size_t bit = 0; bit < d.size() * 8; ++bit) {
      Bytes f = d;
      f[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
      auto m = decode_message(f);
      if (m.ok()) (void)encode_message(m->header, m->payloads);
    }
  }
  EXPECT_GT(errors, 0u);
}
