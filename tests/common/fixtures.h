// Small builders the protocol tests share: a prefix from text, pre-shared
// key credentials, the lab's group policy.
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

// The lab's group: GET_VPN (134), permit ip 192.168.0.0/16
// 192.168.0.0/16, every other field at its default; tests change what
// they are about.
inline gdoi::GroupPolicy group_policy() {
  gdoi::GroupPolicy p;
  p.name = "GET_VPN";
  p.identity = 134;
  gdoi::AclEntry permit;
  permit.source = prefix("192.168.0.0", 16);
  permit.destination = prefix("192.168.0.0", 16);
  p.acl = {permit};
  return p;
}

// A key server's group by name and identity, its rekeys signed with ECDSA
// P-256 (cheap keys for tests that make many groups).
inline gdoi::GroupPolicy ecdsa_group(std::string name, std::uint32_t identity) {
  gdoi::GroupPolicy p;
  p.name = std::move(name);
  p.identity = identity;
  p.kek.signature = gdoi::KekPolicy::Signature::EcdsaP256;
  p.kek.signature_key_bits = 256;
  return p;
}

}  // namespace covey::fixtures
