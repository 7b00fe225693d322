#include "wire/names.h"

#include "wire/constants.h"

namespace covey::wire {

namespace {
// covey's private attributes (gdoi/policy_codec.h, which wire cannot
// include: gdoi is built on wire), so that `coveyctl decode` names them.
namespace covey_private {
inline constexpr std::uint16_t AclAction = 32001, PortRanges = 32002, TbarWindowMs = 32003;  // IPsec SA
inline constexpr std::uint16_t FailCloseAcl = 200, PseudotimeMs = 201;                       // GAP
}  // namespace covey_private
}  // namespace

std::string with_number(std::string_view name, std::uint64_t value) {
  return std::string(name.empty() ? "unknown" : name) + " (" + std::to_string(value) + ")";
}

std::string_view doi_name(std::uint32_t doi) {
  switch (doi) {
    case 0: return "ISAKMP";
    case kDoiIpsec: return "IPsec";
    case kDoiGdoi: return "GDOI";
  }
  return {};
}

std::string_view protocol_id_name(std::uint8_t id) {
  switch (id) {
    case kProtoIsakmp: return "ISAKMP";
    case kProtoIpsecAh: return "AH";
    case kProtoIpsecEsp: return "ESP";
    case 4: return "IPCOMP";
  }
  return {};
}

std::string_view gdoi_protocol_name(std::uint8_t id) {
  switch (id) {
    case kGdoiProtoIpsecEsp: return "ESP";
    case kGdoiProtoIpsecAh: return "AH";
  }
  return {};
}

std::string_view ip_protocol_name(std::uint8_t proto) {
  switch (proto) {
    case 0: return "any";
    case 1: return "ICMP";
    case 6: return "TCP";
    case 17: return "UDP";
    case 47: return "GRE";
    case 50: return "ESP";
    case 51: return "AH";
    case 58: return "ICMPv6";
    case 89: return "OSPF";
    case 103: return "PIM";
    case 132: return "SCTP";
  }
  return {};
}

std::string_view id_type_name(std::uint8_t type) {
  switch (static_cast<IdType>(type)) {
    case IdType::Ipv4Addr: return "ID_IPV4_ADDR";
    case IdType::Fqdn: return "ID_FQDN";
    case IdType::UserFqdn: return "ID_USER_FQDN";
    case IdType::Ipv4AddrSubnet: return "ID_IPV4_ADDR_SUBNET";
    case IdType::Ipv6Addr: return "ID_IPV6_ADDR";
    case IdType::Ipv6AddrSubnet: return "ID_IPV6_ADDR_SUBNET";
    case IdType::Ipv4AddrRange: return "ID_IPV4_ADDR_RANGE";
    case IdType::Ipv6AddrRange: return "ID_IPV6_ADDR_RANGE";
    case IdType::DerAsn1Dn: return "ID_DER_ASN1_DN";
    case IdType::DerAsn1Gn: return "ID_DER_ASN1_GN";
    case IdType::KeyId: return "ID_KEY_ID";
  }
  return {};
}

std::string_view notify_type_name(std::uint16_t type) {
  switch (static_cast<NotifyType>(type)) {
    case NotifyType::InvalidPayloadType: return "INVALID-PAYLOAD-TYPE";
    case NotifyType::DoiNotSupported: return "DOI-NOT-SUPPORTED";
    case NotifyType::SituationNotSupported: return "SITUATION-NOT-SUPPORTED";
    case NotifyType::InvalidCookie: return "INVALID-COOKIE";
    case NotifyType::InvalidMajorVersion: return "INVALID-MAJOR-VERSION";
    case NotifyType::InvalidMinorVersion: return "INVALID-MINOR-VERSION";
    case NotifyType::InvalidExchangeType: return "INVALID-EXCHANGE-TYPE";
    case NotifyType::InvalidFlags: return "INVALID-FLAGS";
    case NotifyType::InvalidMessageId: return "INVALID-MESSAGE-ID";
    case NotifyType::InvalidProtocolId: return "INVALID-PROTOCOL-ID";
    case NotifyType::InvalidSpi: return "INVALID-SPI";
    case NotifyType::InvalidTransformId: return "INVALID-TRANSFORM-ID";
    case NotifyType::AttributesNotSupported: return "ATTRIBUTES-NOT-SUPPORTED";
    case NotifyType::NoProposalChosen: return "NO-PROPOSAL-CHOSEN";
    case NotifyType::BadProposalSyntax: return "BAD-PROPOSAL-SYNTAX";
    case NotifyType::PayloadMalformed: return "PAYLOAD-MALFORMED";
    case NotifyType::InvalidKeyInformation: return "INVALID-KEY-INFORMATION";
    case NotifyType::InvalidIdInformation: return "INVALID-ID-INFORMATION";
    case NotifyType::InvalidCertEncoding: return "INVALID-CERT-ENCODING";
    case NotifyType::InvalidCertificate: return "INVALID-CERTIFICATE";
    case NotifyType::CertTypeUnsupported: return "CERT-TYPE-UNSUPPORTED";
    case NotifyType::InvalidCertAuthority: return "INVALID-CERT-AUTHORITY";
    case NotifyType::InvalidHashInformation: return "INVALID-HASH-INFORMATION";
    case NotifyType::AuthenticationFailed: return "AUTHENTICATION-FAILED";
    case NotifyType::InvalidSignature: return "INVALID-SIGNATURE";
    case NotifyType::AddressNotification: return "ADDRESS-NOTIFICATION";
    case NotifyType::NotifySaLifetime: return "NOTIFY-SA-LIFETIME";
    case NotifyType::CertificateUnavailable: return "CERTIFICATE-UNAVAILABLE";
    case NotifyType::UnsupportedExchangeType: return "UNSUPPORTED-EXCHANGE-TYPE";
    case NotifyType::UnequalPayloadLengths: return "UNEQUAL-PAYLOAD-LENGTHS";
    case NotifyType::InitialContact: return "INITIAL-CONTACT";
  }
  switch (type) {  // RFC 2407 4.6.3
    case 24576: return "RESPONDER-LIFETIME";
    case 24577: return "REPLAY-STATUS";
  }
  return {};
}

std::string_view cert_encoding_name(std::uint8_t encoding) {
  switch (encoding) {
    case 1: return "PKCS #7 wrapped X.509";
    case 2: return "PGP";
    case 3: return "DNS signed key";
    case 4: return "X.509 signature";
    case 5: return "X.509 key exchange";
    case 6: return "Kerberos tokens";
    case 7: return "CRL";
    case 8: return "ARL";
    case 9: return "SPKI";
    case 10: return "X.509 attribute";
  }
  return {};
}

std::string_view key_packet_type_name(std::uint8_t type) {
  switch (static_cast<KeyPacketType>(type)) {
    case KeyPacketType::Tek: return "TEK";
    case KeyPacketType::Kek: return "KEK";
    case KeyPacketType::Lkh: return "LKH";
    case KeyPacketType::Sid: return "SID";
  }
  return {};
}

std::string_view esp_transform_name(std::uint8_t id) {
  switch (id) {
    case 1: return "DES-IV64";
    case 2: return "DES";
    case kEsp3des: return "3DES";
    case kEspNull: return "NULL";
    case kEspAes: return "AES-CBC";
    case 13: return "AES-CTR";
    case 18: return "AES-GCM-8";
    case 19: return "AES-GCM-12";
    case kEspAesGcm16: return "AES-GCM-16";
    case 21: return "NULL-AUTH-AES-GMAC";
  }
  return {};
}

std::string_view ah_transform_name(std::uint8_t id) {
  switch (id) {
    case 2: return "AH-MD5";
    case 3: return "AH-SHA";
    case 4: return "AH-DES";
    case 5: return "AH-SHA2-256";
    case 6: return "AH-SHA2-384";
    case 7: return "AH-SHA2-512";
  }
  return {};
}

std::string_view phase1_transform_name(std::uint8_t id) { return id == kTransformKeyIke ? "KEY_IKE" : ""; }

std::string_view attribute_name(AttributeSpace space, std::uint16_t type) {
  switch (space) {
    case AttributeSpace::Phase1Transform:
      switch (type) {
        case ike_attr::EncryptionAlgorithm: return "Encryption Algorithm";
        case ike_attr::HashAlgorithm: return "Hash Algorithm";
        case ike_attr::AuthenticationMethod: return "Authentication Method";
        case ike_attr::GroupDescription: return "Group Description";
        case ike_attr::GroupType: return "Group Type";
        case ike_attr::GroupPrime: return "Group Prime/Irreducible Polynomial";
        case ike_attr::GroupGeneratorOne: return "Group Generator One";
        case ike_attr::GroupGeneratorTwo: return "Group Generator Two";
        case ike_attr::GroupCurveA: return "Group Curve A";
        case ike_attr::GroupCurveB: return "Group Curve B";
        case ike_attr::LifeType: return "Life Type";
        case ike_attr::LifeDuration: return "Life Duration";
        case ike_attr::Prf: return "PRF";
        case ike_attr::KeyLength: return "Key Length";
        case ike_attr::FieldSize: return "Field Size";
        case ike_attr::GroupOrder: return "Group Order";
      }
      return {};
    case AttributeSpace::IpsecSa:
      switch (type) {
        case ipsec_attr::SaLifeType: return "SA Life Type";
        case ipsec_attr::SaLifeDuration: return "SA Life Duration";
        case ipsec_attr::GroupDescription: return "Group Description";
        case ipsec_attr::EncapsulationMode: return "Encapsulation";
        case ipsec_attr::AuthenticationAlgorithm: return "Authentication";
        case ipsec_attr::KeyLength: return "Key Length";
        case ipsec_attr::KeyRounds: return "Key Rounds";
        case ipsec_attr::CompressDictionarySize: return "Compress Dictionary Size";
        case ipsec_attr::CompressPrivateAlgorithm: return "Compress Private Algorithm";
        case ipsec_attr::EcnTunnel: return "ECN Tunnel";
        case ipsec_attr::ExtendedSequenceNumber: return "Extended Sequence Number";
        case ipsec_attr::AuthenticationKeyLength: return "Authentication Key Length";
        case ipsec_attr::SignatureEncoding: return "Signature Encoding";
        case ipsec_attr::AddressPreservation: return "Address Preservation";
        case ipsec_attr::SaDirection: return "SA Direction";
        case covey_private::AclAction: return "COVEY_ACL_ACTION";
        case covey_private::PortRanges: return "COVEY_PORT_RANGES";
        case covey_private::TbarWindowMs: return "COVEY_TBAR_WINDOW_MS";
      }
      return {};
    case AttributeSpace::Kek:
      switch (type) {
        case kek_attr::KekManagementAlgorithm: return "KEK_MANAGEMENT_ALGORITHM";
        case kek_attr::KekAlgorithm: return "KEK_ALGORITHM";
        case kek_attr::KekKeyLength: return "KEK_KEY_LENGTH";
        case kek_attr::KekKeyLifetime: return "KEK_KEY_LIFETIME";
        case kek_attr::SigHashAlgorithm: return "SIG_HASH_ALGORITHM";
        case kek_attr::SigAlgorithm: return "SIG_ALGORITHM";
        case kek_attr::SigKeyLength: return "SIG_KEY_LENGTH";
        case kek_attr::KekAckRequested: return "GROUPKEY_PUSH_ACK_REQUESTED";  // RFC 8263
      }
      return {};
    case AttributeSpace::Gap:
      switch (type) {
        case gap_attr::ActivationTimeDelay: return "ACTIVATION_TIME_DELAY";
        case gap_attr::DeactivationTimeDelay: return "DEACTIVATION_TIME_DELAY";
        case gap_attr::SenderIdRequest: return "SENDER_ID_REQUEST";
        case covey_private::FailCloseAcl: return "COVEY_FAIL_CLOSE_ACL";
        case covey_private::PseudotimeMs: return "COVEY_PSEUDOTIME_MS";
      }
      return {};
    case AttributeSpace::TekKey:
      switch (type) {
        case tek_key_attr::TekAlgorithmKey: return "TEK_ALGORITHM_KEY";
        case tek_key_attr::TekIntegrityKey: return "TEK_INTEGRITY_KEY";
        case tek_key_attr::TekSourceAuthKey: return "TEK_SOURCE_AUTH_KEY";
      }
      return {};
    case AttributeSpace::KekKey:
      switch (type) {
        case kek_key_attr::KekAlgorithmKey: return "KEK_ALGORITHM_KEY";
        case kek_key_attr::SigAlgorithmKey: return "SIG_ALGORITHM_KEY";
      }
      return {};
    case AttributeSpace::LkhKey:
      switch (type) {
        case lkh_key_attr::LkhDownloadArray: return "LKH_DOWNLOAD_ARRAY";
        case lkh_key_attr::LkhUpdateArray: return "LKH_UPDATE_ARRAY";
        case lkh_key_attr::SigAlgorithmKey: return "SIG_ALGORITHM_KEY";
      }
      return {};
    case AttributeSpace::SidKey:
      switch (type) {
        case sid_key_attr::NumberOfSidBits: return "NUMBER_OF_SID_BITS";
        case sid_key_attr::SidValue: return "SID_VALUE";
      }
      return {};
  }
  return {};
}

namespace {

std::string_view dh_group_name(std::uint32_t group) {  // IANA IKE group descriptions
  switch (group) {
    case 1: return "MODP-768";
    case 2: return "MODP-1024";
    case 5: return "MODP-1536";
    case 14: return "MODP-2048";
    case 15: return "MODP-3072";
    case 16: return "MODP-4096";
    case 19: return "ECP-256";
    case 20: return "ECP-384";
    case 21: return "ECP-521";
  }
  return {};
}

std::string_view phase1_values(std::uint16_t type, std::uint32_t v) {
  switch (type) {
    case ike_attr::EncryptionAlgorithm:
      switch (v) {
        case ike_value::Des: return "DES-CBC";
        case ike_value::TripleDes: return "3DES-CBC";
        case ike_value::AesCbc: return "AES-CBC";
      }
      return {};
    case ike_attr::HashAlgorithm:
      switch (v) {
        case ike_value::Md5: return "MD5";
        case ike_value::Sha1: return "SHA-1";
        case ike_value::Sha256: return "SHA2-256";
        case ike_value::Sha384: return "SHA2-384";
        case 6: return "SHA2-512";
      }
      return {};
    case ike_attr::AuthenticationMethod:
      switch (v) {
        case ike_value::PreSharedKey: return "Pre-Shared Key";
        case 2: return "DSS signatures";
        case ike_value::RsaSignature: return "RSA signatures";
        case ike_value::EcdsaSha256: return "ECDSA-SHA256";
        case ike_value::EcdsaSha384: return "ECDSA-SHA384";
      }
      return {};
    case ike_attr::GroupDescription: return dh_group_name(v);
    case ike_attr::LifeType:
      switch (v) {
        case ike_value::LifeSeconds: return "seconds";
        case ike_value::LifeKilobytes: return "kilobytes";
      }
      return {};
  }
  return {};
}

std::string_view ipsec_values(std::uint16_t type, std::uint32_t v) {
  using namespace ipsec_value;
  switch (type) {
    case ipsec_attr::SaLifeType:
      return v == LifeSeconds ? "seconds" : v == LifeKilobytes ? "kilobytes" : "";
    case ipsec_attr::GroupDescription: return dh_group_name(v);
    case ipsec_attr::EncapsulationMode:
      return v == Tunnel ? "Tunnel" : v == Transport ? "Transport" : "";
    case ipsec_attr::AuthenticationAlgorithm:
      switch (v) {
        case HmacMd5: return "HMAC-MD5";
        case HmacSha1: return "HMAC-SHA";
        case 3: return "DES-MAC";
        case 4: return "KPDK";
        case HmacSha2_256: return "HMAC-SHA2-256";
        case HmacSha2_384: return "HMAC-SHA2-384";
        case HmacSha2_512: return "HMAC-SHA2-512";
        case 11: return "AES-XCBC-MAC";
      }
      return {};
    case ipsec_attr::AddressPreservation:
      switch (v) {
        case PreserveNone: return "None";
        case PreserveSource: return "Source-Only";
        case PreserveDestination: return "Destination-Only";
        case PreserveSourceAndDestination: return "Source-and-Destination";
      }
      return {};
    case ipsec_attr::SaDirection:
      switch (v) {
        case SenderOnly: return "Sender-Only";
        case ReceiverOnly: return "Receiver-Only";
        case Symmetric: return "Symmetric";
      }
      return {};
    case covey_private::AclAction: return v == 1 ? "encrypt" : v == 2 ? "bypass" : "";
  }
  return {};
}

std::string_view kek_values(std::uint16_t type, std::uint32_t v) {
  using namespace kek_value;
  switch (type) {
    case kek_attr::KekManagementAlgorithm: return v == Lkh ? "LKH" : "";
    case kek_attr::KekAlgorithm:
      switch (v) {
        case KekAlgDes: return "KEK_ALG_DES";
        case KekAlg3des: return "KEK_ALG_3DES";
        case KekAlgAes: return "KEK_ALG_AES";
      }
      return {};
    case kek_attr::SigHashAlgorithm:
      switch (v) {
        case SigHashMd5: return "SIG_HASH_MD5";
        case SigHashSha1: return "SIG_HASH_SHA1";
        case SigHashSha256: return "SIG_HASH_SHA256";
        case SigHashSha384: return "SIG_HASH_SHA384";
        case SigHashSha512: return "SIG_HASH_SHA512";
      }
      return {};
    case kek_attr::SigAlgorithm:
      switch (v) {
        case SigAlgRsa: return "SIG_ALG_RSA";
        case SigAlgDss: return "SIG_ALG_DSS";
        case SigAlgEcdss: return "SIG_ALG_ECDSS";
        case SigAlgEcdsa256: return "SIG_ALG_ECDSA_256";
        case SigAlgEcdsa384: return "SIG_ALG_ECDSA_384";
        case SigAlgEcdsa521: return "SIG_ALG_ECDSA_521";
      }
      return {};
    case kek_attr::KekAckRequested:
      switch (v) {
        case RekeyAckKekSha256: return "ACK_KEK_SHA256";
        case RekeyAckLkhSha256: return "ACK_LKH_SHA256";
      }
      return {};
  }
  return {};
}

}  // namespace

std::string_view attribute_value_name(AttributeSpace space, std::uint16_t type, std::uint32_t value) {
  switch (space) {
    case AttributeSpace::Phase1Transform: return phase1_values(type, value);
    case AttributeSpace::IpsecSa: return ipsec_values(type, value);
    case AttributeSpace::Kek: return kek_values(type, value);
    default: return {};  // GAP and key packet attributes are numbers and keys, not enumerations
  }
}

}  // namespace covey::wire
