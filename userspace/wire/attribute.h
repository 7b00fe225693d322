// ISAKMP data attributes (RFC 2408 3.3) in TV (Basic) and TLV (Variable)
// form, and the tables that say which form each class must take.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "wire/buffer.h"
#include "wire/error.h"

namespace covey::wire {

// Which registry an attribute's class number belongs to: the same number
// means different things (and may need a different form) in each.
enum class AttributeSpace : std::uint8_t {
  Phase1Transform,  // RFC 2409 Appendix A
  IpsecSa,          // RFC 2407 4.5 (SA TEK attributes)
  Kek,              // RFC 6407 5.3 (SA KEK)
  Gap,              // RFC 6407 5.4
  TekKey,           // RFC 6407 5.6.1
  KekKey,           // RFC 6407 5.6.2
  LkhKey,           // RFC 6407 5.6.3
  SidKey,           // RFC 6407 5.6.4
};

enum class AttributeForm : std::uint8_t { Basic, Variable, Either };

struct Attribute {
  std::uint16_t type = 0;  // class, without the AF bit
  bool basic = true;       // TV form: the value is the 16-bit `basic_value`
  std::uint16_t basic_value = 0;
  Bytes value;  // TLV form

  static Attribute tv(std::uint16_t type, std::uint16_t v) { return {type, true, v, {}}; }
  static Attribute tlv(std::uint16_t type, Bytes v) { return {type, false, 0, std::move(v)}; }
  // A number as TV when it fits in 16 bits, else as a 4-octet TLV: the
  // form RFC 2407 and RFC 2409 use for life durations.
  static Attribute number(std::uint16_t type, std::uint32_t v);

  // The value as an integer: TV, or TLV of 1 to 4 octets. nullopt otherwise.
  std::optional<std::uint32_t> as_u32() const;

  bool operator==(const Attribute&) const = default;
};

using Attributes = std::vector<Attribute>;

const Attribute* find(const Attributes& attrs, std::uint16_t type);

// The form a class must take in a space; Either for classes the RFCs
// allow both ways, and for unknown or private classes (their meaning is
// the protocol layer's call, not the codec's).
AttributeForm expected_form(AttributeSpace space, std::uint16_t type);

// Decodes attributes until the reader is empty. `payload` names the
// enclosing payload in errors.
Result<Attributes> decode_attributes(Reader& r, AttributeSpace space, std::string_view payload);
void encode_attributes(Writer& w, const Attributes& attrs);

}  // namespace covey::wire
