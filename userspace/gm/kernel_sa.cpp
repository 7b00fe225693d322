#include "gm/kernel_sa.h"

#include <cstdio>
#include <string>

namespace covey::gm {

crypto::Result<kmod::EspAlgorithms> esp_algorithms(const gdoi::TekTransform& t) {
  using Cipher = gdoi::TekTransform::Cipher;
  using Integrity = gdoi::TekTransform::Integrity;
  const kmod::EspCipher* cipher = t.cipher == Cipher::Aes128Cbc      ? &kmod::kAes128Cbc
                                  : t.cipher == Cipher::Aes256Cbc    ? &kmod::kAes256Cbc
                                  : t.cipher == Cipher::TripleDesCbc ? &kmod::kTripleDesCbc
                                                                     : nullptr;
  if (!cipher)
    return crypto::Error{"transform " + t.str() +
                         ": AES-GCM cannot be a group SA on the kernel's ESP: the kernel draws GCM IVs per SA "
                         "(seqiv), so senders sharing the key cannot use RFC 6407's sender-ID IVs; use esp-aes 256 "
                         "esp-sha256-hmac"};
  switch (t.integrity) {
    case Integrity::HmacSha1_96: return kmod::esp_algorithms(*cipher, kmod::kHmacSha1_96);
    case Integrity::HmacSha256_128: return kmod::esp_algorithms(*cipher, kmod::kHmacSha256_128);
    case Integrity::None: break;
  }
  return crypto::Error{"transform " + t.str() + ": " + std::string(cipher->name) +
                       " without an integrity transform is malleable; add esp-sha256-hmac"};
}

crypto::Result<kmod::GroupSaPair> group_sa_pair(const gdoi::Tek& tek, const gdoi::TekTransform& transform,
                                                const kmod::GroupAnchors& anchors, std::uint32_t reqid,
                                                kmod::Mark steering) {
  auto algorithms = esp_algorithms(transform);
  if (!algorithms) {
    char spi[16];
    std::snprintf(spi, sizeof spi, "0x%08x", tek.spi);
    return crypto::Error{"TEK SPI " + std::string(spi) + ": " + algorithms.error()};
  }
  return kmod::group_sa_pair({tek.spi, tek.encryption_key.view(), tek.integrity_key.view()}, *algorithms, anchors,
                             reqid, steering);
}

}  // namespace covey::gm
