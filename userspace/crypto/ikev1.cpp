#include "crypto/ikev1.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace covey::crypto::ikev1 {

namespace {

std::array<std::uint8_t, 4> big_endian(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
          static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
}

Result<Bytes> public_prf(HashAlgorithm prf_hash, ByteView key, std::initializer_list<ByteView> parts) {
  auto out = prf(prf_hash, key, parts);
  if (!out) return Error{out.error()};
  return Bytes(out->view().begin(), out->view().end());
}

Result<Bytes> truncated_iv(HashAlgorithm hash, CipherAlgorithm cipher, std::initializer_list<ByteView> parts,
                           const char* what) {
  auto h = digest(hash, parts);
  if (!h) return Error{h.error()};
  if (h->size() < block_size(cipher))
    return Error{std::string(what) + ": " + std::string(name(hash)) + " output is shorter than the " +
                 std::string(name(cipher)) + " block"};
  h->resize(block_size(cipher));
  return h;
}

}  // namespace

Result<SecretBytes> skeyid_psk(HashAlgorithm prf_hash, ByteView pre_shared_key, ByteView ni_b,
                               ByteView nr_b) {
  return prf(prf_hash, pre_shared_key, {ni_b, nr_b});
}

Result<SecretBytes> skeyid_sig(HashAlgorithm prf_hash, ByteView ni_b, ByteView nr_b, ByteView g_xy) {
  // The key is Ni_b | Nr_b: HMAC takes one key string, so it is joined here.
  Bytes key(ni_b.begin(), ni_b.end());
  append(key, nr_b);
  return prf(prf_hash, key, {g_xy});
}

Result<SkeyidKeys> derive_skeyid_dae(HashAlgorithm prf_hash, ByteView skeyid, ByteView g_xy, ByteView cky_i,
                                     ByteView cky_r) {
  static constexpr std::uint8_t zero = 0, one = 1, two = 2;
  auto d = prf(prf_hash, skeyid, {g_xy, cky_i, cky_r, ByteView(&zero, 1)});
  if (!d) return Error{d.error()};
  auto a = prf(prf_hash, skeyid, {*d, g_xy, cky_i, cky_r, ByteView(&one, 1)});
  if (!a) return Error{a.error()};
  auto e = prf(prf_hash, skeyid, {*a, g_xy, cky_i, cky_r, ByteView(&two, 1)});
  if (!e) return Error{e.error()};
  return SkeyidKeys{std::move(*d), std::move(*a), std::move(*e)};
}

Result<SecretBytes> encryption_key(HashAlgorithm prf_hash, ByteView skeyid_e, CipherAlgorithm cipher) {
  const std::size_t need = key_size(cipher);
  if (skeyid_e.size() >= need) return SecretBytes(skeyid_e.first(need));

  SecretBytes ka(need);
  static constexpr std::uint8_t zero = 0;
  SecretBytes k;  // K(n-1); K1 is prf(SKEYID_e, 0)
  for (std::size_t filled = 0; filled < need;) {
    auto next = k.empty() ? prf(prf_hash, skeyid_e, {ByteView(&zero, 1)}) : prf(prf_hash, skeyid_e, {k});
    if (!next) return Error{next.error()};
    k = std::move(*next);
    const std::size_t n = std::min(k.size(), need - filled);
    std::memcpy(ka.data() + filled, k.data(), n);
    filled += n;
  }
  return ka;
}

Result<Bytes> hash_i(HashAlgorithm prf_hash, ByteView skeyid, const Phase1Transcript& t, ByteView idii_b) {
  return public_prf(prf_hash, skeyid, {t.g_xi, t.g_xr, t.cky_i, t.cky_r, t.sai_b, idii_b});
}

Result<Bytes> hash_r(HashAlgorithm prf_hash, ByteView skeyid, const Phase1Transcript& t, ByteView idir_b) {
  return public_prf(prf_hash, skeyid, {t.g_xr, t.g_xi, t.cky_r, t.cky_i, t.sai_b, idir_b});
}

Result<Bytes> phase1_iv(HashAlgorithm hash, CipherAlgorithm cipher, ByteView g_xi, ByteView g_xr) {
  return truncated_iv(hash, cipher, {g_xi, g_xr}, "phase-1 IV");
}

Result<Bytes> phase2_iv(HashAlgorithm hash, CipherAlgorithm cipher, ByteView last_phase1_block,
                        std::uint32_t message_id) {
  if (last_phase1_block.size() != block_size(cipher))
    return Error{"phase-2 IV: last phase-1 CBC block is " + std::to_string(last_phase1_block.size()) +
                 " bytes, " + std::string(name(cipher)) + " blocks are " +
                 std::to_string(block_size(cipher))};
  const auto m_id = big_endian(message_id);
  return truncated_iv(hash, cipher, {last_phase1_block, m_id}, "phase-2 IV");
}

Bytes pad_payloads(CipherAlgorithm cipher, ByteView payloads) {
  const std::size_t block = block_size(cipher);
  Bytes out(payloads.begin(), payloads.end());
  out.resize((payloads.size() + block - 1) / block * block, 0x00);
  return out;
}

Result<Bytes> encrypt_payloads(CipherAlgorithm cipher, ByteView key, ByteView iv, ByteView payloads) {
  return cbc_encrypt(cipher, key, iv, pad_payloads(cipher, payloads));
}

}  // namespace covey::crypto::ikev1
