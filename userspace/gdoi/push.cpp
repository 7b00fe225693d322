#include "gdoi/push.h"

#include <algorithm>

#include <openssl/evp.h>

#include "crypto/cipher.h"
#include "crypto/gdoi.h"
#include "crypto/hash.h"
#include "wire/message.h"

namespace covey::gdoi {

using namespace wire;
using crypto::Error;
namespace cg = crypto::gdoi;

namespace {

constexpr auto kPush = static_cast<std::uint8_t>(ExchangeType::GroupkeyPush);
constexpr auto kPushAck = static_cast<std::uint8_t>(ExchangeType::GroupkeyPushAck);
constexpr std::size_t kGenericHeader = 4;
constexpr std::uint8_t kDeleteKekProtocol = 0;  // RFC 6407 5.9

void set_cookies(Header& h, const KekSpi& spi) {
  std::copy(spi.begin(), spi.begin() + 8, h.initiator_cookie.begin());
  std::copy(spi.begin() + 8, spi.end(), h.responder_cookie.begin());
}

KekSpi cookies(const Header& h) {
  KekSpi spi;
  std::copy(h.initiator_cookie.begin(), h.initiator_cookie.end(), spi.begin());
  std::copy(h.responder_cookie.begin(), h.responder_cookie.end(), spi.begin() + 8);
  return spi;
}

Bytes u32_be(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 8),
          static_cast<std::uint8_t>(v)};
}

// The SIG payload's data size, needed before signing: the signed header
// holds the unpadded length, SIG included. RSA PKCS#1 is the modulus size;
// ECDSA is r|s at the curve size (RFC 4754 7).
crypto::Result<std::size_t> signature_size(const crypto::PrivateKey& key, crypto::SignatureScheme scheme) {
  switch (scheme) {
    case crypto::SignatureScheme::EcdsaP256: return std::size_t{64};
    case crypto::SignatureScheme::EcdsaP384: return std::size_t{96};
    case crypto::SignatureScheme::RsaPkcs1Raw:
    case crypto::SignatureScheme::RsaPss: {
      int n = key.get() ? EVP_PKEY_get_size(key.get()) : 0;
      if (n <= 0) return Error{"GROUPKEY-PUSH: the signing key has no size"};
      return static_cast<std::size_t>(n);
    }
  }
  return Error{"GROUPKEY-PUSH: unknown signature scheme"};
}

std::vector<Payload> delete_payloads(const PushDeletes& d) {
  std::vector<Payload> out;
  if (!d.tek_spis.empty()) {
    DeletePayload p{kDoiGdoi, kGdoiProtoIpsecEsp, 4, {}};
    for (std::uint32_t spi : d.tek_spis) p.spis.push_back(u32_be(spi));
    out.emplace_back(std::move(p));
  }
  if (!d.kek_spis.empty()) {
    DeletePayload p{kDoiGdoi, kDeleteKekProtocol, 16, {}};
    for (const KekSpi& spi : d.kek_spis) p.spis.emplace_back(spi.begin(), spi.end());
    out.emplace_back(std::move(p));
  }
  return out;
}

}  // namespace

crypto::SignatureScheme signature_scheme(KekPolicy::Signature s) {
  switch (s) {
    case KekPolicy::Signature::Rsa: return crypto::SignatureScheme::RsaPkcs1Raw;
    case KekPolicy::Signature::EcdsaP256: return crypto::SignatureScheme::EcdsaP256;
    case KekPolicy::Signature::EcdsaP384: return crypto::SignatureScheme::EcdsaP384;
  }
  return crypto::SignatureScheme::RsaPkcs1Raw;
}

std::string signing_key_id(ByteView spki) {
  auto d = crypto::digest(crypto::HashAlgorithm::Sha256, {spki});
  return d ? to_hex(*d) : std::string("(no SHA-256)");
}

// -------------------------------------------------------------- key server

