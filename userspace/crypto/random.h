// Random bytes from OpenSSL's CSPRNG.
#pragma once

#include <cstddef>

#include "common/bytes.h"
#include "crypto/result.h"
#include "crypto/secret.h"

namespace covey::crypto {

// Values that go on the wire in the clear: nonces (Ni, Nr), cookies, SPIs.
Result<Bytes> random_bytes(std::size_t size);

// Values that must stay secret: KEKs, TEKs, IVs sent only encrypted. Drawn from
// OpenSSL's private DRBG, separate from the one whose output peers see.
Result<SecretBytes> random_secret(std::size_t size);

}  // namespace covey::crypto
