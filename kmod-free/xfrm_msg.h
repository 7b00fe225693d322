// XFRM netlink messages for covey's group SAs and policies, built and
// parsed without a socket: what the kernel is asked (NEWSA, UPDSA, DELSA,
// GETSA, NEWPOLICY, GETPOLICY, DELPOLICY, the dumps), what it answers
// (states and policies, NLMSG_ERROR with its extended ack) and announces
// (XFRM_MSG_EXPIRE), and which of the kernel's entries covey may remove.
// xfrm.h sends these over a socket.
//
// The group SA design (docs/ARCHITECTURE.md, "The data path"): per TEK two
// ESP tunnel-mode states with one SPI and one reqid, outbound
// ANCHOR_LOCAL -> ANCHOR_GROUP and inbound ANCHOR_GROUP -> ANCHOR_IN,
// replay window 0 (anti-replay is the BPF programs' TBAR); an outbound
// policy that matches only the steering mark BPF sets, and inbound and
// forward policies at level "use" so decrypted tunnel traffic is accepted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.h"
#include "common/bytes.h"
#include "crypto/result.h"
#include "crypto/secret.h"

namespace covey::kmod {

// skb->mark match: a packet (or lookup) matches when (mark & mask) == value.
struct Mark {
  std::uint32_t value = 0;
  std::uint32_t mask = 0;
  bool operator==(const Mark&) const = default;
  std::string str() const;  // "0xe00/0xf00"
};

// What covey installs and therefore may remove: reqids in
// [reqid_first, reqid_last] AND a mark with exactly mark_mask. Both are
// required, so a foreign SA that happens to use a reqid in the range (or
// the same mark bits) is still not covey's.
struct Ownership {
  std::uint32_t reqid_first = 0;
  std::uint32_t reqid_last = 0;
  std::uint32_t mark_mask = 0;
  bool operator==(const Ownership&) const = default;

  bool owns_reqid(std::uint32_t reqid) const { return reqid >= reqid_first && reqid <= reqid_last; }
  bool owns_mark(const Mark& m) const { return mark_mask != 0 && m.mask == mark_mask; }
  std::string str() const;  // "reqid 0xc0e00000-0xc0e0ffff, mark mask 0xf00"
};

// covey's defaults: the reqid block 0xc0e0xxxx and the prototype's steering
// mark 0xe00 in the nibble 0xf00 of skb->mark.
inline constexpr Ownership kDefaultOwnership{0xc0e00000u, 0xc0e0ffffu, 0x00000f00u};
inline constexpr Mark kDefaultSteeringMark{0x00000e00u, 0x00000f00u};

// ---- ESP algorithms: the kernel's words ----

// The kernel's crypto API names (the XFRM algorithm table, net/xfrm/xfrm_algo.c),
// key sizes and ICV truncation of the CBC ciphers and HMACs covey's group
// SAs use. Which GDOI transform is which is the member's business
// (gm/kernel_sa.h); AES-GCM is none of them (sender-ID IVs are impossible
// through XFRM, ../DESIGN.md fact 3).
struct EspCipher {
  std::string_view kernel_name;  // "cbc(aes)"
  std::size_t key_bytes;         // 16, 32, 24
  std::string_view name;         // "AES-256-CBC"
};
inline constexpr EspCipher kAes128Cbc{"cbc(aes)", 16, "AES-128-CBC"};
inline constexpr EspCipher kAes256Cbc{"cbc(aes)", 32, "AES-256-CBC"};
inline constexpr EspCipher kTripleDesCbc{"cbc(des3_ede)", 24, "3DES-CBC"};

struct EspIntegrity {
  std::string_view kernel_name;   // "hmac(sha256)"
  std::size_t key_bytes;          // the HMAC key is the digest size (RFC 2404, RFC 4868)
  std::uint32_t truncation_bits;  // the ICV on the wire
  std::string_view name;          // "HMAC-SHA-256-128"
};
inline constexpr EspIntegrity kHmacSha1_96{"hmac(sha1)", 20, 96, "HMAC-SHA1-96"};
inline constexpr EspIntegrity kHmacSha256_128{"hmac(sha256)", 32, 128, "HMAC-SHA-256-128"};

// One SA's algorithms: a cipher with its integrity transform.
struct EspAlgorithms {
  std::string_view encryption;        // "cbc(aes)", "cbc(des3_ede)"
  std::size_t encryption_key_bytes;   // 16, 32, 24
  std::string_view integrity;         // "hmac(sha1)", "hmac(sha256)"
  std::size_t integrity_key_bytes;    // 20, 32
  std::uint32_t truncation_bits;      // 96, 128
  std::string name;                   // "AES-256-CBC with HMAC-SHA-256-128"
};
EspAlgorithms esp_algorithms(const EspCipher& cipher, const EspIntegrity& integrity);

// The largest inner packet an ESP tunnel-mode state with these algorithms
// carries in one outer packet of `outer_mtu` bytes, as the kernel computes
// it for the bundle's MTU (net/xfrm/xfrm_state.c, xfrm_state_mtu(); before
// 5.x esp4_get_mtu/esp6_get_mtu): the outer header (IPv4 20, IPv6 40 bytes),
// ESP's SPI and sequence number (8) and the CBC IV (a block) before the
// payload; the payload plus pad length and next header (2) padded to the
// cipher's block (AES 16, 3DES 8); the ICV (truncation_bits / 8) after.
// That is ((outer_mtu - header - ICV) rounded down to a block) - 2. 0 for a
// cipher it does not know or an MTU too small for any payload. The TBAR
// stamp's 12 bytes are part of the inner packet: datapath::TbarPolicy's
// inner_mtu and tcp_mss_for_stamp take this value.
std::uint32_t esp_tunnel_inner_mtu(std::uint32_t outer_mtu, const EspAlgorithms& alg,
                                   std::uint8_t outer_family);

// ---- SAs ----

// One ESP tunnel-mode state. Keys are borrowed (the caller's SecretBytes,
// e.g. a TEK's) and copied only into a message buffer that is wiped.
struct EspState {
  Address source, destination;  // outer header; same family
  std::uint32_t spi = 0;
  std::uint32_t reqid = 0;
  Mark mark;
  std::string encryption;  // kernel name, "cbc(aes)"
  ByteView encryption_key;
  std::string integrity;   // kernel name, "hmac(sha256)"
  ByteView integrity_key;
  std::uint32_t truncation_bits = 0;
  // The kernel deletes the state this many seconds after it was added; 0:
  // never (the GM removes TEKs itself at deactivation).
  std::uint64_t hard_lifetime_s = 0;

