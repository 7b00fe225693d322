// Describing messages (describe.h): header, payloads and attributes to
// JSON with names from wire/names.h and a one-line summary each, and the
// text report built from those summaries.
#include "coveyctl/describe.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstdio>
#include <sstream>

#include "gdoi/vendor_id.h"
#include "wire/names.h"

namespace covey::coveyctl {

using namespace covey::wire;

// -------------------------------------------------------------- formatting

std::string endpoint(const std::string& addr, std::uint16_t port) {
  return (addr.find(':') != std::string::npos ? "[" + addr + "]" : addr) + ":" + std::to_string(port);
}

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
  const std::string text = id_text(id.type, id.data);
  return id.port ? endpoint(text, id.port) : text;  // [2001:db8::10]:443, not 2001:db8::10:443
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

}  // namespace

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

namespace {

std::string flags_text(std::uint8_t flags) {
  std::string s;
  if (flags & kFlagEncryption) s += "E";
  if (flags & kFlagCommit) s += "C";
  if (flags & kFlagAuthenticationOnly) s += "A";
  return s.empty() ? "none" : s;
}

}  // namespace

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
