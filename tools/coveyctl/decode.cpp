#include "coveyctl/decode.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <optional>
#include <sstream>

#include "crypto/cipher.h"
#include "crypto/gdoi.h"
#include "crypto/hash.h"
#include "crypto/ikev1.h"
#include "gdoi/push.h"
#include "gdoi/vendor_id.h"
#include "wire/names.h"

namespace covey::coveyctl {

using namespace covey::wire;

// ------------------------------------------------------------------ keylog

std::string parse_keylog(std::string_view text, Keylog& out) {
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    const std::size_t comma = line.find(',');
    Bytes cookie, key;
    if (comma == std::string_view::npos || !from_hex(line.substr(0, comma), cookie) ||
        !from_hex(line.substr(comma + 1), key))
      return "keylog line " + std::to_string(line_no) + ": expected initiator-cookie-hex,encryption-key-hex";
    if (cookie.size() != 8)
      return "keylog line " + std::to_string(line_no) + ": initiator cookie has " + std::to_string(cookie.size()) +
             " octets, needs 8";
    if (key.empty()) return "keylog line " + std::to_string(line_no) + ": empty encryption key";
    Cookie c{};
    std::copy(cookie.begin(), cookie.end(), c.begin());
    out.keys[c] = std::move(key);
  }
  return {};
}

// -------------------------------------------------------------- formatting

namespace {

std::string hex32(std::uint32_t v, bool upper = false) {
  char buf[11];
  std::snprintf(buf, sizeof buf, upper ? "0x%08X" : "0x%08x", v);
  return buf;
}

// Text from the peer goes into terminals and JSON: printable ASCII only.
std::string printable(ByteView b) {
  std::string s;
  for (std::uint8_t c : b) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      s += static_cast<char>(c);
    } else {
      char esc[5];
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      s += esc;
    }
  }
  return s;
}

std::string endpoint(const std::string& addr, std::uint16_t port) {
  return (addr.find(':') != std::string::npos ? "[" + addr + "]" : addr) + ":" + std::to_string(port);
}

std::string ip_text(ByteView b) {
  char out[INET6_ADDRSTRLEN] = {};
  if (b.size() == 4) inet_ntop(AF_INET, b.data(), out, sizeof out);
  else if (b.size() == 16) inet_ntop(AF_INET6, b.data(), out, sizeof out);
  else return to_hex(b);
  return out;
}

// "/16" for a contiguous mask, else "/255.0.255.0".
std::string mask_text(ByteView mask) {
  unsigned bits = 0;
  bool contiguous = true, ended = false;
  for (std::uint8_t octet : mask)
    for (int i = 7; i >= 0; --i) {
      if (octet >> i & 1) {
        if (ended) contiguous = false;
        ++bits;
      } else {
        ended = true;
      }
    }
  return "/" + (contiguous ? std::to_string(bits) : ip_text(mask));
}

// The identification data of an ID payload or a SA KEK/TEK selector, in words.
std::string id_text(std::uint8_t type, ByteView data) {
  switch (static_cast<IdType>(type)) {
    case IdType::Ipv4Addr:
    case IdType::Ipv6Addr:
      return ip_text(data);
    case IdType::Ipv4AddrSubnet:
    case IdType::Ipv6AddrSubnet:
      if (data.size() % 2) break;
      return ip_text(data.first(data.size() / 2)) + mask_text(data.subspan(data.size() / 2));
    case IdType::Ipv4AddrRange:
    case IdType::Ipv6AddrRange:
      if (data.size() % 2) break;
      return ip_text(data.first(data.size() / 2)) + "-" + ip_text(data.subspan(data.size() / 2));
    case IdType::Fqdn:
    case IdType::UserFqdn:
      return printable(data);
    case IdType::KeyId:
      if (data.size() == 4)  // RFC 6407 5.1: the group identifier
        return "group " + std::to_string(std::uint32_t{data[0]} << 24 | std::uint32_t{data[1]} << 16 |
                                         std::uint32_t{data[2]} << 8 | data[3]);
      break;
    default:
      break;
  }
  return to_hex(data);
}

// Adds "key": value and, when known, "key_name": name.
void put(Json& j, const std::string& key, std::uint64_t value, std::string_view name) {
  j[key] = value;
  if (!name.empty()) j[key + "_name"] = std::string(name);
}

// ------------------------------------------------------------- attributes

Json attribute_json(AttributeSpace space, const Attribute& a) {
  Json j;
  j["type"] = a.type;
  if (auto n = attribute_name(space, a.type); !n.empty()) j["name"] = std::string(n);
  j["format"] = a.basic ? "TV" : "TLV";
  if (auto v = a.as_u32(); v && (a.basic || a.value.size() <= 4)) {
    j["value"] = *v;
    if (auto vn = attribute_value_name(space, a.type, *v); !vn.empty()) j["value_name"] = std::string(vn);
  }
  if (!a.basic) j["value_hex"] = to_hex(a.value);
  return j;
}