crypto::Result<Bytes> build_push(const PushContent& content, const Kek& current_kek, const KekPolicy& current_policy,
                                 const crypto::PrivateKey& signing_key) {
  const std::string at = "GROUPKEY-PUSH SEQ " + std::to_string(content.seq) + ": ";
  if (!content.sa && content.deletes.empty()) return Error{at + "no SA and no DELETE: nothing to push"};
  if (content.sa && !content.sa->kek && content.sa->teks.empty())
    return Error{at + "the SA holds no KEK and no TEK"};
  if (content.sa && content.sa->kek.has_value() != content.keys.kek.has_value())
    return Error{at + (content.keys.kek ? "a KEK to send without an SA KEK" : "an SA KEK without its KEK")};
  if (content.sa && content.sa->kek && content.sa->kek->spi != content.keys.kek->spi)
    return Error{at + "the SA KEK and the KEK to send have different SPIs"};
  const auto scheme = signature_scheme(current_policy.signature);
  auto sig_size = signature_size(signing_key, scheme);
  if (!sig_size) return Error{at + sig_size.error()};

  std::vector<Payload> ps;
  ps.emplace_back(SequenceNumberPayload{content.seq});
  for (auto& d : delete_payloads(content.deletes)) ps.push_back(std::move(d));
  if (content.sa) {
    ps.emplace_back(*content.sa);
    KeyMaterial keys = content.keys;
    keys.sids.clear();  // RFC 6407 5.6.4: never in a push
    ps.emplace_back(encode_key_download(keys));
  }
  ps.emplace_back(SignaturePayload{Bytes(*sig_size, 0)});
  Bytes body = encode_payloads(ps);
  const std::size_t before_sig = body.size() - kGenericHeader - *sig_size;

  Header h;
  set_cookies(h, current_kek.spi);
  h.next_payload = static_cast<std::uint8_t>(PayloadType::SequenceNumber);
  h.exchange = kPush;
  h.flags = kFlagEncryption;
  h.message_id = 0;
  const auto unpadded = static_cast<std::uint32_t>(kHeaderSize + body.size());
  auto sig = cg::sign_rekey(signing_key, scheme, current_policy.signature_hash, encode_header(h),
                            ByteView(body).first(before_sig), unpadded);
  if (!sig) return Error{at + "SIG: " + sig.error()};
  if (sig->size() != *sig_size)
    return Error{at + "SIG of " + std::to_string(sig->size()) + " octets, " + std::to_string(*sig_size) + " expected"};
  std::copy(sig->begin(), sig->end(), body.begin() + static_cast<std::ptrdiff_t>(before_sig + kGenericHeader));

  auto ct = cg::kek_encrypt(current_policy.cipher, current_kek.algorithm_key, body);
  if (!ct) return Error{at + ct.error()};
  h.length = static_cast<std::uint32_t>(kHeaderSize + ct->size());
  Bytes out = encode_header(h);
  append(out, *ct);
  return out;
}

// ---------------------------------------------------------------- RFC 8263

namespace {

constexpr std::size_t kPrfBlock = 64;  // HMAC-SHA-256's block size

// RFC 8263 3.2 (and RFC 4868 2.1.2): a key shorter than the prf block is
// zero-filled to the right. HMAC pads its key the same way, so this
// changes no output; it is written out so the code reads as the RFC.
crypto::SecretBytes zero_filled(ByteView key) {
  crypto::SecretBytes out(std::max(key.size(), kPrfBlock));
  std::copy(key.begin(), key.end(), out.data());
  return out;
}

Bytes ack_tail(std::uint32_t seq, const Address& member) {
  IdentificationPayload id;
  id.type = static_cast<std::uint8_t>(member.family == 4 ? IdType::Ipv4Addr : IdType::Ipv6Addr);
  id.protocol = 0;
  id.port = 0;
  id.data.assign(member.bytes.begin(), member.bytes.begin() + static_cast<std::ptrdiff_t>(member.size()));
  return encode_payloads({SequenceNumberPayload{seq}, std::move(id)});
}

crypto::Result<Bytes> ack_hash(const AckKey& key, ByteView seq_and_id) {
  auto h = crypto::prf(crypto::HashAlgorithm::Sha256, zero_filled(key.key), {seq_and_id});
  if (!h) return Error{h.error()};
  return Bytes(h->view().begin(), h->view().end());
}

}  // namespace

