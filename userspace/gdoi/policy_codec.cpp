#include "gdoi/policy_codec.h"

#include <algorithm>
#include <cstdio>

#include "crypto/cipher.h"
#include "wire/buffer.h"
#include "wire/names.h"

namespace covey::gdoi {

using namespace wire;
using crypto::CipherAlgorithm;
using crypto::Error;
using crypto::HashAlgorithm;

std::size_t tek_encryption_key_size(TekTransform::Cipher c) {
  switch (c) {
    case TekTransform::Cipher::Aes128Cbc: return 16;
    case TekTransform::Cipher::Aes256Cbc: return 32;
    case TekTransform::Cipher::TripleDesCbc: return 24;
    case TekTransform::Cipher::AesGcm128: return 16 + 4;  // RFC 4106 8.1: key and salt
    case TekTransform::Cipher::AesGcm256: return 32 + 4;
  }
  return 0;
}

std::size_t tek_integrity_key_size(TekTransform::Integrity i) {
  switch (i) {
    case TekTransform::Integrity::None: return 0;
    case TekTransform::Integrity::HmacSha1_96: return 20;     // RFC 2404
    case TekTransform::Integrity::HmacSha256_128: return 32;  // RFC 4868
  }
  return 0;
}

namespace {

std::string spi_hex(std::uint32_t spi) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08X", spi);
  return b;
}

GroupIdentity address_id(const Address& a, std::uint16_t port) {
  GroupIdentity id;
  id.type = static_cast<std::uint8_t>(a.family == 4 ? IdType::Ipv4Addr : IdType::Ipv6Addr);
  id.port = port;
  id.data.assign(a.bytes.begin(), a.bytes.begin() + static_cast<std::ptrdiff_t>(a.size()));
  return id;
}

GroupIdentity prefix_id(const Prefix& p, std::uint16_t port) {
  GroupIdentity id;
  std::size_t n = p.family == 4 ? 4 : 16;
  // A host goes as ID_IPV4_ADDR / ID_IPV6_ADDR (RFC 2407 4.6.2), the plain
  // form for one address; members that take only an address as DST, as
  // gdoid does (GDOI's multicast group address), can then read it.
  if (p.length == n * 8) {
    Address a;
    a.family = p.family;
    a.bytes = p.address;
    return address_id(a, port);
  }
  id.type = static_cast<std::uint8_t>(p.family == 4 ? IdType::Ipv4AddrSubnet : IdType::Ipv6AddrSubnet);
  id.port = port;
  id.data.assign(p.address.begin(), p.address.begin() + static_cast<std::ptrdiff_t>(n));
  for (std::size_t i = 0; i < n; ++i) {
    unsigned bits = p.length > i * 8 ? std::min<unsigned>(8, p.length - static_cast<unsigned>(i * 8)) : 0;
    id.data.push_back(static_cast<std::uint8_t>(0xff00u >> bits));
  }
  return id;
}

// An address range (RFC 2407 4.6.2.7, 4.6.2.8: first and last address, as
// IOS and gdoid may send them) as the one prefix it spans. covey's ACL
// entries are prefixes, so a range that is not one is refused rather than
// split: split, one entry would become several and the member would
// enforce a policy of another shape than the key server's.
crypto::Result<Prefix> range_prefix(const GroupIdentity& id, const char* which) {
  Prefix p;
  p.family = static_cast<IdType>(id.type) == IdType::Ipv4AddrRange ? 4 : 6;
  const std::size_t n = id.data.size() / 2;
  ByteView first(id.data.data(), n), last(id.data.data() + n, n);
  auto text = [&] {
    Address a, b;
    a.family = b.family = p.family;
    std::copy(first.begin(), first.end(), a.bytes.begin());
    std::copy(last.begin(), last.end(), b.bytes.begin());
    return std::string(which) + " " + std::string(id_type_name(id.type)) + " " + a.str() + "-" + b.str();
  };
  auto bit = [](ByteView v, std::size_t i) { return (v[i / 8] >> (7 - i % 8)) & 1; };
  std::size_t len = 0;
  while (len < n * 8 && bit(first, len) == bit(last, len)) ++len;
  for (std::size_t i = len; i < n * 8; ++i)
    if (bit(first, i) != 0 || bit(last, i) != 1) {
      if (!std::lexicographical_compare(first.begin(), first.end(), last.begin(), last.end()))
        return Error{text() + ": the first address is above the last"};
      return Error{text() +
                   " is not one prefix, and covey's ACL entries are prefixes: "
                   "write the key server's ACL with prefixes (or split the range into them)"};
    }
  std::copy(first.begin(), first.end(), p.address.begin());
  p.length = static_cast<std::uint8_t>(len);
  return p;
}

crypto::Result<Prefix> id_prefix(const GroupIdentity& id, const char* which) {
  Prefix p;
  auto t = static_cast<IdType>(id.type);
  if (t == IdType::Ipv4Addr || t == IdType::Ipv6Addr) {
    p.family = t == IdType::Ipv4Addr ? 4 : 6;
    std::copy(id.data.begin(), id.data.end(), p.address.begin());
    p.length = static_cast<std::uint8_t>(id.data.size() * 8);
    return p;
  }
  if (t == IdType::Ipv4AddrRange || t == IdType::Ipv6AddrRange) return range_prefix(id, which);
  if (t != IdType::Ipv4AddrSubnet && t != IdType::Ipv6AddrSubnet)
    return Error{std::string(which) + " ID type " + std::to_string(id.type) + " is not an address or subnet"};
  p.family = t == IdType::Ipv4AddrSubnet ? 4 : 6;
  std::size_t n = id.data.size() / 2;
  std::copy(id.data.begin(), id.data.begin() + static_cast<std::ptrdiff_t>(n), p.address.begin());
  unsigned len = 0;
  bool ended = false;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint8_t m = id.data[n + i];
    for (int b = 7; b >= 0; --b) {
      bool set = (m >> b) & 1;
      if (set && ended) return Error{std::string(which) + " subnet mask is not contiguous"};
      if (set) ++len;
      else ended = true;
    }
    p.address[i] &= m;
  }
  p.length = static_cast<std::uint8_t>(len);
  return p;
}

