#include "crypto/seal.h"

#include <openssl/evp.h>

#include <cctype>
#include <fstream>
#include <memory>
#include <sstream>

#include "crypto/random.h"

namespace covey::crypto {

namespace {

constexpr std::uint8_t kFormat = 1;
constexpr std::size_t kNonce = 12, kTag = 16;

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

int len_of(std::size_t n) { return static_cast<int>(n); }

}  // namespace

Result<Bytes> seal(ByteView key, std::string_view associated, ByteView plaintext) {
  if (key.size() != kSealingKeySize) return Error{"sealing key must be 32 bytes, not " + std::to_string(key.size())};
  auto nonce = random_bytes(kNonce);
  if (!nonce) return Error{nonce.error()};
  Bytes out;
  out.reserve(1 + kNonce + plaintext.size() + kTag);
  out.push_back(kFormat);
  out.insert(out.end(), nonce->begin(), nonce->end());
  out.resize(1 + kNonce + plaintext.size() + kTag);
  Ctx ctx(EVP_CIPHER_CTX_new());
  int n = 0, m = 0;
  const auto* aad = reinterpret_cast<const unsigned char*>(associated.data());
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce->data()) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &n, aad, len_of(associated.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data() + 1 + kNonce, &n, plaintext.data(), len_of(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + 1 + kNonce + n, &m) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, len_of(kTag), out.data() + 1 + kNonce + plaintext.size()) != 1)
    return Error{"AES-256-GCM sealing failed in OpenSSL"};
  return out;
}

Result<SecretBytes> unseal(ByteView key, std::string_view associated, ByteView sealed) {
  if (key.size() != kSealingKeySize) return Error{"sealing key must be 32 bytes, not " + std::to_string(key.size())};
  if (sealed.size() < 1 + kNonce + kTag) return Error{"not a sealed value (" + std::to_string(sealed.size()) + " bytes)"};
  if (sealed[0] != kFormat) return Error{"sealed value of format " + std::to_string(sealed[0]) + ", not 1"};
  const std::size_t body = sealed.size() - 1 - kNonce - kTag;
  SecretBytes out(body);
  Bytes tag(sealed.end() - kTag, sealed.end());
  Ctx ctx(EVP_CIPHER_CTX_new());
  int n = 0, m = 0;
  const auto* aad = reinterpret_cast<const unsigned char*>(associated.data());
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), sealed.data() + 1) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &n, aad, len_of(associated.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out.data(), &n, sealed.data() + 1 + kNonce, len_of(body)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, len_of(kTag), tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), out.data() + n, &m) != 1)
    return Error{"does not open under this sealing key, or was moved from another etcd key"};
  return out;
}

Result<SecretBytes> read_sealing_key(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"sealing key " + path + ": cannot be read"};
  std::ostringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  auto fail = [&](std::string why) {
    std::fill(s.begin(), s.end(), '\0');
    return Error{"sealing key " + path + ": " + why + " (make one with: openssl rand -hex 32 > " + path + ")"};
  };
  if (e - b != 2 * kSealingKeySize)
    return fail("holds " + std::to_string(e - b) + " characters, not 64 hex digits");
  SecretBytes key(kSealingKeySize);
  for (std::size_t i = 0; i < kSealingKeySize; ++i) {
    auto digit = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = digit(s[b + 2 * i]), lo = digit(s[b + 2 * i + 1]);
    if (hi < 0 || lo < 0) return fail("is not hex");
    key.data()[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  std::fill(s.begin(), s.end(), '\0');
  return key;
}

}  // namespace covey::crypto
