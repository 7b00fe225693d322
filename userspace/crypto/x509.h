// X.509 certificates for IKEv1 signature authentication (RFC 2409 5.1):
// the CERT payload (X.509 Certificate - Signature, RFC 2408 3.9), the
// ID_DER_ASN1_DN identity (RFC 2407 4.6.2.1) taken from its subject, and the
// check of a peer's certificate against the operator's CA file.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "crypto/result.h"
#include "crypto/secret.h"
#include "crypto/sign.h"

typedef struct x509_st X509;
typedef struct x509_store_st X509_STORE;

namespace covey::crypto {

namespace detail {
struct X509Free {
  void operator()(X509* cert) const;  // X509_free
};
struct X509StoreFree {
  void operator()(X509_STORE* store) const;  // X509_STORE_free
};
}  // namespace detail

// One parsed certificate. Its subject, subject DER and validity are read once
// when parsed, so a certificate that cannot describe itself is never built.
class Certificate {
 public:
  static Result<Certificate> from_der(ByteView der);
  // The first certificate in PEM text ("BEGIN CERTIFICATE"); other blocks
  // before it, such as a private key, are skipped.
  static Result<Certificate> from_pem(std::string_view pem);
  // Every certificate in PEM text, in order: a CA bundle or a leaf followed
  // by its intermediates. Fails if there is none.
  static Result<std::vector<Certificate>> all_from_pem(std::string_view pem);

  const Bytes& to_der() const { return der_; }
  // RFC 2253 order and escaping, UTF-8 kept readable: "CN=gm3,O=covey lab".
  const std::string& subject() const { return subject_; }
  const std::string& issuer() const { return issuer_; }
  // The DER encoding of the subject Name, exactly as in the certificate:
  // what ID_DER_ASN1_DN carries (RFC 2407 4.6.2.1).
  const Bytes& subject_der() const { return subject_der_; }
  std::chrono::sys_seconds not_before() const { return not_before_; }
  std::chrono::sys_seconds not_after() const { return not_after_; }

  Result<PublicKey> public_key() const;
  // OpenSSL's name for the key type ("RSA", "EC", "ED25519") and its size in
  // bits, for the policy checks of whoever uses the certificate.
  std::string key_type() const;
  unsigned key_bits() const;
  // Whether key is the private half of this certificate's public key.
  bool matches(const PrivateKey& key) const;

  X509* get() const { return cert_.get(); }

 private:
  explicit Certificate(std::unique_ptr<X509, detail::X509Free> cert) : cert_(std::move(cert)) {}
  static Result<Certificate> adopt(std::unique_ptr<X509, detail::X509Free> cert);

  std::unique_ptr<X509, detail::X509Free> cert_;
  Bytes der_;
  std::string subject_, issuer_;
  Bytes subject_der_;
  std::chrono::sys_seconds not_before_{}, not_after_{};
};

// The trust anchors an operator configured: every certificate in one PEM file.
// Immutable once loaded, so one instance may verify from many threads.
class CertificateAuthority {
 public:
  // origin names the source in errors: the file's path.
  static Result<CertificateAuthority> load(const std::string& pem_path);
  static Result<CertificateAuthority> from_pem(std::string_view pem, std::string origin);

  // OpenSSL's chain verification with its default (non-strict) checks:
  // signatures, validity periods, basicConstraints and keyUsage of the
  // issuers. In addition a leaf whose keyUsage is present must allow
  // digitalSignature, as IKE signs with it (RFC 4945 5.1.3.2).
  // intermediates: untrusted certificates the peer sent besides its own.
  // at: the time to check validity against; now if not given.
  Result<void> verify(const Certificate& leaf, std::span<const Certificate> intermediates = {},
                      std::optional<std::chrono::sys_seconds> at = std::nullopt) const;

  const std::vector<Certificate>& anchors() const { return anchors_; }
  const std::string& origin() const { return origin_; }

 private:
  CertificateAuthority(std::unique_ptr<X509_STORE, detail::X509StoreFree> store, std::vector<Certificate> anchors,
                       std::string origin)
      : store_(std::move(store)), anchors_(std::move(anchors)), origin_(std::move(origin)) {}

  std::unique_ptr<X509_STORE, detail::X509StoreFree> store_;
  std::vector<Certificate> anchors_;
  std::string origin_;
};

// A whole PEM file (certificate, CA bundle or private key); errors name the
// path and the system's reason. SecretBytes because it may hold a private key:
// the buffer is sized once, never copied, and wiped when dropped. Refuses
// files over 1 MiB, which no PEM file covey reads comes near.
Result<SecretBytes> read_pem_file(const std::string& path);

// The bytes of a PEM file as the text the PEM readers take.
inline std::string_view pem_text(const SecretBytes& file) {
  return {reinterpret_cast<const char*>(file.data()), file.size()};
}

}  // namespace covey::crypto
