#include "crypto/sign.h"

#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <algorithm>
#include <climits>
#include <mutex>

#include "crypto/openssl_util.h"

namespace covey::crypto {

namespace {

using detail::BioPtr;
using detail::BnPtr;
using detail::EcdsaSigPtr;
using detail::MdPtr;
using detail::openssl_error;
using detail::PkeyCtxPtr;
using detail::PkeyPtr;

bool is_ecdsa(SignatureScheme scheme) {
  return scheme == SignatureScheme::EcdsaP256 || scheme == SignatureScheme::EcdsaP384;
}

// Size of r and of s in the RFC 4754 encoding.
std::size_t ecdsa_integer_size(SignatureScheme scheme) {
  return scheme == SignatureScheme::EcdsaP256 ? 32 : 48;
}

Result<void> check_key_type(EVP_PKEY* key, SignatureScheme scheme, const std::string& op);

// Refuses the combinations the protocols do not define, before OpenSSL sees them.
Result<void> check_key_and_hash(EVP_PKEY* key, SignatureScheme scheme, HashAlgorithm hash_algorithm,
                                ByteView hash, const std::string& op) {
  if (hash.size() != digest_size(hash_algorithm))
    return Error{op + ": hash is " + std::to_string(hash.size()) + " bytes, " +
                 std::string(name(hash_algorithm)) + " gives " + std::to_string(digest_size(hash_algorithm))};
  const bool p256 = scheme == SignatureScheme::EcdsaP256;
  if (is_ecdsa(scheme) && hash_algorithm != (p256 ? HashAlgorithm::Sha256 : HashAlgorithm::Sha384))
    return Error{op + ": RFC 4754 pairs " + std::string(name(scheme)) + " with " +
                 (p256 ? "SHA-256" : "SHA-384") + ", not " + std::string(name(hash_algorithm))};
  return check_key_type(key, scheme, op);
}

Result<void> check_key_type(EVP_PKEY* key, SignatureScheme scheme, const std::string& op) {
  if (!is_ecdsa(scheme)) {
    if (EVP_PKEY_is_a(key, "RSA") != 1) return Error{op + ": key is not an RSA key"};
    return {};
  }
  const bool p256 = scheme == SignatureScheme::EcdsaP256;
  char group[64] = {};
  std::size_t len = 0;
  if (EVP_PKEY_is_a(key, "EC") != 1 ||
      EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1) {
    detail::drop_openssl_errors();
    return Error{op + ": key is not an EC key"};
  }
  const std::string_view g(group, len);
  const bool match = p256 ? (g == "prime256v1" || g == "P-256") : (g == "secp384r1" || g == "P-384");
  if (!match)
    return Error{op + ": key is on curve " + std::string(g) + ", not " + (p256 ? "P-256" : "P-384")};
  return {};
}

// A signing or verifying context with the scheme's padding and digest set.
Result<PkeyCtxPtr> make_context(EVP_PKEY* key, SignatureScheme scheme, HashAlgorithm hash_algorithm,
                                bool signing, const std::string& op) {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!ctx || (signing ? EVP_PKEY_sign_init(ctx.get()) : EVP_PKEY_verify_init(ctx.get())) != 1)
    return openssl_error(op + ": cannot create context");
  const EVP_MD* md = detail::fetched_md(hash_algorithm);
  if (!md) return openssl_error(op + ": cannot fetch " + std::string(name(hash_algorithm)));
  bool ok = true;
  switch (scheme) {
    case SignatureScheme::RsaPkcs1Raw:
      // No signature digest: OpenSSL then pads the bytes as given, without DigestInfo.
      ok = EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) == 1;
      break;
    case SignatureScheme::RsaPss:
      ok = EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_signature_md(ctx.get(), md) == 1 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_DIGEST) == 1;
      break;
    case SignatureScheme::EcdsaP256:
    case SignatureScheme::EcdsaP384: ok = EVP_PKEY_CTX_set_signature_md(ctx.get(), md) == 1; break;
  }
  if (!ok) return openssl_error(op + ": cannot set parameters");
  return ctx;
}

std::string operation(std::string_view verb, SignatureScheme scheme) {
  return std::string(verb) + " " + std::string(name(scheme));
}

Result<PkeyPtr> read_der_public_key(ByteView der, const std::string& op) {
  if (der.size() > LONG_MAX) return Error{op + ": too long"};
  const unsigned char* p = der.data();
  PkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!key) return openssl_error(op + ": not a DER SubjectPublicKeyInfo");
  if (p != der.data() + der.size()) return Error{op + ": trailing bytes after the SubjectPublicKeyInfo"};
  return key;
}