// One attribute list in words: "Key Length 256, Authentication HMAC-SHA2-256, Life 3600 s".
// A Life Type names the unit of the Life Duration after it (RFC 2407 4.5, RFC 2409 App. A).
std::string attributes_text(AttributeSpace space, const Attributes& attrs) {
  const bool has_life = space == AttributeSpace::IpsecSa || space == AttributeSpace::Phase1Transform;
  const std::uint16_t life_type = space == AttributeSpace::IpsecSa ? ipsec_attr::SaLifeType : ike_attr::LifeType;
  const std::uint16_t life_duration = space == AttributeSpace::IpsecSa ? ipsec_attr::SaLifeDuration : ike_attr::LifeDuration;
  std::string unit = " s";
  std::string out;
  for (const auto& a : attrs) {
    const auto v = a.as_u32();
    std::string item;
    if (has_life && a.type == life_type && v) {
      unit = *v == 2 ? " KB" : *v == 1 ? " s" : " (life type " + std::to_string(*v) + ")";
      continue;
    }
    if (has_life && a.type == life_duration && v) {
      item = "Life " + std::to_string(*v) + unit;
    } else {
      const auto name = attribute_name(space, a.type);
      item = name.empty() ? "attribute " + std::to_string(a.type) : std::string(name);
      if (v && (a.basic || a.value.size() <= 4)) {
        const auto vn = attribute_value_name(space, a.type, *v);
        item += " " + (vn.empty() ? std::to_string(*v) : std::string(vn));
      } else {
        item += " " + std::to_string(a.value.size()) + " octets " + to_hex(a.value);
      }
    }
    out += (out.empty() ? "" : ", ") + item;
  }
  return out;
}

void put_attributes(Json& j, AttributeSpace space, const Attributes& attrs) {
  Json list = Json::array();
  for (const auto& a : attrs) list.push_back(attribute_json(space, a));
  j["attributes"] = std::move(list);
}

Json identity_json(const GroupIdentity& id) {
  Json j;
  put(j, "id_type", id.type, id_type_name(id.type));
  j["port"] = id.port;
  j["data"] = to_hex(id.data);
  j["text"] = id_text(id.type, id.data);
  return j;
}

std::string identity_text(const GroupIdentity& id) {
  return id_text(id.type, id.data) + (id.port ? ":" + std::to_string(id.port) : "");
}

// ---------------------------------------------------------------- payloads

struct PayloadJson {
  Json operator()(const SaPayload& sa) const {
    Json j;
    put(j, "doi", sa.doi, doi_name(sa.doi));
    j["situation"] = sa.situation;
    Json props = Json::array();
    std::size_t transforms = 0;
    for (const auto& p : sa.proposals) {
      Json pj;
      pj["number"] = p.number;
      put(pj, "protocol", p.protocol, protocol_id_name(p.protocol));
      pj["spi"] = to_hex(p.spi);
      Json ts = Json::array();
      for (const auto& t : p.transforms) {
        Json tj;
        tj["number"] = t.number;
        put(tj, "id", t.id, phase1_transform_name(t.id));
        put_attributes(tj, AttributeSpace::Phase1Transform, t.attributes);
        tj["summary"] = "Transform #" + std::to_string(t.number) + " " +
                        with_number(phase1_transform_name(t.id), t.id) + ": " +
                        attributes_text(AttributeSpace::Phase1Transform, t.attributes);
        ts.push_back(std::move(tj));
      }
      transforms += p.transforms.size();
      pj["summary"] = "Proposal #" + std::to_string(p.number) + ": " +
                      with_number(protocol_id_name(p.protocol), p.protocol) +
                      (p.spi.empty() ? "" : ", SPI " + to_hex(p.spi)) + ", " +
                      std::to_string(p.transforms.size()) + " transform(s)";
      pj["transforms"] = std::move(ts);
      props.push_back(std::move(pj));
    }
    j["summary"] = "SA: DOI " + with_number(doi_name(sa.doi), sa.doi) + ", " + std::to_string(sa.proposals.size()) +
                   " proposal(s), " + std::to_string(transforms) + " transform(s)";
    j["proposals"] = std::move(props);
    return j;
  }

  Json operator()(const GroupSaPayload& sa) const {
    Json j;
    put(j, "doi", sa.doi, doi_name(sa.doi));
    j["situation"] = sa.situation;
    Json list = Json::array();
    if (sa.kek) list.push_back(kek(*sa.kek));
    if (sa.gap) {
      Json g;
      g["type"] = static_cast<int>(PayloadType::GroupAssociatedPolicy);
      g["name"] = "GAP";
      put_attributes(g, AttributeSpace::Gap, sa.gap->attributes);
      g["summary"] = "GAP: " + attributes_text(AttributeSpace::Gap, sa.gap->attributes);
      list.push_back(std::move(g));
    }
    for (const auto& t : sa.teks) list.push_back(tek(t));
    j["summary"] = "SA: DOI " + with_number(doi_name(sa.doi), sa.doi) + ", " + (sa.kek ? "SA KEK, " : "") +
                   (sa.gap ? "GAP, " : "") + std::to_string(sa.teks.size()) + " SA TEK(s)";
    j["sa_attributes"] = std::move(list);
    return j;
  }

