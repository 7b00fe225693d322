// IKEv1 key derivation and message protection (RFC 2409 sections 5 and 5.5,
// Appendix B). Inputs are already-encoded bytes; nothing here parses payloads.
//
// Notation as in RFC 2409: Ni_b/Nr_b are nonce payload bodies, CKY-I/CKY-R the
// 8-byte cookies, g^xi/g^xr the KE payload bodies, g^xy the shared secret,
// SAi_b the initiator's whole SA payload body, IDii_b/IDir_b the ID payload
// bodies (ID type, protocol, port and data, without the generic header).
#pragma once

#include <cstdint>

#include "common/bytes.h"
#include "crypto/cipher.h"
#include "crypto/hash.h"
#include "crypto/result.h"
#include "crypto/secret.h"

namespace covey::crypto::ikev1 {

// SKEYID for pre-shared key authentication: prf(pre-shared-key, Ni_b | Nr_b).
Result<SecretBytes> skeyid_psk(HashAlgorithm prf, ByteView pre_shared_key, ByteView ni_b, ByteView nr_b);

// SKEYID for signature authentication: prf(Ni_b | Nr_b, g^xy).
Result<SecretBytes> skeyid_sig(HashAlgorithm prf, ByteView ni_b, ByteView nr_b, ByteView g_xy);

struct SkeyidKeys {
  SecretBytes d;  // derives keys for non-ISAKMP SAs
  SecretBytes a;  // authenticates ISAKMP messages (HASH payloads)
  SecretBytes e;  // encrypts ISAKMP messages, via encryption_key()
};

// SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
// SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
// SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
Result<SkeyidKeys> derive_skeyid_dae(HashAlgorithm prf, ByteView skeyid, ByteView g_xy, ByteView cky_i,
                                     ByteView cky_r);

// The ISAKMP SA's cipher key (Appendix B): the first key_size(cipher) bytes of
// SKEYID_e if it is long enough; otherwise of Ka = K1 | K2 | ... with
// K1 = prf(SKEYID_e, 0) (0 a single octet) and Kn = prf(SKEYID_e, Kn-1).
Result<SecretBytes> encryption_key(HashAlgorithm prf, ByteView skeyid_e, CipherAlgorithm cipher);

// The values both HASH_I and HASH_R cover, in initiator/responder terms.
struct Phase1Transcript {
  ByteView g_xi;
  ByteView g_xr;
  ByteView cky_i;
  ByteView cky_r;
  ByteView sai_b;
};

// HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)
Result<Bytes> hash_i(HashAlgorithm prf, ByteView skeyid, const Phase1Transcript& t, ByteView idii_b);
// HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)
Result<Bytes> hash_r(HashAlgorithm prf, ByteView skeyid, const Phase1Transcript& t, ByteView idir_b);

// IV of the first encrypted phase-1 message: hash(g^xi | g^xr) cut to the
// cipher's block size, with the negotiated hash (not the prf).
Result<Bytes> phase1_iv(HashAlgorithm hash, CipherAlgorithm cipher, ByteView g_xi, ByteView g_xr);

// IV of the first message of a phase-2 exchange (Quick Mode, Informational,
// GDOI GROUPKEY-PULL): hash(last phase-1 CBC block | M-ID) cut to the block size,
// M-ID as the 4 bytes of the ISAKMP header. Each exchange has its own IV chain.
Result<Bytes> phase2_iv(HashAlgorithm hash, CipherAlgorithm cipher, ByteView last_phase1_block,
                        std::uint32_t message_id);

// The payloads of a message padded for encryption as Appendix B says: with
// 0x00 bytes up to the next block boundary, and none if already on one. (The
// "pad length in the last byte, always pad" rule of section 5.2 is for Revised
// public-key-encryption payloads only.) The ISAKMP header length must count it.
Bytes pad_payloads(CipherAlgorithm cipher, ByteView payloads);

// cbc_encrypt(pad_payloads(payloads)). The next IV is last_cipher_block() of the result.
Result<Bytes> encrypt_payloads(CipherAlgorithm cipher, ByteView key, ByteView iv, ByteView payloads);

// Decryption is cbc_decrypt(): it returns the padding too, because peers pad in
// different ways (zeros, random bytes, a pad-length byte) and only the payload
// chain tells where the payloads end.

}  // namespace covey::crypto::ikev1
