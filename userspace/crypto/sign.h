// Signatures for IKEv1 phase-1 authentication and the GDOI rekey SIG payload.
//
// Everything signs or verifies a hash the caller has computed: IKEv1 signs
// HASH_I/HASH_R (RFC 2409 section 5.1) and GDOI signs the rekey hash (RFC 6407
// section 4). The encodings are the ones these protocols put in the SIG payload.
#pragma once

#include <string>
#include <string_view>

#include "common/bytes.h"
#include "crypto/hash.h"
#include "crypto/pkey_handle.h"
#include "crypto/result.h"

namespace covey::crypto {

enum class SignatureScheme {
  // RSA PKCS#1 v1.5 type-1 padding over the raw hash, with no ASN.1 DigestInfo:
  // what IKEv1 and GDOI's SIG_ALG_RSA put on the wire (and what gdoid sends).
  RsaPkcs1Raw,
  // RSASSA-PSS, MGF1 with the same hash, salt as long as the hash (RFC 8017's
  // recommendation; neither RFC 2409 nor RFC 6407 defines PSS parameters).
  RsaPss,
  // ECDSA on P-256 over a SHA-256 hash / P-384 over SHA-384, signature r|s with
  // each integer zero-padded to the curve size (RFC 4754 sections 4 and 7).
  EcdsaP256,
  EcdsaP384,
};

std::string_view name(SignatureScheme scheme);  // "RSA PKCS#1 v1.5", "RSA-PSS", "ECDSA-256", "ECDSA-384"

enum class EcCurve { P256, P384 };

class PublicKey;

class PrivateKey {
 public:
  static Result<PrivateKey> generate_rsa(unsigned bits);
  static Result<PrivateKey> generate_ec(EcCurve curve);
  // PKCS#8 or traditional PEM ("BEGIN PRIVATE KEY", "BEGIN RSA PRIVATE KEY", ...),
  // unencrypted.
  static Result<PrivateKey> from_pem(std::string_view pem);
  Result<std::string> to_pem() const;  // PKCS#8, unencrypted: for files with mode 0600

  Result<PublicKey> public_key() const;
  EVP_PKEY* get() const { return key_.get(); }

 private:
  explicit PrivateKey(detail::PkeyPtr key) : key_(std::move(key)) {}
  detail::PkeyPtr key_;
};

class PublicKey {
 public:
  // DER SubjectPublicKeyInfo: the form of the KD payload's SIG_ALGORITHM_KEY
  // (gdoid writes it with i2d_RSA_PUBKEY).
  static Result<PublicKey> from_der(ByteView spki);
  static Result<PublicKey> from_pem(std::string_view pem);  // "BEGIN PUBLIC KEY"
  Result<Bytes> to_der() const;

  EVP_PKEY* get() const { return key_.get(); }

 private:
  explicit PublicKey(detail::PkeyPtr key) : key_(std::move(key)) {}
  detail::PkeyPtr key_;
  friend class PrivateKey;
};

// Signs hash, which must be digest_size(hash_algorithm) bytes. ECDSA-256 needs
// SHA-256 and ECDSA-384 SHA-384 (RFC 4754 fixes the pairing); the key's type and
// curve must match the scheme.
Result<Bytes> sign_hash(const PrivateKey& key, SignatureScheme scheme, HashAlgorithm hash_algorithm,
                        ByteView hash);

// Fails with a reason on a mismatched or malformed signature.
Result<void> verify_hash(const PublicKey& key, SignatureScheme scheme, HashAlgorithm hash_algorithm,
                         ByteView hash, ByteView signature);

// Whether `key` is of the type (RSA) or on the curve the scheme signs with;
// the error names what it is instead.
Result<void> key_fits(const PublicKey& key, SignatureScheme scheme);

}  // namespace covey::crypto