crypto::Result<AckKey> derive_ack_key(const Kek& kek, crypto::CipherAlgorithm kek_cipher) {
  // RFC 8263 2.1: base_key is KEK_ALGORITHM_KEY without its leading IV.
  const std::size_t iv = crypto::block_size(kek_cipher), key = crypto::key_size(kek_cipher);
  if (kek.algorithm_key.size() != iv + key)
    return Error{"GROUPKEY-PUSH ACK key: KEK_ALGORITHM_KEY of " + std::to_string(kek.algorithm_key.size()) +
                 " octets, " + std::string(crypto::name(kek_cipher)) + " needs " + std::to_string(iv + key)};
  const crypto::SecretBytes base_key = zero_filled(kek.algorithm_key.view().subspan(iv));
  // "GROUPKEY-PUSH ACK" null-terminated, SPI, then L: 512 bits, the length
  // of the zero-filled base_key (RFC 8263 3.2: "L MUST match the length of
  // the base_key (i.e., 512 bits for PRF-HMAC-SHA-256)").
  static constexpr char kLabel[] = "GROUPKEY-PUSH ACK";
  const ByteView label(reinterpret_cast<const std::uint8_t*>(kLabel), sizeof kLabel);  // with the NUL
  const auto bits = static_cast<std::uint16_t>(base_key.size() * 8);
  const std::uint8_t l[2] = {static_cast<std::uint8_t>(bits >> 8), static_cast<std::uint8_t>(bits)};
  auto k = crypto::prf(crypto::HashAlgorithm::Sha256, base_key, {label, kek.spi, l});
  if (!k) return Error{"GROUPKEY-PUSH ACK key: " + k.error()};
  return AckKey{kek.spi, std::move(*k)};
}

crypto::Result<Bytes> build_ack(const AckKey& key, std::uint32_t seq, const Address& member) {
  if (member.family != 4 && member.family != 6) return Error{"GROUPKEY-PUSH ACK: member address of family " + std::to_string(member.family)};
  Bytes tail = ack_tail(seq, member);
  auto hash = ack_hash(key, tail);
  if (!hash) return Error{"GROUPKEY-PUSH ACK: " + hash.error()};
  Header h;
  set_cookies(h, key.spi);
  h.next_payload = static_cast<std::uint8_t>(PayloadType::Hash);
  h.exchange = kPushAck;
  h.flags = 0;
  h.message_id = 0;
  Bytes hash_payload = encode_payload(HashPayload{std::move(*hash)}, static_cast<std::uint8_t>(PayloadType::SequenceNumber));
  h.length = static_cast<std::uint32_t>(kHeaderSize + hash_payload.size() + tail.size());
  Bytes out = encode_header(h);
  append(out, hash_payload);
  append(out, tail);
  return out;
}

crypto::Result<Bytes> build_ack(const Kek& kek, crypto::CipherAlgorithm kek_cipher, std::uint32_t seq,
                                const Address& member) {
  auto key = derive_ack_key(kek, kek_cipher);
  if (!key) return Error{key.error()};
  return build_ack(*key, seq, member);
}