// Never prompt on a terminal for a passphrase: covey reads unencrypted keys only.
int no_passphrase(char*, int, int, void*) {
  return -1;
}

}  // namespace

std::string_view name(SignatureScheme scheme) {
  switch (scheme) {
    case SignatureScheme::RsaPkcs1Raw: return "RSA PKCS#1 v1.5";
    case SignatureScheme::RsaPss: return "RSA-PSS";
    case SignatureScheme::EcdsaP256: return "ECDSA-256";
    case SignatureScheme::EcdsaP384: return "ECDSA-384";
  }
  return "unknown signature scheme";
}

Result<PrivateKey> PrivateKey::generate_rsa(unsigned bits) {
  if (bits < 2048)
    return Error{"generate RSA key: " + std::to_string(bits) + " bits is below the 2048 minimum"};
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<std::size_t>(bits)));
  if (!key) return openssl_error("generate RSA key failed");
  return PrivateKey(std::move(key));
}

Result<PrivateKey> PrivateKey::generate_ec(EcCurve curve) {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve == EcCurve::P256 ? "P-256" : "P-384"));
  if (!key) return openssl_error("generate EC key failed");
  return PrivateKey(std::move(key));
}

Result<PrivateKey> PrivateKey::from_pem(std::string_view pem) {
  if (pem.size() > INT_MAX) return Error{"read PEM private key: too long"};
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return openssl_error("read PEM private key: out of memory");
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) return openssl_error("read PEM private key: no unencrypted private key found");
  return PrivateKey(std::move(key));
}

Result<std::string> PrivateKey::to_pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return openssl_error("write PEM private key failed");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || !data) return openssl_error("write PEM private key: empty output");
  std::string pem(data, static_cast<std::size_t>(len));
  // The BIO's buffer held the key; BIO_free does not wipe it.
  OPENSSL_cleanse(data, static_cast<std::size_t>(len));
  return pem;
}

Result<PublicKey> PrivateKey::public_key() const {
  // Through DER, so the result holds no private component.
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key_.get(), &der);
  if (len <= 0) return openssl_error("export public key failed");
  auto key = read_der_public_key(ByteView(der, static_cast<std::size_t>(len)), "export public key");
  OPENSSL_free(der);
  if (!key) return Error{key.error()};
  return PublicKey(std::move(*key));
}

// d2i_PUBKEY runs OpenSSL 3's decoder framework, about 100 us: six RSA-2048
// verifications. The keys a process parses are nearly always one: its key
// server's rekey signing key, sent again in every registration and every KEK
// (covey-gm's groups and re-registrations, gm-swarm's 100,000 members). So the
// last key parsed is kept and shared. An EVP_PKEY is not changed by use, and
// OpenSSL sets its per-key caches (the RSA Montgomery form, about 30 us more
// for a fresh key's first verification) under the key's own lock, so a shared
// one may verify on several threads at once.
Result<PublicKey> PublicKey::from_der(ByteView spki) {
  // Never freed, like fetched_md's: freeing at exit could follow OpenSSL's own cleanup.
  struct Last {
    std::mutex mutex;
    Bytes der;
    EVP_PKEY* key = nullptr;
  };
  static Last* last = new Last;
  {
    std::lock_guard lock(last->mutex);
    if (last->key && std::equal(spki.begin(), spki.end(), last->der.begin(), last->der.end()) &&
        EVP_PKEY_up_ref(last->key) == 1)
      return PublicKey(PkeyPtr(last->key));
  }
  auto key = read_der_public_key(spki, "read DER public key");
  if (!key) return Error{key.error()};
  std::lock_guard lock(last->mutex);
  if (EVP_PKEY_up_ref(key->get()) == 1) {
    EVP_PKEY_free(last->key);
    last->key = key->get();
    last->der.assign(spki.begin(), spki.end());
  }
  return PublicKey(std::move(*key));
}

Result<PublicKey> PublicKey::from_pem(std::string_view pem) {
  if (pem.size() > INT_MAX) return Error{"read PEM public key: too long"};
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return openssl_error("read PEM public key: out of memory");
  PkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) return openssl_error("read PEM public key: no public key found");
  return PublicKey(std::move(key));
}

Result<Bytes> PublicKey::to_der() const {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key_.get(), &der);
  if (len <= 0) return openssl_error("export DER public key failed");
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

