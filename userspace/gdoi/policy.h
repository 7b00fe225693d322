// A group's policy as covey holds it: what a GET VPN key server is
// configured with and what a group member receives at registration. The
// key server's config parser produces it; gdoi/ turns it into SA payloads
// and back. Keys are not policy: they live with the group's state.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.h"
#include "crypto/cipher.h"
#include "crypto/hash.h"

namespace covey::gdoi {

// An IPv4 or IPv6 prefix; "any" is 0.0.0.0/0 (or ::/0).
struct Prefix {
  std::uint8_t family = 4;  // 4 or 6
  std::array<std::uint8_t, 16> address{};
  std::uint8_t length = 0;
  bool operator==(const Prefix&) const = default;

  bool is_any() const { return length == 0; }
  std::string str() const;  // "192.168.0.0/16", "any"

  // "192.168.0.0/16", "2001:db8::/32", a bare address (a host: /32 or /128)
  // or "any". Bits set beyond the length are refused rather than masked, as
  // "192.168.1.0/16" is more often a typo than a network; `why` (if given)
  // says what is wrong and what was probably meant.
  static std::optional<Prefix> parse(std::string_view text, std::string* why = nullptr);
  static Prefix host(const Address& a);
  bool contains(const Address& a) const;  // false across families, even for "any"
};

// A port match, Cisco style: eq is first == last; any is 0..65535.
struct PortRange {
  std::uint16_t first = 0;
  std::uint16_t last = 65535;
  bool operator==(const PortRange&) const = default;

  bool is_any() const { return first == 0 && last == 65535; }
};

// One line of a Cisco extended ACL. In GET VPN a permit line is traffic to
// encrypt and a deny line traffic to pass in clear; first match wins and
// the implicit end is deny (clear).
struct AclEntry {
  enum class Action : std::uint8_t { Permit, Deny };
  Action action = Action::Permit;
  std::uint8_t protocol = 0;  // IP protocol number; 0 = "ip" (any)
  Prefix source, destination;
  PortRange source_port, destination_port;  // meaningful for TCP (6) and UDP (17)
  bool operator==(const AclEntry&) const = default;

  std::string str() const;  // "deny udp any eq 848 any eq 848"
};

// The ESP transform of the group's TEKs (RFC 2407 transform and
// Authentication Algorithm). GCM is representable so that a key server
// can refuse it with a reason and a member can name what it refused.
struct TekTransform {
  enum class Cipher : std::uint8_t { Aes128Cbc, Aes256Cbc, TripleDesCbc, AesGcm128, AesGcm256 };
  enum class Integrity : std::uint8_t { None, HmacSha1_96, HmacSha256_128 };
  Cipher cipher = Cipher::Aes256Cbc;
  Integrity integrity = Integrity::HmacSha256_128;
  bool operator==(const TekTransform&) const = default;

  std::string str() const;  // "esp-aes-256 esp-sha256-hmac", GET VPN's words
};

// The rekey SA: how GROUPKEY-PUSH messages are encrypted and signed.
struct KekPolicy {
  enum class Signature : std::uint8_t { Rsa, EcdsaP256, EcdsaP384 };
  crypto::CipherAlgorithm cipher = crypto::CipherAlgorithm::Aes256Cbc;
  std::uint32_t lifetime_s = 86400;
  Signature signature = Signature::Rsa;
  crypto::HashAlgorithm signature_hash = crypto::HashAlgorithm::Sha256;
  std::uint16_t signature_key_bits = 2048;
  bool operator==(const KekPolicy&) const = default;

  std::string signature_str() const;  // "RSA 2048 SHA-256", "ECDSA P-256 SHA-256"
};

// Where rekeys go. Unicast: to each member, acknowledged (RFC 8263).
// Multicast: one message to a group address, unacknowledged.
struct RekeyTransport {
  enum class Mode : std::uint8_t { Unicast, Multicast };
  Mode mode = Mode::Unicast;
  Prefix multicast_address;  // /32 or /128 when Multicast
  std::uint16_t port = 848;
  std::uint8_t ttl = 16;
  std::uint32_t retransmit_period_s = 10;
  std::uint32_t retransmit_count = 2;
  bool operator==(const RekeyTransport&) const = default;
};

// Everything a member needs to enforce the group, and the key server's
// knobs around it.
struct GroupPolicy {
  std::string name;           // "GET_VPN"
  std::uint32_t identity = 0;  // the GDOI group id (ID_KEY_ID), e.g. 134
  std::vector<AclEntry> acl;
  TekTransform tek;
  std::uint32_t tek_lifetime_s = 3600;
  KekPolicy kek;
  RekeyTransport rekey;
  // Time-based anti-replay window in milliseconds; nullopt = replay checks off.
  std::optional<std::uint32_t> tbar_window_ms = 5000;
  // Traffic dropped rather than sent in clear while no TEK is active.
  std::vector<AclEntry> fail_close_acl;
  // RFC 6407 5.4.1: seconds a member waits before sending on a new TEK,
  // and keeps receiving on a replaced one.
  std::uint32_t activation_delay_s = 0;
  std::uint32_t deactivation_delay_s = 0;
  bool operator==(const GroupPolicy&) const = default;
};

}  // namespace covey::gdoi