  // "ESP SPI 0x1a2b3c4d 10.1.23.3 -> 169.254.77.1 reqid 0xc0e00001 mark
  // 0xe00/0xf00 cbc(aes)/hmac(sha256)": everything but the keys.
  std::string describe() const;
};

// The design's anchors: ANCHOR_LOCAL is a local address the outbound state
// sends from, ANCHOR_GROUP the group's outbound destination (the GM needs a
// route to it), ANCHOR_IN the local address XDP rewrites inbound ESP to.
struct GroupAnchors {
  Address local, group, in;
};

struct GroupSaPair {
  EspState outbound;  // ANCHOR_LOCAL -> ANCHOR_GROUP, matched by the steering mark
  EspState inbound;   // ANCHOR_GROUP -> ANCHOR_IN, matched with covey's mark bits clear
};

// A TEK as the kernel takes it: its SPI and keys, borrowed.
struct SaKeys {
  std::uint32_t spi = 0;
  ByteView encryption_key, integrity_key;
};

// The TEK's two states. Refuses keys of the wrong length, naming the SPI,
// the algorithm and both lengths. The pair borrows the keys: keep their
// owner alive while using it.
crypto::Result<GroupSaPair> group_sa_pair(const SaKeys& keys, const EspAlgorithms& algorithms,
                                          const GroupAnchors& anchors, std::uint32_t reqid, Mark steering);

// ---- policies ----

enum class Direction : std::uint8_t { In = 0, Out = 1, Fwd = 2 };  // XFRM_POLICY_IN/OUT/FWD
std::string_view direction_name(Direction d);                     // "in", "out", "fwd"

// Source and destination prefixes; the default is 0/0 -> 0/0 of one family.
struct Selector {
  std::uint8_t family = 4;
  Address source, destination;  // family set to match
  std::uint8_t source_prefix = 0, destination_prefix = 0;
  bool operator==(const Selector&) const = default;
  static Selector any(std::uint8_t family);
  std::string str() const;  // "0.0.0.0/0 -> 0.0.0.0/0"
};

struct TunnelTemplate {
  Address source, destination;  // the state's outer addresses
  std::uint32_t reqid = 0;
  // "level use": a packet without this transform still passes the policy.
  bool optional = false;
  bool operator==(const TunnelTemplate&) const = default;
};

struct PolicyId;

struct Policy {
  Direction direction = Direction::Out;
  Selector selector;
  Mark mark;
  // Lower is preferred by the kernel. covey's catch-all policies sit low
  // (high number) so a more specific foreign policy keeps its traffic.
  std::uint32_t priority = 0;
  TunnelTemplate tmpl;

