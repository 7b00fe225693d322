#include "crypto/hash.h"

#include "crypto/openssl_util.h"

namespace covey::crypto {

namespace {

std::string what(std::string_view operation, HashAlgorithm hash, std::string_view defect) {
  std::string s(operation);
  s += " ";
  s += name(hash);
  s += ": ";
  s += defect;
  return s;
}

}  // namespace

std::size_t digest_size(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::Sha1: return 20;
    case HashAlgorithm::Sha256: return 32;
    case HashAlgorithm::Sha384: return 48;
  }
  return 0;
}

std::string_view name(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::Sha1: return "SHA-1";
    case HashAlgorithm::Sha256: return "SHA-256";
    case HashAlgorithm::Sha384: return "SHA-384";
  }
  return "unknown hash";
}

Result<Bytes> digest(HashAlgorithm hash, std::initializer_list<ByteView> parts) {
  const EVP_MD* md = detail::fetched_md(hash);
  detail::MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!md || !ctx || EVP_DigestInit_ex2(ctx.get(), md, nullptr) != 1)
    return detail::openssl_error(what("digest", hash, "init failed"));
  for (ByteView part : parts)
    if (EVP_DigestUpdate(ctx.get(), part.data(), part.size()) != 1)
      return detail::openssl_error(what("digest", hash, "update failed"));
  Bytes out(digest_size(hash));
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1 || len != out.size())
    return detail::openssl_error(what("digest", hash, "final failed"));
  return out;
}

Result<SecretBytes> prf(HashAlgorithm hash, ByteView key, std::initializer_list<ByteView> parts) {
  const EVP_MAC_CTX* hmac = detail::hmac_template(hash);
  detail::MacCtxPtr ctx(hmac ? EVP_MAC_CTX_dup(hmac) : nullptr);
  if (!ctx) return detail::openssl_error(what("prf HMAC", hash, "cannot create context"));
  // A null key means "reuse the previous key" to EVP_MAC_init; an empty key is
  // legal HMAC, so point it at a real (unused) byte.
  static const std::uint8_t no_key = 0;
  const std::uint8_t* key_data = key.empty() ? &no_key : key.data();
  if (EVP_MAC_init(ctx.get(), key_data, key.size(), nullptr) != 1)
    return detail::openssl_error(what("prf HMAC", hash, "init failed"));
  for (ByteView part : parts)
    if (EVP_MAC_update(ctx.get(), part.data(), part.size()) != 1)
      return detail::openssl_error(what("prf HMAC", hash, "update failed"));
  SecretBytes out(digest_size(hash));
  std::size_t len = 0;
  if (EVP_MAC_final(ctx.get(), out.data(), &len, out.size()) != 1 || len != out.size())
    return detail::openssl_error(what("prf HMAC", hash, "final failed"));
  return out;
}

}  // namespace covey::crypto
