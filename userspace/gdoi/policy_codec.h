// Group policy and keys <-> GDOI payloads: the SA payload of GROUPKEY-PULL
// message 2 and of every GROUPKEY-PUSH, and the KD payload of message 4
// and pushes. Shared by the key server (encode) and the member (decode).
//
// How the ACL travels. Each ACL entry becomes one SA TEK payload per TEK,
// in ACL order, carrying the entry's protocol, prefixes and single ports in
// the standard SRC/DST ID fields, so any GDOI member (and tshark) reads the
// selectors. What RFC 6407 has no field for goes in IPsec SA attributes of
// the private range (RFC 2407 6.7: 32001-32767, "amongst cooperating
// systems"), sent only to members that announced covey's Vendor ID
// (gdoi/vendor_id.h), each with the feature bit that names it:
//   32001 COVEY_ACL_ACTION     B  1 encrypt (permit), 2 bypass (deny)        AclAction
//   32002 COVEY_PORT_RANGES    V  source first,last, destination first,last  PortRanges
//                                 (4 x 16 bits)
//   32003 COVEY_TBAR_WINDOW_MS V  32 bits; absent = time-based anti-replay   Tbar
//                                 off
// and in GAP attributes of its private range (RFC 6407 5.4: 128-255):
//   200   COVEY_FAIL_CLOSE_ACL V  the fail-close ACL, 48 octets an entry     FailCloseAcl
//   201   COVEY_PSEUDOTIME_MS  V  32 bits: the key server's pseudotime (ms,  Tbar
//                                 mod 2^32) when it built this message; only
//                                 with a TBAR window. Members run their TBAR
//                                 clock from it (docs/ARCHITECTURE.md).
// A member without the extension sees only permit entries (deny entries
// are not sent to it), each port range as any port, which is the RFC's
// model: SA TEKs are traffic to protect (docs/ARCHITECTURE.md, "covey's
// Vendor ID").
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/address.h"
#include "crypto/cipher.h"
#include "crypto/result.h"
#include "gdoi/keys.h"
#include "gdoi/policy.h"
#include "gdoi/vendor_id.h"
#include "wire/payloads.h"

namespace covey::gdoi {

namespace covey_attr {
inline constexpr std::uint16_t AclAction = 32001, PortRanges = 32002, TbarWindowMs = 32003;
inline constexpr std::uint16_t FailCloseAcl = 200, PseudotimeMs = 201;  // GAP
inline constexpr std::uint16_t ActionEncrypt = 1, ActionBypass = 2;
}  // namespace covey_attr

// Policy that a key server sends about a rekey SA.
struct KekAnnouncement {
  std::array<std::uint8_t, 16> spi{};
  Address source;  // the key server's address, SRC ID of the SA KEK
  std::uint32_t remaining_s = 0;
};

// The covey features that enforcing `policy` as configured takes: a deny
// entry, a port range, a TBAR window, a fail-close ACL. A member without
// one of them gets what RFC 6407 can say of the policy.
std::uint32_t features_needed(const GroupPolicy& policy);

// `pseudotime_ms`: the key server's pseudotime now, as this SA is built;
// it goes in the GAP (COVEY_PSEUDOTIME_MS) when there is one, the peer
// has TBAR and the policy a TBAR window, and is dropped otherwise.
wire::GroupSaPayload encode_group_sa(const GroupPolicy& policy, const std::optional<KekAnnouncement>& kek,
                                     const std::vector<Tek>& teks, bool with_gap, PeerTraits peer,
                                     std::optional<std::uint32_t> pseudotime_ms = std::nullopt);

// Keys for the SAs of the matching SA payload.
wire::KeyDownloadPayload encode_key_download(const KeyMaterial& keys);

// What a member learns from an SA payload: the policy it must enforce and
// the SPIs and lifetimes it must expect keys for.
struct ReceivedSa {
  GroupPolicy policy;  // acl, tek transform, lifetimes, kek policy, delays, tbar, fail-close
  std::optional<std::array<std::uint8_t, 16>> kek_spi;
  std::vector<std::uint32_t> tek_spis;         // distinct, in order of appearance
  std::vector<std::uint32_t> tek_remaining_s;  // parallel to tek_spis
  std::uint32_t kek_remaining_s = 0;
  // The key server's pseudotime when it built the SA (GAP
  // COVEY_PSEUDOTIME_MS). A reading of its clock, not policy: kept out of
  // GroupPolicy, which is compared whole to tell a policy change.
  std::optional<std::uint32_t> pseudotime_ms;
};

// The KEK cipher an SA KEK names by KEK_ALGORITHM and KEK_KEY_LENGTH
// (RFC 6407 5.3.2, 5.3.3), absent attributes as std::nullopt. KEK_KEY_LENGTH
// is optional; an AES KEK without it is read as AES-256. One rule for the
// member and for coveyctl decode, so the tool decrypts what the member
// would accept. The error names both values.
crypto::Result<crypto::CipherAlgorithm> kek_cipher(std::optional<std::uint32_t> kek_algorithm,
                                                   std::optional<std::uint32_t> kek_key_length);

// Validates as a member must (RFC 6407 3.3): every attribute understood,
// a transform covey can install, one consistent policy across the TEKs.
// Errors name the payload and field, and say why covey cannot use it.
crypto::Result<ReceivedSa> decode_group_sa(const wire::GroupSaPayload& sa);

// Matches key packets to the SPIs of the SA payload and checks key lengths
// against the transform (RFC 6407 3.3, 5.6).
crypto::Result<KeyMaterial> decode_key_download(const wire::KeyDownloadPayload& kd, const ReceivedSa& sa);

// Key lengths the transform needs.
std::size_t tek_encryption_key_size(TekTransform::Cipher c);
std::size_t tek_integrity_key_size(TekTransform::Integrity i);

}  // namespace covey::gdoi
