// Numbers of ISAKMP (RFC 2408), the IPsec DOI (RFC 2407), IKEv1 (RFC 2409),
// GDOI (RFC 6407) and the GROUPKEY-PUSH ACK (RFC 8263), by their RFC names.
#pragma once

#include <cstdint>

namespace covey::wire {

// RFC 2408 3.1 / RFC 6407 5 / RFC 8263: Next Payload Types.
enum class PayloadType : std::uint8_t {
  None = 0,
  SecurityAssociation = 1,
  Proposal = 2,
  Transform = 3,
  KeyExchange = 4,
  Identification = 5,
  Certificate = 6,
  CertificateRequest = 7,
  Hash = 8,
  Signature = 9,
  Nonce = 10,
  Notification = 11,
  Delete = 12,
  VendorId = 13,
  SaKek = 15,
  SaTek = 16,
  KeyDownload = 17,
  SequenceNumber = 18,
  GroupAssociatedPolicy = 22,
};

// RFC 2408 3.1 / RFC 6407 3.2.1, 4.2 / RFC 8263 3.1: Exchange Types.
enum class ExchangeType : std::uint8_t {
  Base = 1,
  IdentityProtection = 2,  // IKEv1 Main Mode
  AuthenticationOnly = 3,
  Aggressive = 4,
  Informational = 5,
  GroupkeyPull = 32,
  GroupkeyPush = 33,
  GroupkeyPushAck = 35,
};

// RFC 2408 3.1 header flags.
inline constexpr std::uint8_t kFlagEncryption = 0x01;
inline constexpr std::uint8_t kFlagCommit = 0x02;
inline constexpr std::uint8_t kFlagAuthenticationOnly = 0x04;
inline constexpr std::uint8_t kFlagsDefined = 0x07;

inline constexpr std::uint8_t kIsakmpVersion = 0x10;  // major 1, minor 0

inline constexpr std::uint32_t kDoiIpsec = 1;  // RFC 2407
inline constexpr std::uint32_t kDoiGdoi = 2;   // RFC 6407 2.1
inline constexpr std::uint32_t kSituationIdentityOnly = 1;  // RFC 2407 4.2

// RFC 2407 4.4.1 Protocol IDs (phase 1 uses PROTO_ISAKMP).
inline constexpr std::uint8_t kProtoIsakmp = 1;
inline constexpr std::uint8_t kProtoIpsecAh = 2;
inline constexpr std::uint8_t kProtoIpsecEsp = 3;
inline constexpr std::uint8_t kTransformKeyIke = 1;  // RFC 2407 4.4.2

// RFC 6407 5.5 SA TEK Protocol-ID.
inline constexpr std::uint8_t kGdoiProtoIpsecEsp = 1;
inline constexpr std::uint8_t kGdoiProtoIpsecAh = 2;

// RFC 2407 4.6.2.1 Identification Types.
enum class IdType : std::uint8_t {
  Ipv4Addr = 1,
  Fqdn = 2,
  UserFqdn = 3,
  Ipv4AddrSubnet = 4,
  Ipv6Addr = 5,
  Ipv6AddrSubnet = 6,
  Ipv4AddrRange = 7,
  Ipv6AddrRange = 8,
  DerAsn1Dn = 9,
  DerAsn1Gn = 10,
  KeyId = 11,
};

// RFC 2407 4.5 ESP transform identifiers (as used in SA TEK Transform ID).
inline constexpr std::uint8_t kEsp3des = 3;
inline constexpr std::uint8_t kEspNull = 11;
inline constexpr std::uint8_t kEspAes = 12;       // AES-CBC, RFC 3602
inline constexpr std::uint8_t kEspAesGcm16 = 20;  // RFC 4106, 16-octet ICV

// RFC 2408 3.14.1 Notify Message Types (errors).
enum class NotifyType : std::uint16_t {
  InvalidPayloadType = 1,
  DoiNotSupported = 2,
  SituationNotSupported = 3,
  InvalidCookie = 4,
  InvalidMajorVersion = 5,
  InvalidMinorVersion = 6,
  InvalidExchangeType = 7,
  InvalidFlags = 8,
  InvalidMessageId = 9,
  InvalidProtocolId = 10,
  InvalidSpi = 11,
  InvalidTransformId = 12,
  AttributesNotSupported = 13,
  NoProposalChosen = 14,
  BadProposalSyntax = 15,
  PayloadMalformed = 16,
  InvalidKeyInformation = 17,
  InvalidIdInformation = 18,
  InvalidCertEncoding = 19,
  InvalidCertificate = 20,
  CertTypeUnsupported = 21,
  InvalidCertAuthority = 22,
  InvalidHashInformation = 23,
  AuthenticationFailed = 24,
  InvalidSignature = 25,
  AddressNotification = 26,
  NotifySaLifetime = 27,
  CertificateUnavailable = 28,
  UnsupportedExchangeType = 29,
  UnequalPayloadLengths = 30,
  InitialContact = 24578,  // RFC 2407 4.6.3.3
};

// RFC 2408 3.9 Certificate Encoding.
inline constexpr std::uint8_t kCertX509Signature = 4;

// RFC 6407 5.6 Key Download Types.
enum class KeyPacketType : std::uint8_t { Tek = 1, Kek = 2, Lkh = 3, Sid = 4 };

// Attribute classes, one namespace per table they come from. Each table's
// TV/TLV forms are in attribute.cpp.
namespace ike_attr {  // RFC 2409 Appendix A, phase 1 transform attributes
inline constexpr std::uint16_t EncryptionAlgorithm = 1, HashAlgorithm = 2, AuthenticationMethod = 3,
                               GroupDescription = 4, GroupType = 5, GroupPrime = 6,
                               GroupGeneratorOne = 7, GroupGeneratorTwo = 8, GroupCurveA = 9,
                               GroupCurveB = 10, LifeType = 11, LifeDuration = 12, Prf = 13,
                               KeyLength = 14, FieldSize = 15, GroupOrder = 16;
}
namespace ike_value {
inline constexpr std::uint16_t Des = 1, TripleDes = 5, AesCbc = 7;          // encryption
inline constexpr std::uint16_t Md5 = 1, Sha1 = 2, Sha256 = 4, Sha384 = 5;   // hash
inline constexpr std::uint16_t PreSharedKey = 1, RsaSignature = 3;          // auth method
inline constexpr std::uint16_t EcdsaSha256 = 9, EcdsaSha384 = 10;           // RFC 4754
inline constexpr std::uint16_t LifeSeconds = 1, LifeKilobytes = 2;
}  // namespace ike_value

namespace ipsec_attr {  // RFC 2407 4.5 SA attributes (+ IANA 10-15, RFC 6407 5.5.1.1)
inline constexpr std::uint16_t SaLifeType = 1, SaLifeDuration = 2, GroupDescription = 3,
                               EncapsulationMode = 4, AuthenticationAlgorithm = 5, KeyLength = 6,
                               KeyRounds = 7, CompressDictionarySize = 8,
                               CompressPrivateAlgorithm = 9, EcnTunnel = 10,
                               ExtendedSequenceNumber = 11, AuthenticationKeyLength = 12,
                               SignatureEncoding = 13, AddressPreservation = 14, SaDirection = 15;
}
namespace ipsec_value {
inline constexpr std::uint16_t LifeSeconds = 1, LifeKilobytes = 2;
inline constexpr std::uint16_t Tunnel = 1, Transport = 2;
inline constexpr std::uint16_t HmacMd5 = 1, HmacSha1 = 2, HmacSha2_256 = 5, HmacSha2_384 = 6,
                               HmacSha2_512 = 7;
inline constexpr std::uint16_t PreserveNone = 1, PreserveSource = 2, PreserveDestination = 3,
                               PreserveSourceAndDestination = 4;
inline constexpr std::uint16_t SenderOnly = 1, ReceiverOnly = 2, Symmetric = 3;
}  // namespace ipsec_value

namespace kek_attr {  // RFC 6407 5.3, RFC 8263 2
inline constexpr std::uint16_t KekManagementAlgorithm = 1, KekAlgorithm = 2, KekKeyLength = 3,
                               KekKeyLifetime = 4, SigHashAlgorithm = 5, SigAlgorithm = 6,
                               SigKeyLength = 7, KekAckRequested = 9;
}
namespace kek_value {
inline constexpr std::uint16_t Lkh = 1;
inline constexpr std::uint16_t KekAlgDes = 1, KekAlg3des = 2, KekAlgAes = 3;
inline constexpr std::uint16_t SigHashMd5 = 1, SigHashSha1 = 2, SigHashSha256 = 3,
                               SigHashSha384 = 4, SigHashSha512 = 5;
inline constexpr std::uint16_t SigAlgRsa = 1, SigAlgDss = 2, SigAlgEcdss = 3, SigAlgEcdsa256 = 4,
                               SigAlgEcdsa384 = 5, SigAlgEcdsa521 = 6;
inline constexpr std::uint16_t RekeyAckKekSha256 = 1, RekeyAckLkhSha256 = 2;
}  // namespace kek_value

namespace gap_attr {  // RFC 6407 5.4
inline constexpr std::uint16_t ActivationTimeDelay = 1, DeactivationTimeDelay = 2,
                               SenderIdRequest = 3;
}
namespace tek_key_attr {  // RFC 6407 5.6.1
inline constexpr std::uint16_t TekAlgorithmKey = 1, TekIntegrityKey = 2, TekSourceAuthKey = 3;
}
namespace kek_key_attr {  // RFC 6407 5.6.2
inline constexpr std::uint16_t KekAlgorithmKey = 1, SigAlgorithmKey = 2;
}
namespace lkh_key_attr {  // RFC 6407 5.6.3
inline constexpr std::uint16_t LkhDownloadArray = 1, LkhUpdateArray = 2, SigAlgorithmKey = 3;
}
namespace sid_key_attr {  // RFC 6407 5.6.4
inline constexpr std::uint16_t NumberOfSidBits = 1, SidValue = 2;
}

}  // namespace covey::wire
