// ISAKMP messages: the header (RFC 2408 3.1) and the generic payload chain
// (RFC 2408 3.2), decoded strictly and encoded with every Next Payload and
// length derived from the payloads themselves.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "common/bytes.h"
#include "wire/error.h"
#include "wire/payloads.h"

namespace covey::wire {

inline constexpr std::size_t kHeaderSize = 28;
using Cookie = std::array<std::uint8_t, 8>;

struct Header {
  Cookie initiator_cookie{};
  Cookie responder_cookie{};
  std::uint8_t next_payload = 0;
  std::uint8_t version = kIsakmpVersion;
  std::uint8_t exchange = 0;
  std::uint8_t flags = 0;
  std::uint32_t message_id = 0;
  std::uint32_t length = 0;  // whole message, header included (and padding, when encrypted)
  bool operator==(const Header&) const = default;

  bool encrypted() const { return (flags & kFlagEncryption) != 0; }
};

// Where a decoded payload sits in the buffer it was decoded from: HASH and
// SIG computations cover payloads byte for byte, generic header included.
struct Extent {
  std::size_t offset = 0;  // relative to the start of the buffer given to decode_payloads
  std::size_t length = 0;
};

struct PayloadChain {
  std::vector<Payload> payloads;
  std::vector<Extent> extents;  // parallel to payloads
  std::size_t consumed = 0;     // octets up to the end of the last payload (padding excluded)
};

struct Message {
  Header header;
  std::vector<Payload> payloads;  // empty when the message is encrypted
  std::vector<Extent> extents;    // relative to the start of the datagram
  ByteView ciphertext;            // when encrypted: the octets after the header (views the input)
};

// Header alone. Checks: 28 octets present, version 1.0, only defined flags,
// Length equal to the datagram's size.
Result<Header> decode_header(ByteView datagram);

// A payload chain starting with `first`. `exchange` chooses the SA payload
// form (group form in GROUPKEY-PULL/PUSH, proposals otherwise). `base` is
// the offset of body[0] in the datagram, for error messages. With `padded`
// (a decrypted body), octets after the last payload are encryption padding
// and are ignored; otherwise they are an error.
Result<PayloadChain> decode_payloads(ByteView body, std::uint8_t first, std::uint8_t exchange,
                                     std::size_t base, bool padded);

// Header and, unless encrypted, its payloads. Never reads past `datagram`.
Result<Message> decode_message(ByteView datagram);

// Encodes payloads in order, each one's Next Payload naming the one after.
Bytes encode_payloads(const std::vector<Payload>& payloads);
// One payload alone, Next Payload set to `next` (HASH inputs need single payloads).
Bytes encode_payload(const Payload& p, std::uint8_t next);

// Header with `length` as given (callers encrypting a body set it to the
// padded size).
Bytes encode_header(const Header& h);
// A clear message: Next Payload and Length are filled in from the payloads.
Bytes encode_message(Header h, const std::vector<Payload>& payloads);

const char* payload_name(std::uint8_t type);    // "SA TEK"
const char* exchange_name(std::uint8_t type);   // "GROUPKEY-PULL"

}  // namespace covey::wire
