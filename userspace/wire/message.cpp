#include "wire/message.h"

#include <stdexcept>
#include <string>

#include "wire/buffer.h"

namespace covey::wire {

std::string DecodeError::message() const {
  return payload + " at offset " + std::to_string(offset) + ": " + reason;
}

const char* payload_name(std::uint8_t type) {
  switch (static_cast<PayloadType>(type)) {
    case PayloadType::None: return "NONE";
    case PayloadType::SecurityAssociation: return "SA";
    case PayloadType::Proposal: return "Proposal";
    case PayloadType::Transform: return "Transform";
    case PayloadType::KeyExchange: return "KE";
    case PayloadType::Identification: return "ID";
    case PayloadType::Certificate: return "CERT";
    case PayloadType::CertificateRequest: return "CERTREQ";
    case PayloadType::Hash: return "HASH";
    case PayloadType::Signature: return "SIG";
    case PayloadType::Nonce: return "NONCE";
    case PayloadType::Notification: return "NOTIFY";
    case PayloadType::Delete: return "DELETE";
    case PayloadType::VendorId: return "VENDOR ID";
    case PayloadType::SaKek: return "SA KEK";
    case PayloadType::SaTek: return "SA TEK";
    case PayloadType::KeyDownload: return "KD";
    case PayloadType::SequenceNumber: return "SEQ";
    case PayloadType::GroupAssociatedPolicy: return "GAP";
  }
  return "unknown";
}

const char* exchange_name(std::uint8_t type) {
  switch (static_cast<ExchangeType>(type)) {
    case ExchangeType::Base: return "Base";
    case ExchangeType::IdentityProtection: return "Identity Protection (Main Mode)";
    case ExchangeType::AuthenticationOnly: return "Authentication Only";
    case ExchangeType::Aggressive: return "Aggressive";
    case ExchangeType::Informational: return "Informational";
    case ExchangeType::GroupkeyPull: return "GROUPKEY-PULL";
    case ExchangeType::GroupkeyPush: return "GROUPKEY-PUSH";
    case ExchangeType::GroupkeyPushAck: return "GROUPKEY-PUSH ACK";
  }
  return "unknown";
}

PayloadType type_of(const Payload& p) {
  struct V {
    PayloadType operator()(const SaPayload&) const { return PayloadType::SecurityAssociation; }
    PayloadType operator()(const GroupSaPayload&) const { return PayloadType::SecurityAssociation; }
    PayloadType operator()(const KeyExchangePayload&) const { return PayloadType::KeyExchange; }
    PayloadType operator()(const IdentificationPayload&) const { return PayloadType::Identification; }
    PayloadType operator()(const CertificatePayload&) const { return PayloadType::Certificate; }
    PayloadType operator()(const CertificateRequestPayload&) const { return PayloadType::CertificateRequest; }
    PayloadType operator()(const HashPayload&) const { return PayloadType::Hash; }
    PayloadType operator()(const SignaturePayload&) const { return PayloadType::Signature; }
    PayloadType operator()(const NoncePayload&) const { return PayloadType::Nonce; }
    PayloadType operator()(const NotificationPayload&) const { return PayloadType::Notification; }
    PayloadType operator()(const DeletePayload&) const { return PayloadType::Delete; }
    PayloadType operator()(const VendorIdPayload&) const { return PayloadType::VendorId; }
    PayloadType operator()(const SequenceNumberPayload&) const { return PayloadType::SequenceNumber; }
    PayloadType operator()(const KeyDownloadPayload&) const { return PayloadType::KeyDownload; }
    PayloadType operator()(const GapPayload&) const { return PayloadType::GroupAssociatedPolicy; }
  };
  return std::visit(V{}, p);
}

AttributeSpace key_packet_space(std::uint8_t kd_type) {
  switch (static_cast<KeyPacketType>(kd_type)) {
    case KeyPacketType::Tek: return AttributeSpace::TekKey;
    case KeyPacketType::Kek: return AttributeSpace::KekKey;
    case KeyPacketType::Lkh: return AttributeSpace::LkhKey;
    case KeyPacketType::Sid: return AttributeSpace::SidKey;
  }
  return AttributeSpace::TekKey;
}

IdentificationPayload IdentificationPayload::group(std::uint32_t id) {
  IdentificationPayload p;
  p.type = static_cast<std::uint8_t>(IdType::KeyId);
  Writer w(p.data);
  w.u32(id);
  return p;
}

std::optional<std::uint32_t> IdentificationPayload::group_id() const {
  if (type != static_cast<std::uint8_t>(IdType::KeyId) || data.size() != 4) return std::nullopt;
  Reader r(data, 0);
  return r.u32();
}

namespace {

// The address IDs have fixed sizes (RFC 2407 4.6.2.2-4.6.2.9); others are free-form.
std::optional<std::size_t> id_data_size(std::uint8_t type) {
  switch (static_cast<IdType>(type)) {
    case IdType::Ipv4Addr: return 4;
    case IdType::Ipv4AddrSubnet:
    case IdType::Ipv4AddrRange: return 8;
    case IdType::Ipv6Addr: return 16;
    case IdType::Ipv6AddrSubnet:
    case IdType::Ipv6AddrRange: return 32;
    default: return std::nullopt;
  }
}

std::string hex8(unsigned v) {
  static constexpr char d[] = "0123456789abcdef";
  return std::string("0x") + d[(v >> 4) & 0xf] + d[v & 0xf];
}

// Decoding context for one payload body: names the payload and reports
// errors at absolute offsets.
struct Ctx {
  const char* name;
  std::uint8_t exchange;