crypto::Result<Ack> verify_ack(const AckKey& key, ByteView datagram) {
  const std::string at = "GROUPKEY-PUSH ACK: ";
  auto m = decode_message(datagram);
  if (!m) return Error{at + m.error().message()};
  const Header& h = m->header;
  if (h.exchange != kPushAck) return Error{at + "exchange type " + std::to_string(h.exchange) + ", not 35"};
  if (h.flags != 0) return Error{at + "flags " + std::to_string(h.flags) + ", must be 0 (RFC 8263 3.1)"};
  if (h.message_id != 0) return Error{at + "Message ID not 0 (RFC 8263 3.1)"};
  if (cookies(h) != key.spi) return Error{at + "cookies " + to_hex(cookies(h)) + " are not the KEK's " + to_hex(key.spi)};
  const auto& ps = m->payloads;
  if (ps.size() != 3 || !std::holds_alternative<HashPayload>(ps[0]) ||
      !std::holds_alternative<SequenceNumberPayload>(ps[1]) || !std::holds_alternative<IdentificationPayload>(ps[2]))
    return Error{at + "payloads are not HASH, SEQ, ID (RFC 8263 3)"};
  const Extent& seq_at = m->extents[1];
  const Extent& id_at = m->extents[2];
  auto expect = ack_hash(key, datagram.subspan(seq_at.offset, id_at.offset + id_at.length - seq_at.offset));
  if (!expect || !crypto::equal_constant_time(std::get<HashPayload>(ps[0]).data, *expect))
    return Error{at + "HASH mismatch"};
  const auto& id = std::get<IdentificationPayload>(ps[2]);
  Ack ack;
  ack.seq = std::get<SequenceNumberPayload>(ps[1]).number;
  if (id.protocol != 0 || id.port != 0) return Error{at + "ID Protocol ID and Port must be 0 (RFC 8263 3.4)"};
  if (id.type == static_cast<std::uint8_t>(IdType::Ipv4Addr) && id.data.size() == 4) ack.member.family = 4;
  else if (id.type == static_cast<std::uint8_t>(IdType::Ipv6Addr) && id.data.size() == 16) ack.member.family = 6;
  else return Error{at + "ID type " + std::to_string(id.type) + " with " + std::to_string(id.data.size()) +
                    " octets is not an IPv4 or IPv6 address"};
  std::copy(id.data.begin(), id.data.end(), ack.member.bytes.begin());
  return ack;
}

crypto::Result<Ack> verify_ack(const Kek& kek, crypto::CipherAlgorithm kek_cipher, ByteView datagram) {
  auto key = derive_ack_key(kek, kek_cipher);
  if (!key) return Error{key.error()};
  return verify_ack(*key, datagram);
}

// ------------------------------------------------------------ group member

const char* PushRefused::counter() const {
  switch (reason) {
    case Reason::UnknownKek: return "unknown_kek";
    case Reason::Undecryptable: return "undecryptable";
    case Reason::Malformed: return "malformed";
    case Reason::Replay: return "replay";
    case Reason::BadSignature: return "bad_signature";
    case Reason::RetiredSigningKey: return "retired_signing_key";
  }
  return "malformed";
}

crypto::Result<PushReceiver> PushReceiver::create(Kek kek, KekPolicy policy, std::uint32_t seq, bool ack_requested) {
  auto key = crypto::PublicKey::from_der(kek.signature_public_key);
  if (!key) return Error{"rekey SA: SIG_ALGORITHM_KEY: " + key.error()};
  const std::size_t need = crypto::block_size(policy.cipher) + crypto::key_size(policy.cipher);
  if (kek.algorithm_key.size() != need)
    return Error{"rekey SA: KEK_ALGORITHM_KEY of " + std::to_string(kek.algorithm_key.size()) + " octets, " +
                 std::string(crypto::name(policy.cipher)) + " needs " + std::to_string(need)};
  return PushReceiver(std::move(kek), policy, std::move(*key), seq, ack_requested);
}

