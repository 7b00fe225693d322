#include "config/phase1_config.h"

namespace covey::config {

const crypto::SecretBytes* Phase1Config::pre_shared_key_for(const Address& peer) const {
  for (const auto& k : peer_keys)  // longest prefix first
    if (k.peer.contains(peer)) return &k.key;
  return default_key ? &*default_key : nullptr;
}

}  // namespace covey::config