  DecodeError err(std::size_t offset, std::string reason) const {
    return DecodeError{name, offset, std::move(reason)};
  }
  DecodeError truncated(const Reader& r, const char* field) const {
    return err(r.offset(), std::string(field) + " truncated (" + std::to_string(r.remaining()) +
                               " octets left in the payload)");
  }
};

#define COVEY_READ(var, expr, field)                  \
  auto var = (expr);                                  \
  if (!var) return ctx.truncated(r, field)

Result<GroupIdentity> decode_group_identity(Reader& r, const Ctx& ctx, const char* which) {
  std::string w(which);
  std::size_t at = r.offset();
  COVEY_READ(type, r.u8(), (w + " ID Type").c_str());
  COVEY_READ(port, r.u16(), (w + " ID Port").c_str());
  COVEY_READ(len, r.u8(), (w + " ID Data Len").c_str());
  auto data = r.take(*len);
  if (!data)
    return ctx.err(at + 3, w + " ID Data Len " + std::to_string(*len) + " runs past the payload end (" +
                               std::to_string(r.remaining()) + " octets left)");
  if (auto want = id_data_size(*type); want && *want != *len)
    return ctx.err(at + 3, w + " ID Data Len " + std::to_string(*len) + " does not fit ID type " +
                               std::to_string(*type) + " (needs " + std::to_string(*want) + ")");
  return GroupIdentity{*type, *port, Bytes(data->begin(), data->end())};
}

void encode_group_identity(Writer& w, const GroupIdentity& id) {
  w.u8(id.type);
  w.u16(id.port);
  w.u8(static_cast<std::uint8_t>(id.data.size()));
  w.bytes(id.data);
}

Result<Transform> decode_transform(Reader& r, std::uint32_t doi, const Ctx& ctx) {
  Transform t;
  COVEY_READ(num, r.u8(), "Transform #");
  COVEY_READ(id, r.u8(), "Transform-Id");
  std::size_t at = r.offset();
  COVEY_READ(res, r.u16(), "RESERVED2");
  if (*res != 0) return ctx.err(at, "RESERVED2 is " + std::to_string(*res) + ", must be zero");
  t.number = *num;
  t.id = *id;
  // Phase-1 transforms use RFC 2409's table whichever DOI the SA names
  // (RFC 6407 2: GDOI phase 1 is IKEv1 phase 1 with DOI 2).
  (void)doi;
  auto attrs = decode_attributes(r, AttributeSpace::Phase1Transform, ctx.name);
  if (!attrs) return attrs.error();
  t.attributes = std::move(*attrs);
  return t;
}

// Reads one generic payload header inside a nested chain (proposals,
// transforms, SA attributes) and returns a reader over its body.
struct Generic {
  std::uint8_t next;
  std::size_t start;
  Reader body;
};

Result<Generic> generic_header(Reader& r, const char* name) {
  std::size_t start = r.offset();
  auto next = r.u8();
  auto reserved = r.u8();
  auto length = r.u16();
  if (!next || !reserved || !length)
    return DecodeError{name, start, "generic payload header truncated (" + std::to_string(r.remaining()) +
                                        " octets left, 4 needed)"};
  if (*reserved != 0)
    return DecodeError{name, start + 1, "RESERVED octet is " + hex8(*reserved) + ", must be zero"};
  if (*length < 4)
    return DecodeError{name, start + 2, "Payload Length " + std::to_string(*length) + " is shorter than its header"};
  auto body = r.sub(*length - 4u);
  if (!body)
    return DecodeError{name, start + 2, "Payload Length " + std::to_string(*length) + " runs past the end (" +
                                            std::to_string(r.remaining() + 4) + " octets left)"};
  return Generic{*next, start, *body};
}

Result<Proposal> decode_proposal(Reader& r, std::uint32_t doi, const Ctx& ctx) {
  Proposal p;
  COVEY_READ(num, r.u8(), "Proposal #");
  COVEY_READ(proto, r.u8(), "Protocol-Id");
  COVEY_READ(spi_size, r.u8(), "SPI Size");
  std::size_t count_at = r.offset();
  COVEY_READ(count, r.u8(), "# of Transforms");
  auto spi = r.take(*spi_size);
  if (!spi) return ctx.err(count_at - 1, "SPI Size " + std::to_string(*spi_size) + " runs past the payload end");
  p.number = *num;
  p.protocol = *proto;
  p.spi.assign(spi->begin(), spi->end());
  std::uint8_t next = static_cast<std::uint8_t>(PayloadType::Transform);
  while (next != 0) {
    if (next != static_cast<std::uint8_t>(PayloadType::Transform))
      return ctx.err(r.offset(), "Transform chain names payload type " + std::to_string(next) + ", expected 3");
    if (r.empty()) return ctx.err(r.offset(), "Transform chain runs past the end of the proposal");
    auto g = generic_header(r, "Transform");
    if (!g) return g.error();
    Ctx tctx{"Transform", ctx.exchange};
    auto t = decode_transform(g->body, doi, tctx);
    if (!t) return t.error();
    p.transforms.push_back(std::move(*t));
    next = g->next;
  }
  if (!r.empty()) return ctx.err(r.offset(), std::to_string(r.remaining()) + " octets after the last transform");
  if (p.transforms.size() != *count)
    return ctx.err(count_at, "# of Transforms is " + std::to_string(*count) + " but " +
                                 std::to_string(p.transforms.size()) + " follow");
  return p;
}

Result<Payload> decode_sa(Reader& r, const Ctx& ctx) {
  std::size_t at = r.offset();
  COVEY_READ(doi, r.u32(), "DOI");
  if (*doi != kDoiIpsec && *doi != kDoiGdoi)
    return ctx.err(at, "DOI " + std::to_string(*doi) + " is neither IPsec (1) nor GDOI (2)");
  COVEY_READ(sit, r.u32(), "Situation");
  bool group_form = ctx.exchange == static_cast<std::uint8_t>(ExchangeType::GroupkeyPull) ||
                    ctx.exchange == static_cast<std::uint8_t>(ExchangeType::GroupkeyPush);
  if (!group_form) {
    // RFC 2407 4.2: secrecy and integrity situations carry labels covey does not speak.
    if (*doi == kDoiIpsec && *sit != kSituationIdentityOnly)
      return ctx.err(at + 4, "Situation " + std::to_string(*sit) + " is not SIT_IDENTITY_ONLY (1)");
    SaPayload sa{*doi, *sit, {}};
    std::uint8_t next = static_cast<std::uint8_t>(PayloadType::Proposal);
    while (next != 0) {
      if (next != static_cast<std::uint8_t>(PayloadType::Proposal))
        return ctx.err(r.offset(), "Proposal chain names payload type " + std::to_string(next) + ", expected 2");
      if (r.empty()) return ctx.err(r.offset(), "Proposal chain runs past the end of the SA");
      auto g = generic_header(r, "Proposal");
      if (!g) return g.error();
      auto p = decode_proposal(g->body, *doi, Ctx{"Proposal", ctx.exchange});
      if (!p) return p.error();
      sa.proposals.push_back(std::move(*p));
      next = g->next;
    }
    if (!r.empty()) return ctx.err(r.offset(), std::to_string(r.remaining()) + " octets after the last proposal");
    return Payload{std::move(sa)};
  }

  // RFC 6407 5.2, Figure 4.
  if (*doi != kDoiGdoi) return ctx.err(at, "DOI " + std::to_string(*doi) + " in a group SA, must be GDOI (2)");
  if (*sit != 0) return ctx.err(at + 4, "Situation " + std::to_string(*sit) + ", must be zero");
  GroupSaPayload sa;
  sa.doi = *doi;
  sa.situation = *sit;
  std::size_t next_at = r.offset();
  COVEY_READ(first, r.u16(), "SA Attribute Next Payload");
  std::size_t res_at = r.offset();
  COVEY_READ(res2, r.u16(), "RESERVED2");
  if (*res2 != 0) return ctx.err(res_at, "RESERVED2 is " + std::to_string(*res2) + ", must be zero");
  if (*first > 0xff) return ctx.err(next_at, "SA Attribute Next Payload " + std::to_string(*first) + " is no payload type");
  // RFC 6407 5.2.1: zero or one SAK, zero or one GAP, any SATs, in that order.
  int rank = 0;  // 1 after SAK, 2 after GAP, 3 after a SAT
  std::uint8_t next = static_cast<std::uint8_t>(*first);
  while (next != 0) {
    auto pt = static_cast<PayloadType>(next);
    std::size_t here = r.offset();
    if (r.empty()) return ctx.err(here, std::string(payload_name(next)) + " announced but the SA payload ends");
    if (pt == PayloadType::SaKek) {
      if (rank >= 1) return ctx.err(here, "SA KEK out of order: at most one, before GAP and SA TEK (RFC 6407 5.2.1)");
      rank = 1;
      auto g = generic_header(r, "SA KEK");
      if (!g) return g.error();
      Ctx k{"SA KEK", ctx.exchange};
      Reader& b = g->body;
      SaKekPayload kek;
      {
        Reader& rr = b;
        auto proto = rr.u8();
        if (!proto) return k.truncated(rr, "Protocol");
        kek.protocol = *proto;
      }
      auto src = decode_group_identity(b, k, "SRC");
      if (!src) return src.error();
      auto dst = decode_group_identity(b, k, "DST");
      if (!dst) return dst.error();
      kek.src = std::move(*src);
      kek.dst = std::move(*dst);
      auto spi = b.take(16);
      if (!spi) return k.truncated(b, "SPI (16 octets)");
      std::copy(spi->begin(), spi->end(), kek.spi.begin());
      std::size_t r2 = b.offset();
      auto reserved2 = b.u32();
      if (!reserved2) return k.truncated(b, "RESERVED2");
      if (*reserved2 != 0) return k.err(r2, "RESERVED2 is " + std::to_string(*reserved2) + ", must be zero");
      // Interop quirk "gdoid SA KEK": the reference implementation (stv0g/gdoid)
      // writes RFC 3547's POP fields, 6 octets where RFC 6407 Figure 5 has
      // RESERVED2 of 4. Two zero octets where an attribute starts would be a
      // TLV of KEK class 0, which is reserved and never sent, so skipping
      // them cannot misread an RFC 6407 SA KEK.
      if (b.remaining() >= 2) {
        Reader peek = b;
        if (peek.u16() == 0) b.take(2);
      }
      auto attrs = decode_attributes(b, AttributeSpace::Kek, "SA KEK");
      if (!attrs) return attrs.error();
      kek.attributes = std::move(*attrs);
      sa.kek = std::move(kek);
      next = g->next;
    } else if (pt == PayloadType::GroupAssociatedPolicy) {
      if (rank >= 2) return ctx.err(here, "GAP out of order: at most one, after SA KEK and before SA TEK (RFC 6407 5.2.1)");
      rank = 2;
      auto g = generic_header(r, "GAP");
      if (!g) return g.error();
      auto attrs = decode_attributes(g->body, AttributeSpace::Gap, "GAP");
      if (!attrs) return attrs.error();
      sa.gap = GapPayload{std::move(*attrs)};
      next = g->next;
    } else if (pt == PayloadType::SaTek) {
      rank = 3;
      auto g = generic_header(r, "SA TEK");
      if (!g) return g.error();
      Ctx t{"SA TEK", ctx.exchange};
      Reader& b = g->body;
      SaTekPayload tek;
      std::size_t pid_at = b.offset();
      auto pid = b.u8();
      if (!pid) return t.truncated(b, "Protocol-ID");
      if (*pid != kGdoiProtoIpsecEsp && *pid != kGdoiProtoIpsecAh)
        return t.err(pid_at, "Protocol-ID " + std::to_string(*pid) + " is neither GDOI_PROTO_IPSEC_ESP (1) nor GDOI_PROTO_IPSEC_AH (2)");
      tek.protocol_id = *pid;
      auto proto = b.u8();
      if (!proto) return t.truncated(b, "Protocol");
      tek.protocol = *proto;
      auto src = decode_group_identity(b, t, "SRC");
      if (!src) return src.error();
      auto dst = decode_group_identity(b, t, "DST");
      if (!dst) return dst.error();
      tek.src = std::move(*src);
      tek.dst = std::move(*dst);
      auto tid = b.u8();
      if (!tid) return t.truncated(b, "Transform ID");
      tek.transform_id = *tid;
      auto spi = b.u32();
      if (!spi) return t.truncated(b, "SPI");
      tek.spi = *spi;
      auto attrs = decode_attributes(b, AttributeSpace::IpsecSa, "SA TEK");
      if (!attrs) return attrs.error();
      tek.attributes = std::move(*attrs);
      sa.teks.push_back(std::move(tek));
      next = g->next;
    } else {
      return ctx.err(here, "SA attribute payload type " + std::to_string(next) +
                               " is none of SA KEK (15), GAP (22), SA TEK (16)");
    }
  }
  if (!r.empty()) return ctx.err(r.offset(), std::to_string(r.remaining()) + " octets after the last SA attribute payload");
  if (!sa.kek && sa.teks.empty()) return ctx.err(at, "group SA holds neither SA KEK nor SA TEK (RFC 6407 5.2.1)");
  return Payload{std::move(sa)};
}

Result<Payload> decode_key_download(Reader& r, const Ctx& ctx) {
  KeyDownloadPayload kd;
  std::size_t count_at = r.offset();
  COVEY_READ(count, r.u16(), "Number of Key Packets");
  std::size_t res_at = r.offset();
  COVEY_READ(res2, r.u16(), "RESERVED2");
  if (*res2 != 0) return ctx.err(res_at, "RESERVED2 is " + std::to_string(*res2) + ", must be zero");
  while (!r.empty()) {
    std::size_t at = r.offset();
    Ctx k{"KD key packet", ctx.exchange};
    auto type = r.u8();
    auto reserved = r.u8();
    auto len = r.u16();
    if (!type || !reserved || !len) return k.err(at, "key packet header truncated (" + std::to_string(r.remaining()) + " octets left)");
    if (*reserved != 0) return k.err(at + 1, "RESERVED is " + hex8(*reserved) + ", must be zero");
    if (*type < 1 || *type > 4)
      return k.err(at, "KD Type " + std::to_string(*type) + " is none of TEK (1), KEK (2), LKH (3), SID (4)");
    if (*len < 5) return k.err(at + 2, "KD Length " + std::to_string(*len) + " is shorter than the key packet header");
    auto body = r.sub(*len - 4u);
    if (!body)
      return k.err(at + 2, "KD Length " + std::to_string(*len) + " runs past the payload end (" +
                               std::to_string(r.remaining() + 4) + " octets left)");
    Reader& b = *body;
    auto spi_size = b.u8();
    if (!spi_size) return k.truncated(b, "SPI Size");
    if (*type == static_cast<std::uint8_t>(KeyPacketType::Sid) && *spi_size != 0)
      return k.err(at + 4, "SPI Size " + std::to_string(*spi_size) + " in a SID key packet, must be zero (RFC 6407 5.6.4)");
    auto spi = b.take(*spi_size);
    if (!spi) return k.err(at + 4, "SPI Size " + std::to_string(*spi_size) + " runs past the key packet end");
    KeyPacket kp;
    kp.type = *type;
    kp.spi.assign(spi->begin(), spi->end());
    auto attrs = decode_attributes(b, key_packet_space(*type), "KD key packet");
    if (!attrs) return attrs.error();
    kp.attributes = std::move(*attrs);
    kd.packets.push_back(std::move(kp));
  }
  if (kd.packets.size() != *count)
    return ctx.err(count_at, "Number of Key Packets is " + std::to_string(*count) + " but " +
                                 std::to_string(kd.packets.size()) + " follow");
  return Payload{std::move(kd)};
}

Result<Payload> decode_body(std::uint8_t type, Reader& r, const Ctx& ctx, std::size_t start) {
  auto rest = [&] { ByteView v = r.rest(); return Bytes(v.begin(), v.end()); };
  switch (static_cast<PayloadType>(type)) {
    case PayloadType::SecurityAssociation:
      return decode_sa(r, ctx);
    case PayloadType::KeyExchange:
      if (r.empty()) return ctx.err(start, "Key Exchange Data is empty");
      return Payload{KeyExchangePayload{rest()}};
    case PayloadType::Identification: {
      IdentificationPayload id;
      std::size_t at = r.offset();
      COVEY_READ(t, r.u8(), "ID Type");
      COVEY_READ(p, r.u8(), "Protocol ID");
      COVEY_READ(port, r.u16(), "Port");
      id.type = *t;
      id.protocol = *p;
      id.port = *port;
      id.data = rest();
      if (auto want = id_data_size(*t); want && *want != id.data.size())
        return ctx.err(at, "ID type " + std::to_string(*t) + " needs " + std::to_string(*want) +
                               " octets of data, has " + std::to_string(id.data.size()));
      if (*t == static_cast<std::uint8_t>(IdType::KeyId) && id.data.empty())
        return ctx.err(at, "ID_KEY_ID with no key identifier");
      return Payload{std::move(id)};
    }
    case PayloadType::Certificate: {
      COVEY_READ(enc, r.u8(), "Cert Encoding");
      return Payload{CertificatePayload{*enc, rest()}};
    }
    case PayloadType::CertificateRequest: {
      COVEY_READ(t, r.u8(), "Cert. Type");
      return Payload{CertificateRequestPayload{*t, rest()}};
    }
    case PayloadType::Hash:
      if (r.empty()) return ctx.err(start, "Hash Data is empty");
      return Payload{HashPayload{rest()}};
    case PayloadType::Signature:
      if (r.empty()) return ctx.err(start, "Signature Data is empty");
      return Payload{SignaturePayload{rest()}};
    case PayloadType::Nonce:
      if (r.empty()) return ctx.err(start, "Nonce Data is empty");
      return Payload{NoncePayload{rest()}};
    case PayloadType::VendorId:
      return Payload{VendorIdPayload{rest()}};
    case PayloadType::Notification: {
      NotificationPayload n;
      COVEY_READ(doi, r.u32(), "DOI");
      COVEY_READ(proto, r.u8(), "Protocol-ID");
      std::size_t size_at = r.offset();
      COVEY_READ(spi_size, r.u8(), "SPI Size");
      COVEY_READ(t, r.u16(), "Notify Message Type");
      auto spi = r.take(*spi_size);
      if (!spi) return ctx.err(size_at, "SPI Size " + std::to_string(*spi_size) + " runs past the payload end");
      n.doi = *doi;
      n.protocol = *proto;
      n.type = *t;
      n.spi.assign(spi->begin(), spi->end());
      n.data = rest();
      return Payload{std::move(n)};
    }
    case PayloadType::Delete: {
      DeletePayload d;
      COVEY_READ(doi, r.u32(), "DOI");
      COVEY_READ(proto, r.u8(), "Protocol-Id");
      std::size_t size_at = r.offset();
      COVEY_READ(spi_size, r.u8(), "SPI Size");
      COVEY_READ(n, r.u16(), "# of SPIs");
      d.doi = *doi;
      d.protocol = *proto;
      d.spi_size = *spi_size;
      // Bound by what is present, never by the count the peer claims.
      if (static_cast<std::size_t>(*spi_size) * *n != r.remaining())
        return ctx.err(size_at, std::to_string(*n) + " SPIs of " + std::to_string(*spi_size) + " octets need " +
                                    std::to_string(static_cast<std::size_t>(*spi_size) * *n) + " octets, payload has " +
                                    std::to_string(r.remaining()));
      for (unsigned i = 0; i < *n; ++i) {
        auto s = r.take(*spi_size);
        d.spis.emplace_back(s->begin(), s->end());
      }
      return Payload{std::move(d)};
    }
    case PayloadType::SequenceNumber: {
      if (r.remaining() != 4)
        return ctx.err(start + 2, "Payload Length " + std::to_string(r.remaining() + 4) + ", must be 8 (RFC 6407 5.7)");
      return Payload{SequenceNumberPayload{*r.u32()}};
    }
    case PayloadType::KeyDownload:
      return decode_key_download(r, ctx);
    case PayloadType::GroupAssociatedPolicy: {
      auto attrs = decode_attributes(r, AttributeSpace::Gap, "GAP");
      if (!attrs) return attrs.error();
      return Payload{GapPayload{std::move(*attrs)}};
    }
    default:
      break;
  }
  // IKEv1 has no critical bit: a payload type the receiver does not know
  // cannot be skipped safely (RFC 2408 5.1, INVALID-PAYLOAD-TYPE).
  return ctx.err(start, "unknown payload type " + std::to_string(type) + " (IKEv1 has no critical bit; every payload must be understood)");
}

#undef COVEY_READ

}  // namespace

Result<Header> decode_header(ByteView datagram) {
  Reader r(datagram, 0);
  if (datagram.size() < kHeaderSize)
    return DecodeError{"ISAKMP header", 0, "datagram of " + std::to_string(datagram.size()) +
                                              " octets is shorter than the 28-octet header"};
  Header h;
  auto ic = r.take(8);
  auto rc = r.take(8);
  std::copy(ic->begin(), ic->end(), h.initiator_cookie.begin());
  std::copy(rc->begin(), rc->end(), h.responder_cookie.begin());
  h.next_payload = *r.u8();
  h.version = *r.u8();
  h.exchange = *r.u8();
  h.flags = *r.u8();
  h.message_id = *r.u32();
  h.length = *r.u32();
  if ((h.version >> 4) != 1)
    return DecodeError{"ISAKMP header", 17, "Major Version " + std::to_string(h.version >> 4) + ", expected 1"};
  if ((h.version & 0xf) != 0)
    return DecodeError{"ISAKMP header", 17, "Minor Version " + std::to_string(h.version & 0xf) + ", expected 0"};
  if ((h.flags & ~kFlagsDefined) != 0)
    return DecodeError{"ISAKMP header", 19, "Flags " + hex8(h.flags) + " has undefined bits set"};
  if (h.length != datagram.size())
    return DecodeError{"ISAKMP header", 24, "Length " + std::to_string(h.length) + " but the datagram has " +
                                                std::to_string(datagram.size()) + " octets"};
  return h;
}

Result<PayloadChain> decode_payloads(ByteView body, std::uint8_t first, std::uint8_t exchange,
                                     std::size_t base, bool padded) {
  PayloadChain chain;
  Reader r(body, base);
  std::uint8_t next = first;
  while (next != 0) {
    const char* name = payload_name(next);
    if (r.empty()) return DecodeError{name, r.offset(), "payload chain runs past the end of the message"};
    std::size_t start = r.offset();
    if (next == static_cast<std::uint8_t>(PayloadType::Proposal) ||
        next == static_cast<std::uint8_t>(PayloadType::Transform) ||
        next == static_cast<std::uint8_t>(PayloadType::SaKek) ||
        next == static_cast<std::uint8_t>(PayloadType::SaTek))
      return DecodeError{name, start, std::string(name) + " outside an SA payload"};
    auto g = generic_header(r, name);
    if (!g) return g.error();
    auto p = decode_body(next, g->body, Ctx{name, exchange}, start);
    if (!p) return p.error();
    chain.payloads.push_back(std::move(*p));
    chain.extents.push_back(Extent{start - base, r.offset() - start});
    next = g->next;
  }
  chain.consumed = r.offset() - base;
  if (!padded && !r.empty())
    return DecodeError{"message", r.offset(), std::to_string(r.remaining()) + " octets after the last payload"};
  return chain;
}

Result<Message> decode_message(ByteView datagram) {
  auto h = decode_header(datagram);
  if (!h) return h.error();
  Message m;
  m.header = *h;
  ByteView body = datagram.subspan(kHeaderSize);
  if (h->encrypted()) {
    m.ciphertext = body;
    return m;
  }
  auto chain = decode_payloads(body, h->next_payload, h->exchange, kHeaderSize, false);
  if (!chain) return chain.error();
  m.payloads = std::move(chain->payloads);
  m.extents = std::move(chain->extents);
  for (auto& e : m.extents) e.offset += kHeaderSize;
  return m;
}

// ---------------------------------------------------------------- encoding

namespace {

void finish_length(Writer& w, Bytes& out, std::size_t start, const char* name) {
  std::size_t len = out.size() - start;
  if (len > 0xffff) throw std::length_error(std::string(name) + " payload exceeds 65535 octets");
  w.patch16(start + 2, static_cast<std::uint16_t>(len));
}

// Generic header with a length to be patched; returns the payload's start.
std::size_t begin_payload(Writer& w, std::uint8_t next) {
  std::size_t start = w.size();
  w.u8(next);
  w.u8(0);
  w.u16(0);
  return start;
}

void encode_sa_body(Writer& w, Bytes& out, const SaPayload& sa) {
  w.u32(sa.doi);
  w.u32(sa.situation);
  for (std::size_t i = 0; i < sa.proposals.size(); ++i) {
    const Proposal& p = sa.proposals[i];
    std::size_t ps = begin_payload(w, i + 1 < sa.proposals.size() ? 2 : 0);
    w.u8(p.number);
    w.u8(p.protocol);
    w.u8(static_cast<std::uint8_t>(p.spi.size()));
    w.u8(static_cast<std::uint8_t>(p.transforms.size()));
    w.bytes(p.spi);
    for (std::size_t j = 0; j < p.transforms.size(); ++j) {
      const Transform& t = p.transforms[j];
      std::size_t ts = begin_payload(w, j + 1 < p.transforms.size() ? 3 : 0);
      w.u8(t.number);
      w.u8(t.id);
      w.u16(0);
      encode_attributes(w, t.attributes);
      finish_length(w, out, ts, "Transform");
    }
    finish_length(w, out, ps, "Proposal");
  }
}

void encode_group_sa_body(Writer& w, Bytes& out, const GroupSaPayload& sa) {
  std::vector<std::uint8_t> order;
  if (sa.kek) order.push_back(static_cast<std::uint8_t>(PayloadType::SaKek));
  if (sa.gap) order.push_back(static_cast<std::uint8_t>(PayloadType::GroupAssociatedPolicy));
  for (std::size_t i = 0; i < sa.teks.size(); ++i) order.push_back(static_cast<std::uint8_t>(PayloadType::SaTek));
  w.u32(sa.doi);
  w.u32(sa.situation);
  w.u16(order.empty() ? 0 : order[0]);
  w.u16(0);
  std::size_t k = 0;
  auto next_of = [&] { return ++k < order.size() ? order[k] : std::uint8_t{0}; };
  if (sa.kek) {
    std::size_t s = begin_payload(w, next_of());
    w.u8(sa.kek->protocol);
    encode_group_identity(w, sa.kek->src);
    encode_group_identity(w, sa.kek->dst);
    w.bytes(sa.kek->spi);
    w.u32(0);
    encode_attributes(w, sa.kek->attributes);
    finish_length(w, out, s, "SA KEK");
  }
  if (sa.gap) {
    std::size_t s = begin_payload(w, next_of());
    encode_attributes(w, sa.gap->attributes);
    finish_length(w, out, s, "GAP");
  }
  for (const auto& t : sa.teks) {
    std::size_t s = begin_payload(w, next_of());
    w.u8(t.protocol_id);
    w.u8(t.protocol);
    encode_group_identity(w, t.src);
    encode_group_identity(w, t.dst);
    w.u8(t.transform_id);
    w.u32(t.spi);
    encode_attributes(w, t.attributes);
    finish_length(w, out, s, "SA TEK");
  }
}

void encode_one(Writer& w, Bytes& out, const Payload& p, std::uint8_t next) {
  std::size_t start = begin_payload(w, next);
  struct V {
    Writer& w;
    Bytes& out;
    void operator()(const SaPayload& sa) { encode_sa_body(w, out, sa); }
    void operator()(const GroupSaPayload& sa) { encode_group_sa_body(w, out, sa); }
    void operator()(const KeyExchangePayload& v) { w.bytes(v.data); }
    void operator()(const IdentificationPayload& v) {
      w.u8(v.type);
      w.u8(v.protocol);
      w.u16(v.port);
      w.bytes(v.data);
    }
    void operator()(const CertificatePayload& v) {
      w.u8(v.encoding);
      w.bytes(v.data);
    }
    void operator()(const CertificateRequestPayload& v) {
      w.u8(v.type);
      w.bytes(v.authority);
    }
    void operator()(const HashPayload& v) { w.bytes(v.data); }
    void operator()(const SignaturePayload& v) { w.bytes(v.data); }
    void operator()(const NoncePayload& v) { w.bytes(v.data); }
    void operator()(const VendorIdPayload& v) { w.bytes(v.data); }
    void operator()(const NotificationPayload& v) {
      w.u32(v.doi);
      w.u8(v.protocol);
      w.u8(static_cast<std::uint8_t>(v.spi.size()));
      w.u16(v.type);
      w.bytes(v.spi);
      w.bytes(v.data);
    }
    void operator()(const DeletePayload& v) {
      w.u32(v.doi);
      w.u8(v.protocol);
      w.u8(v.spi_size);
      w.u16(static_cast<std::uint16_t>(v.spis.size()));
      for (const auto& s : v.spis) w.bytes(s);
    }
    void operator()(const SequenceNumberPayload& v) { w.u32(v.number); }
    void operator()(const KeyDownloadPayload& v) {
      w.u16(static_cast<std::uint16_t>(v.packets.size()));
      w.u16(0);
      for (const auto& kp : v.packets) {
        std::size_t s = w.size();
        w.u8(kp.type);
        w.u8(0);
        w.u16(0);
        w.u8(static_cast<std::uint8_t>(kp.spi.size()));
        w.bytes(kp.spi);
        encode_attributes(w, kp.attributes);
        std::size_t len = out.size() - s;
        if (len > 0xffff) throw std::length_error("KD key packet exceeds 65535 octets");
        w.patch16(s + 2, static_cast<std::uint16_t>(len));
      }
    }
    void operator()(const GapPayload& v) { encode_attributes(w, v.attributes); }
  };
  std::visit(V{w, out}, p);
  finish_length(w, out, start, payload_name(static_cast<std::uint8_t>(type_of(p))));
}

}  // namespace

Bytes encode_payload(const Payload& p, std::uint8_t next) {
  Bytes out;
  Writer w(out);
  encode_one(w, out, p, next);
  return out;
}

Bytes encode_payloads(const std::vector<Payload>& payloads) {
  Bytes out;
  Writer w(out);
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    std::uint8_t next = i + 1 < payloads.size() ? static_cast<std::uint8_t>(type_of(payloads[i + 1])) : 0;
    encode_one(w, out, payloads[i], next);
  }
  return out;
}

