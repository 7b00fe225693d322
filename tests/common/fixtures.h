// Small builders the protocol tests share: a prefix from text, pre-shared
// key credentials.
#pragma once

#include <memory>
#include <string>

#include "gdoi/policy.h"
#include "ike/main_mode.h"

namespace covey::fixtures {

inline gdoi::Prefix prefix(const char* address, std::uint8_t length) {
  gdoi::Prefix p;
  Address a = *Address::parse(address);
  p.family = a.family;
  p.address = a.bytes;
  p.length = length;
  return p;
}

// The same key for every peer address.
inline std::shared_ptr<ike::Credentials> psk(std::string key) {
  auto c = std::make_shared<ike::Credentials>();
  c->pre_shared_key = [key](const Address&) -> std::optional<crypto::SecretBytes> {
    return crypto::SecretBytes(as_bytes(key));
  };
  return c;
}

}  // namespace covey::fixtures