std::uint16_t single_port(const PortRange& r) { return r.first == r.last ? r.first : 0; }
bool needs_range(const PortRange& r) { return !r.is_any() && r.first != r.last; }

Bytes u32_bytes(std::uint32_t v) {
  Bytes b;
  Writer w(b);
  w.u32(v);
  return b;
}

// 48 octets an entry: action, protocol, family, src len, dst len, 3 zero,
// src (16), dst (16) and the four ports: 1+1+1+1+1+3 = 8, +32, +8 = 48.
constexpr std::size_t kAclRecord = 48;

Bytes encode_acl_records(const std::vector<AclEntry>& acl) {
  Bytes b;
  Writer w(b);
  for (const auto& e : acl) {
    w.u8(e.action == AclEntry::Action::Permit ? covey_attr::ActionEncrypt : covey_attr::ActionBypass);
    w.u8(e.protocol);
    w.u8(e.source.family);
    w.u8(e.source.length);
    w.u8(e.destination.length);
    w.u8(0);
    w.u16(0);
    w.bytes(e.source.address);
    w.bytes(e.destination.address);
    w.u16(e.source_port.first);
    w.u16(e.source_port.last);
    w.u16(e.destination_port.first);
    w.u16(e.destination_port.last);
  }
  return b;
}

crypto::Result<std::vector<AclEntry>> decode_acl_records(ByteView v) {
  if (v.size() % kAclRecord != 0)
    return Error{"GAP COVEY_FAIL_CLOSE_ACL length " + std::to_string(v.size()) + " is not a whole number of entries"};
  std::vector<AclEntry> out;
  Reader r(v, 0);
  while (!r.empty()) {
    AclEntry e;
    std::uint8_t action = *r.u8();
    if (action != covey_attr::ActionEncrypt && action != covey_attr::ActionBypass)
      return Error{"GAP COVEY_FAIL_CLOSE_ACL action " + std::to_string(action)};
    e.action = action == covey_attr::ActionEncrypt ? AclEntry::Action::Permit : AclEntry::Action::Deny;
    e.protocol = *r.u8();
    e.source.family = e.destination.family = *r.u8();
    e.source.length = *r.u8();
    e.destination.length = *r.u8();
    r.take(3);
    unsigned max = e.source.family == 4 ? 32 : 128;
    if ((e.source.family != 4 && e.source.family != 6) || e.source.length > max || e.destination.length > max)
      return Error{"GAP COVEY_FAIL_CLOSE_ACL entry " + std::to_string(out.size() + 1) + " has a bad prefix"};
    auto s = r.take(16);
    auto d = r.take(16);
    std::copy(s->begin(), s->end(), e.source.address.begin());
    std::copy(d->begin(), d->end(), e.destination.address.begin());
    e.source_port = {*r.u16(), *r.u16()};
    e.destination_port = {*r.u16(), *r.u16()};
    out.push_back(e);
  }
  return out;
}