  static Json kek(const SaKekPayload& k) {
    Json j;
    j["type"] = static_cast<int>(PayloadType::SaKek);
    j["name"] = "SA KEK";
    put(j, "protocol", k.protocol, ip_protocol_name(k.protocol));
    j["src"] = identity_json(k.src);
    j["dst"] = identity_json(k.dst);
    j["spi"] = to_hex(k.spi);
    put_attributes(j, AttributeSpace::Kek, k.attributes);
    j["summary"] = "SA KEK: SPI " + to_hex(k.spi) + ", " + with_number(ip_protocol_name(k.protocol), k.protocol) +
                   " SRC " + identity_text(k.src) + " DST " + identity_text(k.dst) + ", " +
                   attributes_text(AttributeSpace::Kek, k.attributes);
    return j;
  }

  static Json tek(const SaTekPayload& t) {
    Json j;
    j["type"] = static_cast<int>(PayloadType::SaTek);
    j["name"] = "SA TEK";
    put(j, "protocol_id", t.protocol_id, gdoi_protocol_name(t.protocol_id));
    put(j, "protocol", t.protocol, ip_protocol_name(t.protocol));
    j["src"] = identity_json(t.src);
    j["dst"] = identity_json(t.dst);
    const auto tname = t.protocol_id == kGdoiProtoIpsecAh ? ah_transform_name(t.transform_id)
                                                            : esp_transform_name(t.transform_id);
    put(j, "transform_id", t.transform_id, tname);
    j["spi"] = t.spi;
    j["spi_hex"] = hex32(t.spi);
    put_attributes(j, AttributeSpace::IpsecSa, t.attributes);
    std::string s = "SA TEK: " + with_number(gdoi_protocol_name(t.protocol_id), t.protocol_id) +
                    ", SPI " + hex32(t.spi, true) + ", transform " + with_number(tname, t.transform_id) +
                    ", " + (t.protocol ? with_number(ip_protocol_name(t.protocol), t.protocol) + " " : "") +
                    "SRC " + identity_text(t.src) + " DST " + identity_text(t.dst);
    if (!t.attributes.empty()) s += ", " + attributes_text(AttributeSpace::IpsecSa, t.attributes);
    j["summary"] = s;
    return j;
  }

