// The [isakmp] table, shared by covey-ks and covey-gm: how phase 1 (IKEv1
// Main Mode) authenticates and which proposals it accepts or offers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/address.h"
#include "crypto/cipher.h"
#include "crypto/hash.h"
#include "crypto/secret.h"
#include "gdoi/policy.h"

namespace covey::config {

struct Phase1Config {
  // Pre-shared keys (Cisco: crypto isakmp key KEY address A). Main Mode
  // picks the key by the peer's address alone (RFC 2409 5.4).
  std::optional<crypto::SecretBytes> default_key;
  struct PeerKey {
    gdoi::Prefix peer;
    crypto::SecretBytes key;
  };
  std::vector<PeerKey> peer_keys;  // longest prefix first

  // RSA signatures: PEM files, resolved against the config file's folder.
  // All three or none; checked to parse and to belong together.
  std::string certificate, private_key, ca;

  // Proposals in preference order: what a member offers, what a key server accepts.
  std::vector<crypto::CipherAlgorithm> encryption{crypto::CipherAlgorithm::Aes256Cbc,
                                                  crypto::CipherAlgorithm::Aes128Cbc};
  std::vector<crypto::HashAlgorithm> hash{crypto::HashAlgorithm::Sha256, crypto::HashAlgorithm::Sha384,
                                          crypto::HashAlgorithm::Sha1};
  std::vector<std::uint16_t> dh_group{19, 20, 14};
  std::uint32_t lifetime_s = 86400;
  bool allow_legacy = false;  // lets 3des and DH groups 2 and 5 be listed

  bool pre_share() const { return default_key.has_value() || !peer_keys.empty(); }
  bool rsa_sig() const { return !certificate.empty(); }
  // Longest matching prefix, else the default; nullptr when neither.
  const crypto::SecretBytes* pre_shared_key_for(const Address& peer) const;
};

}  // namespace covey::config
