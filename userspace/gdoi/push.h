// The GDOI GROUPKEY-PUSH message (RFC 6407 4) and its acknowledgement
// (RFC 8263), both roles, as pure functions and a pure state machine.
//
//   Group Member                       GCKS
//                               <--    HDR*, SEQ, [D,] SA, KD, SIG
//   HDR, HASH, SEQ, ID          -->    (RFC 8263, when KEK_ACK_REQUESTED)
//
// HDR* is encrypted under the current KEK: CBC with the static IV that
// precedes the key in KEK_ALGORITHM_KEY, as gdoid does (INTEROP.md). SIG
// signs "rekey" | HDR (E flag set, Length of the unpadded message) | the
// plaintext payloads before SIG.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/address.h"
#include "crypto/result.h"
#include "crypto/sign.h"
#include "gdoi/keys.h"
#include "gdoi/policy.h"
#include "gdoi/policy_codec.h"
#include "wire/payloads.h"

namespace covey::gdoi {

using KekSpi = std::array<std::uint8_t, 16>;  // initiator cookie | responder cookie

// RFC 6407 5.9: DELETE payloads. A TEK SPI of 0 deletes every TEK, and a
// KEK SPI of all zeros the KEK.
struct PushDeletes {
  std::vector<std::uint32_t> tek_spis;  // Protocol-ID PROTO_IPSEC_ESP, 4-octet SPIs
  std::vector<KekSpi> kek_spis;         // Protocol-ID 0, 16-octet SPIs
  bool empty() const { return tek_spis.empty() && kek_spis.empty(); }
};

// What one GROUPKEY-PUSH carries. With no SA, it only deletes (the group
// ends: RFC 6407 5.9 omits SA and KD). Keys are for exactly the SAs of
// `sa`; SID packets are never sent in a push (RFC 6407 5.6.4).
struct PushContent {
  std::uint32_t seq = 0;
  PushDeletes deletes;
  std::optional<wire::GroupSaPayload> sa;  // from encode_group_sa
  KeyMaterial keys;                        // sids ignored
};

// The signature scheme a KEK policy names (SIG_ALGORITHM RSA is PKCS#1
// v1.5 over the raw hash, as IKEv1 signs).
crypto::SignatureScheme signature_scheme(KekPolicy::Signature s);

// How logs and the cluster name a rekey signing key: the SHA-256 of its
// DER SubjectPublicKeyInfo (SIG_ALGORITHM_KEY), in hex, what
// `openssl pkey -pubout -outform DER | sha256sum` prints for its file.
std::string signing_key_id(ByteView spki);

// Key server: the datagram, signed with `signing_key` as `current_policy`
// says and encrypted under `current_kek`, the KEK the members hold now (a
// new KEK in `content` is used from the next push on).
crypto::Result<Bytes> build_push(const PushContent& content, const Kek& current_kek, const KekPolicy& current_policy,
                                 const crypto::PrivateKey& signing_key);

// ---------------------------------------------------------------- RFC 8263

// ack_key and the SPI it belongs to, derived from the KEK that decrypted
// the push being acknowledged (REKEY_ACK_KEK_SHA256, RFC 8263 2.1 and 3.2).
struct AckKey {
  KekSpi spi{};
  crypto::SecretBytes key;  // 32 octets
};
crypto::Result<AckKey> derive_ack_key(const Kek& kek, crypto::CipherAlgorithm kek_cipher);

// Member: HDR, HASH, SEQ, ID(ID_IPV4_ADDR or ID_IPV6_ADDR of `member`).
crypto::Result<Bytes> build_ack(const AckKey& key, std::uint32_t seq, const Address& member);
crypto::Result<Bytes> build_ack(const Kek& kek, crypto::CipherAlgorithm kek_cipher, std::uint32_t seq,
                                const Address& member);

// Key server: what a verified acknowledgement says. The caller checks that
// `member` is the source of the member's last GROUPKEY-PULL (RFC 8263 3.4)
// and that `seq` is a push it sent.
struct Ack {
  std::uint32_t seq = 0;
  Address member;
};
crypto::Result<Ack> verify_ack(const AckKey& key, ByteView datagram);
crypto::Result<Ack> verify_ack(const Kek& kek, crypto::CipherAlgorithm kek_cipher, ByteView datagram);

// ------------------------------------------------------------ group member

// The reference implementation's KEK rekey (stv0g/gdoid, INTEROP.md 6): its
// KD names the KEK the members hold while the SA KEK of the same push
// names the new one (RFC 6407 5.6 wants the two equal). Exactly that shape,
// one KEK packet naming `held` beside an SA KEK naming another SPI, gives
// the KD as the RFC has it, that packet naming `sa_kek`; its key is the new
// KEK's. Any other KD: nullopt, and it is read as it is.
std::optional<wire::KeyDownloadPayload> gdoid_kek_rekey_kd(const wire::KeyDownloadPayload& kd, const KekSpi& held,
                                                           const KekSpi& sa_kek);

struct PushAccepted {
  std::uint32_t seq = 0;
  PushDeletes deletes;
  std::optional<ReceivedSa> sa;  // the policy of the new SAs
  KeyMaterial keys;              // their keys (kek set when the push carried one)
  bool kek_replaced = false;     // a new KEK: the next push comes under it, SEQ from 1
  // The KD's SIG_ALGORITHM_KEY named another key than the one this push was
  // verified with: the key server rolled its signing key over, and every
  // later push must be signed with the new key (keys.kek->signature_public_key).
  bool signing_key_replaced = false;
  // The SA carried a GAP payload. Without one, the activation and
  // deactivation delays and the fail-close ACL in `sa` are defaults, not
  // the key server's word, and a member keeps the ones it holds.
  bool gap = false;
  // RFC 8263: whether to acknowledge, and the key of the KEK this push was
  // decrypted with (the old one, even when the push replaced it).
  bool ack_requested = false;
  AckKey ack_key;
  std::string interop_note;  // a key server's quirk tolerated in this push, for the log
};

struct PushRefused {
  // RetiredSigningKey: a valid signature, but by the key a verified push
  // replaced (a holder of the KEK with the old private key, or a key server
  // that was not reloaded): refused as any bad signature, named apart so
  // that the operator sees which.
  enum class Reason : std::uint8_t { UnknownKek, Undecryptable, Malformed, Replay, BadSignature, RetiredSigningKey };
  Reason reason = Reason::Malformed;
  std::string detail;  // "GROUPKEY-PUSH SEQ 4: not above 7, the last accepted"

