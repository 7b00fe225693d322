#include "samples.h"

#include <algorithm>

namespace covey::samples {

using namespace wire;

Header header(ExchangeType exchange, std::uint32_t message_id) {
  Header h;
  h.initiator_cookie = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
  h.responder_cookie = {0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01};
  h.exchange = static_cast<std::uint8_t>(exchange);
  h.message_id = message_id;
  return h;
}

static GroupIdentity subnet(std::uint8_t a, std::uint8_t b, std::uint8_t m) {
  return GroupIdentity{static_cast<std::uint8_t>(IdType::Ipv4AddrSubnet), 0, {a, b, 0, 0, 255, m, 0, 0}};
}

GroupSaPayload group_sa() {
  GroupSaPayload sa;
  SaKekPayload kek;
  kek.protocol = 17;
  kek.src = GroupIdentity{static_cast<std::uint8_t>(IdType::Ipv4Addr), 848, {10, 1, 12, 1}};
  kek.dst = GroupIdentity{static_cast<std::uint8_t>(IdType::Ipv4Addr), 848, {239, 192, 1, 1}};
  for (std::uint8_t i = 0; i < 16; ++i) kek.spi[i] = static_cast<std::uint8_t>(0xa0 + i);
  kek.attributes = {Attribute::tv(kek_attr::KekAlgorithm, kek_value::KekAlgAes),
                    Attribute::tv(kek_attr::KekKeyLength, 256),
                    Attribute::number(kek_attr::KekKeyLifetime, 86400),
                    Attribute::tv(kek_attr::SigHashAlgorithm, kek_value::SigHashSha256),
                    Attribute::tv(kek_attr::SigAlgorithm, kek_value::SigAlgRsa),
                    Attribute::tv(kek_attr::SigKeyLength, 2048)};
  sa.kek = kek;
  sa.gap = GapPayload{{Attribute::tv(gap_attr::ActivationTimeDelay, 30),
                       Attribute::tv(gap_attr::DeactivationTimeDelay, 90)}};
  SaTekPayload tek;
  tek.protocol = 0;
  tek.src = subnet(192, 168, 0);
  tek.dst = subnet(192, 168, 0);
  tek.transform_id = kEspAes;
  tek.spi = 0x6263F2E0;
  tek.attributes = {Attribute::tv(ipsec_attr::SaLifeType, ipsec_value::LifeSeconds),
                    Attribute::number(ipsec_attr::SaLifeDuration, 3600),
                    Attribute::tv(ipsec_attr::EncapsulationMode, ipsec_value::Tunnel),
                    Attribute::tv(ipsec_attr::AuthenticationAlgorithm, ipsec_value::HmacSha2_256),
                    Attribute::tv(ipsec_attr::KeyLength, 256),
                    Attribute::tv(ipsec_attr::AddressPreservation, ipsec_value::PreserveSourceAndDestination),
                    Attribute::tv(ipsec_attr::SaDirection, ipsec_value::Symmetric)};
  sa.teks.push_back(tek);
  return sa;
}

KeyDownloadPayload key_download() {
  KeyDownloadPayload kd;
  KeyPacket tek{static_cast<std::uint8_t>(KeyPacketType::Tek), {0x62, 0x63, 0xF2, 0xE0}, {}};
  tek.attributes = {Attribute::tlv(tek_key_attr::TekAlgorithmKey, Bytes(32, 0x5a)),
                    Attribute::tlv(tek_key_attr::TekIntegrityKey, Bytes(32, 0xa5))};
  KeyPacket kek{static_cast<std::uint8_t>(KeyPacketType::Kek), Bytes(16), {}};
  for (std::uint8_t i = 0; i < 16; ++i) kek.spi[i] = static_cast<std::uint8_t>(0xa0 + i);
  Bytes iv_and_key(16 + 32, 0x3c);  // RFC 6407 5.6.2.1: explicit IV before the key
  kek.attributes = {Attribute::tlv(kek_key_attr::KekAlgorithmKey, iv_and_key),
                    Attribute::tlv(kek_key_attr::SigAlgorithmKey, Bytes(294, 0x30))};
  KeyPacket sid{static_cast<std::uint8_t>(KeyPacketType::Sid), {}, {}};
  sid.attributes = {Attribute::tv(sid_key_attr::NumberOfSidBits, 16),
                    Attribute::tlv(sid_key_attr::SidValue, {0x00, 0x00, 0x00, 0x07})};
  kd.packets = {tek, kek, sid};
  return kd;
}

SaPayload phase1_sa() {
  SaPayload sa;
  sa.doi = kDoiGdoi;  // RFC 6407 2: phase 1 names the GDOI
  Proposal p;
  p.transforms.push_back(Transform{1, kTransformKeyIke,
                                   {Attribute::tv(ike_attr::EncryptionAlgorithm, ike_value::AesCbc),
                                    Attribute::tv(ike_attr::KeyLength, 256),
                                    Attribute::tv(ike_attr::HashAlgorithm, ike_value::Sha256),
                                    Attribute::tv(ike_attr::AuthenticationMethod, ike_value::PreSharedKey),
                                    Attribute::tv(ike_attr::GroupDescription, 14),
                                    Attribute::tv(ike_attr::LifeType, ike_value::LifeSeconds),
                                    Attribute::number(ike_attr::LifeDuration, 86400)}});
  p.transforms.push_back(Transform{2, kTransformKeyIke,
                                   {Attribute::tv(ike_attr::EncryptionAlgorithm, ike_value::AesCbc),
                                    Attribute::tv(ike_attr::KeyLength, 128),
                                    Attribute::tv(ike_attr::HashAlgorithm, ike_value::Sha1),
                                    Attribute::tv(ike_attr::AuthenticationMethod, ike_value::PreSharedKey),
                                    Attribute::tv(ike_attr::GroupDescription, 19),
                                    Attribute::tv(ike_attr::LifeType, ike_value::LifeSeconds),
                                    Attribute::tv(ike_attr::LifeDuration, 28800)}});
  sa.proposals.push_back(p);
  return sa;
}

std::vector<Payload> pull1() {
  return {HashPayload{Bytes(32, 0x01)}, NoncePayload{Bytes(16, 0x4e)}, IdentificationPayload::group(134)};
}
std::vector<Payload> pull2() { return {HashPayload{Bytes(32, 0x02)}, NoncePayload{Bytes(16, 0x72)}, group_sa()}; }
std::vector<Payload> pull3() {
  return {HashPayload{Bytes(32, 0x03)}, GapPayload{{Attribute::tv(gap_attr::SenderIdRequest, 2)}}};
}
std::vector<Payload> pull4() {
  return {HashPayload{Bytes(32, 0x04)}, SequenceNumberPayload{0}, key_download()};
}
std::vector<Payload> push() {
  GroupSaPayload sa = group_sa();
  sa.gap.reset();
  KeyDownloadPayload kd = key_download();
  kd.packets.pop_back();  // RFC 6407 5.6.4: no SID packets in a push
  return {SequenceNumberPayload{7},
          DeletePayload{kDoiGdoi, kGdoiProtoIpsecEsp, 4, {{0x11, 0x22, 0x33, 0x44}}},
          sa, kd, SignaturePayload{Bytes(256, 0x5e)}};
}
std::vector<Payload> main_mode1() {
  return {phase1_sa(), VendorIdPayload{{0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9}}};
}

std::vector<Bytes> all_datagrams() {
  std::vector<Bytes> out;
  out.push_back(encode_message(header(ExchangeType::IdentityProtection, 0), main_mode1()));
  out.push_back(encode_message(header(ExchangeType::GroupkeyPull, 0x1a2b3c4d), pull1()));
  out.push_back(encode_message(header(ExchangeType::GroupkeyPull, 0x1a2b3c4d), pull2()));
  out.push_back(encode_message(header(ExchangeType::GroupkeyPull, 0x1a2b3c4d), pull3()));
  out.push_back(encode_message(header(ExchangeType::GroupkeyPull, 0x1a2b3c4d), pull4()));
  Header ph = header(ExchangeType::GroupkeyPush, 0);
  std::copy_n(group_sa().kek->spi.begin(), 8, ph.initiator_cookie.begin());
  std::copy_n(group_sa().kek->spi.begin() + 8, 8, ph.responder_cookie.begin());
  out.push_back(encode_message(ph, push()));
  return out;
}

}  // namespace covey::samples
