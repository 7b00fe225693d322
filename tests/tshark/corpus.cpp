#include "corpus.h"

#include "common/address.h"

namespace covey::test {

using namespace covey::wire;

namespace {

Bytes filled(std::size_t n, std::uint8_t seed) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(seed + i);
  return b;
}

Bytes ipv4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) { return {a, b, c, d}; }
Bytes ipv6(const char* text) {
  const Address a = *Address::parse(text);
  return Bytes(a.bytes.begin(), a.bytes.end());
}

GroupIdentity subnet(Bytes addr, Bytes mask) {
  GroupIdentity id;
  id.type = static_cast<std::uint8_t>(addr.size() == 4 ? IdType::Ipv4AddrSubnet : IdType::Ipv6AddrSubnet);
  id.data = std::move(addr);
  append(id.data, mask);
  return id;
}

Header header(ExchangeType ex, std::uint32_t message_id, bool with_responder_cookie = true) {
  Header h;
  h.initiator_cookie = initiator_cookie();
  if (with_responder_cookie) h.responder_cookie = responder_cookie();
  h.exchange = static_cast<std::uint8_t>(ex);
  h.message_id = message_id;
  return h;
}

Transform phase1_transform(std::uint8_t number, std::uint16_t cipher, std::uint16_t key_bits,
                           std::uint16_t hash, std::uint16_t group) {
  Transform t;
  t.number = number;
  t.attributes = {Attribute::tv(ike_attr::EncryptionAlgorithm, cipher)};
  if (key_bits) t.attributes.push_back(Attribute::tv(ike_attr::KeyLength, key_bits));
  t.attributes.push_back(Attribute::tv(ike_attr::HashAlgorithm, hash));
  t.attributes.push_back(Attribute::tv(ike_attr::AuthenticationMethod, ike_value::PreSharedKey));
  t.attributes.push_back(Attribute::tv(ike_attr::GroupDescription, group));
  t.attributes.push_back(Attribute::tv(ike_attr::LifeType, ike_value::LifeSeconds));
  t.attributes.push_back(Attribute::number(ike_attr::LifeDuration, want::kPhase1Life));
  return t;
}

SaKekPayload sa_kek() {
  SaKekPayload k;
  k.protocol = 17;
  k.src = GroupIdentity{static_cast<std::uint8_t>(IdType::Ipv4Addr), 848, ipv4(10, 1, 12, 1)};
  k.dst = GroupIdentity{static_cast<std::uint8_t>(IdType::Ipv4Addr), 848, ipv4(239, 192, 1, 1)};
  k.spi = kek_spi();
  k.attributes = {
      Attribute::tv(kek_attr::KekAlgorithm, kek_value::KekAlgAes),
      Attribute::tv(kek_attr::KekKeyLength, 256),
      Attribute::tlv(kek_attr::KekKeyLifetime, {0, 1, 0x51, 0x80}),  // 86400
      Attribute::tv(kek_attr::SigHashAlgorithm, kek_value::SigHashSha256),
      Attribute::tv(kek_attr::SigAlgorithm, kek_value::SigAlgRsa),
      Attribute::tv(kek_attr::SigKeyLength, 2048),
  };
  return k;
}

SaTekPayload sa_tek(std::uint32_t spi) {
  SaTekPayload t;
  t.protocol_id = kGdoiProtoIpsecEsp;
  t.protocol = 0;
  t.src = subnet(ipv4(192, 168, 0, 0), ipv4(255, 255, 0, 0));
  t.dst = subnet(ipv4(192, 168, 0, 0), ipv4(255, 255, 0, 0));
  t.transform_id = kEspAes;
  t.spi = spi;
  t.attributes = {
      Attribute::tv(ipsec_attr::SaLifeType, ipsec_value::LifeSeconds),
      Attribute::number(ipsec_attr::SaLifeDuration, want::kTekLife),
      Attribute::tv(ipsec_attr::KeyLength, 256),
      Attribute::tv(ipsec_attr::AuthenticationAlgorithm, ipsec_value::HmacSha2_256),
      Attribute::tv(ipsec_attr::EncapsulationMode, ipsec_value::Tunnel),
      Attribute::tv(ipsec_attr::AddressPreservation, ipsec_value::PreserveSourceAndDestination),
      Attribute::tv(ipsec_attr::SaDirection, ipsec_value::Symmetric),
  };
  return t;
}

