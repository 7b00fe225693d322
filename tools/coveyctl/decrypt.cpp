// Decryption state and decryption (decrypt.h): learning phase-1 transforms,
// KEs and KEKs from the capture, and decrypting each encrypted message with
// the IV chain or KEK it belongs to.
#include "coveyctl/decrypt.h"

#include <algorithm>

#include "crypto/cipher.h"
#include "crypto/gdoi.h"
#include "crypto/hash.h"
#include "crypto/ikev1.h"
#include "gdoi/policy_codec.h"
#include "gdoi/push.h"
#include "wire/names.h"

namespace covey::coveyctl {

using namespace covey::wire;

namespace {

std::string frame_ref(std::size_t frame) { return "frame #" + std::to_string(frame); }

std::optional<crypto::CipherAlgorithm> ike_cipher(std::uint16_t alg, std::uint16_t key_bits, std::size_t key_size,
                                                  std::string& why) {
  if (alg == ike_value::TripleDes) return crypto::CipherAlgorithm::TripleDesCbc;
  if (alg == ike_value::AesCbc) {
    // No Key Length attribute: take the size the keylog gives.
    const std::size_t bits = key_bits ? key_bits : key_size * 8;
    if (bits == 128) return crypto::CipherAlgorithm::Aes128Cbc;
    if (bits == 256) return crypto::CipherAlgorithm::Aes256Cbc;
    why = "AES-CBC with a " + std::to_string(bits) + "-bit key is not supported";
    return std::nullopt;
  }
  why = alg == 0 ? "phase-1 cipher unknown: Main Mode message 2 (the responder's SA) was not seen"
                 : "phase-1 encryption algorithm " + with_number(attribute_value_name(AttributeSpace::Phase1Transform,
                                                                                         ike_attr::EncryptionAlgorithm, alg),
                                                                    alg) +
                       " is not supported";
  return std::nullopt;
}

std::optional<crypto::HashAlgorithm> ike_hash(std::uint16_t hash, std::string& why) {
  switch (hash) {
    case ike_value::Sha1: return crypto::HashAlgorithm::Sha1;
    case ike_value::Sha256: return crypto::HashAlgorithm::Sha256;
    case ike_value::Sha384: return crypto::HashAlgorithm::Sha384;
  }
  why = hash == 0 ? "phase-1 hash unknown: Main Mode message 2 (the responder's SA) was not seen"
                  : "phase-1 hash " + with_number(attribute_value_name(AttributeSpace::Phase1Transform,
                                                                        ike_attr::HashAlgorithm, hash),
                                                   hash) +
                        " is not supported";
  return std::nullopt;
}

}  // namespace

// RFC 6407 4: the cookies of a GROUPKEY-PUSH are the SPI of the KEK it is under.
DecryptionState::Spi16 DecryptionState::push_spi(const Header& h) {
  Spi16 s{};
  std::copy(h.initiator_cookie.begin(), h.initiator_cookie.end(), s.begin());
  std::copy(h.responder_cookie.begin(), h.responder_cookie.end(), s.begin() + 8);
  return s;
}

void DecryptionState::learn_clear_main_mode(const Datagram& d, const Header& h, const std::vector<Payload>& payloads) {
  Phase1& p = phase1_[h.initiator_cookie];
  const std::string from = endpoint(d.src, d.src_port);
  const bool zero_rcookie = h.responder_cookie == Cookie{};
  if (zero_rcookie && p.initiator.empty()) p.initiator = from;
  for (const auto& pl : payloads) {
    if (const auto* sa = std::get_if<SaPayload>(&pl); sa && !zero_rcookie && !sa->proposals.empty() &&
                                                      !sa->proposals[0].transforms.empty()) {
      // The responder's SA holds the one transform it chose.
      const Attributes& a = sa->proposals[0].transforms[0].attributes;
      auto get = [&](std::uint16_t t) -> std::uint16_t {
        const Attribute* x = find(a, t);
        auto v = x ? x->as_u32() : std::nullopt;
        return v && *v <= 0xffff ? static_cast<std::uint16_t>(*v) : 0;
      };
      p.cipher = get(ike_attr::EncryptionAlgorithm);
      p.key_bits = get(ike_attr::KeyLength);
      p.hash = get(ike_attr::HashAlgorithm);
    }
    if (const auto* ke = std::get_if<KeyExchangePayload>(&pl)) {
      // The initiator's is g^xi; without message 1 in the capture, the first KE seen.
      const bool from_initiator = p.initiator.empty() ? p.gxi.empty() : from == p.initiator;
      (from_initiator ? p.gxi : p.gxr) = ke->data;
    }
  }
}

void DecryptionState::learn_group_keys(std::size_t frame, const Header& h, const std::vector<Payload>& payloads) {
  // A push's KD may name the KEK that encrypted it where its SA KEK names
  // the new one, as gdoid's KEK rekey does: read it as the member does.
  const GroupSaPayload* push_sa = nullptr;
  std::optional<KeyDownloadPayload> gdoid_kd;
  if (h.exchange == static_cast<std::uint8_t>(ExchangeType::GroupkeyPush))
    for (const auto& pl : payloads) {
      if (const auto* sa = std::get_if<GroupSaPayload>(&pl); sa && sa->kek) push_sa = sa;
      if (const auto* kd = std::get_if<KeyDownloadPayload>(&pl); kd && push_sa)
        gdoid_kd = gdoi::gdoid_kek_rekey_kd(*kd, push_spi(h), push_sa->kek->spi);
    }
  for (const auto& pl : payloads) {
    if (const auto* sa = std::get_if<GroupSaPayload>(&pl); sa && sa->kek) {
      KekPolicy k;
      if (const Attribute* a = find(sa->kek->attributes, kek_attr::KekAlgorithm)) k.algorithm = a->as_u32();
      if (const Attribute* a = find(sa->kek->attributes, kek_attr::KekKeyLength)) k.key_bits = a->as_u32();
      k.source = "SA KEK in " + frame_ref(frame);
      kek_policy_[sa->kek->spi] = k;
    }
    if (const auto* kd = std::get_if<KeyDownloadPayload>(&pl)) {
      if (gdoid_kd) kd = &*gdoid_kd;
      for (const auto& kp : kd->packets) {
        if (kp.type != static_cast<std::uint8_t>(KeyPacketType::Kek) || kp.spi.size() != 16) continue;
        const Attribute* a = find(kp.attributes, kek_key_attr::KekAlgorithmKey);
        if (!a || a->basic) continue;
        Spi16 spi{};
        std::copy(kp.spi.begin(), kp.spi.end(), spi.begin());
        kek_key_[spi] = KekKey{a->value, "KD KEK packet in " + frame_ref(frame) +
                                            (gdoid_kd ? " (naming the KEK it came under, as gdoid does)" : "")};
      }
    }
  }
}

std::optional<Bytes> DecryptionState::decrypt_phase1_sa(const Header& h, ByteView ciphertext, Json& how) {
  auto key_it = keylog_.keys.find(h.initiator_cookie);
  if (key_it == keylog_.keys.end()) {
    how["reason"] = "no keylog entry for initiator cookie " + to_hex(h.initiator_cookie);
    return std::nullopt;
  }
  Phase1& p = phase1_[h.initiator_cookie];
  std::string why;
  auto cipher = ike_cipher(p.cipher, p.key_bits, key_it->second.size(), why);
  auto hash = cipher ? ike_hash(p.hash, why) : std::nullopt;
  if (!cipher || !hash) {
    how["reason"] = why;
    return std::nullopt;
  }
  const std::size_t bs = crypto::block_size(*cipher), ks = crypto::key_size(*cipher);
  if (key_it->second.size() < ks) {
    how["reason"] = "keylog key has " + std::to_string(key_it->second.size()) + " octets, " +
                    std::string(crypto::name(*cipher)) + " needs " + std::to_string(ks);
    return std::nullopt;
  }
  how["key"] = "keylog";
  how["source"] = "keylog entry for initiator cookie " + to_hex(h.initiator_cookie);
  how["cipher"] = std::string(crypto::name(*cipher));

  // RFC 2409 Appendix B: phase 1 starts from hash(g^xi | g^xr); each phase-2
  // exchange from hash(last phase-1 block | M-ID); then the previous message's last block.
  if (p.last_block.empty()) {
    if (p.gxi.empty() || p.gxr.empty()) {
      how["reason"] = "phase-1 IV unknown: Main Mode messages 3 and 4 (KE) were not seen";
      return std::nullopt;
    }
    auto first = crypto::ikev1::phase1_iv(*hash, *cipher, p.gxi, p.gxr);
    if (!first) {
      how["reason"] = first.error();
      return std::nullopt;
    }
    p.last_block = std::move(*first);
  }
  Bytes iv;
  if (h.message_id == 0) {
    iv = p.last_block;
  } else if (auto it = p.phase2_iv.find(h.message_id); it != p.phase2_iv.end()) {
    iv = it->second;
  } else {
    auto first = crypto::ikev1::phase2_iv(*hash, *cipher, p.last_block, h.message_id);
    if (!first) {
      how["reason"] = first.error();
      return std::nullopt;
    }
    iv = std::move(*first);
  }
  Bytes last = crypto::last_cipher_block(*cipher, ciphertext);
  Bytes& prev = h.message_id == 0 ? p.phase1_prev_iv : p.phase2_prev_iv[h.message_id];
  bool retransmission = !prev.empty() && last == iv;
  if (retransmission) {
    iv = prev;
    how["retransmission"] = true;
  }
  how["iv"] = to_hex(iv);
  if (ciphertext.empty() || ciphertext.size() % bs) {
    how["reason"] = "ciphertext of " + std::to_string(ciphertext.size()) + " octets is not a whole number of " +
                    std::to_string(bs) + "-octet blocks";
    return std::nullopt;
  }
  auto plain = crypto::cbc_decrypt(*cipher, ByteView(key_it->second).first(ks), iv, ciphertext);
  if (!plain) {
    how["reason"] = plain.error();
    return std::nullopt;
  }
  if (!retransmission) {
    prev = iv;
    if (h.message_id == 0) p.last_block = last;
    else p.phase2_iv[h.message_id] = last;
  }
  return std::move(*plain);
}

std::optional<Bytes> DecryptionState::decrypt_push(const Header& h, ByteView ciphertext, Json& how) {
  const Spi16 spi = push_spi(h);
  auto key_it = kek_key_.find(spi);
  auto pol_it = kek_policy_.find(spi);
  if (key_it == kek_key_.end() || pol_it == kek_policy_.end()) {
    how["reason"] = std::string("no KEK for SPI ") + to_hex(spi) +
                    (key_it == kek_key_.end() ? " (no decrypted KD with that KEK packet seen)"
                                              : " (no decrypted SA KEK with that SPI seen)");
    return std::nullopt;
  }
  const KekPolicy& pol = pol_it->second;
  const Bytes& material = key_it->second.iv_and_key;
  // The member's rule (gdoi::kek_cipher), so what decrypts here is what a member accepts.
  const auto cipher = gdoi::kek_cipher(pol.algorithm, pol.key_bits);
  if (!cipher) {
    how["reason"] = cipher.error();
    return std::nullopt;
  }
  const std::size_t bs = crypto::block_size(*cipher), ks = crypto::key_size(*cipher);
  if (material.size() != bs + ks) {
    how["reason"] = "KEK_ALGORITHM_KEY has " + std::to_string(material.size()) + " octets, " +
                    std::string(crypto::name(*cipher)) + " needs IV " + std::to_string(bs) + " + key " +
                    std::to_string(ks);
    return std::nullopt;
  }
  how["key"] = "KEK";
  how["source"] = key_it->second.source + ", policy from " + pol.source;
  how["cipher"] = std::string(crypto::name(*cipher));
  how["iv"] = to_hex(ByteView(material).first(bs));
  if (ciphertext.empty() || ciphertext.size() % bs) {
    how["reason"] = "ciphertext of " + std::to_string(ciphertext.size()) + " octets is not a whole number of " +
                    std::to_string(bs) + "-octet blocks";
    return std::nullopt;
  }
  auto plain = crypto::gdoi::kek_decrypt(*cipher, material, ciphertext);
  if (!plain) {
    how["reason"] = plain.error();
    return std::nullopt;
  }
  return std::move(*plain);
}

std::optional<Bytes> DecryptionState::decrypt(const Header& h, ByteView ciphertext, Json& how) {
  // RFC 6407 4: the push is protected by the KEK, not by a phase-1 SA.
  if (h.exchange == static_cast<std::uint8_t>(ExchangeType::GroupkeyPush)) return decrypt_push(h, ciphertext, how);
  return decrypt_phase1_sa(h, ciphertext, how);
}

void DecryptionState::learn(const Datagram& d, const Header& h, const std::vector<Payload>& payloads) {
  // Main Mode's clear messages 1-4 carry the transform and KEs the phase-1 IV needs.
  if (h.exchange == static_cast<std::uint8_t>(ExchangeType::IdentityProtection) && !h.encrypted())
    learn_clear_main_mode(d, h, payloads);
  learn_group_keys(d.frame, h, payloads);
}

}  // namespace covey::coveyctl