Bytes encode_header(const Header& h) {
  Bytes out;
  out.reserve(kHeaderSize);
  Writer w(out);
  w.bytes(h.initiator_cookie);
  w.bytes(h.responder_cookie);
  w.u8(h.next_payload);
  w.u8(h.version);
  w.u8(h.exchange);
  w.u8(h.flags);
  w.u32(h.message_id);
  w.u32(h.length);
  return out;
}

Bytes encode_message(Header h, const std::vector<Payload>& payloads) {
  Bytes body = encode_payloads(payloads);
  h.next_payload = payloads.empty() ? 0 : static_cast<std::uint8_t>(type_of(payloads[0]));
  h.length = static_cast<std::uint32_t>(kHeaderSize + body.size());
  Bytes out = encode_header(h);
  append(out, body);
  return out;
}

// ------------------------------------------------------------------- LKH

namespace {

void encode_lkh_key(Writer& w, const LkhKey& k) {
  w.u16(k.id);
  w.u8(k.key_type);
  w.u8(0);
  w.u32(k.creation);
  w.u32(k.expiration);
  w.u32(k.handle);
  w.bytes(k.key_data);
}

Result<std::vector<LkhKey>> decode_lkh_keys(Reader& r, unsigned count, std::size_t key_data_len, const char* name) {
  std::vector<LkhKey> keys;
  for (unsigned i = 0; i < count; ++i) {
    std::size_t at = r.offset();
    if (r.remaining() < 16 + key_data_len)
      return DecodeError{name, at, "LKH key " + std::to_string(i + 1) + " of " + std::to_string(count) +
                                       " truncated (" + std::to_string(r.remaining()) + " octets left, " +
                                       std::to_string(16 + key_data_len) + " needed)"};
    LkhKey k;
    k.id = *r.u16();
    k.key_type = *r.u8();
    if (auto res = *r.u8(); res != 0) return DecodeError{name, at + 3, "LKH key RESERVED is " + hex8(res) + ", must be zero"};
    k.creation = *r.u32();
    k.expiration = *r.u32();
    k.handle = *r.u32();
    auto d = r.take(key_data_len);
    k.key_data.assign(d->begin(), d->end());
    keys.push_back(std::move(k));
  }
  if (!r.empty()) return DecodeError{name, r.offset(), std::to_string(r.remaining()) + " octets after the last LKH key"};
  return keys;
}

}  // namespace

