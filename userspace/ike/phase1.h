// The ISAKMP (phase-1) security association: what Main Mode negotiates and
// what every phase-2 exchange (GROUPKEY-PULL, Informational) is protected by.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/bytes.h"
#include "crypto/cipher.h"
#include "crypto/hash.h"
#include "crypto/result.h"
#include "crypto/secret.h"
#include "wire/message.h"

namespace covey::ike {

enum class AuthMethod : std::uint8_t { PreSharedKey, RsaSignature };

// One phase-1 transform (RFC 2409 Appendix A attributes).
struct Phase1Transform {
  crypto::CipherAlgorithm cipher = crypto::CipherAlgorithm::Aes256Cbc;
  crypto::HashAlgorithm hash = crypto::HashAlgorithm::Sha256;
  AuthMethod auth = AuthMethod::PreSharedKey;
  std::uint16_t dh_group = 19;
  std::uint32_t lifetime_s = 86400;
  bool operator==(const Phase1Transform&) const = default;

  wire::Transform to_wire(std::uint8_t number) const;
  // "aes-256 sha256 psk group 19 lifetime 86400 s"
  std::string str() const;
};

// What a transform offered on the wire means, or why covey cannot use it.
crypto::Result<Phase1Transform> transform_from_wire(const wire::Transform& t);

// Phase-1 SA payload with one proposal holding `offers` (RFC 2409 5: phase
// 1 offers are transforms of a single proposal), DOI GDOI (RFC 6407 2.1).
wire::SaPayload phase1_sa(const std::vector<Phase1Transform>& offers);

// An established ISAKMP SA and the per-exchange IV chains of the phase-2
// exchanges it protects (RFC 2409 Appendix B).
struct Phase1Sa {
  wire::Cookie initiator_cookie{};
  wire::Cookie responder_cookie{};
  bool we_initiated = false;
  Phase1Transform transform;
  crypto::SecretBytes skeyid_d, skeyid_a, skeyid_e;
  crypto::SecretBytes key;  // the cipher key cut from SKEYID_e (Appendix B)
  Bytes last_phase1_block;  // last CBC block of Main Mode message 6
  Endpoint peer;
  wire::IdentificationPayload peer_id;
  std::string peer_subject;  // certificate subject when signatures authenticated the peer
  // The Vendor ID payloads the peer sent in Main Mode message 1 or 2 (RFC
  // 2408 3.16), in order. Like everything before message 5, not
  // authenticated: HASH_I and HASH_R cover the SA payload, not these.
  std::vector<Bytes> peer_vendor_ids;
  std::int64_t established_at = 0;  // seconds, caller's clock

  // Encrypts a phase-2 message: header (exchange, message id, flags) with
  // its payloads, IV from this exchange's chain. Advances the chain.
  crypto::Result<Bytes> protect(wire::Header header, const std::vector<wire::Payload>& payloads);
  // Decrypts a received phase-2 message whose header has been decoded.
  // Returns the plaintext body (padding included). The chain does not move
  // until accepted(): a forged message must not desynchronize the exchange.
  crypto::Result<Bytes> unprotect(const wire::Header& header, ByteView datagram);
  // The message passed its HASH check: the next IV is its last block.
  void accepted(const wire::Header& header, ByteView datagram);
  // An Informational exchange carrying one notification, protected by this
  // SA: HDR*, HASH(1), N with HASH(1) = prf(SKEYID_a, M-ID | N) (RFC 2409 5.7).
  crypto::Result<Bytes> notify(wire::NotifyType type, std::uint32_t doi, Bytes data);

  // Ends an exchange's IV chain.
  void forget(std::uint32_t message_id) { ivs_.erase(message_id); }

 private:
  crypto::Result<Bytes> iv_for(std::uint32_t message_id);
  std::map<std::uint32_t, Bytes> ivs_;
};

// Decodes a decrypted body and returns the payload chain (padding allowed).
wire::Result<wire::PayloadChain> decode_body(const wire::Header& header, ByteView body);

}  // namespace covey::ike