Result<Bytes> sign_hash(const PrivateKey& key, SignatureScheme scheme, HashAlgorithm hash_algorithm,
                        ByteView hash) {
  const std::string op = operation("sign", scheme);
  if (auto ok = check_key_and_hash(key.get(), scheme, hash_algorithm, hash, op); !ok)
    return Error{ok.error()};
  auto ctx = make_context(key.get(), scheme, hash_algorithm, true, op);
  if (!ctx) return Error{ctx.error()};
  std::size_t len = 0;
  if (EVP_PKEY_sign(ctx->get(), nullptr, &len, hash.data(), hash.size()) != 1)
    return openssl_error(op + " failed");
  Bytes sig(len);
  if (EVP_PKEY_sign(ctx->get(), sig.data(), &len, hash.data(), hash.size()) != 1)
    return openssl_error(op + " failed");
  sig.resize(len);
  if (!is_ecdsa(scheme)) return sig;

  // OpenSSL writes ECDSA-Sig-Value in DER; RFC 4754 wants the bare integers.
  const unsigned char* p = sig.data();
  EcdsaSigPtr der(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())));
  if (!der) return openssl_error(op + ": cannot parse OpenSSL's signature");
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(der.get(), &r, &s);
  const std::size_t n = ecdsa_integer_size(scheme);
  Bytes out(2 * n);
  if (BN_bn2binpad(r, out.data(), static_cast<int>(n)) < 0 ||
      BN_bn2binpad(s, out.data() + n, static_cast<int>(n)) < 0)
    return openssl_error(op + ": r or s longer than the curve");
  return out;
}

Result<void> verify_hash(const PublicKey& key, SignatureScheme scheme, HashAlgorithm hash_algorithm,
                         ByteView hash, ByteView signature) {
  const std::string op = operation("verify", scheme);
  if (auto ok = check_key_and_hash(key.get(), scheme, hash_algorithm, hash, op); !ok)
    return Error{ok.error()};

  Bytes encoded(signature.begin(), signature.end());
  if (is_ecdsa(scheme)) {
    const std::size_t n = ecdsa_integer_size(scheme);
    if (signature.size() != 2 * n)
      return Error{op + ": signature is " + std::to_string(signature.size()) + " bytes, must be " +
                   std::to_string(2 * n) + " (r|s)"};
    EcdsaSigPtr sig(ECDSA_SIG_new());
    BnPtr r(BN_bin2bn(signature.data(), static_cast<int>(n), nullptr));
    BnPtr s(BN_bin2bn(signature.data() + n, static_cast<int>(n), nullptr));
    if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1)
      return openssl_error(op + ": cannot read r|s");
    r.release();  // owned by sig now
    s.release();
    unsigned char* der = nullptr;
    int len = i2d_ECDSA_SIG(sig.get(), &der);
    if (len <= 0) return openssl_error(op + ": cannot encode r|s");
    encoded.assign(der, der + len);
    OPENSSL_free(der);
  } else if (signature.size() != static_cast<std::size_t>(EVP_PKEY_get_size(key.get()))) {
    return Error{op + ": signature is " + std::to_string(signature.size()) + " bytes, the key's modulus " +
                 std::to_string(EVP_PKEY_get_size(key.get()))};
  }

  // The verifying context is kept, per thread, for the key, scheme and hash
  // last used: EVP_PKEY_verify may be called again on one context with the
  // same parameters (EVP_PKEY_verify(3)), and setting one up costs about
  // 3 us, a fifth of an RSA-2048 verification. A process's members verify
  // with one shared key (PublicKey::from_der). The context holds a reference
  // to its key, so no other key can come to have the same address.
  struct Verifier {
    EVP_PKEY* key = nullptr;
    SignatureScheme scheme{};
    HashAlgorithm hash{};
    PkeyCtxPtr ctx;
  };
  thread_local Verifier last;
  if (!last.ctx || last.key != key.get() || last.scheme != scheme || last.hash != hash_algorithm) {
    auto ctx = make_context(key.get(), scheme, hash_algorithm, false, op);
    if (!ctx) return Error{ctx.error()};
    last = Verifier{key.get(), scheme, hash_algorithm, std::move(*ctx)};
  }
  int rc = EVP_PKEY_verify(last.ctx.get(), encoded.data(), encoded.size(), hash.data(), hash.size());
  if (rc != 1) {
    detail::drop_openssl_errors();
    return Error{op + ": signature does not verify"};
  }
  return {};
}

Result<void> key_fits(const PublicKey& key, SignatureScheme scheme) {
  if (!key.get()) return Error{"no key"};
  return check_key_type(key.get(), scheme, std::string(name(scheme)));
}

}  // namespace covey::crypto
