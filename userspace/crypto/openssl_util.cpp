#include "crypto/openssl_util.h"

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

}  // namespace covey::crypto::detail
