// An IP address, IPv4 or IPv6, as plain bytes: what pure protocol code
// needs of a peer (identity, PSK lookup, logs) without any socket type.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace covey {

struct Address {
  std::uint8_t family = 4;                 // 4 or 6
  std::array<std::uint8_t, 16> bytes{};   // IPv4 in the first 4
  bool operator==(const Address&) const = default;
  auto operator<=>(const Address&) const = default;

  std::size_t size() const { return family == 4 ? 4 : 16; }
  std::string str() const;
  static std::optional<Address> parse(std::string_view text);
};

// An address and UDP port, for logs and replies.
struct Endpoint {
  Address address;
  std::uint16_t port = 0;
  bool operator==(const Endpoint&) const = default;
  auto operator<=>(const Endpoint&) const = default;
  std::string str() const;  // "10.1.23.3:848", "[2001:db8::1]:848"
};

}  // namespace covey
