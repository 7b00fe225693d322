#include "crypto/openssl_util.h"

#include <openssl/core_names.h>

#include <array>

#include <openssl/err.h>

namespace covey::crypto::detail {

void PkeyFree::operator()(EVP_PKEY* key) const {
  EVP_PKEY_free(key);
}

Error openssl_error(std::string_view what) {
  std::string message(what);
  unsigned long code = ERR_get_error();
  if (code != 0) {
    char reason[256];
    ERR_error_string_n(code, reason, sizeof reason);
    message += " (";
    message += reason;
    message += ")";
  }
  ERR_clear_error();
  return Error{std::move(message)};
}

void drop_openssl_errors() {
  ERR_clear_error();
}

namespace {

const char* md_name(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::Sha1: return "SHA1";
    case HashAlgorithm::Sha256: return "SHA256";
    case HashAlgorithm::Sha384: return "SHA384";
  }
  return "";
}

const char* cipher_name(CipherAlgorithm cipher) {
  switch (cipher) {
    case CipherAlgorithm::Aes128Cbc: return "AES-128-CBC";
    case CipherAlgorithm::Aes256Cbc: return "AES-256-CBC";
    case CipherAlgorithm::TripleDesCbc: return "DES-EDE3-CBC";
  }
  return "";
}

constexpr HashAlgorithm kHashes[] = {HashAlgorithm::Sha1, HashAlgorithm::Sha256, HashAlgorithm::Sha384};
constexpr CipherAlgorithm kCiphers[] = {CipherAlgorithm::Aes128Cbc, CipherAlgorithm::Aes256Cbc,
                                        CipherAlgorithm::TripleDesCbc};

template <class E, std::size_t N>
std::size_t index_of(E v, const E (&all)[N]) {
  for (std::size_t i = 0; i < N; ++i)
    if (all[i] == v) return i;
  return N;
}

}  // namespace

const EVP_MD* fetched_md(HashAlgorithm hash) {
  static const std::array<EVP_MD*, 3> mds = [] {
    std::array<EVP_MD*, 3> a{};
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = EVP_MD_fetch(nullptr, md_name(kHashes[i]), nullptr);
    drop_openssl_errors();
    return a;
  }();
  std::size_t i = index_of(hash, kHashes);
  return i < mds.size() ? mds[i] : nullptr;
}

const EVP_CIPHER* fetched_cipher(CipherAlgorithm cipher) {
  static const std::array<EVP_CIPHER*, 3> ciphers = [] {
    std::array<EVP_CIPHER*, 3> a{};
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = EVP_CIPHER_fetch(nullptr, cipher_name(kCiphers[i]), nullptr);
    drop_openssl_errors();  // 3DES may be absent from a provider: an error when used, not here
    return a;
  }();
  std::size_t i = index_of(cipher, kCiphers);
  return i < ciphers.size() ? ciphers[i] : nullptr;
}

const EVP_MAC_CTX* hmac_template(HashAlgorithm hash) {
  static const std::array<EVP_MAC_CTX*, 3> templates = [] {
    std::array<EVP_MAC_CTX*, 3> a{};
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    for (std::size_t i = 0; mac && i < a.size(); ++i) {
      EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
      OSSL_PARAM params[] = {
          OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(md_name(kHashes[i])), 0),
          OSSL_PARAM_construct_end(),
      };
      if (ctx && EVP_MAC_CTX_set_params(ctx, params) == 1) {
        a[i] = ctx;
      } else {
        EVP_MAC_CTX_free(ctx);
      }
    }
    EVP_MAC_free(mac);  // each context holds its own reference
    drop_openssl_errors();
    return a;
  }();
  std::size_t i = index_of(hash, kHashes);
  return i < templates.size() ? templates[i] : nullptr;
}

}  // namespace covey::crypto::detail
