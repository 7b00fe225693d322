// ISAKMP, IKEv1 and GDOI payloads as plain values. One struct per payload
// of RFC 2408 3.4-3.16 and RFC 6407 5; field names follow the RFC figures.
// Generic header fields (Next Payload, Payload Length) are not stored: the
// encoder derives them from a payload's position and size.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <variant>
#include <vector>

#include "common/bytes.h"
#include "wire/attribute.h"
#include "wire/constants.h"

namespace covey::wire {

// RFC 2408 3.6: a transform and its attributes (phase 1: RFC 2409 App. A).
struct Transform {
  std::uint8_t number = 1;
  std::uint8_t id = kTransformKeyIke;
  Attributes attributes;
  bool operator==(const Transform&) const = default;
};

// RFC 2408 3.5.
struct Proposal {
  std::uint8_t number = 1;
  std::uint8_t protocol = kProtoIsakmp;
  Bytes spi;
  std::vector<Transform> transforms;
  bool operator==(const Proposal&) const = default;
};

// RFC 2408 3.4 with RFC 2407 4.2: the proposal form, used in phase 1
// (Main Mode), whichever DOI it names.
struct SaPayload {
  std::uint32_t doi = kDoiIpsec;
  std::uint32_t situation = kSituationIdentityOnly;
  std::vector<Proposal> proposals;
  bool operator==(const SaPayload&) const = default;
};

// The SRC/DST identity block of SA KEK and SA TEK (RFC 6407 Figures 5, 8):
// ID Type (1), ID Port (2), ID Data Len (1), ID Data.
struct GroupIdentity {
  std::uint8_t type = static_cast<std::uint8_t>(IdType::Ipv4AddrSubnet);
  std::uint16_t port = 0;
  Bytes data;
  bool operator==(const GroupIdentity&) const = default;
};

// RFC 6407 5.3, Figure 5.
struct SaKekPayload {
  std::uint8_t protocol = 17;  // IP protocol of the GROUPKEY-PUSH datagram
  GroupIdentity src, dst;
  std::array<std::uint8_t, 16> spi{};  // initiator cookie | responder cookie of the push
  Attributes attributes;               // kek_attr
  bool operator==(const SaKekPayload&) const = default;
};

// RFC 6407 5.4, Figure 6. Inside a group SA, and on its own in message 3.
struct GapPayload {
  Attributes attributes;  // gap_attr
  bool operator==(const GapPayload&) const = default;
};

// RFC 6407 5.5 and 5.5.1, Figures 7 and 8 (ESP and AH form).
struct SaTekPayload {
  std::uint8_t protocol_id = kGdoiProtoIpsecEsp;
  std::uint8_t protocol = 0;  // IP protocol selector, 0 = any
  GroupIdentity src, dst;
  std::uint8_t transform_id = kEspAes;
  std::uint32_t spi = 0;
  Attributes attributes;  // ipsec_attr (RFC 2407 4.5)
  bool operator==(const SaTekPayload&) const = default;
};

// RFC 6407 5.2: the group form of the SA payload, used in GROUPKEY-PULL and
// GROUPKEY-PUSH, with its SA attribute payloads in the RFC's order.
struct GroupSaPayload {
  std::uint32_t doi = kDoiGdoi;
  std::uint32_t situation = 0;
  std::optional<SaKekPayload> kek;
  std::optional<GapPayload> gap;
  std::vector<SaTekPayload> teks;
  bool operator==(const GroupSaPayload&) const = default;
};

struct KeyExchangePayload {  // RFC 2408 3.7
  Bytes data;
  bool operator==(const KeyExchangePayload&) const = default;
};

// RFC 2408 3.8 with RFC 2407 4.6.2: ID Type, Protocol ID, Port, data.
struct IdentificationPayload {
  std::uint8_t type = static_cast<std::uint8_t>(IdType::KeyId);
  std::uint8_t protocol = 0;
  std::uint16_t port = 0;
  Bytes data;
  bool operator==(const IdentificationPayload&) const = default;