  std::string describe() const;  // "policy dir out 0.0.0.0/0 -> 0.0.0.0/0 mark 0xe00/0xf00 tmpl 10.1.23.3 -> 169.254.77.1 reqid 0xc0e00001"
  // The kernel's key for it: direction, selector and mark, no index.
  PolicyId id() const;
};

struct GroupPolicies {
  Policy out, in, fwd;
};

// The prototype's policies for one inner family: out matches the steering
// mark, in and fwd match covey's bits clear (decrypted packets carry no
// steering mark) at level use. Inner IPv4 and IPv6 each need their own set.
GroupPolicies group_policies(const GroupAnchors& anchors, std::uint8_t inner_family, std::uint32_t reqid,
                             Mark steering, std::uint32_t priority);

// ---- requests ----

// Netlink request flags covey uses: NLM_F_REQUEST | NLM_F_ACK.
// SA requests carry keys, so they are SecretBytes (wiped on destruction).
crypto::Result<crypto::SecretBytes> build_new_sa(const EspState& state, std::uint32_t seq);
crypto::Result<crypto::SecretBytes> build_update_sa(const EspState& state, std::uint32_t seq);

// A state as the kernel finds it for DELSA, GETSA and UPDSA: (destination,
// SPI, protocol) and the lookup mark. The kernel (net/xfrm/xfrm_user.c,
// xfrm_user_state_lookup; net/xfrm/xfrm_state.c, __xfrm_state_lookup)
// takes the value mark & mask and returns the first state in the SPI hash
// chain whose (value & its mask) == its value. That is a match, not an
// equality: a state without a mark (mask 0) matches every lookup, so the
// mark alone cannot keep a request off a foreign state with covey's
// destination and SPI. A GETSA with the same key answers with exactly the
// state DELSA or UPDSA would then reach.
struct StateId {
  Address destination;
  std::uint32_t spi = 0;
  std::uint8_t protocol = 50;  // IPPROTO_ESP
  Mark mark;
  bool operator==(const StateId&) const = default;
  std::string describe() const;  // "ESP SPI 0x1a2b3c4d -> 169.254.77.1 mark 0xe00/0xf00"
};
Bytes build_delete_sa(const StateId& id, std::uint32_t seq);
// Without NLM_F_ACK: the kernel answers with the state (XFRM_MSG_NEWSA,
// keys included) or an NLMSG_ERROR.
Bytes build_get_sa(const StateId& id, std::uint32_t seq);

crypto::Result<Bytes> build_new_policy(const Policy& policy, std::uint32_t seq);

// A policy as the kernel finds it for GETPOLICY and DELPOLICY
// (xfrm_userpolicy_id; net/xfrm/xfrm_user.c, xfrm_get_policy): by index
// when it is non-zero, else by direction, selector, type and mark. Since
// Linux 5.8 the mark must equal the policy's value and mask exactly
// (xfrm_policy_mark_match); before, it matched as for states. A GETPOLICY
// answers with the policy a DELPOLICY with the same key would remove.
struct PolicyId {
  Direction direction = Direction::Out;
  Selector selector;
  Mark mark;
  std::uint32_t index = 0;
  std::uint8_t type = 0;  // XFRM_POLICY_TYPE_MAIN
  std::string describe() const;  // "policy dir out 0.0.0.0/0 -> 0.0.0.0/0 mark 0xe00/0xf00"
};
Bytes build_delete_policy(const PolicyId& id, std::uint32_t seq);
// Without NLM_F_ACK: answered with the policy (XFRM_MSG_NEWPOLICY) or an
// NLMSG_ERROR.
Bytes build_get_policy(const PolicyId& id, std::uint32_t seq);
// DELPOLICY by the kernel's index and the policy's exact mark (a flush
// deletes what its dump showed): nothing but that one policy can go.
struct PolicyInfo;
Bytes build_delete_policy(const PolicyInfo& policy, std::uint32_t seq);

// Dump requests: XFRM_MSG_GETSA / XFRM_MSG_GETPOLICY with NLM_F_DUMP.
Bytes build_dump_states(std::uint32_t seq);
Bytes build_dump_policies(std::uint32_t seq);

// ---- answers ----

// A state from a dump, without its keys (they are never copied out).
struct StateInfo {
  std::uint8_t family = 4;
  Address source, destination;
  std::uint32_t spi = 0;
  std::uint8_t protocol = 0;
  std::uint8_t mode = 0;  // XFRM_MODE_TUNNEL = 1
  std::uint32_t reqid = 0;
  std::uint8_t replay_window = 0;
  std::uint8_t flags = 0;
  Mark mark;  // {0, 0} when the state has none
  std::string encryption, integrity;
  std::uint32_t truncation_bits = 0;

