// One message of every kind covey speaks, in the clear, with the values the
// checks compare against: Main Mode's six messages, an Informational
// DELETE, GROUPKEY-PULL messages 1 to 4 and a GROUPKEY-PUSH; and a
// registration over IPv6 (Main Mode's ID_IPV6_ADDR, message 2's SA with
// IPv6 SA KEK and TEK selectors beside an IPv4 one).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "pcap_writer.h"
#include "wire/message.h"

namespace covey::test {

// The values each check looks for, named once so tshark, coveyctl and the
// encoder are compared against the same numbers.
namespace want {
inline constexpr std::uint32_t kPullMessageId = 0x1a2b3c4d;
inline constexpr std::uint32_t kInfoMessageId = 0x0badcafe;
inline constexpr std::uint32_t kGroupId = 1234;
inline constexpr std::uint32_t kTekSpi = 0x6263f2e0;
inline constexpr std::uint32_t kTekSpi2 = 0x11223344;
inline constexpr std::uint32_t kPushTekSpi = 0x7a7b7c7d;
inline constexpr std::uint32_t kTekLife = 3600;
inline constexpr std::uint32_t kKekLife = 86400;
inline constexpr std::uint16_t kActivationDelay = 30, kDeactivationDelay = 90;
inline constexpr std::uint32_t kSeqPull = 0, kSeqPush = 1;
inline constexpr std::uint32_t kPhase1Life = 86400;
}  // namespace want

wire::Cookie initiator_cookie();
wire::Cookie responder_cookie();
// The SA KEK SPI: the push's cookies.
std::array<std::uint8_t, 16> kek_spi();

struct CorpusMessage {
  std::string label;  // "GROUPKEY-PULL msg 2"
  bool from_gm;       // GM (10.1.23.3) -> KS (10.1.12.1), else the reverse
  wire::Header header;
  std::vector<wire::Payload> payloads;
  bool ipv6 = false;  // over IPv6: 2001:db8:23::3 and 2001:db8:12::1
  Bytes bytes() const { return wire::encode_message(header, payloads); }
  UdpEndpoint source() const { return from_gm ? (ipv6 ? kGm6 : kGm) : (ipv6 ? kKs6 : kKs); }
  UdpEndpoint destination() const { return from_gm ? (ipv6 ? kKs6 : kKs) : (ipv6 ? kGm6 : kGm); }
  std::string source_text() const;  // "10.1.23.3", "2001:db8:12::1"
};

std::vector<CorpusMessage> corpus();

}  // namespace covey::test