GapPayload gap() {
  return GapPayload{{Attribute::tv(gap_attr::ActivationTimeDelay, want::kActivationDelay),
                     Attribute::tv(gap_attr::DeactivationTimeDelay, want::kDeactivationDelay)}};
}

KeyPacket tek_key(std::uint32_t spi) {
  KeyPacket p;
  p.type = static_cast<std::uint8_t>(KeyPacketType::Tek);
  p.spi = {static_cast<std::uint8_t>(spi >> 24), static_cast<std::uint8_t>(spi >> 16),
           static_cast<std::uint8_t>(spi >> 8), static_cast<std::uint8_t>(spi)};
  p.attributes = {Attribute::tlv(tek_key_attr::TekAlgorithmKey, filled(32, 0x40)),
                  Attribute::tlv(tek_key_attr::TekIntegrityKey, filled(32, 0x80))};
  return p;
}

KeyPacket kek_key() {
  KeyPacket p;
  p.type = static_cast<std::uint8_t>(KeyPacketType::Kek);
  auto spi = kek_spi();
  p.spi.assign(spi.begin(), spi.end());
  // RFC 6407 5.6.2.1: KEK_ALGORITHM_KEY is the IV, then the key.
  Bytes iv_and_key = filled(16, 0xa0);
  append(iv_and_key, filled(32, 0xc0));
  p.attributes = {Attribute::tlv(kek_key_attr::KekAlgorithmKey, iv_and_key),
                  Attribute::tlv(kek_key_attr::SigAlgorithmKey, filled(40, 0x10))};
  return p;
}

// A dual-stack group's registration over IPv6: the SA KEK from the key
// server's IPv6 address to an ff05:: rekey group, and TEKs for an IPv6
// subnet pair, an IPv6 host pair (TCP 443) and the IPv4 entry, in order.
// `rekey_to`: the SA KEK's DST, the rekey group or (unicast rekeys) "::".
// The pull's GAP stops tshark's SA (see tshark_fields.cpp), so the push,
// which has none, is where tshark reads an IPv6 TEK.
GroupSaPayload ipv6_sa(const char* rekey_to, std::uint32_t spi, bool with_gap) {
  GroupSaPayload sa;
  sa.kek = sa_kek();
  sa.kek->src = GroupIdentity{static_cast<std::uint8_t>(IdType::Ipv6Addr), 848, ipv6("2001:db8:12::1")};
  sa.kek->dst = GroupIdentity{static_cast<std::uint8_t>(IdType::Ipv6Addr), 848, ipv6(rekey_to)};
  if (with_gap) sa.gap = gap();
  SaTekPayload lans = sa_tek(spi);
  lans.src = subnet(ipv6("2001:db8:3::"), ipv6("ffff:ffff:ffff:ffff::"));
  lans.dst = subnet(ipv6("2001:db8:4::"), ipv6("ffff:ffff:ffff:ffff::"));
  SaTekPayload hosts = sa_tek(spi);
  hosts.protocol = 6;
  hosts.src = GroupIdentity{static_cast<std::uint8_t>(IdType::Ipv6Addr), 0, ipv6("2001:db8:3::10")};
  hosts.dst = GroupIdentity{static_cast<std::uint8_t>(IdType::Ipv6Addr), 443, ipv6("2001:db8:4::10")};
  sa.teks = {lans, hosts, sa_tek(spi)};
  return sa;
}

}  // namespace

std::string CorpusMessage::source_text() const {
  Address a;
  const UdpEndpoint e = source();
  if (e.v6) {
    a.family = 6;
    a.bytes = e.ip6;
  } else {
    for (int i = 0; i < 4; ++i)
      a.bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(e.ip >> (24 - 8 * i));
  }
  return a.str();
}

