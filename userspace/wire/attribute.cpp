#include "wire/attribute.h"

#include <string>

#include "wire/constants.h"

namespace covey::wire {

Attribute Attribute::number(std::uint16_t type, std::uint32_t v) {
  if (v <= 0xffff) return tv(type, static_cast<std::uint16_t>(v));
  Bytes b(4);
  for (int i = 0; i < 4; ++i) b[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
  return tlv(type, std::move(b));
}

std::optional<std::uint32_t> Attribute::as_u32() const {
  if (basic) return basic_value;
  if (value.empty() || value.size() > 4) return std::nullopt;
  std::uint32_t v = 0;
  for (std::uint8_t c : value) v = v << 8 | c;
  return v;
}

const Attribute* find(const Attributes& attrs, std::uint16_t type) {
  for (const auto& a : attrs)
    if (a.type == type) return &a;
  return nullptr;
}

AttributeForm expected_form(AttributeSpace space, std::uint16_t type) {
  using F = AttributeForm;
  switch (space) {
    case AttributeSpace::Phase1Transform:
      switch (type) {
        case ike_attr::GroupPrime:
        case ike_attr::GroupGeneratorOne:
        case ike_attr::GroupGeneratorTwo:
        case ike_attr::GroupCurveA:
        case ike_attr::GroupCurveB:
        case ike_attr::GroupOrder:
          return F::Variable;
        case ike_attr::LifeDuration:
          return F::Either;  // RFC 2409 Appendix A: "B/V"
        default:
          return (type >= 1 && type <= 16) ? F::Basic : F::Either;
      }
    case AttributeSpace::IpsecSa:
      switch (type) {
        case ipsec_attr::SaLifeDuration:
          return F::Either;  // RFC 2407 4.5: variable, but short values go as basic
        case ipsec_attr::CompressPrivateAlgorithm:
          return F::Variable;
        default:
          return (type >= 1 && type <= 15) ? F::Basic : F::Either;
      }
    case AttributeSpace::Kek:
      // RFC 6407 5.3.3 makes KEK_KEY_LIFETIME variable, but a short lifetime
      // sent basic is the IKE convention for lifetimes (RFC 2407 4.5), and
      // what gdoid sends (80 04 00 19: 25 s); the value cannot be misread.
      if (type == kek_attr::KekKeyLifetime) return F::Either;
      return (type >= 1 && type <= 9) ? F::Basic : F::Either;
    case AttributeSpace::Gap:
      return (type >= 1 && type <= 3) ? F::Basic : F::Either;
    case AttributeSpace::TekKey:
      return (type >= 1 && type <= 3) ? F::Variable : F::Either;
    case AttributeSpace::KekKey:
      return (type >= 1 && type <= 2) ? F::Variable : F::Either;
    case AttributeSpace::LkhKey:
      return (type >= 1 && type <= 3) ? F::Variable : F::Either;
    case AttributeSpace::SidKey:
      if (type == sid_key_attr::NumberOfSidBits) return F::Basic;
      if (type == sid_key_attr::SidValue) return F::Variable;
      return F::Either;
  }
  return F::Either;
}

Result<Attributes> decode_attributes(Reader& r, AttributeSpace space, std::string_view payload) {
  Attributes out;
  while (!r.empty()) {
    std::size_t at = r.offset();
    auto head = r.u16();
    auto second = r.u16();
    if (!head || !second)
      return DecodeError{std::string(payload), at, "data attribute truncated: fewer than 4 octets left"};
    Attribute a;
    a.type = *head & 0x7fff;
    a.basic = (*head & 0x8000) != 0;
    AttributeForm form = expected_form(space, a.type);
    if (a.basic && form == AttributeForm::Variable)
      return DecodeError{std::string(payload), at,
                         "attribute class " + std::to_string(a.type) + " must be TLV (variable) but is TV (basic)"};
    if (!a.basic && form == AttributeForm::Basic)
      return DecodeError{std::string(payload), at,
                         "attribute class " + std::to_string(a.type) + " must be TV (basic) but is TLV (variable)"};
    if (a.basic) {
      a.basic_value = *second;
    } else {
      auto v = r.take(*second);
      if (!v)
        return DecodeError{std::string(payload), at,
                           "attribute class " + std::to_string(a.type) + " length " + std::to_string(*second) +
                               " runs past the payload end (" + std::to_string(r.remaining()) + " octets left)"};
      a.value.assign(v->begin(), v->end());
    }
    out.push_back(std::move(a));
  }
  return out;
}

void encode_attributes(Writer& w, const Attributes& attrs) {
  for (const auto& a : attrs) {
    if (a.basic) {
      w.u16(static_cast<std::uint16_t>(0x8000 | a.type));
      w.u16(a.basic_value);
    } else {
      w.u16(a.type & 0x7fff);
      w.u16(static_cast<std::uint16_t>(a.value.size()));
      w.bytes(a.value);
    }
  }
}

}  // namespace covey::wire
