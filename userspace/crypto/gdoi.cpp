#include "crypto/gdoi.h"

#include <algorithm>
#include <array>
#include <string>

#include "crypto/ikev1.h"

namespace covey::crypto::gdoi {

namespace {

// ISAKMP header layout (RFC 2408 section 3.1).
constexpr std::size_t kHeaderSize = 28;
constexpr std::size_t kFlagsOffset = 19;
constexpr std::size_t kLengthOffset = 24;
constexpr std::uint8_t kEncryptionFlag = 0x01;
constexpr std::size_t kGenericPayloadHeaderSize = 4;

std::array<std::uint8_t, 4> big_endian(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
          static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
}

// prf(SKEYID_a, M-ID | parts...); an absent optional payload is an empty part.
Result<Bytes> hash_n(HashAlgorithm prf_hash, ByteView skeyid_a, std::uint32_t message_id, ByteView p1,
                     ByteView p2, ByteView p3 = {}, ByteView p4 = {}) {
  const auto m_id = big_endian(message_id);
  auto out = prf(prf_hash, skeyid_a, {m_id, p1, p2, p3, p4});
  if (!out) return Error{out.error()};
  return Bytes(out->view().begin(), out->view().end());
}

Result<Bytes> rekey_hash(HashAlgorithm sig_hash, ByteView hdr, ByteView payloads_before_sig,
                         std::uint32_t unpadded_length) {
  auto data = rekey_signed_data(hdr, payloads_before_sig, unpadded_length);
  if (!data) return Error{data.error()};
  return digest(sig_hash, {*data});
}

Result<void> split_kek(CipherAlgorithm cipher, ByteView kek_algorithm_key, ByteView& iv, ByteView& key) {
  const std::size_t want = block_size(cipher) + key_size(cipher);
  if (kek_algorithm_key.size() != want)
    return Error{"KEK_ALGORITHM_KEY is " + std::to_string(kek_algorithm_key.size()) + " bytes, " +
                 std::string(name(cipher)) + " needs a " + std::to_string(block_size(cipher)) +
                 "-byte IV and a " + std::to_string(key_size(cipher)) + "-byte key"};
  iv = kek_algorithm_key.first(block_size(cipher));
  key = kek_algorithm_key.subspan(block_size(cipher));
  return {};
}

}  // namespace

Result<Bytes> hash1(HashAlgorithm prf_hash, ByteView skeyid_a, std::uint32_t message_id, ByteView ni,
                    ByteView id) {
  return hash_n(prf_hash, skeyid_a, message_id, ni, id);
}

Result<Bytes> hash2(HashAlgorithm prf_hash, ByteView skeyid_a, std::uint32_t message_id, ByteView ni_b,
                    ByteView nr, ByteView sa) {
  return hash_n(prf_hash, skeyid_a, message_id, ni_b, nr, sa);
}

Result<Bytes> hash3(HashAlgorithm prf_hash, ByteView skeyid_a, std::uint32_t message_id, ByteView ni_b,
                    ByteView nr_b, ByteView gap) {
  return hash_n(prf_hash, skeyid_a, message_id, ni_b, nr_b, gap);
}

Result<Bytes> hash4(HashAlgorithm prf_hash, ByteView skeyid_a, std::uint32_t message_id, ByteView ni_b,
                    ByteView nr_b, ByteView seq, ByteView kd) {
  return hash_n(prf_hash, skeyid_a, message_id, ni_b, nr_b, seq, kd);
}

Result<Bytes> rekey_signed_data(ByteView hdr, ByteView payloads_before_sig, std::uint32_t unpadded_length) {
  if (hdr.size() != kHeaderSize)
    return Error{"rekey signature: ISAKMP header is " + std::to_string(hdr.size()) + " bytes, must be 28"};
  // The unpadded message is HDR, these payloads and at least a SIG payload header.
  if (unpadded_length < kHeaderSize + payloads_before_sig.size() + kGenericPayloadHeaderSize)
    return Error{"rekey signature: unpadded length " + std::to_string(unpadded_length) +
                 " is too short for the header, " + std::to_string(payloads_before_sig.size()) +
                 " bytes of payloads and a SIG payload"};
  std::array<std::uint8_t, kHeaderSize> header;
  std::copy(hdr.begin(), hdr.end(), header.begin());
  header[kFlagsOffset] |= kEncryptionFlag;
  const auto length = big_endian(unpadded_length);
  std::copy(length.begin(), length.end(), header.begin() + kLengthOffset);

  static constexpr std::string_view kLabel = "rekey";
  Bytes out;
  out.reserve(kLabel.size() + header.size() + payloads_before_sig.size());
  append(out, as_bytes(kLabel));
  append(out, header);
  append(out, payloads_before_sig);
  return out;
}

Result<Bytes> sign_rekey(const PrivateKey& key, SignatureScheme scheme, HashAlgorithm sig_hash, ByteView hdr,
                         ByteView payloads_before_sig, std::uint32_t unpadded_length) {
  auto hash = rekey_hash(sig_hash, hdr, payloads_before_sig, unpadded_length);
  if (!hash) return Error{hash.error()};
  return sign_hash(key, scheme, sig_hash, *hash);
}

Result<void> verify_rekey(const PublicKey& key, SignatureScheme scheme, HashAlgorithm sig_hash, ByteView hdr,
                          ByteView payloads_before_sig, std::uint32_t unpadded_length, ByteView signature) {
  auto hash = rekey_hash(sig_hash, hdr, payloads_before_sig, unpadded_length);
  if (!hash) return Error{hash.error()};
  if (auto ok = verify_hash(key, scheme, sig_hash, *hash, signature); !ok)
    return Error{"GROUPKEY-PUSH SIG: " + ok.error()};
  return {};
}

Result<Bytes> kek_encrypt(CipherAlgorithm cipher, ByteView kek_algorithm_key, ByteView payloads) {
  ByteView iv, key;
  if (auto ok = split_kek(cipher, kek_algorithm_key, iv, key); !ok)
    return Error{"KEK encrypt: " + ok.error()};
  return ikev1::encrypt_payloads(cipher, key, iv, payloads);
}

Result<Bytes> kek_decrypt(CipherAlgorithm cipher, ByteView kek_algorithm_key, ByteView ciphertext) {
  ByteView iv, key;
  if (auto ok = split_kek(cipher, kek_algorithm_key, iv, key); !ok)
    return Error{"KEK decrypt: " + ok.error()};
  return cbc_decrypt(cipher, key, iv, ciphertext);
}

}  // namespace covey::crypto::gdoi
