// CBC encryption for ISAKMP messages and GDOI rekeys (RFC 2409 Appendix B,
// RFC 6407 section 5.3.1). Padding is the protocol's business, not the cipher's:
// these functions take and return whole blocks.
#pragma once

#include <cstddef>
#include <string_view>

#include "common/bytes.h"
#include "crypto/result.h"

namespace covey::crypto {

enum class CipherAlgorithm { Aes128Cbc, Aes256Cbc, TripleDesCbc };

std::size_t key_size(CipherAlgorithm cipher);    // 16, 32, 24 bytes
std::size_t block_size(CipherAlgorithm cipher);  // 16, 16, 8 bytes: also the IV size
std::string_view name(CipherAlgorithm cipher);   // "AES-128-CBC", "AES-256-CBC", "3DES-CBC"

// Plaintext must be a whole number of blocks (see ikev1::pad_payloads); no
// padding is added. The key must be exactly key_size(), the IV block_size().
Result<Bytes> cbc_encrypt(CipherAlgorithm cipher, ByteView key, ByteView iv, ByteView plaintext);

// Ciphertext must be a whole number of blocks. Returns every decrypted byte,
// padding included: in ISAKMP the payload chain, not the pad, gives the length.
Result<Bytes> cbc_decrypt(CipherAlgorithm cipher, ByteView key, ByteView iv, ByteView ciphertext);

// The IV for the next message of an IKEv1 exchange: the last ciphertext block of
// this one, sent or received (RFC 2409 Appendix B). Empty if there is none.
Bytes last_cipher_block(CipherAlgorithm cipher, ByteView ciphertext);

// Whether two keys are the same key to the cipher, in constant time. DES
// ignores the lowest bit of each key octet (its parity bit, FIPS 46-3), so
// 3DES keys that differ only there are equal; AES keys must match whole.
bool same_key(CipherAlgorithm cipher, ByteView a, ByteView b);

}  // namespace covey::crypto
