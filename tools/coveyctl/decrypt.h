// What `coveyctl decode` learns from a capture to decrypt it, and the
// decryption itself. Phase-1 SAs by initiator cookie with their IV chains
// (RFC 2409 Appendix B, keys from the keylog); KEK policy (SA KEK) and key
// (KD KEK packet) by KEK SPI, learned from decrypted registrations and
// rekeys, for the GROUPKEY-PUSHes they protect (RFC 6407 4, 5.6.2.1).
// Kept apart from the description of messages: this is the part that
// follows the protocol's state from message to message.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "coveyctl/describe.h"
#include "coveyctl/keylog.h"
#include "coveyctl/pcap.h"
#include "wire/message.h"

namespace covey::coveyctl {

// Everything decryption learns from the capture, keyed the way the wire keys it.
class DecryptionState {
 public:
  explicit DecryptionState(Keylog keylog) : keylog_(std::move(keylog)) {}

  // Plaintext of an encrypted message's body, or why there is none; `how`
  // says which key and IV were used (README.md, "decryption").
  std::optional<Bytes> decrypt(const wire::Header& h, ByteView ciphertext, Json& how);
  // Learns from a message's payloads, clear or decrypted: the phase-1
  // transform and KEs of Main Mode, KEK policy and keys of GDOI.
  void learn(const Datagram& d, const wire::Header& h, const std::vector<wire::Payload>& payloads);

 private:
  using Spi16 = std::array<std::uint8_t, 16>;

  // One phase-1 SA, by initiator cookie (RFC 2409 Appendix B).
  struct Phase1 {
    std::string initiator;  // endpoint that sent Main Mode message 1
    std::uint16_t cipher = 0, key_bits = 0, hash = 0;  // from the responder's SA, message 2
    Bytes gxi, gxr;                                    // KE of messages 3 and 4
    Bytes last_block;  // IV for the next phase-1 message: last ciphertext block so far
    std::map<std::uint32_t, Bytes> phase2_iv;  // next IV per phase-2 Message ID
    // The IV each chain's last message used: a retransmission ends in the
    // same block as the message it repeats and was encrypted with that IV.
    Bytes phase1_prev_iv;
    std::map<std::uint32_t, Bytes> phase2_prev_iv;
  };

  // KEK policy (SA KEK) and key (KD KEK packet), by KEK SPI = push cookies.
  struct KekPolicy {
    std::optional<std::uint32_t> algorithm, key_bits;  // KEK_ALGORITHM, KEK_KEY_LENGTH
    std::string source;
  };
  struct KekKey {
    Bytes iv_and_key;  // KEK_ALGORITHM_KEY, RFC 6407 5.6.2.1
    std::string source;
  };

  static Spi16 push_spi(const wire::Header& h);
  void learn_clear_main_mode(const Datagram& d, const wire::Header& h, const std::vector<wire::Payload>& payloads);
  void learn_group_keys(std::size_t frame, const wire::Header& h, const std::vector<wire::Payload>& payloads);
  std::optional<Bytes> decrypt_phase1_sa(const wire::Header& h, ByteView ciphertext, Json& how);
  std::optional<Bytes> decrypt_push(const wire::Header& h, ByteView ciphertext, Json& how);

  Keylog keylog_;
  std::map<wire::Cookie, Phase1> phase1_;
  std::map<Spi16, KekPolicy> kek_policy_;
  std::map<Spi16, KekKey> kek_key_;
};

}  // namespace covey::coveyctl