  Json operator()(const KeyExchangePayload& p) const {
    return Json{{"data", to_hex(p.data)}, {"size", p.data.size()},
                {"summary", "KE: " + std::to_string(p.data.size()) + " octets " + to_hex(p.data)}};
  }
  Json operator()(const IdentificationPayload& p) const {
    Json j;
    put(j, "id_type", p.type, id_type_name(p.type));
    put(j, "protocol", p.protocol, ip_protocol_name(p.protocol));
    j["port"] = p.port;
    j["data"] = to_hex(p.data);
    j["text"] = id_text(p.type, p.data);
    j["summary"] = "ID: " + with_number(id_type_name(p.type), p.type) + " " + id_text(p.type, p.data) +
                   (p.protocol ? ", protocol " + with_number(ip_protocol_name(p.protocol), p.protocol) : "") +
                   (p.port ? ", port " + std::to_string(p.port) : "");
    return j;
  }
  Json operator()(const CertificatePayload& p) const {
    Json j;
    put(j, "encoding", p.encoding, cert_encoding_name(p.encoding));
    j["data"] = to_hex(p.data);
    j["summary"] = "CERT: " + with_number(cert_encoding_name(p.encoding), p.encoding) + ", " +
                   std::to_string(p.data.size()) + " octets";
    return j;
  }
  Json operator()(const CertificateRequestPayload& p) const {
    Json j;
    put(j, "cert_type", p.type, cert_encoding_name(p.type));
    j["authority"] = to_hex(p.authority);
    j["summary"] = "CERTREQ: " + with_number(cert_encoding_name(p.type), p.type) +
                   (p.authority.empty() ? ", any authority" : ", authority " + to_hex(p.authority));
    return j;
  }
  static Json blob(const char* name, const Bytes& data) {
    return Json{{"data", to_hex(data)}, {"size", data.size()},
                {"summary", std::string(name) + ": " + std::to_string(data.size()) + " octets " + to_hex(data)}};
  }
  Json operator()(const HashPayload& p) const { return blob("HASH", p.data); }
  Json operator()(const SignaturePayload& p) const { return blob("SIG", p.data); }
  Json operator()(const NoncePayload& p) const { return blob("NONCE", p.data); }
  Json operator()(const VendorIdPayload& p) const {
    Json j = blob("VENDOR ID", p.data);
    if (auto covey = gdoi::describe_covey_vendor_id(p.data)) {
      j["vendor"] = *covey;
      j["summary"] = "VENDOR ID: " + *covey;
    }
    return j;
  }
  Json operator()(const NotificationPayload& p) const {
    Json j;
    put(j, "doi", p.doi, doi_name(p.doi));
    put(j, "protocol", p.protocol, protocol_id_name(p.protocol));
    put(j, "notify_type", p.type, notify_type_name(p.type));
    j["spi"] = to_hex(p.spi);
    j["data"] = to_hex(p.data);
    j["summary"] = "NOTIFY: " + with_number(notify_type_name(p.type), p.type) + ", DOI " +
                   with_number(doi_name(p.doi), p.doi) + ", protocol " +
                   with_number(protocol_id_name(p.protocol), p.protocol) +
                   (p.spi.empty() ? "" : ", SPI " + to_hex(p.spi)) +
                   (p.data.empty() ? "" : ", data " + to_hex(p.data));
    return j;
  }
  Json operator()(const DeletePayload& p) const {
    Json j;
    put(j, "doi", p.doi, doi_name(p.doi));
    put(j, "protocol", p.protocol, protocol_id_name(p.protocol));
    j["spi_size"] = p.spi_size;
    Json spis = Json::array();
    std::string list;
    for (const auto& s : p.spis) {
      spis.push_back(to_hex(s));
      list += (list.empty() ? "" : " ") + to_hex(s);
    }
    j["spis"] = std::move(spis);
    j["summary"] = "DELETE: DOI " + with_number(doi_name(p.doi), p.doi) + ", protocol " +
                   with_number(protocol_id_name(p.protocol), p.protocol) + ", SPI(s) " + list;
    return j;
  }
  Json operator()(const SequenceNumberPayload& p) const {
    return Json{{"sequence_number", p.number}, {"summary", "SEQ: " + std::to_string(p.number)}};
  }
  Json operator()(const KeyDownloadPayload& p) const {
    Json j;
    Json packets = Json::array();
    for (const auto& kp : p.packets) {
      Json k;
      put(k, "kd_type", kp.type, key_packet_type_name(kp.type));
      k["spi"] = to_hex(kp.spi);
      const AttributeSpace space = key_packet_space(kp.type);
      put_attributes(k, space, kp.attributes);
      std::string s = with_number(key_packet_type_name(kp.type), kp.type) + " key packet";
      if (kp.spi.size() == 4)
        s += ", SPI " + hex32(std::uint32_t{kp.spi[0]} << 24 | std::uint32_t{kp.spi[1]} << 16 |
                              std::uint32_t{kp.spi[2]} << 8 | kp.spi[3], true);
      else if (!kp.spi.empty())
        s += ", SPI " + to_hex(kp.spi);
      if (!kp.attributes.empty()) s += ": " + attributes_text(space, kp.attributes);
      k["summary"] = s;
      packets.push_back(std::move(k));
    }
    j["summary"] = "KD: " + std::to_string(p.packets.size()) + " key packet(s)";
    j["key_packets"] = std::move(packets);
    return j;
  }
  Json operator()(const GapPayload& p) const {
    Json j;
    put_attributes(j, AttributeSpace::Gap, p.attributes);
    j["summary"] = "GAP: " + attributes_text(AttributeSpace::Gap, p.attributes);
    return j;
  }
};

Json payload_json(const Payload& p, const Extent& e) {
  Json j;
  const auto type = static_cast<std::uint8_t>(type_of(p));
  j["type"] = type;
  j["name"] = payload_name(type);
  j["offset"] = e.offset;
  j["length"] = e.length;
  Json fields = std::visit(PayloadJson{}, p);  // named: items() must not outlive it
  for (auto& [k, v] : fields.items()) j[k] = std::move(v);
  return j;
}

std::string flags_text(std::uint8_t flags) {
  std::string s;
  if (flags & kFlagEncryption) s += "E";
  if (flags & kFlagCommit) s += "C";
  if (flags & kFlagAuthenticationOnly) s += "A";
  return s.empty() ? "none" : s;
}

Json header_json(const Header& h) {
  Json j;
  j["initiator_cookie"] = to_hex(h.initiator_cookie);
  j["responder_cookie"] = to_hex(h.responder_cookie);
  put(j, "next_payload", h.next_payload, payload_name(h.next_payload));
  j["version"] = std::to_string(h.version >> 4) + "." + std::to_string(h.version & 0xf);
  put(j, "exchange", h.exchange, exchange_name(h.exchange));
  j["flags"] = h.flags;
  j["flags_text"] = flags_text(h.flags);
  j["message_id"] = h.message_id;
  j["message_id_hex"] = hex32(h.message_id);
  j["length"] = h.length;
  return j;
}

// ---------------------------------------------------------------- crypto

using Spi16 = std::array<std::uint8_t, 16>;

Spi16 push_spi(const Header& h) {
  Spi16 s{};
  std::copy(h.initiator_cookie.begin(), h.initiator_cookie.end(), s.begin());
  std::copy(h.responder_cookie.begin(), h.responder_cookie.end(), s.begin() + 8);
  return s;
}

