// covey's Vendor ID (RFC 2408 3.16) and what it tells the key server about
// a member: whether it understands covey's private-range attributes (RFC
// 2407 6.7: 32001-32767, and RFC 6407 5.4's GAP range 128-255, used
// "amongst cooperating systems"), and which of them. covey's GM sends it in
// Main Mode message 1 and covey's KS answers with its own in message 2;
// either ignores a Vendor ID it does not know, as IKEv1 requires.
//
//   octets 0-15   magic: the first 16 octets of SHA-256("covey GDOI")
//                 9217d2f51c646bae336b51a04cb30aeb
//   octets 16-17  version, network order (1)
//   octets 18-21  feature bits, network order (covey_feature below)
//
// Octets beyond 22 are ignored (room for later versions); shorter, or
// another magic, is not covey's. docs/ARCHITECTURE.md, "covey's Vendor ID",
// says who gets what.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/bytes.h"

namespace covey::gdoi {

inline constexpr std::array<std::uint8_t, 16> kCoveyVendorMagic = {
    0x92, 0x17, 0xd2, 0xf5, 0x1c, 0x64, 0x6b, 0xae, 0x33, 0x6b, 0x51, 0xa0, 0x4c, 0xb3, 0x0a, 0xeb};
inline constexpr std::uint16_t kCoveyVendorVersion = 1;

// What a member announces it enforces, each bit the private attributes
// that carry it (gdoi/policy_codec.h). The one list of them.
namespace covey_feature {
inline constexpr std::uint32_t AclAction = 1u << 0;     // 32001: deny (bypass) entries in the ACL
inline constexpr std::uint32_t PortRanges = 1u << 1;    // 32002: port ranges beyond one port
inline constexpr std::uint32_t Tbar = 1u << 2;          // 32003 and GAP 201: time-based anti-replay
inline constexpr std::uint32_t FailCloseAcl = 1u << 3;  // GAP 200: the fail-close ACL
inline constexpr std::uint32_t All = AclAction | PortRanges | Tbar | FailCloseAcl;
}  // namespace covey_feature

// "deny entries, port ranges, TBAR, fail-close ACL" (those set, in bit order).
std::string feature_names(std::uint32_t features);

// Who is on the other end, and so which encoding it gets.
struct PeerTraits {
  bool covey = false;  // sent covey's Vendor ID: private attributes understood
  // The features it announced; by default all of this version's.
  std::uint32_t features = covey_feature::All;

  bool has(std::uint32_t feature) const { return covey && (features & feature) == feature; }
  // What a group policy needs (features_needed, gdoi/policy_codec.h) that this member will
  // not enforce, because it is not sent to it.
  std::uint32_t lacks(std::uint32_t needed) const { return covey ? needed & ~features : needed; }
  // What both understand: the encoding one datagram for both may use.
  PeerTraits common(const PeerTraits& o) const {
    return covey && o.covey ? PeerTraits{true, features & o.features} : PeerTraits{};
  }
  // Equal when they get the same encoding: features count for covey peers only.
  auto operator<=>(const PeerTraits& o) const {
    return std::pair(covey, covey ? features : 0u) <=> std::pair(o.covey, o.covey ? o.features : 0u);
  }
  bool operator==(const PeerTraits& o) const { return (*this <=> o) == 0; }
};

// Ours, with this version and every feature it has.
Bytes covey_vendor_id();
// The traits that the Vendor IDs a peer sent in Main Mode give it:
// covey's, or none (every other Vendor ID is ignored).
PeerTraits peer_traits(const std::vector<Bytes>& vendor_ids);
// "covey version 1, features 0x0000000f (deny entries, ...)" when `vid` is
// covey's, else nullopt: for logs and `coveyctl decode`.
std::optional<std::string> describe_covey_vendor_id(ByteView vid);

}  // namespace covey::gdoi