std::uint16_t kek_alg(CipherAlgorithm c) {
  return c == CipherAlgorithm::TripleDesCbc ? kek_value::KekAlg3des : kek_value::KekAlgAes;
}

}  // namespace

std::uint32_t features_needed(const GroupPolicy& p) {
  std::uint32_t need = 0;
  for (const AclEntry& e : p.acl) {
    if (e.action == AclEntry::Action::Deny) need |= covey_feature::AclAction;
    if (needs_range(e.source_port) || needs_range(e.destination_port)) need |= covey_feature::PortRanges;
  }
  if (p.tbar_window_ms) need |= covey_feature::Tbar;
  if (!p.fail_close_acl.empty()) need |= covey_feature::FailCloseAcl;
  return need;
}

GroupSaPayload encode_group_sa(const GroupPolicy& policy, const std::optional<KekAnnouncement>& kek,
                               const std::vector<Tek>& teks, bool with_gap, PeerTraits peer,
                               std::optional<std::uint32_t> pseudotime_ms) {
  GroupSaPayload sa;
  if (kek) {
    SaKekPayload k;
    k.protocol = 17;
    k.src = address_id(kek->source, 848);
    if (policy.rekey.mode == RekeyTransport::Mode::Multicast) {
      Address group;
      group.family = policy.rekey.multicast_address.family;
      group.bytes = policy.rekey.multicast_address.address;
      k.dst = address_id(group, policy.rekey.port);
    } else {
      Address none;
      none.family = kek->source.family;
      k.dst = address_id(none, policy.rekey.port);  // unicast: each member's own address
    }
    k.spi = kek->spi;
    const KekPolicy& p = policy.kek;
    std::uint16_t bits = static_cast<std::uint16_t>(crypto::key_size(p.cipher) * 8);
    std::uint16_t sig = p.signature == KekPolicy::Signature::Rsa         ? kek_value::SigAlgRsa
                        : p.signature == KekPolicy::Signature::EcdsaP256 ? kek_value::SigAlgEcdsa256
                                                                         : kek_value::SigAlgEcdsa384;
    std::uint16_t hash = p.signature_hash == HashAlgorithm::Sha1     ? kek_value::SigHashSha1
                         : p.signature_hash == HashAlgorithm::Sha256 ? kek_value::SigHashSha256
                                                                     : kek_value::SigHashSha384;
    k.attributes = {Attribute::tv(kek_attr::KekAlgorithm, kek_alg(p.cipher)),
                    Attribute::tv(kek_attr::KekKeyLength, bits),
                    Attribute::tlv(kek_attr::KekKeyLifetime, u32_bytes(kek->remaining_s)),
                    Attribute::tv(kek_attr::SigHashAlgorithm, hash),
                    Attribute::tv(kek_attr::SigAlgorithm, sig),
                    Attribute::tv(kek_attr::SigKeyLength, p.signature_key_bits)};
    if (policy.rekey.mode == RekeyTransport::Mode::Unicast)
      k.attributes.push_back(Attribute::tv(kek_attr::KekAckRequested, kek_value::RekeyAckKekSha256));
    sa.kek = std::move(k);
  }
  if (with_gap) {
    GapPayload gap;
    gap.attributes = {Attribute::tv(gap_attr::ActivationTimeDelay, static_cast<std::uint16_t>(std::min<std::uint32_t>(policy.activation_delay_s, 0xffff))),
                      Attribute::tv(gap_attr::DeactivationTimeDelay, static_cast<std::uint16_t>(std::min<std::uint32_t>(policy.deactivation_delay_s, 0xffff)))};
    if (peer.has(covey_feature::FailCloseAcl) && !policy.fail_close_acl.empty())
      gap.attributes.push_back(Attribute::tlv(covey_attr::FailCloseAcl, encode_acl_records(policy.fail_close_acl)));
    // The clock only matters to a member that checks TBAR stamps; without
    // a window it would be a reading of the key server's clock for nothing.
    if (peer.has(covey_feature::Tbar) && policy.tbar_window_ms && pseudotime_ms)
      gap.attributes.push_back(Attribute::tlv(covey_attr::PseudotimeMs, u32_bytes(*pseudotime_ms)));
    sa.gap = std::move(gap);
  }
  const TekTransform& t = policy.tek;
  for (const Tek& tek : teks) {
    for (const AclEntry& e : policy.acl) {
      // A deny entry a member reads wider than it is (a port range read as
      // any port) would send in clear what the policy encrypts: not sent.
      const bool ranged = needs_range(e.source_port) || needs_range(e.destination_port);
      if (e.action == AclEntry::Action::Deny &&
          (!peer.has(covey_feature::AclAction) || (ranged && !peer.has(covey_feature::PortRanges))))
        continue;
      SaTekPayload s;
      s.protocol_id = kGdoiProtoIpsecEsp;
      s.protocol = e.protocol;
      s.src = prefix_id(e.source, single_port(e.source_port));
      s.dst = prefix_id(e.destination, single_port(e.destination_port));
      s.spi = tek.spi;
      Attributes& a = s.attributes;
      a.push_back(Attribute::tv(ipsec_attr::SaLifeType, ipsec_value::LifeSeconds));
      a.push_back(Attribute::number(ipsec_attr::SaLifeDuration, tek.lifetime_s));
      a.push_back(Attribute::tv(ipsec_attr::EncapsulationMode, ipsec_value::Tunnel));
      switch (t.cipher) {
        case TekTransform::Cipher::Aes128Cbc:
        case TekTransform::Cipher::Aes256Cbc:
          s.transform_id = kEspAes;
          a.push_back(Attribute::tv(ipsec_attr::KeyLength, t.cipher == TekTransform::Cipher::Aes128Cbc ? 128 : 256));
          break;
        case TekTransform::Cipher::TripleDesCbc:
          s.transform_id = kEsp3des;
          break;
        case TekTransform::Cipher::AesGcm128:
        case TekTransform::Cipher::AesGcm256:
          s.transform_id = kEspAesGcm16;
          a.push_back(Attribute::tv(ipsec_attr::KeyLength, t.cipher == TekTransform::Cipher::AesGcm128 ? 128 : 256));
          break;
      }
      if (t.integrity != TekTransform::Integrity::None)
        a.push_back(Attribute::tv(ipsec_attr::AuthenticationAlgorithm,
                                  t.integrity == TekTransform::Integrity::HmacSha1_96 ? ipsec_value::HmacSha1 : ipsec_value::HmacSha2_256));
      a.push_back(Attribute::tv(ipsec_attr::AddressPreservation, ipsec_value::PreserveSourceAndDestination));
      a.push_back(Attribute::tv(ipsec_attr::SaDirection, ipsec_value::Symmetric));
      if (peer.has(covey_feature::AclAction))
        a.push_back(Attribute::tv(covey_attr::AclAction, e.action == AclEntry::Action::Permit ? covey_attr::ActionEncrypt : covey_attr::ActionBypass));
      if (peer.has(covey_feature::PortRanges) && ranged) {
        Bytes r;
        Writer w(r);
        w.u16(e.source_port.first);
        w.u16(e.source_port.last);
        w.u16(e.destination_port.first);
        w.u16(e.destination_port.last);
        a.push_back(Attribute::tlv(covey_attr::PortRanges, r));
      }
      if (peer.has(covey_feature::Tbar) && policy.tbar_window_ms)
        a.push_back(Attribute::tlv(covey_attr::TbarWindowMs, u32_bytes(*policy.tbar_window_ms)));
      sa.teks.push_back(std::move(s));
    }
  }
  return sa;
}