std::string frame_ref(std::size_t frame) { return "frame #" + std::to_string(frame); }

}  // namespace

// Everything decryption learns from the capture, keyed the way the wire keys it.
struct Decoder::State {
  Keylog keylog;

  // One phase-1 SA, by initiator cookie (RFC 2409 Appendix B).
  struct Phase1 {
    std::string initiator;  // endpoint that sent Main Mode message 1
    std::uint16_t cipher = 0, key_bits = 0, hash = 0;  // from the responder's SA, message 2
    Bytes gxi, gxr;                                    // KE of messages 3 and 4
    Bytes last_block;  // IV for the next phase-1 message: last ciphertext block so far
    std::map<std::uint32_t, Bytes> phase2_iv;  // next IV per phase-2 Message ID
    // The IV each chain's last message used: a retransmission ends in the
    // same block as the message it repeats and was encrypted with that IV.
    Bytes phase1_prev_iv;
    std::map<std::uint32_t, Bytes> phase2_prev_iv;
  };
  std::map<Cookie, Phase1> phase1;

  // KEK policy (SA KEK) and key (KD KEK packet), by KEK SPI = push cookies.
  struct KekPolicy {
    std::uint16_t algorithm = 0, key_bits = 0;
    std::string source;
  };
  struct KekKey {
    Bytes iv_and_key;  // KEK_ALGORITHM_KEY, RFC 6407 5.6.2.1
    std::string source;
  };
  std::map<Spi16, KekPolicy> kek_policy;
  std::map<Spi16, KekKey> kek_key;

  void learn_clear_main_mode(const Datagram& d, const Header& h, const std::vector<Payload>& payloads);
  void learn_group_keys(std::size_t frame, const Header& h, const std::vector<Payload>& payloads);
  // Plaintext, or why there is none; `how` says which key and IV were used.
  std::optional<Bytes> decrypt(const Datagram& d, const Header& h, ByteView ciphertext, Json& how);
  std::optional<Bytes> decrypt_phase1_sa(const Header& h, ByteView ciphertext, Json& how);
  std::optional<Bytes> decrypt_push(const Header& h, ByteView ciphertext, Json& how);
};

namespace {

std::optional<crypto::CipherAlgorithm> ike_cipher(std::uint16_t alg, std::uint16_t key_bits, std::size_t key_size,
                                                  std::string& why) {
  if (alg == ike_value::TripleDes) return crypto::CipherAlgorithm::TripleDesCbc;
  if (alg == ike_value::AesCbc) {
    // No Key Length attribute: take the size the keylog gives.
    const std::size_t bits = key_bits ? key_bits : key_size * 8;
    if (bits == 128) return crypto::CipherAlgorithm::Aes128Cbc;
    if (bits == 256) return crypto::CipherAlgorithm::Aes256Cbc;
    why = "AES-CBC with a " + std::to_string(bits) + "-bit key is not supported";
    return std::nullopt;
  }
  why = alg == 0 ? "phase-1 cipher unknown: Main Mode message 2 (the responder's SA) was not seen"
                 : "phase-1 encryption algorithm " + with_number(attribute_value_name(AttributeSpace::Phase1Transform,
                                                                                         ike_attr::EncryptionAlgorithm, alg),
                                                                    alg) +
                       " is not supported";
  return std::nullopt;
}

std::optional<crypto::HashAlgorithm> ike_hash(std::uint16_t hash, std::string& why) {
  switch (hash) {
    case ike_value::Sha1: return crypto::HashAlgorithm::Sha1;
    case ike_value::Sha256: return crypto::HashAlgorithm::Sha256;
    case ike_value::Sha384: return crypto::HashAlgorithm::Sha384;
  }
  why = hash == 0 ? "phase-1 hash unknown: Main Mode message 2 (the responder's SA) was not seen"
                  : "phase-1 hash " + with_number(attribute_value_name(AttributeSpace::Phase1Transform,
                                                                        ike_attr::HashAlgorithm, hash),
                                                   hash) +
                        " is not supported";
  return std::nullopt;
}

}  // namespace

