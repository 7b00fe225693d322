// Sealing: what the cooperative key servers write to etcd when it would
// decrypt traffic or pushes (KEKs, TEK keys). AES-256-GCM under the
// cluster's sealing key, with the etcd key the value is stored under as
// associated data, so that a copy of etcd's data (a backup, a snapshot, an
// etcd operator) yields no key, and a sealed value moved to another key
// does not open.
//
// A sealed value: 0x01 (the format), a 12-byte random nonce, the
// ciphertext, the 16-byte tag. A random nonce is safe here: a key seals a
// few values per rekey, far below the 2^32 messages NIST SP 800-38D allows
// one key with random nonces.
#pragma once

#include <string>
#include <string_view>

#include "common/bytes.h"
#include "crypto/result.h"
#include "crypto/secret.h"

namespace covey::crypto {

inline constexpr std::size_t kSealingKeySize = 32;

Result<Bytes> seal(ByteView key, std::string_view associated, ByteView plaintext);
// The error says which check failed ("not a sealed value", "format 7",
// "does not open under this sealing key, or was moved from another key").
Result<SecretBytes> unseal(ByteView key, std::string_view associated, ByteView sealed);

// The sealing key file: 64 hex digits (`openssl rand -hex 32`), surrounding
// whitespace ignored. The error names the file and the defect.
Result<SecretBytes> read_sealing_key(const std::string& path);

}  // namespace covey::crypto
