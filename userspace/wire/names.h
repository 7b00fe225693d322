// Human names for the protocol's numbers, as the RFCs and IANA registries
// spell them, for decoders and logs. Each returns an empty view for a value
// it does not know; with_number() turns that into "unknown (N)".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "wire/attribute.h"

namespace covey::wire {

std::string_view doi_name(std::uint32_t doi);                  // RFC 2408 / 6407: "IPsec", "GDOI"
std::string_view protocol_id_name(std::uint8_t id);            // RFC 2407 4.4.1: "ISAKMP", "ESP"
std::string_view gdoi_protocol_name(std::uint8_t id);          // RFC 6407 5.5: "ESP", "AH"
std::string_view ip_protocol_name(std::uint8_t proto);         // IANA: "any", "TCP", "UDP"
std::string_view id_type_name(std::uint8_t type);              // RFC 2407 4.6.2.1: "ID_IPV4_ADDR_SUBNET"
std::string_view notify_type_name(std::uint16_t type);         // RFC 2408 3.14.1, RFC 2407 4.6.3
std::string_view cert_encoding_name(std::uint8_t encoding);    // RFC 2408 3.9
std::string_view key_packet_type_name(std::uint8_t type);      // RFC 6407 5.6: "TEK", "KEK"
std::string_view esp_transform_name(std::uint8_t id);          // RFC 2407 4.4.4 + IANA: "AES-CBC"
std::string_view ah_transform_name(std::uint8_t id);           // RFC 2407 4.4.3
std::string_view phase1_transform_name(std::uint8_t id);       // RFC 2407 4.4.2: "KEY_IKE"

// Attribute class and value names, by the registry the attribute lives in.
std::string_view attribute_name(AttributeSpace space, std::uint16_t type);
std::string_view attribute_value_name(AttributeSpace space, std::uint16_t type, std::uint32_t value);

// "AES-CBC (12)", or "unknown (12)".
std::string with_number(std::string_view name, std::uint64_t value);

}  // namespace covey::wire