KeyDownloadPayload encode_key_download(const KeyMaterial& keys) {
  KeyDownloadPayload kd;
  for (const Tek& t : keys.teks) {
    KeyPacket p;
    p.type = static_cast<std::uint8_t>(KeyPacketType::Tek);
    p.spi = u32_bytes(t.spi);
    p.attributes.push_back(Attribute::tlv(tek_key_attr::TekAlgorithmKey, Bytes(t.encryption_key.view().begin(), t.encryption_key.view().end())));
    if (!t.integrity_key.empty())
      p.attributes.push_back(Attribute::tlv(tek_key_attr::TekIntegrityKey, Bytes(t.integrity_key.view().begin(), t.integrity_key.view().end())));
    kd.packets.push_back(std::move(p));
  }
  if (keys.kek) {
    KeyPacket p;
    p.type = static_cast<std::uint8_t>(KeyPacketType::Kek);
    p.spi.assign(keys.kek->spi.begin(), keys.kek->spi.end());
    p.attributes.push_back(Attribute::tlv(kek_key_attr::KekAlgorithmKey, Bytes(keys.kek->algorithm_key.view().begin(), keys.kek->algorithm_key.view().end())));
    p.attributes.push_back(Attribute::tlv(kek_key_attr::SigAlgorithmKey, keys.kek->signature_public_key));
    kd.packets.push_back(std::move(p));
  }
  if (!keys.sids.empty()) {
    KeyPacket p;
    p.type = static_cast<std::uint8_t>(KeyPacketType::Sid);
    p.attributes.push_back(Attribute::tv(sid_key_attr::NumberOfSidBits, keys.sid_bits));
    for (std::uint32_t sid : keys.sids) p.attributes.push_back(Attribute::tlv(sid_key_attr::SidValue, u32_bytes(sid)));
    kd.packets.push_back(std::move(p));
  }
  return kd;
}