  StateId id() const { return {destination, spi, protocol, mark}; }
  std::string describe() const;
};

struct TemplateInfo {
  Address source, destination;
  std::uint8_t protocol = 0;
  std::uint8_t mode = 0;
  std::uint32_t reqid = 0;
  bool optional = false;
};

struct PolicyInfo {
  Direction direction = Direction::Out;
  Selector selector;
  Mark mark;
  std::uint32_t priority = 0;
  std::uint32_t index = 0;
  std::uint8_t action = 0;  // XFRM_POLICY_ALLOW = 0
  std::uint8_t type = 0;    // XFRM_POLICY_TYPE_MAIN = 0
  std::uint32_t if_id = 0;
  std::vector<TemplateInfo> templates;

  PolicyId id() const { return {direction, selector, mark, index, type}; }
  std::string describe() const;
};

// One message of a dump or a GET's answer (a whole nlmsghdr); an error
// names what is malformed.
crypto::Result<StateInfo> parse_state(ByteView message);
crypto::Result<PolicyInfo> parse_policy(ByteView message);

// XFRM_MSG_EXPIRE (struct xfrm_user_expire), multicast to XFRMNLGRP_EXPIRE:
// a state reached its soft limit (a warning; the state stays) or its hard
// limit (the kernel deleted it). The state comes without keys, with its
// mark.
struct StateExpiry {
  StateInfo state;
  bool hard = false;
  // "kernel expired SA spi 0x1a2b3c4d (hard): ESP SPI 0x1a2b3c4d 10.1.23.3 -> ..."
  std::string str() const;
};
crypto::Result<StateExpiry> parse_expire(ByteView message);

// NLMSG_ERROR (an ack when error == 0) or NLMSG_DONE of a dump, with the
// extended ack (NETLINK_EXT_ACK) when the kernel sent one.
struct KernelAck {
  int error = 0;                      // 0 or a negative errno
  std::string message;                // NLMSGERR_ATTR_MSG, the kernel's words; may be empty
  std::optional<std::uint32_t> offset;  // NLMSGERR_ATTR_OFFS: the offending attribute in our request

  // `"Requested type not found" (EPROTONOSUPPORT: Protocol not supported)`,
  // or `EINVAL: Invalid argument` without a message; with the request, also
  // the offending attribute's name.
  std::string str(ByteView request = {}) const;
};
crypto::Result<KernelAck> parse_ack(ByteView message);

// The XFRMA_* name of the attribute that starts `offset` bytes into an
// XFRM request, or "" when no attribute starts there.
std::string attribute_at(ByteView request, std::uint32_t offset);

// ---- what covey may delete ----

bool owns(const Ownership& ownership, const StateInfo& state);
bool owns(const Ownership& ownership, const PolicyInfo& policy);

// The kernel finds a state for DELSA/UPDSA by (destination, SPI, protocol)
// and the first whose mark matches the lookup value: if a foreign state
// shares covey's destination and SPI and would match, the kernel might
// remove that one instead. Such states are refused, never guessed at.
bool lookup_would_match(const StateId& lookup, const StateInfo& other);

struct FlushPlan {
  std::vector<PolicyInfo> policies;  // delete these first: traffic stops using the states
  std::vector<StateInfo> states;
  std::vector<std::string> refused;  // covey's, but not safely deletable: why
  std::size_t foreign_states = 0, foreign_policies = 0;
};
FlushPlan plan_flush(const std::vector<StateInfo>& states, const std::vector<PolicyInfo>& policies,
                     const Ownership& ownership);

// Whether the entry a GETSA for `id` (or a GETPOLICY for `wanted`'s key)
// reached is covey's own one asked for, so that DELSA/UPDSA (DELPOLICY)
// with the same key can only change that: refuses, naming the entry, a
// foreign state or policy, also one that merely shadows covey's in the
// kernel's lookup.
crypto::Result<void> check_lookup_answer(const StateId& id, const StateInfo& found, const Ownership& ownership);
crypto::Result<void> check_lookup_answer(const Policy& wanted, const PolicyInfo& found, const Ownership& ownership);

}  // namespace covey::kmod