std::optional<KeyDownloadPayload> gdoid_kek_rekey_kd(const KeyDownloadPayload& kd, const KekSpi& held, const KekSpi& sa_kek) {
  if (sa_kek == held) return std::nullopt;
  const auto is_kek = [](const KeyPacket& p) { return p.type == static_cast<std::uint8_t>(KeyPacketType::Kek); };
  if (std::count_if(kd.packets.begin(), kd.packets.end(), is_kek) != 1) return std::nullopt;
  const auto packet = std::find_if(kd.packets.begin(), kd.packets.end(), is_kek);
  if (!std::equal(packet->spi.begin(), packet->spi.end(), held.begin(), held.end())) return std::nullopt;
  KeyDownloadPayload out = kd;
  out.packets[static_cast<std::size_t>(packet - kd.packets.begin())].spi.assign(sa_kek.begin(), sa_kek.end());
  return out;
}

namespace {

PushResult refuse(PushRefused::Reason r, std::string detail) { return PushRefused{r, std::move(detail)}; }

// The KEK held, re-sent: the same IV and the same key as the cipher reads
// it, for gdoid re-sends a 3DES KEK with its DES parity bits set
// (INTEROP.md 5). Under another cipher, the same octets.
bool same_kek(const KekPolicy& held_policy, const Kek& held, const KekPolicy& policy, const Kek& sent) {
  const ByteView a = held.algorithm_key.view(), b = sent.algorithm_key.view();
  if (policy.cipher != held_policy.cipher) return crypto::equal_constant_time(a, b);
  const std::size_t iv = crypto::block_size(policy.cipher);  // both are IV and key: checked on receipt
  return crypto::equal_constant_time(a.first(iv), b.first(iv)) && crypto::same_key(policy.cipher, a.subspan(iv), b.subspan(iv));
}

bool has_ack_request(const SaKekPayload& k) {
  return std::any_of(k.attributes.begin(), k.attributes.end(),
                     [](const Attribute& a) { return a.type == kek_attr::KekAckRequested; });
}

}  // namespace