// ------------------------------------------------------------- decoding

namespace {

crypto::Result<TekTransform> tek_transform(const SaTekPayload& s) {
  std::string at = "SA TEK SPI " + spi_hex(s.spi) + ": ";
  if (s.protocol_id != kGdoiProtoIpsecEsp)
    return Error{at + "Protocol-ID " + std::to_string(s.protocol_id) + " (AH): covey installs ESP group SAs only"};
  const Attribute* key_len = find(s.attributes, ipsec_attr::KeyLength);
  const Attribute* auth = find(s.attributes, ipsec_attr::AuthenticationAlgorithm);
  TekTransform t;
  switch (s.transform_id) {
    case kEspAes: {
      auto bits = key_len ? key_len->as_u32() : std::nullopt;
      if (bits == 128u) t.cipher = TekTransform::Cipher::Aes128Cbc;
      else if (bits == 256u) t.cipher = TekTransform::Cipher::Aes256Cbc;
      else return Error{at + "ESP_AES with Key Length " + (bits ? std::to_string(*bits) : std::string("absent")) + " (128 or 256 needed)"};
      break;
    }
    case kEsp3des: t.cipher = TekTransform::Cipher::TripleDesCbc; break;
    case kEspAesGcm16:
      return Error{at + "ESP_AES_GCM_16 refused: RFC 6407 3.5 requires each sender's SID in the GCM IV (RFC 6054), "
                         "and the Linux kernel's GCM IV (seqiv) cannot carry it; ask the key server for AES-CBC with HMAC"};
    default: return Error{at + "ESP transform " + std::to_string(s.transform_id) + " is not supported (AES-CBC, 3DES)"};
  }
  if (!auth) return Error{at + "no Authentication Algorithm: ESP without integrity is refused"};
  auto a = auth->as_u32();
  if (a == ipsec_value::HmacSha1) t.integrity = TekTransform::Integrity::HmacSha1_96;
  else if (a == ipsec_value::HmacSha2_256) t.integrity = TekTransform::Integrity::HmacSha256_128;
  else return Error{at + "Authentication Algorithm " + std::to_string(a.value_or(0)) + " is not supported (HMAC-SHA1, HMAC-SHA2-256)"};
  return t;
}

struct TekPolicyEntry {
  AclEntry entry;
  std::uint32_t lifetime_s = 0;
  std::optional<std::uint32_t> tbar;
};

crypto::Result<TekPolicyEntry> tek_entry(const SaTekPayload& s) {
  std::string at = "SA TEK SPI " + spi_hex(s.spi) + ": ";
  TekPolicyEntry out;
  AclEntry& e = out.entry;
  e.protocol = s.protocol;
  auto src = id_prefix(s.src, "SRC");
  if (!src) return Error{at + src.error()};
  auto dst = id_prefix(s.dst, "DST");
  if (!dst) return Error{at + dst.error()};
  // One entry matches one family (a Cisco ACL line is ip or ipv6).
  if (src->family != dst->family)
    return Error{at + "SRC is IPv" + std::to_string(src->family) + " and DST IPv" +
                 std::to_string(dst->family) + ": an entry's addresses must be of one family"};
  e.source = *src;
  e.destination = *dst;
  if (s.src.port) e.source_port = {s.src.port, s.src.port};
  if (s.dst.port) e.destination_port = {s.dst.port, s.dst.port};
  std::optional<std::uint32_t> life_type;
  for (const Attribute& a : s.attributes) {
    auto v = a.as_u32();
    switch (a.type) {
      case ipsec_attr::SaLifeType: life_type = v; break;
      case ipsec_attr::SaLifeDuration:
        if (!v) return Error{at + "SA Life Duration longer than 32 bits"};
        if (life_type == ipsec_value::LifeSeconds) out.lifetime_s = *v;
        break;
      case ipsec_attr::EncapsulationMode:
        if (v != ipsec_value::Tunnel) return Error{at + "Encapsulation Mode " + std::to_string(v.value_or(0)) + ": covey's group SAs are tunnel mode with address preservation"};
        break;
      case ipsec_attr::AddressPreservation:
        if (v != ipsec_value::PreserveSourceAndDestination)
          return Error{at + "Address Preservation " + std::to_string(v.value_or(0)) + ": covey preserves source and destination only"};
        break;
      case ipsec_attr::SaDirection:
        if (v != ipsec_value::Symmetric) return Error{at + "SA Direction " + std::to_string(v.value_or(0)) + ": covey installs symmetric group SAs only"};
        break;
      case ipsec_attr::KeyLength:
      case ipsec_attr::AuthenticationAlgorithm:
      case ipsec_attr::GroupDescription:  // RFC 6407 5.5.1: ignored if received
        break;
      case covey_attr::AclAction:
        if (v == covey_attr::ActionBypass) e.action = AclEntry::Action::Deny;
        else if (v != covey_attr::ActionEncrypt) return Error{at + "COVEY_ACL_ACTION " + std::to_string(v.value_or(0))};
        break;
      case covey_attr::PortRanges: {
        if (a.basic || a.value.size() != 8) return Error{at + "COVEY_PORT_RANGES must be 8 octets"};
        Reader r(a.value, 0);
        e.source_port = {*r.u16(), *r.u16()};
        e.destination_port = {*r.u16(), *r.u16()};
        if (e.source_port.first > e.source_port.last || e.destination_port.first > e.destination_port.last)
          return Error{at + "COVEY_PORT_RANGES has a range whose first port is above its last"};
        break;
      }
      case covey_attr::TbarWindowMs:
        if (!v) return Error{at + "COVEY_TBAR_WINDOW_MS must be a 32-bit number"};
        out.tbar = v;
        break;
      default:
        return Error{at + "SA attribute class " + std::to_string(a.type) + " is not understood (RFC 6407 requires refusing it)"};
    }
  }
  if (life_type && *life_type != ipsec_value::LifeSeconds)
    return Error{at + "SA Life Type " + std::to_string(*life_type) + ": covey needs a lifetime in seconds"};
  if (out.lifetime_s == 0) return Error{at + "no SA Life Duration in seconds"};
  return out;
}

}  // namespace

