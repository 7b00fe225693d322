#include "crypto/cipher.h"

#include <climits>

#include "crypto/openssl_util.h"

namespace covey::crypto {

namespace {

Result<Bytes> cbc(CipherAlgorithm cipher, ByteView key, ByteView iv, ByteView in, bool encrypt) {
  const std::string op = std::string(encrypt ? "encrypt " : "decrypt ") + std::string(name(cipher));
  if (key.size() != key_size(cipher))
    return Error{op + ": key is " + std::to_string(key.size()) + " bytes, needs " +
                 std::to_string(key_size(cipher))};
  if (iv.size() != block_size(cipher))
    return Error{op + ": IV is " + std::to_string(iv.size()) + " bytes, needs " +
                 std::to_string(block_size(cipher))};
  if (in.size() % block_size(cipher) != 0)
    return Error{op + ": " + (encrypt ? "plaintext" : "ciphertext") + " length " + std::to_string(in.size()) +
                 " is not a multiple of the " + std::to_string(block_size(cipher)) + "-byte block"};
  if (in.size() > INT_MAX) return Error{op + ": input too long"};

  const EVP_CIPHER* evp = detail::fetched_cipher(cipher);
  detail::CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!evp || !ctx ||
      EVP_CipherInit_ex2(ctx.get(), evp, key.data(), iv.data(), encrypt ? 1 : 0, nullptr) != 1 ||
      EVP_CIPHER_CTX_set_padding(ctx.get(), 0) != 1)
    return detail::openssl_error(op + ": init failed");

  Bytes out(in.size() + block_size(cipher));
  int len = 0, final_len = 0;
  if (EVP_CipherUpdate(ctx.get(), out.data(), &len, in.data(), static_cast<int>(in.size())) != 1 ||
      EVP_CipherFinal_ex(ctx.get(), out.data() + len, &final_len) != 1)
    return detail::openssl_error(op + " failed");
  out.resize(static_cast<std::size_t>(len + final_len));
  return out;
}

}  // namespace

std::size_t key_size(CipherAlgorithm cipher) {
  switch (cipher) {
    case CipherAlgorithm::Aes128Cbc: return 16;
    case CipherAlgorithm::Aes256Cbc: return 32;
    case CipherAlgorithm::TripleDesCbc: return 24;
  }
  return 0;
}

std::size_t block_size(CipherAlgorithm cipher) {
  switch (cipher) {
    case CipherAlgorithm::Aes128Cbc:
    case CipherAlgorithm::Aes256Cbc: return 16;
    case CipherAlgorithm::TripleDesCbc: return 8;
  }
  return 0;
}

std::string_view name(CipherAlgorithm cipher) {
  switch (cipher) {
    case CipherAlgorithm::Aes128Cbc: return "AES-128-CBC";
    case CipherAlgorithm::Aes256Cbc: return "AES-256-CBC";
    case CipherAlgorithm::TripleDesCbc: return "3DES-CBC";
  }
  return "unknown cipher";
}

Result<Bytes> cbc_encrypt(CipherAlgorithm cipher, ByteView key, ByteView iv, ByteView plaintext) {
  return cbc(cipher, key, iv, plaintext, true);
}

Result<Bytes> cbc_decrypt(CipherAlgorithm cipher, ByteView key, ByteView iv, ByteView ciphertext) {
  return cbc(cipher, key, iv, ciphertext, false);
}

Bytes last_cipher_block(CipherAlgorithm cipher, ByteView ciphertext) {
  const std::size_t n = block_size(cipher);
  if (ciphertext.size() < n) return {};
  ByteView last = ciphertext.last(n);
  return Bytes(last.begin(), last.end());
}

bool same_key(CipherAlgorithm cipher, ByteView a, ByteView b) {
  if (a.size() != b.size()) return false;
  const std::uint8_t used = cipher == CipherAlgorithm::TripleDesCbc ? 0xfe : 0xff;
  std::uint8_t diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff = static_cast<std::uint8_t>(diff | ((a[i] ^ b[i]) & used));
  return diff == 0;
}

}  // namespace covey::crypto