void Decoder::State::learn_clear_main_mode(const Datagram& d, const Header& h, const std::vector<Payload>& payloads) {
  Phase1& p = phase1[h.initiator_cookie];
  const std::string from = endpoint(d.src, d.src_port);
  const bool zero_rcookie = h.responder_cookie == Cookie{};
  if (zero_rcookie && p.initiator.empty()) p.initiator = from;
  for (const auto& pl : payloads) {
    if (const auto* sa = std::get_if<SaPayload>(&pl); sa && !zero_rcookie && !sa->proposals.empty() &&
                                                      !sa->proposals[0].transforms.empty()) {
      // The responder's SA holds the one transform it chose.
      const Attributes& a = sa->proposals[0].transforms[0].attributes;
      auto get = [&](std::uint16_t t) -> std::uint16_t {
        const Attribute* x = find(a, t);
        auto v = x ? x->as_u32() : std::nullopt;
        return v && *v <= 0xffff ? static_cast<std::uint16_t>(*v) : 0;
      };
      p.cipher = get(ike_attr::EncryptionAlgorithm);
      p.key_bits = get(ike_attr::KeyLength);
      p.hash = get(ike_attr::HashAlgorithm);
    }
    if (const auto* ke = std::get_if<KeyExchangePayload>(&pl)) {
      // The initiator's is g^xi; without message 1 in the capture, the first KE seen.
      const bool from_initiator = p.initiator.empty() ? p.gxi.empty() : from == p.initiator;
      (from_initiator ? p.gxi : p.gxr) = ke->data;
    }
  }
}

void Decoder::State::learn_group_keys(std::size_t frame, const Header& h, const std::vector<Payload>& payloads) {
  // A push's KD may name the KEK that encrypted it where its SA KEK names
  // the new one, as gdoid's KEK rekey does: read it as the member does.
  const GroupSaPayload* push_sa = nullptr;
  std::optional<KeyDownloadPayload> gdoid_kd;
  if (h.exchange == static_cast<std::uint8_t>(ExchangeType::GroupkeyPush))
    for (const auto& pl : payloads) {
      if (const auto* sa = std::get_if<GroupSaPayload>(&pl); sa && sa->kek) push_sa = sa;
      if (const auto* kd = std::get_if<KeyDownloadPayload>(&pl); kd && push_sa)
        gdoid_kd = gdoi::gdoid_kek_rekey_kd(*kd, push_spi(h), push_sa->kek->spi);
    }
  for (const auto& pl : payloads) {
    if (const auto* sa = std::get_if<GroupSaPayload>(&pl); sa && sa->kek) {
      KekPolicy k;
      if (const Attribute* a = find(sa->kek->attributes, kek_attr::KekAlgorithm); a && a->as_u32())
        k.algorithm = static_cast<std::uint16_t>(*a->as_u32());
      if (const Attribute* a = find(sa->kek->attributes, kek_attr::KekKeyLength); a && a->as_u32())
        k.key_bits = static_cast<std::uint16_t>(*a->as_u32());
      k.source = "SA KEK in " + frame_ref(frame);
      kek_policy[sa->kek->spi] = k;
    }
    if (const auto* kd = std::get_if<KeyDownloadPayload>(&pl)) {
      if (gdoid_kd) kd = &*gdoid_kd;
      for (const auto& kp : kd->packets) {
        if (kp.type != static_cast<std::uint8_t>(KeyPacketType::Kek) || kp.spi.size() != 16) continue;
        const Attribute* a = find(kp.attributes, kek_key_attr::KekAlgorithmKey);
        if (!a || a->basic) continue;
        Spi16 spi{};
        std::copy(kp.spi.begin(), kp.spi.end(), spi.begin());
        kek_key[spi] = KekKey{a->value, "KD KEK packet in " + frame_ref(frame) +
                                            (gdoid_kd ? " (naming the KEK it came under, as gdoid does)" : "")};
      }
    }
  }
}

std::optional<Bytes> Decoder::State::decrypt_phase1_sa(const Header& h, ByteView ciphertext, Json& how) {
  auto key_it = keylog.keys.find(h.initiator_cookie);
  if (key_it == keylog.keys.end()) {
    how["reason"] = "no keylog entry for initiator cookie " + to_hex(h.initiator_cookie);
    return std::nullopt;
  }
  Phase1& p = phase1[h.initiator_cookie];
  std::string why;
  auto cipher = ike_cipher(p.cipher, p.key_bits, key_it->second.size(), why);
  auto hash = cipher ? ike_hash(p.hash, why) : std::nullopt;
  if (!cipher || !hash) {
    how["reason"] = why;
    return std::nullopt;
  }
  const std::size_t bs = crypto::block_size(*cipher), ks = crypto::key_size(*cipher);
  if (key_it->second.size() < ks) {
    how["reason"] = "keylog key has " + std::to_string(key_it->second.size()) + " octets, " +
                    std::string(crypto::name(*cipher)) + " needs " + std::to_string(ks);
    return std::nullopt;
  }
  how["key"] = "keylog";
  how["source"] = "keylog entry for initiator cookie " + to_hex(h.initiator_cookie);
  how["cipher"] = std::string(crypto::name(*cipher));

  // RFC 2409 Appendix B: phase 1 starts from hash(g^xi | g^xr); each phase-2
  // exchange from hash(last phase-1 block | M-ID); then the previous message's last block.
  if (p.last_block.empty()) {
    if (p.gxi.empty() || p.gxr.empty()) {
      how["reason"] = "phase-1 IV unknown: Main Mode messages 3 and 4 (KE) were not seen";
      return std::nullopt;
    }
    auto first = crypto::ikev1::phase1_iv(*hash, *cipher, p.gxi, p.gxr);
    if (!first) {
      how["reason"] = first.error();
      return std::nullopt;
    }
    p.last_block = std::move(*first);
  }
  Bytes iv;
  if (h.message_id == 0) {
    iv = p.last_block;
  } else if (auto it = p.phase2_iv.find(h.message_id); it != p.phase2_iv.end()) {
    iv = it->second;
  } else {
    auto first = crypto::ikev1::phase2_iv(*hash, *cipher, p.last_block, h.message_id);
    if (!first) {
      how["reason"] = first.error();
      return std::nullopt;
    }
    iv = std::move(*first);
  }
  Bytes last = crypto::last_cipher_block(*cipher, ciphertext);
  Bytes& prev = h.message_id == 0 ? p.phase1_prev_iv : p.phase2_prev_iv[h.message_id];
  bool retransmission = !prev.empty() && last == iv;
  if (retransmission) {
    iv = prev;
    how["retransmission"] = true;
  }
  how["iv"] = to_hex(iv);
  if (ciphertext.empty() || ciphertext.size() % bs) {
    how["reason"] = "ciphertext of " + std::to_string(ciphertext.size()) + " octets is not a whole number of " +
                    std::to_string(bs) + "-octet blocks";
    return std::nullopt;
  }
  auto plain = crypto::cbc_decrypt(*cipher, ByteView(key_it->second).first(ks), iv, ciphertext);
  if (!plain) {
    how["reason"] = plain.error();
    return std::nullopt;
  }
  if (!retransmission) {
    prev = iv;
    if (h.message_id == 0) p.last_block = last;
    else p.phase2_iv[h.message_id] = last;
  }
  return std::move(*plain);
}