crypto::Result<CipherAlgorithm> kek_cipher(std::optional<std::uint32_t> alg, std::optional<std::uint32_t> bits) {
  if (alg == kek_value::KekAlgAes && bits == 128u) return CipherAlgorithm::Aes128Cbc;
  if (alg == kek_value::KekAlgAes && (bits == 256u || !bits)) return CipherAlgorithm::Aes256Cbc;
  if (alg == kek_value::KekAlg3des) return CipherAlgorithm::TripleDesCbc;
  return Error{"KEK_ALGORITHM " + std::to_string(alg.value_or(0)) + " with KEK_KEY_LENGTH " +
               std::to_string(bits.value_or(0)) + " is not supported (AES-128, AES-256, 3DES)"};
}

crypto::Result<ReceivedSa> decode_group_sa(const GroupSaPayload& sa) {
  ReceivedSa out;
  GroupPolicy& p = out.policy;
  if (sa.kek) {
    const SaKekPayload& k = *sa.kek;
    out.kek_spi = k.spi;
    std::optional<std::uint32_t> alg, bits, sig, hash, sig_bits, ack;
    for (const Attribute& a : k.attributes) {
      auto v = a.as_u32();
      switch (a.type) {
        case kek_attr::KekManagementAlgorithm: break;  // RFC 6407 5.3: ignored in GROUPKEY-PULL
        case kek_attr::KekAlgorithm: alg = v; break;
        case kek_attr::KekKeyLength: bits = v; break;
        case kek_attr::KekKeyLifetime:
          if (!v) return Error{"SA KEK: KEK_KEY_LIFETIME longer than 32 bits"};
          out.kek_remaining_s = *v;
          break;
        case kek_attr::SigHashAlgorithm: hash = v; break;
        case kek_attr::SigAlgorithm: sig = v; break;
        case kek_attr::SigKeyLength: sig_bits = v; break;
        case kek_attr::KekAckRequested: ack = v; break;
        default: return Error{"SA KEK: attribute class " + std::to_string(a.type) + " is not understood (RFC 6407 5.3.2: abort)"};
      }
    }
    auto cipher = kek_cipher(alg, bits);
    if (!cipher) return Error{"SA KEK: " + cipher.error()};
    p.kek.cipher = *cipher;
    if (sig == kek_value::SigAlgRsa) p.kek.signature = KekPolicy::Signature::Rsa;
    else if (sig == kek_value::SigAlgEcdsa256) p.kek.signature = KekPolicy::Signature::EcdsaP256;
    else if (sig == kek_value::SigAlgEcdsa384) p.kek.signature = KekPolicy::Signature::EcdsaP384;
    else return Error{"SA KEK: SIG_ALGORITHM " + std::to_string(sig.value_or(0)) + " is not supported (RSA, ECDSA-256, ECDSA-384)"};
    if (hash == kek_value::SigHashSha1 || !hash) p.kek.signature_hash = HashAlgorithm::Sha1;  // RFC 6407 5.3.5 default
    else if (hash == kek_value::SigHashSha256) p.kek.signature_hash = HashAlgorithm::Sha256;
    else if (hash == kek_value::SigHashSha384) p.kek.signature_hash = HashAlgorithm::Sha384;
    else return Error{"SA KEK: SIG_HASH_ALGORITHM " + std::to_string(*hash) + " is not supported (SHA-1, SHA-256, SHA-384)"};
    p.kek.signature_key_bits = static_cast<std::uint16_t>(sig_bits.value_or(0));
    p.kek.lifetime_s = out.kek_remaining_s;
    auto dst = id_prefix(k.dst, "SA KEK DST");
    bool multicast = false;
    if (dst && dst->family == 4) multicast = (dst->address[0] & 0xf0) == 0xe0;
    if (dst && dst->family == 6) multicast = dst->address[0] == 0xff;
    if (multicast) {
      p.rekey.mode = RekeyTransport::Mode::Multicast;
      p.rekey.multicast_address = *dst;
    } else {
      p.rekey.mode = RekeyTransport::Mode::Unicast;
    }
    p.rekey.port = k.dst.port ? k.dst.port : 848;
    if (ack && *ack != kek_value::RekeyAckKekSha256)
      return Error{"SA KEK: KEK_ACK_REQUESTED " + std::to_string(*ack) + " is not supported (REKEY_ACK_KEK_SHA256)"};
  }
  if (sa.gap) {
    for (const Attribute& a : sa.gap->attributes) {
      auto v = a.as_u32();
      switch (a.type) {
        case gap_attr::ActivationTimeDelay: p.activation_delay_s = v.value_or(0); break;
        case gap_attr::DeactivationTimeDelay: p.deactivation_delay_s = v.value_or(0); break;
        case covey_attr::FailCloseAcl: {
          auto acl = decode_acl_records(a.value);
          if (!acl) return Error{acl.error()};
          p.fail_close_acl = std::move(*acl);
          break;
        }
        case covey_attr::PseudotimeMs:
          if (a.basic || a.value.size() != 4) return Error{"GAP: COVEY_PSEUDOTIME_MS must be 4 octets"};
          out.pseudotime_ms = v;
          break;
        default: return Error{"GAP: attribute class " + std::to_string(a.type) + " is not understood (RFC 6407 5.4: abort)"};
      }
    }
  }
  // Entries per TEK, in order; every TEK must carry the same policy.
  std::vector<std::vector<AclEntry>> acls;
  p.tbar_window_ms.reset();
  for (const SaTekPayload& s : sa.teks) {
    auto t = tek_transform(s);
    if (!t) return Error{t.error()};
    auto e = tek_entry(s);
    if (!e) return Error{e.error()};
    auto it = std::find(out.tek_spis.begin(), out.tek_spis.end(), s.spi);
    std::size_t idx = static_cast<std::size_t>(it - out.tek_spis.begin());
    if (it == out.tek_spis.end()) {
      if (!out.tek_spis.empty() && !(*t == p.tek))
        return Error{"SA TEK SPI " + spi_hex(s.spi) + ": a different transform from TEK " + spi_hex(out.tek_spis[0])};
      out.tek_spis.push_back(s.spi);
      out.tek_remaining_s.push_back(e->lifetime_s);
      acls.emplace_back();
      p.tek = *t;
      p.tek_lifetime_s = e->lifetime_s;
      p.tbar_window_ms = e->tbar;
    } else if (!(*t == p.tek)) {
      return Error{"SA TEK SPI " + spi_hex(s.spi) + ": entries of one TEK disagree on the transform"};
    }
    acls[idx].push_back(e->entry);
  }
  for (std::size_t i = 1; i < acls.size(); ++i)
    if (acls[i] != acls[0])
      return Error{"SA TEK SPI " + spi_hex(out.tek_spis[i]) + ": its ACL differs from TEK " + spi_hex(out.tek_spis[0]) + "'s"};
  if (!acls.empty()) p.acl = acls[0];
  return out;
}

