// One message of every kind covey speaks, in the clear, with the values the
// checks compare against: Main Mode's six messages, an Informational
// DELETE, GROUPKEY-PULL messages 1 to 4 and a GROUPKEY-PUSH.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/bytes.h"
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
  Bytes bytes() const { return wire::encode_message(header, payloads); }
};

std::vector<CorpusMessage> corpus();

}  // namespace covey::test