  // RFC 6407 5.1: a 4-octet group identifier, big-endian.
  static IdentificationPayload group(std::uint32_t id);
  std::optional<std::uint32_t> group_id() const;
};

struct CertificatePayload {  // RFC 2408 3.9
  std::uint8_t encoding = kCertX509Signature;
  Bytes data;
  bool operator==(const CertificatePayload&) const = default;
};

struct CertificateRequestPayload {  // RFC 2408 3.10
  std::uint8_t type = kCertX509Signature;
  Bytes authority;
  bool operator==(const CertificateRequestPayload&) const = default;
};

struct HashPayload {  // RFC 2408 3.11
  Bytes data;
  bool operator==(const HashPayload&) const = default;
};

struct SignaturePayload {  // RFC 2408 3.12
  Bytes data;
  bool operator==(const SignaturePayload&) const = default;
};

struct NoncePayload {  // RFC 2408 3.13
  Bytes data;
  bool operator==(const NoncePayload&) const = default;
};

struct NotificationPayload {  // RFC 2408 3.14
  std::uint32_t doi = kDoiIpsec;
  std::uint8_t protocol = kProtoIsakmp;
  std::uint16_t type = 0;
  Bytes spi;
  Bytes data;
  bool operator==(const NotificationPayload&) const = default;
};

struct DeletePayload {  // RFC 2408 3.15, RFC 6407 5.9
  std::uint32_t doi = kDoiGdoi;
  std::uint8_t protocol = 0;
  std::uint8_t spi_size = 0;
  std::vector<Bytes> spis;  // each exactly spi_size octets
  bool operator==(const DeletePayload&) const = default;
};

struct VendorIdPayload {  // RFC 2408 3.16
  Bytes data;
  bool operator==(const VendorIdPayload&) const = default;
};

struct SequenceNumberPayload {  // RFC 6407 5.7
  std::uint32_t number = 0;
  bool operator==(const SequenceNumberPayload&) const = default;
};

// RFC 6407 5.6, Figure 10.
struct KeyPacket {
  std::uint8_t type = static_cast<std::uint8_t>(KeyPacketType::Tek);
  Bytes spi;              // empty for SID packets
  Attributes attributes;  // tek_key_attr / kek_key_attr / lkh_key_attr / sid_key_attr by type
  bool operator==(const KeyPacket&) const = default;
};

struct KeyDownloadPayload {  // RFC 6407 5.6, Figure 9
  std::vector<KeyPacket> packets;
  bool operator==(const KeyDownloadPayload&) const = default;
};

using Payload =
    std::variant<SaPayload, GroupSaPayload, KeyExchangePayload, IdentificationPayload,
                 CertificatePayload, CertificateRequestPayload, HashPayload, SignaturePayload,
                 NoncePayload, NotificationPayload, DeletePayload, VendorIdPayload,
                 SequenceNumberPayload, KeyDownloadPayload, GapPayload>;

PayloadType type_of(const Payload& p);

// The attribute space of a key packet's attributes, by KD Type.
AttributeSpace key_packet_space(std::uint8_t kd_type);

// RFC 6407 5.6.3: LKH key arrays, carried inside LKH_DOWNLOAD_ARRAY and
// LKH_UPDATE_ARRAY attribute values. Key Data has no length field of its
// own: its size follows from the KEK policy, so the caller supplies it.
struct LkhKey {
  std::uint16_t id = 0;
  std::uint8_t key_type = 0;
  std::uint32_t creation = 0, expiration = 0, handle = 0;
  Bytes key_data;
  bool operator==(const LkhKey&) const = default;
};
struct LkhDownloadArray {
  std::uint8_t version = 1;
  std::vector<LkhKey> keys;
  bool operator==(const LkhDownloadArray&) const = default;
};
struct LkhUpdateArray {
  std::uint8_t version = 1;
  std::uint16_t id = 0;
  std::uint32_t handle = 0;
  std::vector<LkhKey> keys;
  bool operator==(const LkhUpdateArray&) const = default;
};

Bytes encode_lkh(const LkhDownloadArray& a);
Bytes encode_lkh(const LkhUpdateArray& a);
Result<LkhDownloadArray> decode_lkh_download_array(ByteView v, std::size_t key_data_len);
Result<LkhUpdateArray> decode_lkh_update_array(ByteView v, std::size_t key_data_len);

}  // namespace covey::wire
