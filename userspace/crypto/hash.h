// Hash functions and the IKEv1 prf (HMAC of the negotiated hash, RFC 2409 section 4:
// "the HMAC version of the negotiated hash function" when no prf is negotiated).
#pragma once

#include <cstddef>
#include <initializer_list>
#include <string_view>

#include "common/bytes.h"
#include "crypto/result.h"
#include "crypto/secret.h"

namespace covey::crypto {

enum class HashAlgorithm { Sha1, Sha256, Sha384 };

std::size_t digest_size(HashAlgorithm hash);
std::string_view name(HashAlgorithm hash);  // "SHA-1", "SHA-256", "SHA-384"

// hash(part1 | part2 | ...): the parts are fed in turn, never copied together, so
// a secret among them (g^xy) leaves no concatenated copy in memory.
Result<Bytes> digest(HashAlgorithm hash, std::initializer_list<ByteView> parts);

// prf(key, part1 | part2 | ...) = HMAC-<hash>. The output is secret as often as
// not (SKEYID and its children), so it always comes back as SecretBytes.
Result<SecretBytes> prf(HashAlgorithm hash, ByteView key, std::initializer_list<ByteView> parts);

}  // namespace covey::crypto