std::optional<Bytes> Decoder::State::decrypt_push(const Header& h, ByteView ciphertext, Json& how) {
  const Spi16 spi = push_spi(h);
  auto key_it = kek_key.find(spi);
  auto pol_it = kek_policy.find(spi);
  if (key_it == kek_key.end() || pol_it == kek_policy.end()) {
    how["reason"] = std::string("no KEK for SPI ") + to_hex(spi) +
                    (key_it == kek_key.end() ? " (no decrypted KD with that KEK packet seen)"
                                             : " (no decrypted SA KEK with that SPI seen)");
    return std::nullopt;
  }
  const KekPolicy& pol = pol_it->second;
  const Bytes& material = key_it->second.iv_and_key;
  std::optional<crypto::CipherAlgorithm> cipher;
  if (pol.algorithm == kek_value::KekAlg3des) {
    cipher = crypto::CipherAlgorithm::TripleDesCbc;
  } else if (pol.algorithm == kek_value::KekAlgAes) {
    // KEK_KEY_LENGTH is optional; without it the key is what follows the 16-octet IV.
    const std::size_t bits = pol.key_bits ? pol.key_bits : (material.size() > 16 ? (material.size() - 16) * 8 : 0);
    if (bits == 128) cipher = crypto::CipherAlgorithm::Aes128Cbc;
    if (bits == 256) cipher = crypto::CipherAlgorithm::Aes256Cbc;
  }
  if (!cipher) {
    how["reason"] = "KEK_ALGORITHM " +
                    with_number(attribute_value_name(AttributeSpace::Kek, kek_attr::KekAlgorithm, pol.algorithm),
                                pol.algorithm) +
                    " with a " + std::to_string(pol.key_bits) + "-bit key is not supported";
    return std::nullopt;
  }
  const std::size_t bs = crypto::block_size(*cipher), ks = crypto::key_size(*cipher);
  if (material.size() != bs + ks) {
    how["reason"] = "KEK_ALGORITHM_KEY has " + std::to_string(material.size()) + " octets, " +
                    std::string(crypto::name(*cipher)) + " needs IV " + std::to_string(bs) + " + key " +
                    std::to_string(ks);
    return std::nullopt;
  }
  how["key"] = "KEK";
  how["source"] = key_it->second.source + ", policy from " + pol.source;
  how["cipher"] = std::string(crypto::name(*cipher));
  how["iv"] = to_hex(ByteView(material).first(bs));
  if (ciphertext.empty() || ciphertext.size() % bs) {
    how["reason"] = "ciphertext of " + std::to_string(ciphertext.size()) + " octets is not a whole number of " +
                    std::to_string(bs) + "-octet blocks";
    return std::nullopt;
  }
  auto plain = crypto::gdoi::kek_decrypt(*cipher, material, ciphertext);
  if (!plain) {
    how["reason"] = plain.error();
    return std::nullopt;
  }
  return std::move(*plain);
}

std::optional<Bytes> Decoder::State::decrypt(const Datagram&, const Header& h, ByteView ciphertext, Json& how) {
  // RFC 6407 4: the push is protected by the KEK, not by a phase-1 SA.
  if (h.exchange == static_cast<std::uint8_t>(ExchangeType::GroupkeyPush)) return decrypt_push(h, ciphertext, how);
  return decrypt_phase1_sa(h, ciphertext, how);
}