Cookie initiator_cookie() { return {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}; }
Cookie responder_cookie() { return {0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0, 0x01}; }
std::array<std::uint8_t, 16> kek_spi() {
  return {0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7};
}

std::vector<CorpusMessage> corpus() {
  using E = ExchangeType;
  std::vector<CorpusMessage> m;

  // Main Mode (RFC 2409 5): GDOI phase 1 names DOI 2 in its SA (RFC 6407 2).
  SaPayload offer{kDoiGdoi, kSituationIdentityOnly, {}};
  Proposal prop;
  prop.transforms = {phase1_transform(1, ike_value::AesCbc, 256, ike_value::Sha256, 14),
                     phase1_transform(2, ike_value::TripleDes, 0, ike_value::Sha1, 2)};
  offer.proposals = {prop};
  SaPayload chosen = offer;
  chosen.proposals[0].transforms.resize(1);
  m.push_back({"Main Mode msg 1", true, header(E::IdentityProtection, 0, false),
               {offer, VendorIdPayload{filled(16, 0x30)}}});
  m.push_back({"Main Mode msg 2", false, header(E::IdentityProtection, 0),
               {chosen, VendorIdPayload{filled(16, 0x50)}}});
  m.push_back({"Main Mode msg 3", true, header(E::IdentityProtection, 0),
               {KeyExchangePayload{filled(256, 0x01)}, NoncePayload{filled(32, 0x21)}}});
  m.push_back({"Main Mode msg 4", false, header(E::IdentityProtection, 0),
               {KeyExchangePayload{filled(256, 0x02)}, NoncePayload{filled(32, 0x22)},
                CertificateRequestPayload{kCertX509Signature, {}}}});
  // Messages 5 and 6 go encrypted on a real wire; here in the clear so tshark dissects them.
  NotificationPayload contact{kDoiIpsec, kProtoIsakmp, static_cast<std::uint16_t>(NotifyType::InitialContact), {}, {}};
  {
    const Cookie ic = initiator_cookie(), rc = responder_cookie();
    contact.spi.assign(ic.begin(), ic.end());
    contact.spi.insert(contact.spi.end(), rc.begin(), rc.end());
  }
  m.push_back({"Main Mode msg 5", true, header(E::IdentityProtection, 0),
               {IdentificationPayload{static_cast<std::uint8_t>(IdType::Ipv4Addr), 17, 848, ipv4(10, 1, 23, 3)},
                HashPayload{filled(32, 0x61)}, contact}});
  m.push_back({"Main Mode msg 6", false, header(E::IdentityProtection, 0),
               {IdentificationPayload{static_cast<std::uint8_t>(IdType::Ipv4Addr), 17, 848, ipv4(10, 1, 12, 1)},
                HashPayload{filled(32, 0x62)}}});

  // GROUPKEY-PULL (RFC 6407 3.2).
  GroupSaPayload sa;
  sa.kek = sa_kek();
  sa.gap = gap();
  sa.teks = {sa_tek(want::kTekSpi), sa_tek(want::kTekSpi2)};
  m.push_back({"GROUPKEY-PULL msg 1", true, header(E::GroupkeyPull, want::kPullMessageId),
               {HashPayload{filled(32, 0x71)}, NoncePayload{filled(16, 0x81)},
                IdentificationPayload::group(want::kGroupId)}});
  m.push_back({"GROUPKEY-PULL msg 2", false, header(E::GroupkeyPull, want::kPullMessageId),
               {HashPayload{filled(32, 0x72)}, NoncePayload{filled(16, 0x82)}, sa}});
  m.push_back({"GROUPKEY-PULL msg 3", true, header(E::GroupkeyPull, want::kPullMessageId),
               {HashPayload{filled(32, 0x73)}, gap()}});
  KeyPacket sid;
  sid.type = static_cast<std::uint8_t>(KeyPacketType::Sid);
  sid.attributes = {Attribute::tv(sid_key_attr::NumberOfSidBits, 16),
                    Attribute::tlv(sid_key_attr::SidValue, {0x00, 0x00, 0x00, 0x07})};
  m.push_back({"GROUPKEY-PULL msg 4", false, header(E::GroupkeyPull, want::kPullMessageId),
               {HashPayload{filled(32, 0x74)}, SequenceNumberPayload{want::kSeqPull},
                KeyDownloadPayload{{tek_key(want::kTekSpi), tek_key(want::kTekSpi2), kek_key(), sid}}}});

  // GROUPKEY-PUSH (RFC 6407 4): cookies are the KEK SPI, Message ID 0.
  Header push;
  auto spi = kek_spi();
  std::copy(spi.begin(), spi.begin() + 8, push.initiator_cookie.begin());
  std::copy(spi.begin() + 8, spi.end(), push.responder_cookie.begin());
  push.exchange = static_cast<std::uint8_t>(E::GroupkeyPush);
  GroupSaPayload push_sa;
  push_sa.kek = sa_kek();
  push_sa.teks = {sa_tek(want::kPushTekSpi)};
  m.push_back({"GROUPKEY-PUSH", false, push,
               {SequenceNumberPayload{want::kSeqPush}, push_sa,
                KeyDownloadPayload{{tek_key(want::kPushTekSpi), kek_key()}}, SignaturePayload{filled(256, 0x90)}}});

  // Informational (RFC 2408 4.8) with a DELETE of the ISAKMP SA.
  DeletePayload del{kDoiIpsec, kProtoIsakmp, 16, {}};
  const Cookie ic = initiator_cookie(), rc = responder_cookie();
  Bytes cookies(ic.begin(), ic.end());
  cookies.insert(cookies.end(), rc.begin(), rc.end());
  del.spis = {cookies};
  // The same offer under the IPsec DOI: tshark dissects proposals and
  // transforms only there (it reads any DOI-2 SA in the group form), so
  // this message is what lets the test compare phase-1 transform values.
  SaPayload ipsec_offer = offer;
  ipsec_offer.doi = kDoiIpsec;
  Header h1 = header(E::IdentityProtection, 0, false);
  h1.initiator_cookie = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
  m.push_back({"Main Mode msg 1, IPsec DOI", true, h1, {ipsec_offer}});

  m.push_back({"Informational DELETE", true, header(E::Informational, want::kInfoMessageId),
               {HashPayload{filled(32, 0x75)}, del}});

  // A member registering over IPv6 (RFC 2407 4.6.2.6: ID_IPV6_ADDR), in
  // the clear as above.
  m.push_back(
      {"Main Mode msg 5, IPv6",
       true,
       header(E::IdentityProtection, 0),
       {IdentificationPayload{static_cast<std::uint8_t>(IdType::Ipv6Addr), 17, 848, ipv6("2001:db8:23::3")},
        HashPayload{filled(32, 0x63)}},
       true});
  m.push_back(
      {"Main Mode msg 6, IPv6",
       false,
       header(E::IdentityProtection, 0),
       {IdentificationPayload{static_cast<std::uint8_t>(IdType::Ipv6Addr), 17, 848, ipv6("2001:db8:12::1")},
        HashPayload{filled(32, 0x64)}},
       true});
  m.push_back({"GROUPKEY-PULL msg 2, IPv6",
               false,
               header(E::GroupkeyPull, want::kPullMessageId),
               {HashPayload{filled(32, 0x76)}, NoncePayload{filled(16, 0x86)},
                ipv6_sa("ff05::1:3", want::kTekSpi, true)},
               true});
  // A unicast rekey to that member over IPv6.
  m.push_back(
      {"GROUPKEY-PUSH, IPv6",
       false,
       push,
       {SequenceNumberPayload{want::kSeqPush}, ipv6_sa("::", want::kPushTekSpi, false),
        KeyDownloadPayload{{tek_key(want::kPushTekSpi), kek_key()}}, SignaturePayload{filled(256, 0x91)}},
       true});
  return m;
}

}  // namespace covey::test
