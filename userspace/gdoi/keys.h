// A group's keys: the TEKs (data-security SAs) and the KEK (rekey SA), as
// the key server generates them and a member receives them in KD.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/bytes.h"
#include "crypto/secret.h"

namespace covey::gdoi {

struct Tek {
  std::uint32_t spi = 0;
  crypto::SecretBytes encryption_key;  // TEK_ALGORITHM_KEY
  crypto::SecretBytes integrity_key;   // TEK_INTEGRITY_KEY
  std::uint32_t lifetime_s = 0;        // remaining when sent
};

struct Kek {
  std::array<std::uint8_t, 16> spi{};  // the push's initiator|responder cookies
  crypto::SecretBytes algorithm_key;   // KEK_ALGORITHM_KEY: IV then key (RFC 6407 5.6.2.1)
  Bytes signature_public_key;          // SIG_ALGORITHM_KEY: DER SubjectPublicKeyInfo
  std::uint32_t lifetime_s = 0;        // remaining when sent
};

// What a registration (or a rekey) hands a member.
struct KeyMaterial {
  std::optional<Kek> kek;
  std::vector<Tek> teks;
  std::vector<std::uint32_t> sids;  // sender IDs for this member (RFC 6407 3.5)
  std::uint8_t sid_bits = 16;
};

}  // namespace covey::gdoi