Bytes encode_lkh(const LkhDownloadArray& a) {
  Bytes out;
  Writer w(out);
  w.u8(a.version);
  w.u16(static_cast<std::uint16_t>(a.keys.size()));
  w.u8(0);
  for (const auto& k : a.keys) encode_lkh_key(w, k);
  return out;
}

Bytes encode_lkh(const LkhUpdateArray& a) {
  Bytes out;
  Writer w(out);
  w.u8(a.version);
  w.u16(static_cast<std::uint16_t>(a.keys.size()));
  w.u8(0);
  w.u16(a.id);
  w.u16(0);
  w.u32(a.handle);
  for (const auto& k : a.keys) encode_lkh_key(w, k);
  return out;
}

Result<LkhDownloadArray> decode_lkh_download_array(ByteView v, std::size_t key_data_len) {
  const char* name = "LKH_DOWNLOAD_ARRAY";
  Reader r(v, 0);
  if (r.remaining() < 4) return DecodeError{name, 0, "header truncated"};
  LkhDownloadArray a;
  a.version = *r.u8();
  if (a.version != 1) return DecodeError{name, 0, "LKH Version " + std::to_string(a.version) + ", must be 1"};
  unsigned n = *r.u16();
  if (auto res = *r.u8(); res != 0) return DecodeError{name, 3, "RESERVED is " + hex8(res) + ", must be zero"};
  auto keys = decode_lkh_keys(r, n, key_data_len, name);
  if (!keys) return keys.error();
  a.keys = std::move(*keys);
  return a;
}

Result<LkhUpdateArray> decode_lkh_update_array(ByteView v, std::size_t key_data_len) {
  const char* name = "LKH_UPDATE_ARRAY";
  Reader r(v, 0);
  if (r.remaining() < 12) return DecodeError{name, 0, "header truncated"};
  LkhUpdateArray a;
  a.version = *r.u8();
  if (a.version != 1) return DecodeError{name, 0, "LKH Version " + std::to_string(a.version) + ", must be 1"};
  unsigned n = *r.u16();
  if (auto res = *r.u8(); res != 0) return DecodeError{name, 3, "RESERVED is " + hex8(res) + ", must be zero"};
  a.id = *r.u16();
  if (auto res2 = *r.u16(); res2 != 0) return DecodeError{name, 6, "RESERVED2 is " + std::to_string(res2) + ", must be zero"};
  a.handle = *r.u32();
  auto keys = decode_lkh_keys(r, n, key_data_len, name);
  if (!keys) return keys.error();
  a.keys = std::move(*keys);
  return a;
}

}  // namespace covey::wire