  // The counter it is counted under: "unknown_kek", "undecryptable",
  // "malformed", "replay", "bad_signature", "retired_signing_key".
  const char* counter() const;
};

// Every reason, for those who count by reason (gm.status, the metrics).
inline constexpr PushRefused::Reason kPushRefusedReasons[] = {
    PushRefused::Reason::UnknownKek, PushRefused::Reason::Undecryptable, PushRefused::Reason::Malformed,
    PushRefused::Reason::Replay, PushRefused::Reason::BadSignature, PushRefused::Reason::RetiredSigningKey};

using PushResult = std::variant<PushAccepted, PushRefused>;

// A member's rekey SA: the KEK and its policy from registration (or the
// last push that replaced them), the key the pushes are verified with and
// the highest SEQ accepted. A refused push never changes it.
//
// Signing-key rollover (RFC 6407 5.6.2.2): a push verified with the current
// key whose KD carries another SIG_ALGORITHM_KEY, for the algorithm its SA
// KEK names, makes that key the only one later pushes are verified with.
// The replaced key is kept only to name a push it signed
// (RetiredSigningKey); such a push is never accepted.
class PushReceiver {
 public:
  // The public key is the KEK's SIG_ALGORITHM_KEY. `seq`: the SEQ of
  // registration message 4 (pushes must be above it). `ack_requested`: the
  // registration's SA KEK carried KEK_ACK_REQUESTED.
  static crypto::Result<PushReceiver> create(Kek kek, KekPolicy policy, std::uint32_t seq, bool ack_requested);

  // Checks in RFC 6407 4.4's order: cookies match the KEK, decrypt,
  // validate form, SEQ above the last, SIG; then the SA and KD take effect.
  PushResult receive(ByteView datagram);

  const Kek& kek() const { return kek_; }
  const KekPolicy& kek_policy() const { return policy_; }
  std::uint32_t seq() const { return seq_; }
  bool ack_requested() const { return ack_requested_; }

 private:
  PushReceiver(Kek kek, KekPolicy policy, crypto::PublicKey key, std::uint32_t seq, bool ack)
      : kek_(std::move(kek)), policy_(policy), key_(std::move(key)), seq_(seq), ack_requested_(ack) {}

  // The key the last rollover replaced, the policy it signed under, its
  // DER and the SEQ of the push that replaced it.
  struct Retired {
    crypto::PublicKey key;
    KekPolicy policy;
    Bytes spki;
    std::uint32_t replaced_at_seq = 0;
  };

  Kek kek_;
  KekPolicy policy_;
  crypto::PublicKey key_;
  std::optional<Retired> retired_;
  std::uint32_t seq_ = 0;
  bool ack_requested_ = false;
};

}  // namespace covey::gdoi
