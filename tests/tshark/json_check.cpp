#include "json_check.h"

namespace covey::test {

using namespace covey::wire;
using Json = nlohmann::ordered_json;

namespace {

struct Checker {
  std::vector<std::string>& diffs;
  std::string where;

  template <class A, class B>
  void eq(const std::string& what, const A& got, const B& want) {
    if (!(got == want)) diffs.push_back(where + " " + what + ": coveyctl shows " + Json(got).dump() + ", encoded " + Json(want).dump());
  }
  // A field the decoder must have; missing ones are differences, never exceptions.
  const Json& at(const Json& j, const std::string& key) {
    static const Json null;
    if (!j.is_object() || !j.contains(key)) {
      diffs.push_back(where + " field " + key + " missing");
      return null;
    }
    return j[key];
  }

  void attributes(const Json& list, const Attributes& attrs) {
    if (!list.is_array() || list.size() != attrs.size()) {
      diffs.push_back(where + " attributes: coveyctl shows " + list.dump() + ", encoded " + std::to_string(attrs.size()));
      return;
    }
    for (std::size_t i = 0; i < attrs.size(); ++i) {
      eq("attribute type", at(list[i], "type"), attrs[i].type);
      if (attrs[i].basic) eq("attribute value", at(list[i], "value"), attrs[i].basic_value);
      else eq("attribute value_hex", at(list[i], "value_hex"), to_hex(attrs[i].value));
    }
  }
  void identity(const Json& j, const GroupIdentity& id) {
    eq("id_type", at(j, "id_type"), id.type);
    eq("port", at(j, "port"), id.port);
    eq("data", at(j, "data"), to_hex(id.data));
  }

