#include "ike/phase1.h"

#include "crypto/ikev1.h"
#include "crypto/random.h"

namespace covey::ike {

using namespace wire;
using crypto::CipherAlgorithm;
using crypto::Error;
using crypto::HashAlgorithm;

Transform Phase1Transform::to_wire(std::uint8_t number) const {
  Transform t;
  t.number = number;
  t.id = kTransformKeyIke;
  std::uint16_t enc = cipher == CipherAlgorithm::TripleDesCbc ? ike_value::TripleDes : ike_value::AesCbc;
  t.attributes.push_back(Attribute::tv(ike_attr::EncryptionAlgorithm, enc));
  if (cipher != CipherAlgorithm::TripleDesCbc)
    t.attributes.push_back(Attribute::tv(ike_attr::KeyLength, cipher == CipherAlgorithm::Aes128Cbc ? 128 : 256));
  std::uint16_t h = hash == HashAlgorithm::Sha1 ? ike_value::Sha1
                    : hash == HashAlgorithm::Sha256 ? ike_value::Sha256
                                                    : ike_value::Sha384;
  t.attributes.push_back(Attribute::tv(ike_attr::HashAlgorithm, h));
  t.attributes.push_back(Attribute::tv(
      ike_attr::AuthenticationMethod, auth == AuthMethod::PreSharedKey ? ike_value::PreSharedKey : ike_value::RsaSignature));
  t.attributes.push_back(Attribute::tv(ike_attr::GroupDescription, dh_group));
  t.attributes.push_back(Attribute::tv(ike_attr::LifeType, ike_value::LifeSeconds));
  t.attributes.push_back(Attribute::number(ike_attr::LifeDuration, lifetime_s));
  return t;
}

std::string Phase1Transform::str() const {
  std::string s = cipher == CipherAlgorithm::Aes128Cbc   ? "aes-128"
                  : cipher == CipherAlgorithm::Aes256Cbc ? "aes-256"
                                                          : "3des";
  s += hash == HashAlgorithm::Sha1 ? " sha1" : hash == HashAlgorithm::Sha256 ? " sha256" : " sha384";
  s += auth == AuthMethod::PreSharedKey ? " psk" : " rsa-sig";
  s += " group " + std::to_string(dh_group) + " lifetime " + std::to_string(lifetime_s) + " s";
  return s;
}

crypto::Result<Phase1Transform> transform_from_wire(const Transform& t) {
  if (t.id != kTransformKeyIke)
    return Error{"transform " + std::to_string(t.number) + ": Transform-Id " + std::to_string(t.id) + " is not KEY_IKE"};
  Phase1Transform out;
  std::optional<std::uint16_t> enc, key_len, hash, auth, group, life_type;
  std::optional<std::uint32_t> life;
  for (const auto& a : t.attributes) {
    auto v = a.as_u32();
    if (!v) return Error{"transform " + std::to_string(t.number) + ": attribute " + std::to_string(a.type) + " has no numeric value"};
    switch (a.type) {
      case ike_attr::EncryptionAlgorithm: enc = static_cast<std::uint16_t>(*v); break;
      case ike_attr::KeyLength: key_len = static_cast<std::uint16_t>(*v); break;
      case ike_attr::HashAlgorithm: hash = static_cast<std::uint16_t>(*v); break;
      case ike_attr::AuthenticationMethod: auth = static_cast<std::uint16_t>(*v); break;
      case ike_attr::GroupDescription: group = static_cast<std::uint16_t>(*v); break;
      case ike_attr::LifeType: life_type = static_cast<std::uint16_t>(*v); break;
      case ike_attr::LifeDuration:
        // RFC 2409 Appendix A: a duration follows its type; only seconds are kept.
        if (life_type == ike_value::LifeSeconds) life = *v;
        break;
      default:
        return Error{"transform " + std::to_string(t.number) + ": attribute class " + std::to_string(a.type) +
                     " is not supported"};
    }
  }
  std::string n = "transform " + std::to_string(t.number) + ": ";
  if (!enc || !hash || !auth || !group) return Error{n + "missing encryption, hash, authentication or group attribute"};
  if (*enc == ike_value::AesCbc) {
    if (key_len == 128) out.cipher = CipherAlgorithm::Aes128Cbc;
    else if (key_len == 256) out.cipher = CipherAlgorithm::Aes256Cbc;
    else return Error{n + "AES-CBC key length " + (key_len ? std::to_string(*key_len) : "absent") + " (128 or 256 supported)"};
  } else if (*enc == ike_value::TripleDes) {
    out.cipher = CipherAlgorithm::TripleDesCbc;
  } else {
    return Error{n + "encryption algorithm " + std::to_string(*enc) + " is not supported (AES-CBC, 3DES)"};
  }
  if (*hash == ike_value::Sha1) out.hash = HashAlgorithm::Sha1;
  else if (*hash == ike_value::Sha256) out.hash = HashAlgorithm::Sha256;
  else if (*hash == ike_value::Sha384) out.hash = HashAlgorithm::Sha384;
  else return Error{n + "hash algorithm " + std::to_string(*hash) + " is not supported (SHA-1, SHA-256, SHA-384)"};
  if (*auth == ike_value::PreSharedKey) out.auth = AuthMethod::PreSharedKey;
  else if (*auth == ike_value::RsaSignature) out.auth = AuthMethod::RsaSignature;
  else return Error{n + "authentication method " + std::to_string(*auth) + " is not supported (pre-shared key, RSA signature)"};
  out.dh_group = *group;
  out.lifetime_s = life.value_or(28800);  // RFC 2407 4.5's default; IKE has none of its own
  return out;
}

SaPayload phase1_sa(const std::vector<Phase1Transform>& offers) {
  SaPayload sa;
  sa.doi = kDoiGdoi;
  sa.situation = 0;  // GDOI defines no situation bits (gdoid sends 0 too)
  Proposal p;
  p.number = 1;
  p.protocol = kProtoIsakmp;
  for (std::size_t i = 0; i < offers.size(); ++i)
    p.transforms.push_back(offers[i].to_wire(static_cast<std::uint8_t>(i + 1)));
  sa.proposals.push_back(std::move(p));
  return sa;
}

crypto::Result<Bytes> Phase1Sa::iv_for(std::uint32_t message_id) {
  if (auto it = ivs_.find(message_id); it != ivs_.end()) return it->second;
  // A bounded number of concurrent exchanges per SA: a peer opening new
  // message IDs forever must not grow memory forever.
  if (ivs_.size() >= 32) ivs_.erase(ivs_.begin());
  return crypto::ikev1::phase2_iv(transform.hash, transform.cipher, last_phase1_block, message_id);
}

crypto::Result<Bytes> Phase1Sa::protect(Header header, const std::vector<Payload>& payloads) {
  auto iv = iv_for(header.message_id);
  if (!iv) return Error{iv.error()};
  Bytes clear = encode_payloads(payloads);
  auto cipher = crypto::ikev1::encrypt_payloads(transform.cipher, key, *iv, clear);
  if (!cipher) return Error{cipher.error()};
  header.flags |= kFlagEncryption;
  header.initiator_cookie = initiator_cookie;
  header.responder_cookie = responder_cookie;
  header.next_payload = payloads.empty() ? 0 : static_cast<std::uint8_t>(type_of(payloads[0]));
  header.length = static_cast<std::uint32_t>(kHeaderSize + cipher->size());
  Bytes out = encode_header(header);
  append(out, *cipher);
  ivs_[header.message_id] = crypto::last_cipher_block(transform.cipher, *cipher);
  return out;
}

crypto::Result<Bytes> Phase1Sa::unprotect(const Header& header, ByteView datagram) {
  if (!header.encrypted()) return Error{"message " + std::to_string(header.message_id) + " is not encrypted"};
  ByteView body = datagram.subspan(kHeaderSize);
  auto iv = iv_for(header.message_id);
  if (!iv) return Error{iv.error()};
  auto clear = crypto::cbc_decrypt(transform.cipher, key, *iv, body);
  if (!clear) return Error{clear.error()};
  return clear;
}

void Phase1Sa::accepted(const Header& header, ByteView datagram) {
  ivs_[header.message_id] = crypto::last_cipher_block(transform.cipher, datagram.subspan(kHeaderSize));
}

crypto::Result<Bytes> Phase1Sa::notify(NotifyType type, std::uint32_t doi, Bytes data) {
  auto mid = crypto::random_bytes(4);
  if (!mid) return Error{mid.error()};
  Header h;
  h.exchange = static_cast<std::uint8_t>(ExchangeType::Informational);
  h.message_id = static_cast<std::uint32_t>((*mid)[0] << 24 | (*mid)[1] << 16 | (*mid)[2] << 8 | (*mid)[3]);
  NotificationPayload n;
  n.doi = doi;
  n.protocol = kProtoIsakmp;
  n.type = static_cast<std::uint16_t>(type);
  n.spi.assign(initiator_cookie.begin(), initiator_cookie.end());
  n.spi.insert(n.spi.end(), responder_cookie.begin(), responder_cookie.end());
  n.data = std::move(data);
  Bytes nb = encode_payload(n, 0);
  Bytes m = (*mid);
  auto hash = crypto::prf(transform.hash, skeyid_a, {m, nb});
  if (!hash) return Error{hash.error()};
  auto out = protect(h, {HashPayload{Bytes(hash->view().begin(), hash->view().end())}, n});
  forget(h.message_id);
  return out;
}

Result<PayloadChain> decode_body(const Header& header, ByteView body) {
  return decode_payloads(body, header.next_payload, header.exchange, kHeaderSize, true);
}

}  // namespace covey::ike
