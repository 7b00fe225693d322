// Ownership of an OpenSSL EVP_PKEY, for public headers that must not pull in OpenSSL.
#pragma once

#include <memory>

typedef struct evp_pkey_st EVP_PKEY;

namespace covey::crypto::detail {

struct PkeyFree {
  void operator()(EVP_PKEY* key) const;  // EVP_PKEY_free
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

}  // namespace covey::crypto::detail