  void payload(const Json& j, const Payload& p) {
    eq("type", at(j, "type"), static_cast<int>(type_of(p)));
    if (const auto* v = std::get_if<SaPayload>(&p)) {
      eq("doi", at(j, "doi"), v->doi);
      const Json& props = at(j, "proposals");
      if (!props.is_array() || props.size() != v->proposals.size()) return diffs.push_back(where + " proposal count");
      for (std::size_t i = 0; i < v->proposals.size(); ++i) {
        eq("proposal protocol", at(props[i], "protocol"), v->proposals[i].protocol);
        const Json& ts = at(props[i], "transforms");
        if (!ts.is_array() || ts.size() != v->proposals[i].transforms.size()) return diffs.push_back(where + " transform count");
        for (std::size_t k = 0; k < ts.size(); ++k) {
          eq("transform id", at(ts[k], "id"), v->proposals[i].transforms[k].id);
          attributes(at(ts[k], "attributes"), v->proposals[i].transforms[k].attributes);
        }
      }
      return;
    }
    if (const auto* v = std::get_if<GroupSaPayload>(&p)) {
      eq("doi", at(j, "doi"), v->doi);
      const Json& list = at(j, "sa_attributes");
      const std::size_t n = (v->kek ? 1 : 0) + (v->gap ? 1 : 0) + v->teks.size();
      if (!list.is_array() || list.size() != n) return diffs.push_back(where + " SA attribute payload count");
      std::size_t i = 0;
      if (v->kek) {
        const Json& k = list[i++];
        eq("SA KEK spi", at(k, "spi"), to_hex(v->kek->spi));
        eq("SA KEK protocol", at(k, "protocol"), v->kek->protocol);
        identity(at(k, "src"), v->kek->src);
        identity(at(k, "dst"), v->kek->dst);
        attributes(at(k, "attributes"), v->kek->attributes);
      }
      if (v->gap) attributes(at(list[i++], "attributes"), v->gap->attributes);
      for (const auto& t : v->teks) {
        const Json& tj = list[i++];
        eq("SA TEK spi", at(tj, "spi"), t.spi);
        eq("SA TEK protocol_id", at(tj, "protocol_id"), t.protocol_id);
        eq("SA TEK transform_id", at(tj, "transform_id"), t.transform_id);
        identity(at(tj, "src"), t.src);
        identity(at(tj, "dst"), t.dst);
        attributes(at(tj, "attributes"), t.attributes);
      }
      return;
    }
    if (const auto* v = std::get_if<KeyDownloadPayload>(&p)) {
      const Json& list = at(j, "key_packets");
      if (!list.is_array() || list.size() != v->packets.size()) return diffs.push_back(where + " key packet count");
      for (std::size_t i = 0; i < list.size(); ++i) {
        eq("kd_type", at(list[i], "kd_type"), v->packets[i].type);
        eq("key packet spi", at(list[i], "spi"), to_hex(v->packets[i].spi));
        attributes(at(list[i], "attributes"), v->packets[i].attributes);
      }
      return;
    }
    if (const auto* v = std::get_if<SequenceNumberPayload>(&p)) {
      eq("sequence_number", at(j, "sequence_number"), v->number);
      return;
    }
    if (const auto* v = std::get_if<GapPayload>(&p)) {
      attributes(at(j, "attributes"), v->attributes);
      return;
    }
    if (const auto* v = std::get_if<IdentificationPayload>(&p)) {
      eq("id_type", at(j, "id_type"), v->type);
      eq("data", at(j, "data"), to_hex(v->data));
      return;
    }
    if (const auto* v = std::get_if<NotificationPayload>(&p)) {
      eq("notify_type", at(j, "notify_type"), v->type);
      eq("spi", at(j, "spi"), to_hex(v->spi));
      return;
    }
    if (const auto* v = std::get_if<DeletePayload>(&p)) {
      const Json& spis = at(j, "spis");
      if (!spis.is_array() || spis.size() != v->spis.size()) return diffs.push_back(where + " SPI count");
      for (std::size_t i = 0; i < spis.size(); ++i) eq("delete spi", spis[i], to_hex(v->spis[i]));
      return;
    }
    if (const auto* v = std::get_if<KeyExchangePayload>(&p)) {
      eq("data", at(j, "data"), to_hex(v->data));
      return;
    }
    if (const auto* v = std::get_if<NoncePayload>(&p)) {
      eq("data", at(j, "data"), to_hex(v->data));
      return;
    }
    if (const auto* v = std::get_if<HashPayload>(&p)) {
      eq("data", at(j, "data"), to_hex(v->data));
      return;
    }
    if (const auto* v = std::get_if<SignaturePayload>(&p)) {
      eq("data", at(j, "data"), to_hex(v->data));
      return;
    }
    if (const auto* v = std::get_if<VendorIdPayload>(&p)) {
      eq("data", at(j, "data"), to_hex(v->data));
      return;
    }
    if (const auto* v = std::get_if<CertificateRequestPayload>(&p)) {
      eq("cert_type", at(j, "cert_type"), v->type);
    }
  }
};

}  // namespace

std::vector<std::string> compare_decoded(const Json& message, const CorpusMessage& m) {
  std::vector<std::string> diffs;
  Checker c{diffs, m.label};
  if (message.contains("error")) diffs.push_back(m.label + ": coveyctl reports " + message["error"].dump());
  const Json& h = c.at(message, "header");
  c.eq("initiator_cookie", c.at(h, "initiator_cookie"), to_hex(m.header.initiator_cookie));
  c.eq("responder_cookie", c.at(h, "responder_cookie"), to_hex(m.header.responder_cookie));
  c.eq("exchange", c.at(h, "exchange"), m.header.exchange);
  c.eq("message_id", c.at(h, "message_id"), m.header.message_id);
  const Json& payloads = c.at(message, "payloads");
  if (!payloads.is_array() || payloads.size() != m.payloads.size()) {
    diffs.push_back(m.label + ": coveyctl shows " + std::to_string(payloads.size()) + " payloads, encoded " +
                    std::to_string(m.payloads.size()));
    return diffs;
  }
  for (std::size_t i = 0; i < m.payloads.size(); ++i) {
    c.where = m.label + " payload " + std::to_string(i + 1) + " (" + payload_name(static_cast<std::uint8_t>(type_of(m.payloads[i]))) + ")";
    c.payload(payloads[i], m.payloads[i]);
  }
  return diffs;
}

}  // namespace covey::test
