#include "crypto/random.h"

#include <openssl/rand.h>

#include <climits>

#include "crypto/openssl_util.h"

namespace covey::crypto {

Result<Bytes> random_bytes(std::size_t size) {
  Bytes out(size);
  if (size > INT_MAX || RAND_bytes(out.data(), static_cast<int>(size)) != 1)
    return detail::openssl_error("random_bytes: RAND_bytes failed");
  return out;
}

Result<SecretBytes> random_secret(std::size_t size) {
  SecretBytes out(size);
  if (size > INT_MAX || RAND_priv_bytes(out.data(), static_cast<int>(size)) != 1)
    return detail::openssl_error("random_secret: RAND_priv_bytes failed");
  return out;
}

}  // namespace covey::crypto
