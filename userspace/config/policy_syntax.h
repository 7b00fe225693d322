// The text forms network engineers already write for GET VPN policy: Cisco
// extended-ACL lines and IPsec transform sets. Each parser returns the value
// or what is wrong, where in the text, and what to write instead.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

#include "gdoi/policy.h"

namespace covey::config {

struct SyntaxError {
  std::size_t offset = 0;  // of the offending word in the text, 0-based
  std::string message;
};

// One Cisco extended-ACL entry:
//   permit|deny PROTOCOL SOURCE [PORT] DESTINATION [PORT]
// PROTOCOL: ip (ipv6), tcp, udp, icmp, esp, ahp, gre or a number 0-255.
// SOURCE/DESTINATION: any | host A | A/len | A WILDCARD (IPv4, contiguous
// masks only: the data path matches prefixes). IPv4 or IPv6, one family
// per entry; "any" takes the other side's family (IPv4 if both are any).
// PORT (tcp and udp only): eq N | lt N | gt N | range N M, N a number or a
// Cisco port name (isakmp, domain, www, ...).
// gdoi::AclEntry::str() prints the same syntax back.
std::variant<gdoi::AclEntry, SyntaxError> parse_acl_entry(std::string_view line);

// An ESP transform set in Cisco's words: "esp-aes 256 esp-sha256-hmac",
// "esp-aes-256 esp-sha256-hmac", "esp-3des esp-sha-hmac", "esp-gcm 256".
// CBC ciphers need an integrity transform; GCM must have none.
std::variant<gdoi::TekTransform, SyntaxError> parse_tek_transform(std::string_view text);

}  // namespace covey::config
