// Internal to covey_crypto: ownership of OpenSSL objects and OpenSSL's own error text.
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <memory>
#include <string>
#include <string_view>

#include "crypto/cipher.h"
#include "crypto/hash.h"
#include "crypto/pkey_handle.h"
#include "crypto/result.h"

namespace covey::crypto::detail {

template <auto Free>
struct Deleter {
  template <class P>
  void operator()(P* p) const {
    Free(p);
  }
};

using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX_free>>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, Deleter<EVP_CIPHER_CTX_free>>;
using CipherPtr = std::unique_ptr<EVP_CIPHER, Deleter<EVP_CIPHER_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;
using MdPtr = std::unique_ptr<EVP_MD, Deleter<EVP_MD_free>>;
using MacPtr = std::unique_ptr<EVP_MAC, Deleter<EVP_MAC_free>>;
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, Deleter<EVP_MAC_CTX_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using SecretBnPtr = std::unique_ptr<BIGNUM, Deleter<BN_clear_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free>>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, Deleter<OSSL_PARAM_BLD_free>>;
// OSSL_PARAM_BLD puts secure-heap BIGNUMs (private values) in its secure block,
// which OSSL_PARAM_free clears.
using ParamPtr = std::unique_ptr<OSSL_PARAM, Deleter<OSSL_PARAM_free>>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG_free>>;

// "<what>: <OpenSSL's reason>" and drains OpenSSL's thread-local error queue,
// so a later failure does not report a stale reason.
Error openssl_error(std::string_view what);

// Empties the error queue after a failure that covey reports in its own words
// (OpenSSL's reason for an off-curve point is an internal detail).
void drop_openssl_errors();

// Algorithms fetched once per process. A fetch by name is a provider
// lookup (locks, name compares, allocations) that cost more than the
// operation itself for a short HMAC, digest or CBC block, and a rekey to
// 10,000 members or a registration storm runs thousands of them. nullptr
// when the provider lacks the algorithm; the objects live until exit.
const EVP_MD* fetched_md(HashAlgorithm hash);
const EVP_CIPHER* fetched_cipher(CipherAlgorithm cipher);
// An HMAC context with its digest set and no key, to EVP_MAC_CTX_dup from.
const EVP_MAC_CTX* hmac_template(HashAlgorithm hash);

}  // namespace covey::crypto::detail