PushResult PushReceiver::receive(ByteView datagram) {
  using R = PushRefused::Reason;
  std::string at = "GROUPKEY-PUSH: ";
  auto h = decode_header(datagram);
  if (!h) return refuse(R::Malformed, at + h.error().message());
  // RFC 6407 4.4: the cookie pair names the rekey SA.
  if (cookies(*h) != kek_.spi)
    return refuse(R::UnknownKek, at + "cookies " + to_hex(cookies(*h)) + " name no KEK held (current " + to_hex(kek_.spi) + ")");
  if (h->exchange != kPush) return refuse(R::Malformed, at + "exchange type " + std::to_string(h->exchange) + ", not 33");
  if (h->flags != kFlagEncryption)
    return refuse(R::Malformed, at + "flags " + std::to_string(h->flags) + ": only Encryption must be set (RFC 6407 4.2)");
  if (h->message_id != 0) return refuse(R::Malformed, at + "Message ID not 0 (RFC 6407 4.2)");

  const ByteView ciphertext = datagram.subspan(kHeaderSize);
  const std::size_t block = crypto::block_size(policy_.cipher);
  if (ciphertext.empty() || ciphertext.size() % block != 0)
    return refuse(R::Undecryptable, at + std::to_string(ciphertext.size()) + " octets after the header, not whole " +
                                        std::string(crypto::name(policy_.cipher)) + " blocks");
  auto clear = cg::kek_decrypt(policy_.cipher, kek_.algorithm_key, ciphertext);
  if (!clear) return refuse(R::Undecryptable, at + clear.error());

  // Form: SEQ, [D...], [SA, KD], SIG, and less than a block of padding, so
  // that every ciphertext block carries signed octets.
  auto chain = decode_payloads(*clear, h->next_payload, kPush, kHeaderSize, true);
  if (!chain) return refuse(R::Malformed, at + "after decryption: " + chain.error().message());
  if (clear->size() - chain->consumed >= block)
    return refuse(R::Malformed, at + std::to_string(clear->size() - chain->consumed) + " octets of padding, a " +
                                    std::to_string(block) + "-octet block or more");
  const auto& ps = chain->payloads;
  if (ps.size() < 2 || !std::holds_alternative<SequenceNumberPayload>(ps.front()) ||
      !std::holds_alternative<SignaturePayload>(ps.back()))
    return refuse(R::Malformed, at + "does not begin with SEQ and end with SIG (RFC 6407 4)");
  const std::uint32_t seq = std::get<SequenceNumberPayload>(ps.front()).number;
  at = "GROUPKEY-PUSH SEQ " + std::to_string(seq) + ": ";
  PushAccepted out;
  out.seq = seq;
  std::size_t i = 1;
  for (; i + 1 < ps.size() && std::holds_alternative<DeletePayload>(ps[i]); ++i) {
    const auto& d = std::get<DeletePayload>(ps[i]);
    if (d.doi != kDoiGdoi) return refuse(R::Malformed, at + "DELETE with DOI " + std::to_string(d.doi));
    if (d.protocol == kDeleteKekProtocol && d.spi_size == 16) {
      for (const Bytes& s : d.spis) {
        KekSpi spi;
        std::copy(s.begin(), s.end(), spi.begin());
        out.deletes.kek_spis.push_back(spi);
      }
    } else if ((d.protocol == kGdoiProtoIpsecEsp || d.protocol == kGdoiProtoIpsecAh) && d.spi_size == 4) {
      for (const Bytes& s : d.spis)
        out.deletes.tek_spis.push_back(static_cast<std::uint32_t>(s[0] << 24 | s[1] << 16 | s[2] << 8 | s[3]));
    } else {
      return refuse(R::Malformed, at + "DELETE of Protocol-ID " + std::to_string(d.protocol) + " with " +
                                      std::to_string(d.spi_size) + "-octet SPIs (RFC 6407 5.9)");
    }
  }
  const GroupSaPayload* gsa = nullptr;
  const KeyDownloadPayload* kd = nullptr;
  if (i + 1 < ps.size()) {
    gsa = std::get_if<GroupSaPayload>(&ps[i]);
    kd = i + 2 < ps.size() ? std::get_if<KeyDownloadPayload>(&ps[i + 1]) : nullptr;
    if (!gsa || !kd || i + 3 != ps.size())
      return refuse(R::Malformed, at + "payloads after SEQ and DELETE are not SA, KD, SIG (RFC 6407 4)");
  } else if (out.deletes.empty()) {
    return refuse(R::Malformed, at + "neither SA nor DELETE");
  }
  std::optional<crypto::PublicKey> new_key;
  if (gsa) {
    auto sa = decode_group_sa(*gsa);
    if (!sa) return refuse(R::Malformed, at + "SA: " + sa.error());
    if (!sa->kek_spi && sa->tek_spis.empty()) return refuse(R::Malformed, at + "SA holds no KEK and no TEK");
    if (std::any_of(kd->packets.begin(), kd->packets.end(),
                    [](const KeyPacket& p) { return p.type == static_cast<std::uint8_t>(KeyPacketType::Sid); }))
      return refuse(R::Malformed, at + "KD carries SIDs, which a push must not (RFC 6407 5.6.4)");
    std::optional<KeyDownloadPayload> gdoid_kd;
    if (sa->kek_spi) gdoid_kd = gdoid_kek_rekey_kd(*kd, kek_.spi, *sa->kek_spi);
    if (gdoid_kd)
      out.interop_note = "KD KEK packet named the KEK held (" + to_hex(kek_.spi) + "), not the SA KEK's new SPI " +
                         to_hex(*sa->kek_spi) + ", as gdoid does: taken as the new KEK's";
    auto keys = decode_key_download(gdoid_kd ? *gdoid_kd : *kd, *sa);
    if (!keys) return refuse(R::Malformed, at + keys.error());
    if (keys->kek) {
      if (keys->kek->spi == kek_.spi && !same_kek(policy_, kek_, sa->policy.kek, *keys->kek))
        return refuse(R::Malformed, at + "a new KEK under the current cookies (RFC 6407 4: a new cookie pair)");
      // The key server re-sends its signature key with every KEK; parse it
      // only when it changed (decoding a SubjectPublicKeyInfo costs more
      // than verifying the signature). A new one is a signing-key rollover
      // (RFC 6407 5.6.2.2: the SA KEK in the same push names its algorithm).
      if (keys->kek->signature_public_key != kek_.signature_public_key) {
        auto k = crypto::PublicKey::from_der(keys->kek->signature_public_key);
        if (!k) return refuse(R::Malformed, at + "KD SIG_ALGORITHM_KEY: " + k.error());
        new_key = std::move(*k);
      }
      // Whichever key verifies the next push must be of the algorithm the
      // SA KEK now names, or no later push could be verified.
      const crypto::PublicKey& next_key = new_key ? *new_key : key_;
      if (auto fits = crypto::key_fits(next_key, signature_scheme(sa->policy.kek.signature)); !fits)
        return refuse(R::Malformed, at + "KD SIG_ALGORITHM_KEY " +
                                        (new_key ? "(new, SHA-256 " + signing_key_id(keys->kek->signature_public_key) + ")"
                                                 : std::string("(unchanged)")) +
                                        " does not fit the SA KEK's SIG_ALGORITHM " + sa->policy.kek.signature_str() +
                                        ": " + fits.error());
    }
    out.sa = std::move(*sa);
    out.keys = std::move(*keys);
    out.gap = gsa->gap.has_value();
  }

  // RFC 6407 4.4: the SEQ before the (costlier) signature.
  if (seq <= seq_)
    return refuse(R::Replay, at + "not above " + std::to_string(seq_) + ", the last accepted under this KEK");

  const std::size_t sig_offset = chain->extents.back().offset;
  const auto unpadded = static_cast<std::uint32_t>(kHeaderSize + chain->consumed);
  const ByteView sig = std::get<SignaturePayload>(ps.back()).data;
  auto verify = [&](const crypto::PublicKey& key, const KekPolicy& policy) {
    return cg::verify_rekey(key, signature_scheme(policy.signature), policy.signature_hash,
                            datagram.first(kHeaderSize), ByteView(*clear).first(sig_offset), unpadded, sig);
  };
  if (auto ok = verify(key_, policy_); !ok) {
    // Only a push that got this far (under the KEK, well formed, a fresh
    // SEQ) costs a second verification: naming the retired key is worth it.
    if (retired_ && verify(retired_->key, retired_->policy))
      return refuse(R::RetiredSigningKey,
                    at + "signed with the retired signing key (SHA-256 " + signing_key_id(retired_->spki) +
                        ") that rekey SEQ " + std::to_string(retired_->replaced_at_seq) +
                        " replaced; only pushes signed with SHA-256 " + signing_key_id(kek_.signature_public_key) +
                        " are accepted");
    return refuse(R::BadSignature, at + ok.error());
  }

  auto ack_key = derive_ack_key(kek_, policy_.cipher);
  if (!ack_key) return refuse(R::Undecryptable, at + ack_key.error());  // not reached: the KEK was checked at create
  out.ack_key = std::move(*ack_key);

  // Accepted: only now does state change.
  seq_ = seq;
  if (gsa && gsa->kek) ack_requested_ = has_ack_request(*gsa->kek);
  out.ack_requested = ack_requested_;
  if (out.keys.kek) {
    out.kek_replaced = out.keys.kek->spi != kek_.spi;
    // RFC 6407 4: "the first packet for the given Rekey SA encrypted with
    // the new KEK attribute will have a Sequence number of 1".
    if (out.kek_replaced) seq_ = 0;
    if (new_key) {
      retired_ = Retired{std::move(key_), policy_, kek_.signature_public_key, seq};
      key_ = std::move(*new_key);
      out.signing_key_replaced = true;
    }
    kek_ = *out.keys.kek;
    policy_ = out.sa->policy.kek;
  }
  return out;
}

}  // namespace covey::gdoi
