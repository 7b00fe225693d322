#include "ike/certificates.h"

namespace covey::ike {

namespace {

using crypto::Error;

// Empty if the certificate's key can make covey's phase-1 signatures.
std::string rsa_key_defect(const crypto::Certificate& cert) {
  if (cert.key_type() != "RSA")
    return "key is " + cert.key_type() + "; phase-1 signatures need RSA";
  if (cert.key_bits() < kMinRsaBits)
    return "RSA key of " + std::to_string(cert.key_bits()) + " bits is below the " + std::to_string(kMinRsaBits) +
           " minimum";
  return {};
}

}  // namespace

crypto::Result<Credentials::Signer> load_signer(const std::string& cert_pem_path, const std::string& key_pem_path) {
  auto cert_file = crypto::read_pem_file(cert_pem_path);
  if (!cert_file) return Error{"certificate: " + cert_file.error()};
  auto cert = crypto::Certificate::from_pem(crypto::pem_text(*cert_file));
  if (!cert) return Error{cert_pem_path + ": " + cert.error()};
  if (auto defect = rsa_key_defect(*cert); !defect.empty())
    return Error{cert_pem_path + ": certificate " + cert->subject() + ": " + defect};

  auto key_file = crypto::read_pem_file(key_pem_path);
  if (!key_file) return Error{"private key: " + key_file.error()};
  auto key = crypto::PrivateKey::from_pem(crypto::pem_text(*key_file));
  if (!key) return Error{key_pem_path + ": " + key.error()};
  if (!cert->matches(*key))
    return Error{key_pem_path + ": private key is not the key of certificate " + cert->subject() + " in " +
                 cert_pem_path};
  return Credentials::Signer{std::move(*key), cert->to_der(), cert->subject_der()};
}

std::function<crypto::Result<PeerCertificate>(ByteView)> make_verifier(
    std::shared_ptr<const crypto::CertificateAuthority> ca) {
  return [ca = std::move(ca)](ByteView der) -> crypto::Result<PeerCertificate> {
    auto cert = crypto::Certificate::from_der(der);
    if (!cert) return Error{"CERT payload: " + cert.error()};
    if (auto ok = ca->verify(*cert); !ok) return Error{ok.error()};
    if (auto defect = rsa_key_defect(*cert); !defect.empty())
      return Error{"certificate " + cert->subject() + ": " + defect};
    auto key = cert->public_key();
    if (!key) return Error{key.error()};
    return PeerCertificate{cert->subject(), cert->subject_der(), std::move(*key)};
  };
}

}  // namespace covey::ike
