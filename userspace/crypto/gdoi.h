// GDOI message protection (RFC 6407): the GROUPKEY-PULL HASH payloads, the
// GROUPKEY-PUSH (rekey) signature, and KEK encryption of the rekey.
//
// Inputs are already-encoded payload bytes. Following RFC 6407 section 3.2,
// Ni, Nr, ID, SA, GAP, SEQ and KD are whole payloads including their generic
// headers; Ni_b and Nr_b are nonce payload bodies (the nonce alone).
#pragma once

#include <cstdint>

#include "common/bytes.h"
#include "crypto/cipher.h"
#include "crypto/hash.h"
#include "crypto/result.h"
#include "crypto/sign.h"

namespace covey::crypto::gdoi {

// HASH(1) = prf(SKEYID_a, M-ID | Ni | ID)
Result<Bytes> hash1(HashAlgorithm prf, ByteView skeyid_a, std::uint32_t message_id, ByteView ni, ByteView id);
// HASH(2) = prf(SKEYID_a, M-ID | Ni_b | Nr | SA)
Result<Bytes> hash2(HashAlgorithm prf, ByteView skeyid_a, std::uint32_t message_id, ByteView ni_b,
                    ByteView nr, ByteView sa);
// HASH(3) = prf(SKEYID_a, M-ID | Ni_b | Nr_b [ | GAP ]); gap empty when absent.
// Unlike Quick Mode's HASH(3) (RFC 2409 section 5.5) there is no leading 0 octet.
Result<Bytes> hash3(HashAlgorithm prf, ByteView skeyid_a, std::uint32_t message_id, ByteView ni_b,
                    ByteView nr_b, ByteView gap);
// HASH(4) = prf(SKEYID_a, M-ID | Ni_b | Nr_b [ | SEQ ] | KD); seq empty when absent.
Result<Bytes> hash4(HashAlgorithm prf, ByteView skeyid_a, std::uint32_t message_id, ByteView ni_b,
                    ByteView nr_b, ByteView seq, ByteView kd);

// What the rekey SIG covers (RFC 6407 section 4): "rekey" | HDR | the payloads
// before SIG, unencrypted. HDR is the 28-byte ISAKMP header as it is hashed:
// with the Encryption flag set and Length = unpadded_length, the length of the
// message before encryption padding (what gdoid does; the transmitted header
// counts the padding, RFC 2409 Appendix B). Both sender and receiver pass the
// header they have; this sets those two fields.
Result<Bytes> rekey_signed_data(ByteView hdr, ByteView payloads_before_sig, std::uint32_t unpadded_length);

// sign_hash(digest(SIG_HASH_ALGORITHM, rekey_signed_data(...))): the SIG payload data.
Result<Bytes> sign_rekey(const PrivateKey& key, SignatureScheme scheme, HashAlgorithm sig_hash, ByteView hdr,
                         ByteView payloads_before_sig, std::uint32_t unpadded_length);
Result<void> verify_rekey(const PublicKey& key, SignatureScheme scheme, HashAlgorithm sig_hash, ByteView hdr,
                          ByteView payloads_before_sig, std::uint32_t unpadded_length, ByteView signature);

// The payloads after the rekey HDR, encrypted with the KEK in CBC mode. The
// KEK_ALGORITHM_KEY value is the IV followed by the key (RFC 6407 section
// 5.6.2.1); that IV is used for every rekey under this KEK. Padding as IKEv1:
// zeros up to the block boundary.
Result<Bytes> kek_encrypt(CipherAlgorithm cipher, ByteView kek_algorithm_key, ByteView payloads);
// Returns every decrypted byte; the payload chain gives the real length.
Result<Bytes> kek_decrypt(CipherAlgorithm cipher, ByteView kek_algorithm_key, ByteView ciphertext);

}  // namespace covey::crypto::gdoi