Decoder::Decoder(Keylog keylog) : state_(std::make_unique<State>()) { state_->keylog = std::move(keylog); }
Decoder::~Decoder() = default;

Json Decoder::decode(const Datagram& d, Bytes* clear) {
  if (clear) clear->clear();
  Json m;
  m["frame"] = d.frame;
  m["time"] = d.time;
  m["src"] = d.src;
  m["src_port"] = d.src_port;
  m["dst"] = d.dst;
  m["dst_port"] = d.dst_port;
  m["length"] = d.payload.size();
  if (!d.problem.empty()) {
    m["error"] = d.problem;
    return m;
  }
  try {
    auto h = decode_header(d.payload);
    if (!h) {
      m["error"] = h.error().message();
      return m;
    }
    m["header"] = header_json(*h);
    m["encrypted"] = h->encrypted();
    ByteView body = ByteView(d.payload).subspan(kHeaderSize);
    Bytes plain;
    if (h->encrypted()) {
      Json how;
      auto p = state_->decrypt(d, *h, body, how);
      how["status"] = p ? "decrypted" : "not decrypted";
      m["decryption"] = how;
      if (!p) {
        m["payloads"] = Json::array();
        return m;
      }
      plain = std::move(*p);
      body = plain;
      if (clear) *clear = plain;
    }
    // Offsets count from the start of the datagram, as if the body were clear.
    auto chain = decode_payloads(body, h->next_payload, h->exchange, kHeaderSize, h->encrypted());
    if (!chain) {
      std::string e = chain.error().message();
      if (h->encrypted()) e += " (in the decrypted body: wrong key or IV?)";
      m["payloads"] = Json::array();
      m["error"] = e;
      return m;
    }
    Json list = Json::array();
    for (std::size_t i = 0; i < chain->payloads.size(); ++i) {
      Extent e = chain->extents[i];
      e.offset += kHeaderSize;
      list.push_back(payload_json(chain->payloads[i], e));
    }
    m["payloads"] = std::move(list);
    if (h->exchange == static_cast<std::uint8_t>(ExchangeType::IdentityProtection) && !h->encrypted())
      state_->learn_clear_main_mode(d, *h, chain->payloads);
    state_->learn_group_keys(d.frame, *h, chain->payloads);
  } catch (const std::exception& e) {
    // Nothing above should throw on any input; if it does, this message is lost, not the capture.
    m["error"] = std::string("internal error while decoding: ") + e.what();
  }
  return m;
}

Json decode_all(const std::vector<Datagram>& datagrams, const Keylog& keylog) {
  Decoder decoder(keylog);
  Json out = Json::array();
  for (const auto& d : datagrams) out.push_back(decoder.decode(d));
  return out;
}

// ------------------------------------------------------------------- text

namespace {

void render_children(std::ostringstream& out, const Json& j, int depth) {
  // Nested structures a reader expands; attributes are already in each summary line.
  static const char* const kChildren[] = {"proposals", "transforms", "sa_attributes", "key_packets"};
  for (const char* key : kChildren) {
    if (!j.contains(key) || !j[key].is_array()) continue;
    for (const auto& c : j[key]) {
      out << std::string(static_cast<std::size_t>(depth) * 2, ' ') << c.value("summary", "") << "\n";
      render_children(out, c, depth + 1);
    }
  }
}

}  // namespace

std::string render_text(const Json& m) {
  std::ostringstream out;
  out << "#" << m.value("frame", 0) << " " << endpoint(m.value("src", ""), m.value("src_port", std::uint16_t{0}))
      << " -> " << endpoint(m.value("dst", ""), m.value("dst_port", std::uint16_t{0}));
  if (m.contains("header")) {
    const Json& h = m["header"];
    out << " " << h.value("exchange_name", "exchange " + std::to_string(h.value("exchange", 0))) << " msg-id "
        << h.value("message_id_hex", "");
    if (m.value("encrypted", false)) {
      const Json& d = m["decryption"];
      out << " encrypted, ";
      if (d.value("status", "") == "decrypted")
        out << "decrypted with " << (d.value("key", "") == "KEK" ? "KEK from " + d.value("source", "") : "keylog");
      else
        out << "not decrypted: " << d.value("reason", "");
    }
    out << "\n  HDR: cookies " << h.value("initiator_cookie", "") << " " << h.value("responder_cookie", "")
        << ", flags " << h.value("flags_text", "") << ", length " << h.value("length", 0) << "\n";
  } else {
    out << " (" << m.value("length", 0) << " octets)\n";
  }
  if (m.contains("payloads"))
    for (const auto& p : m["payloads"]) {
      out << "  " << p.value("summary", "") << "\n";
      render_children(out, p, 2);
    }
  if (m.contains("error")) out << "  MALFORMED: " << m["error"].get<std::string>() << "\n";
  return out.str();
}

}  // namespace covey::coveyctl