crypto::Result<KeyMaterial> decode_key_download(const KeyDownloadPayload& kd, const ReceivedSa& sa) {
  KeyMaterial out;
  for (const KeyPacket& p : kd.packets) {
    switch (static_cast<KeyPacketType>(p.type)) {
      case KeyPacketType::Tek: {
        if (p.spi.size() != 4) return Error{"KD TEK packet: SPI of " + std::to_string(p.spi.size()) + " octets (4 needed)"};
        Reader r(p.spi, 0);
        std::uint32_t spi = *r.u32();
        std::string at = "KD TEK packet SPI " + spi_hex(spi) + ": ";
        if (std::find(sa.tek_spis.begin(), sa.tek_spis.end(), spi) == sa.tek_spis.end())
          return Error{at + "no SA TEK with this SPI"};
        Tek t;
        t.spi = spi;
        for (const Attribute& a : p.attributes) {
          if (a.type == tek_key_attr::TekAlgorithmKey) t.encryption_key = crypto::SecretBytes(ByteView(a.value));
          else if (a.type == tek_key_attr::TekIntegrityKey) t.integrity_key = crypto::SecretBytes(ByteView(a.value));
          else return Error{at + "attribute class " + std::to_string(a.type) + " is not understood"};
        }
        std::size_t ek = tek_encryption_key_size(sa.policy.tek.cipher), ik = tek_integrity_key_size(sa.policy.tek.integrity);
        if (t.encryption_key.size() != ek)
          return Error{at + "TEK_ALGORITHM_KEY of " + std::to_string(t.encryption_key.size()) + " octets, the transform needs " + std::to_string(ek)};
        if (t.integrity_key.size() != ik)
          return Error{at + "TEK_INTEGRITY_KEY of " + std::to_string(t.integrity_key.size()) + " octets, the transform needs " + std::to_string(ik)};
        t.lifetime_s = sa.tek_remaining_s[static_cast<std::size_t>(
            std::find(sa.tek_spis.begin(), sa.tek_spis.end(), spi) - sa.tek_spis.begin())];
        out.teks.push_back(std::move(t));
        break;
      }
      case KeyPacketType::Kek: {
        if (!sa.kek_spi) return Error{"KD KEK packet without an SA KEK"};
        if (out.kek) return Error{"KD: more than one KEK packet (RFC 6407 5.6.2)"};
        if (p.spi.size() != 16 || !std::equal(p.spi.begin(), p.spi.end(), sa.kek_spi->begin()))
          return Error{"KD KEK packet: SPI does not match the SA KEK's"};
        Kek k;
        k.spi = *sa.kek_spi;
        for (const Attribute& a : p.attributes) {
          if (a.type == kek_key_attr::KekAlgorithmKey) k.algorithm_key = crypto::SecretBytes(ByteView(a.value));
          else if (a.type == kek_key_attr::SigAlgorithmKey) k.signature_public_key = a.value;
          else return Error{"KD KEK packet: attribute class " + std::to_string(a.type) + " is not understood"};
        }
        std::size_t need = crypto::block_size(sa.policy.kek.cipher) + crypto::key_size(sa.policy.kek.cipher);
        if (k.algorithm_key.size() != need)
          return Error{"KD KEK packet: KEK_ALGORITHM_KEY of " + std::to_string(k.algorithm_key.size()) + " octets, IV and key need " + std::to_string(need)};
        if (k.signature_public_key.empty()) return Error{"KD KEK packet: no SIG_ALGORITHM_KEY, so rekeys could not be verified"};
        k.lifetime_s = sa.kek_remaining_s;
        out.kek = std::move(k);
        break;
      }
      case KeyPacketType::Sid: {
        for (const Attribute& a : p.attributes) {
          if (a.type == sid_key_attr::NumberOfSidBits) {
            out.sid_bits = static_cast<std::uint8_t>(std::min<std::uint32_t>(a.as_u32().value_or(0), 32));
          } else if (a.type == sid_key_attr::SidValue) {
            auto v = a.as_u32();
            if (!v) return Error{"KD SID packet: SID_VALUE longer than 32 bits"};
            out.sids.push_back(*v);
          } else {
            return Error{"KD SID packet: attribute class " + std::to_string(a.type) + " is not understood"};
          }
        }
        break;
      }
      case KeyPacketType::Lkh:
        return Error{"KD LKH packet: LKH key management is not supported by covey"};
    }
  }
  for (std::uint32_t spi : sa.tek_spis)
    if (std::none_of(out.teks.begin(), out.teks.end(), [&](const Tek& t) { return t.spi == spi; }))
      return Error{"KD: no keys for TEK SPI " + spi_hex(spi)};
  if (sa.kek_spi && !out.kek) return Error{"KD: no KEK packet for the SA KEK"};
  return out;
}

}  // namespace covey::gdoi
