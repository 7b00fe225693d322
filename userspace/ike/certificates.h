// Certificates for Main Mode signature authentication: the KS's or GM's own
// signer loaded from PEM files, and the peer-certificate check Credentials
// calls, built on covey::crypto's X.509 (which knows nothing of IKE).
#pragma once

#include <memory>
#include <string>

#include "crypto/x509.h"
#include "ike/main_mode.h"

namespace covey::ike {

// Phase-1 SIG payloads are RSA PKCS#1 in covey (RFC 2409 5.1), with keys
// no smaller than this, ours and the peers'.
inline constexpr unsigned kMinRsaBits = 2048;

// Our certificate (the first in cert_pem_path; intermediates after it are
// ignored) and its private key (unencrypted PEM). Refuses a key that is not
// the certificate's, or that is not RSA of at least kMinRsaBits. Errors name
// the file and the defect.
crypto::Result<Credentials::Signer> load_signer(const std::string& cert_pem_path, const std::string& key_pem_path);

// Credentials::verify_certificate for a CERT payload: DER X.509 that chains
// to ca now and holds an RSA key of at least kMinRsaBits.
std::function<crypto::Result<PeerCertificate>(ByteView)> make_verifier(
    std::shared_ptr<const crypto::CertificateAuthority> ca);

}  // namespace covey::ike
