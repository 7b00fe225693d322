#include "ike/main_mode.h"

#include <algorithm>

#include "crypto/random.h"

namespace covey::ike {

using namespace wire;
using crypto::Error;

namespace {

constexpr auto kMain = static_cast<std::uint8_t>(ExchangeType::IdentityProtection);

Bytes body_of(const Payload& p) {
  Bytes b = encode_payload(p, 0);
  return Bytes(b.begin() + 4, b.end());  // without the generic header
}

template <class T>
const T* first(const std::vector<Payload>& ps) {
  for (const auto& p : ps)
    if (auto* v = std::get_if<T>(&p)) return v;
  return nullptr;
}

template <class T>
std::size_t count(const std::vector<Payload>& ps) {
  return static_cast<std::size_t>(std::count_if(ps.begin(), ps.end(), [](const Payload& p) { return std::holds_alternative<T>(p); }));
}

Step reply(Bytes d) {
  Step s;
  s.send = std::move(d);
  return s;
}

bool nonce_size_ok(std::size_t n) { return n >= 8 && n <= 256; }  // RFC 2409 5

}  // namespace

MainMode::MainMode(bool initiator, std::vector<Phase1Transform> transforms, std::shared_ptr<const Credentials> creds,
                   Endpoint peer, Address local, std::vector<Bytes> vendor_ids)
    : initiator_(initiator),
      transforms_(std::move(transforms)),
      creds_(std::move(creds)),
      peer_(peer),
      local_(local),
      vendor_ids_(std::move(vendor_ids)) {}

MainMode MainMode::initiator(std::vector<Phase1Transform> offers, std::shared_ptr<const Credentials> creds,
                             Endpoint peer, Address local_address, std::vector<Bytes> vendor_ids) {
  return MainMode(true, std::move(offers), std::move(creds), peer, local_address, std::move(vendor_ids));
}

MainMode MainMode::responder(std::vector<Phase1Transform> accepted, std::shared_ptr<const Credentials> creds,
                             Endpoint peer, Address local_address, std::vector<Bytes> vendor_ids) {
  return MainMode(false, std::move(accepted), std::move(creds), peer, local_address, std::move(vendor_ids));
}

Bytes MainMode::sa_message(const SaPayload& sa) const {
  std::vector<Payload> ps{sa};
  for (const Bytes& v : vendor_ids_) ps.push_back(VendorIdPayload{v});
  return encode_message(header(ExchangeType::IdentityProtection), ps);
}

// Kept whatever they say: what a Vendor ID means is its owner's business
// (the caller's), and one it does not know it ignores (RFC 2408 3.16).
void MainMode::record_vendor_ids(const Message& m) {
  for (const auto& p : m.payloads)
    if (const auto* v = std::get_if<VendorIdPayload>(&p)) peer_vendor_ids_.push_back(v->data);
}

int MainMode::message_number() const {
  switch (state_) {
    case State::Start: return 0;
    case State::SentSa: return initiator_ ? 1 : 2;
    case State::SentKe: return initiator_ ? 3 : 4;
    case State::SentAuth: return 5;
    case State::Done: return 6;
    case State::Failed: return -1;
  }
  return -1;
}

Header MainMode::header(ExchangeType ex) const {
  Header h;
  h.initiator_cookie = icookie_;
  h.responder_cookie = rcookie_;
  h.exchange = static_cast<std::uint8_t>(ex);
  return h;
}

Step MainMode::sent(Bytes datagram) {
  last_sent_ = datagram;
  return reply(std::move(datagram));
}

Step MainMode::fail(NotifyType notify, std::string reason, bool tell_peer) {
  state_ = State::Failed;
  Step s;
  s.failure = Failure{notify, std::move(reason)};
  // RFC 2409 5.7: before the ISAKMP SA exists, notifications go in the clear
  // without a HASH. A peer that cannot authenticate us would not decrypt
  // one anyway, and the clear notify tells its operator why.
  if (tell_peer) {
    Header h = header(ExchangeType::Informational);
    NotificationPayload n;
    n.doi = kDoiGdoi;
    n.protocol = kProtoIsakmp;
    n.type = static_cast<std::uint16_t>(notify);
    n.spi.assign(icookie_.begin(), icookie_.end());
    n.spi.insert(n.spi.end(), rcookie_.begin(), rcookie_.end());
    s.send = encode_message(h, {n});
  }
  return s;
}

crypto::Result<Bytes> MainMode::start() {
  auto cookie = crypto::random_bytes(8);
  if (!cookie) return Error{cookie.error()};
  std::copy(cookie->begin(), cookie->end(), icookie_.begin());
  SaPayload sa = phase1_sa(transforms_);
  sai_b_ = body_of(sa);
  Bytes d = sa_message(sa);
  state_ = State::SentSa;
  last_sent_ = d;
  return d;
}

bool MainMode::repeats_last(ByteView datagram) const {
  return !last_received_.empty() &&
         std::equal(datagram.begin(), datagram.end(), last_received_.begin(), last_received_.end());
}

Step MainMode::receive(ByteView datagram, std::int64_t now) {
  // The peer missed our reply (message 6 included: a finished exchange is
  // kept a while by its owner for exactly this).
  if (repeats_last(datagram)) return reply(last_sent_);
  if (state_ == State::Done || state_ == State::Failed) return Step{};
  auto h = decode_header(datagram);
  if (!h) return fail(NotifyType::PayloadMalformed, h.error().message(), false);
  if (h->exchange == static_cast<std::uint8_t>(ExchangeType::Informational) && !h->encrypted()) {
    // A clear notification about this exchange (RFC 2409 5.7), e.g.
    // NO-PROPOSAL-CHOSEN. Unauthenticated, so it ends only an exchange
    // still waiting for the peer's first answer.
    auto m = decode_message(datagram);
    const NotificationPayload* n = m ? first<NotificationPayload>(m->payloads) : nullptr;
    if (!n || !initiator_ || h->initiator_cookie != icookie_) return Step{};
    if (state_ != State::SentSa) {
      // Anyone could have sent it; the exchange goes on, the operator hears of it.
      Step s;
      s.notice = "peer sent an unauthenticated notification " + std::to_string(n->type) +
                 (n->type == static_cast<std::uint16_t>(NotifyType::AuthenticationFailed) ? " (AUTHENTICATION-FAILED: wrong pre-shared key?)" : "");
      return s;
    }
    return fail(static_cast<NotifyType>(n->type), "peer answered with notification " + std::to_string(n->type), false);
  }
  if (h->exchange != kMain) return fail(NotifyType::InvalidExchangeType, "exchange type " + std::to_string(h->exchange) + " in Main Mode", false);
  if (h->message_id != 0) return fail(NotifyType::InvalidMessageId, "Main Mode message with Message ID " + std::to_string(h->message_id), false);
  Step s = initiator_ ? initiator_receive(*h, datagram, now) : responder_receive(*h, datagram, now);
  if (!s.failure) last_received_.assign(datagram.begin(), datagram.end());
  return s;
}

Step MainMode::responder_receive(const Header& h, ByteView datagram, std::int64_t now) {
  if (state_ == State::SentAuth || state_ == State::Done) return Step{};
  if (h.encrypted()) {
    if (state_ != State::SentKe) return fail(NotifyType::InvalidFlags, "encrypted Main Mode message before the key exchange", false);
    return on_authentication(h, datagram, now);
  }
  auto m = decode_message(datagram);
  if (!m) return fail(NotifyType::PayloadMalformed, m.error().message());
  if (state_ == State::Start) return on_sa_offer(*m, datagram);
  if (state_ == State::SentSa) return on_key_exchange(*m);
  return fail(NotifyType::InvalidPayloadType, "unexpected clear message " + std::to_string(message_number() + 1), false);
}

Step MainMode::initiator_receive(const Header& h, ByteView datagram, std::int64_t now) {
  if (h.initiator_cookie != icookie_) return Step{};
  if (state_ == State::SentSa) {
    if (h.encrypted()) return fail(NotifyType::InvalidFlags, "encrypted Main Mode message 2", false);
    auto m = decode_message(datagram);
    if (!m) return fail(NotifyType::PayloadMalformed, m.error().message(), false);
    rcookie_ = h.responder_cookie;
    return on_sa_choice(*m);
  }
  if (h.responder_cookie != rcookie_) return Step{};
  if (state_ == State::SentKe) {
    if (h.encrypted()) return fail(NotifyType::InvalidFlags, "encrypted Main Mode message 4", false);
    auto m = decode_message(datagram);
    if (!m) return fail(NotifyType::PayloadMalformed, m.error().message(), false);
    return on_key_exchange(*m);
  }
  if (state_ == State::SentAuth) {
    if (!h.encrypted()) return fail(NotifyType::InvalidFlags, "Main Mode message 6 is not encrypted", false);
    return on_authentication(h, datagram, now);
  }
  return Step{};
}

// Responder, message 1: choose a transform; no DH or state beyond this
// object until the initiator proves it can receive at its address (msg 3).
Step MainMode::on_sa_offer(const Message& m, ByteView datagram) {
  icookie_ = m.header.initiator_cookie;
  if (std::all_of(icookie_.begin(), icookie_.end(), [](std::uint8_t b) { return b == 0; }))
    return fail(NotifyType::InvalidCookie, "initiator cookie is zero", false);
  if (m.header.responder_cookie != Cookie{}) return fail(NotifyType::InvalidCookie, "message 1 with a responder cookie", false);
  if (m.payloads.empty() || !std::holds_alternative<SaPayload>(m.payloads[0]))
    return fail(NotifyType::PayloadMalformed, "message 1 does not start with an SA payload (RFC 2409 5)");
  if (count<SaPayload>(m.payloads) != 1) return fail(NotifyType::BadProposalSyntax, "message 1 has more than one SA payload");
  const auto& sa = std::get<SaPayload>(m.payloads[0]);
  if (sa.doi != kDoiGdoi && sa.doi != kDoiIpsec)
    return fail(NotifyType::DoiNotSupported, "SA DOI " + std::to_string(sa.doi));
  if (sa.proposals.size() != 1)
    return fail(NotifyType::BadProposalSyntax, std::to_string(sa.proposals.size()) + " proposals; phase 1 allows exactly one (RFC 2409 5)");
  const Proposal& p = sa.proposals[0];
  if (p.protocol != kProtoIsakmp) return fail(NotifyType::InvalidProtocolId, "proposal protocol " + std::to_string(p.protocol) + " is not PROTO_ISAKMP");
  bool have_psk = creds_->pre_shared_key && creds_->pre_shared_key(peer_.address).has_value();
  std::string why = "no transform offered is acceptable:";
  const Transform* pick = nullptr;
  for (const auto& t : p.transforms) {
    auto ours = transform_from_wire(t);
    if (!ours) {
      why += " [" + ours.error() + "]";
      continue;
    }
    auto same = [&](const Phase1Transform& a) {
      return a.cipher == ours->cipher && a.hash == ours->hash && a.auth == ours->auth && a.dh_group == ours->dh_group;
    };
    if (std::none_of(transforms_.begin(), transforms_.end(), same)) {
      why += " [" + ours->str() + ": not allowed here]";
      continue;
    }
    if (ours->auth == AuthMethod::PreSharedKey && !have_psk) {
      why += " [" + ours->str() + ": no pre-shared key for " + peer_.address.str() + "]";
      continue;
    }
    if (ours->auth == AuthMethod::RsaSignature && (!creds_->signer || !creds_->verify_certificate)) {
      why += " [" + ours->str() + ": no certificate configured]";
      continue;
    }
    chosen_ = *ours;
    // Our own limit caps a longer lifetime the peer asked for.
    auto ours_max = std::find_if(transforms_.begin(), transforms_.end(), same);
    chosen_.lifetime_s = std::min(chosen_.lifetime_s, ours_max->lifetime_s);
    pick = &t;
    break;
  }
  if (!pick) return fail(NotifyType::NoProposalChosen, why);
  // SAi_b: the initiator's SA body exactly as received (RFC 2409 5).
  ByteView raw = datagram.subspan(m.extents[0].offset + 4, m.extents[0].length - 4);
  sai_b_.assign(raw.begin(), raw.end());
  auto cookie = crypto::random_bytes(8);
  if (!cookie) return fail(NotifyType::PayloadMalformed, cookie.error(), false);
  std::copy(cookie->begin(), cookie->end(), rcookie_.begin());
  // The chosen transform goes back unmodified (RFC 2409 5).
  SaPayload reply{sa.doi, sa.situation, {Proposal{p.number, p.protocol, p.spi, {*pick}}}};
  record_vendor_ids(m);
  state_ = State::SentSa;
  return sent(sa_message(reply));
}

// Initiator, message 2: the responder must pick one of our transforms,
// unmodified (RFC 2409 5).
Step MainMode::on_sa_choice(const Message& m) {
  const auto* sa = first<SaPayload>(m.payloads);
  if (!sa || sa->proposals.size() != 1 || sa->proposals[0].transforms.size() != 1)
    return fail(NotifyType::BadProposalSyntax, "message 2 must hold one SA with one proposal and one transform", false);
  const Transform& t = sa->proposals[0].transforms[0];
  auto chosen = transform_from_wire(t);
  if (!chosen) return fail(NotifyType::NoProposalChosen, "responder chose " + chosen.error(), false);
  bool offered = false;
  for (std::size_t i = 0; i < transforms_.size(); ++i)
    if (transforms_[i].to_wire(t.number).attributes == t.attributes) offered = true;
  if (!offered) return fail(NotifyType::NoProposalChosen, "responder chose a transform we did not offer: " + chosen->str(), false);
  // As the responder checks before choosing: without these, message 5
  // could not be signed nor message 6's certificate judged.
  if (chosen->auth == AuthMethod::RsaSignature && (!creds_->signer || !creds_->verify_certificate))
    return fail(NotifyType::NoProposalChosen, "responder chose " + chosen->str() + " but no certificate is configured", false);
  chosen_ = *chosen;
  record_vendor_ids(m);
  auto msg = key_exchange_message();
  if (!msg) return fail(NotifyType::InvalidKeyInformation, msg.error(), false);
  state_ = State::SentKe;
  return sent(std::move(*msg));
}

crypto::Result<Bytes> MainMode::key_exchange_message() {
  auto group = crypto::DhGroup::from_id(chosen_.dh_group);
  if (!group) return Error{group.error()};
  auto pair = group->generate();
  if (!pair) return Error{pair.error()};
  auto nonce = crypto::random_bytes(32);
  if (!nonce) return Error{nonce.error()};
  (initiator_ ? g_xi_ : g_xr_) = pair->public_value();
  (initiator_ ? ni_b_ : nr_b_) = *nonce;
  std::vector<Payload> ps{KeyExchangePayload{pair->public_value()}, NoncePayload{*nonce}};
  if (chosen_.auth == AuthMethod::RsaSignature) ps.push_back(CertificateRequestPayload{kCertX509Signature, {}});
  dh_.emplace(std::move(*pair));
  return encode_message(header(ExchangeType::IdentityProtection), ps);
}

// Messages 3 (responder) and 4 (initiator): the peer's KE and nonce.
Step MainMode::on_key_exchange(const Message& m) {
  const auto* ke = first<KeyExchangePayload>(m.payloads);
  const auto* nonce = first<NoncePayload>(m.payloads);
  int n = initiator_ ? 4 : 3;
  if (!ke || !nonce) return fail(NotifyType::PayloadMalformed, "message " + std::to_string(n) + " lacks KE or NONCE", !initiator_);
  if (!nonce_size_ok(nonce->data.size()))
    return fail(NotifyType::PayloadMalformed, "nonce of " + std::to_string(nonce->data.size()) + " octets (8 to 256, RFC 2409 5)", !initiator_);
  auto group = crypto::DhGroup::from_id(chosen_.dh_group);
  if (!group) return fail(NotifyType::InvalidKeyInformation, group.error(), !initiator_);
  auto peer = group->validate_peer_public_value(ke->data);
  if (!peer) return fail(NotifyType::InvalidKeyInformation, peer.error(), !initiator_);
  if (initiator_) {
    g_xr_ = ke->data;
    nr_b_ = nonce->data;
  } else {
    g_xi_ = ke->data;
    ni_b_ = nonce->data;
    auto msg = key_exchange_message();
    if (!msg) return fail(NotifyType::InvalidKeyInformation, msg.error());
    last_sent_ = std::move(*msg);
  }
  auto gxy = dh_->shared_secret(*peer);
  if (!gxy) return fail(NotifyType::InvalidKeyInformation, gxy.error(), !initiator_);
  g_xy_ = std::move(*gxy);
  if (auto ok = derive_keys(); !ok) return fail(NotifyType::AuthenticationFailed, ok.error(), !initiator_);
  if (!initiator_) {
    state_ = State::SentKe;
    return reply(last_sent_);
  }
  auto msg = authentication_message();
  if (!msg) return fail(NotifyType::AuthenticationFailed, msg.error(), false);
  state_ = State::SentAuth;
  return sent(std::move(*msg));
}

crypto::Result<void> MainMode::derive_keys() {
  if (chosen_.auth == AuthMethod::PreSharedKey) {
    auto psk = creds_->pre_shared_key ? creds_->pre_shared_key(peer_.address) : std::nullopt;
    if (!psk) return Error{"no pre-shared key for " + peer_.address.str()};
    auto s = crypto::ikev1::skeyid_psk(chosen_.hash, *psk, ni_b_, nr_b_);
    if (!s) return Error{s.error()};
    skeyid_ = std::move(*s);
  } else {
    auto s = crypto::ikev1::skeyid_sig(chosen_.hash, ni_b_, nr_b_, g_xy_);
    if (!s) return Error{s.error()};
    skeyid_ = std::move(*s);
  }
  auto k = crypto::ikev1::derive_skeyid_dae(chosen_.hash, skeyid_, g_xy_, icookie_, rcookie_);
  if (!k) return Error{k.error()};
  keys_ = std::move(*k);
  auto key = crypto::ikev1::encryption_key(chosen_.hash, keys_.e, chosen_.cipher);
  if (!key) return Error{key.error()};
  enc_key_ = std::move(*key);
  auto iv = crypto::ikev1::phase1_iv(chosen_.hash, chosen_.cipher, g_xi_, g_xr_);
  if (!iv) return Error{iv.error()};
  iv_ = std::move(*iv);
  return {};
}

namespace {

IdentificationPayload local_identity(const Address& a, const Credentials& c, AuthMethod auth) {
  IdentificationPayload id;
  if (auth == AuthMethod::RsaSignature && c.signer) {
    id.type = static_cast<std::uint8_t>(IdType::DerAsn1Dn);
    id.data = c.signer->subject_der;
  } else {
    id.type = static_cast<std::uint8_t>(a.family == 4 ? IdType::Ipv4Addr : IdType::Ipv6Addr);
    id.data.assign(a.bytes.begin(), a.bytes.begin() + static_cast<std::ptrdiff_t>(a.size()));
  }
  // RFC 2407 4.6.2: protocol UDP and port 848 name the GDOI service; 0 is
  // also allowed. Peers differ; covey sends 17/848 and accepts either.
  id.protocol = 17;
  id.port = 848;
  return id;
}

}  // namespace

crypto::Result<Bytes> MainMode::own_auth_hash() const {
  crypto::ikev1::Phase1Transcript t{g_xi_, g_xr_, icookie_, rcookie_, sai_b_};
  Bytes id_b = body_of(local_identity(local_, *creds_, chosen_.auth));
  return initiator_ ? crypto::ikev1::hash_i(chosen_.hash, skeyid_, t, id_b)
                    : crypto::ikev1::hash_r(chosen_.hash, skeyid_, t, id_b);
}

crypto::Result<Bytes> MainMode::authentication_message() {
  auto hash = own_auth_hash();
  if (!hash) return Error{hash.error()};
  std::vector<Payload> ps{local_identity(local_, *creds_, chosen_.auth)};
  if (chosen_.auth == AuthMethod::RsaSignature) {
    ps.push_back(CertificatePayload{kCertX509Signature, creds_->signer->certificate_der});
    auto sig = crypto::sign_hash(creds_->signer->key, crypto::SignatureScheme::RsaPkcs1Raw, chosen_.hash, *hash);
    if (!sig) return Error{sig.error()};
    ps.push_back(SignaturePayload{std::move(*sig)});
  } else {
    ps.push_back(HashPayload{std::move(*hash)});
  }
  if (initiator_) {
    // RFC 2407 4.6.3.3: a fresh start; the KS may drop older SAs of ours.
    NotificationPayload ic;
    ic.doi = kDoiIpsec;
    ic.protocol = kProtoIsakmp;
    ic.type = static_cast<std::uint16_t>(NotifyType::InitialContact);
    ic.spi.assign(icookie_.begin(), icookie_.end());
    ic.spi.insert(ic.spi.end(), rcookie_.begin(), rcookie_.end());
    ps.push_back(ic);
  }
  Bytes clear = encode_payloads(ps);
  auto cipher = crypto::ikev1::encrypt_payloads(chosen_.cipher, enc_key_, iv_, clear);
  if (!cipher) return Error{cipher.error()};
  Header h = header(ExchangeType::IdentityProtection);
  h.flags = kFlagEncryption;
  h.next_payload = static_cast<std::uint8_t>(PayloadType::Identification);
  h.length = static_cast<std::uint32_t>(kHeaderSize + cipher->size());
  Bytes out = encode_header(h);
  append(out, *cipher);
  iv_ = crypto::last_cipher_block(chosen_.cipher, *cipher);
  return out;
}

// Messages 5 (responder) and 6 (initiator): the peer's identity and proof.
Step MainMode::on_authentication(const Header& h, ByteView datagram, std::int64_t now) {
  bool tell = !initiator_;
  int n = initiator_ ? 6 : 5;
  std::string msg = "message " + std::to_string(n) + ": ";
  ByteView body = datagram.subspan(kHeaderSize);
  auto clear = crypto::cbc_decrypt(chosen_.cipher, enc_key_, iv_, body);
  if (!clear) return fail(NotifyType::PayloadMalformed, msg + clear.error(), tell);
  auto chain = decode_body(h, *clear);
  // With signatures the encryption key comes from the DH exchange alone, so
  // only a pre-shared key can be wrong here.
  if (!chain)
    return fail(NotifyType::AuthenticationFailed,
                msg + "does not decrypt to valid payloads (" + chain.error().message() + ")" +
                    (chosen_.auth == AuthMethod::PreSharedKey ? ": wrong pre-shared key?" : ""),
                tell);
  const auto& ps = chain->payloads;
  const auto* id = first<IdentificationPayload>(ps);
  if (!id) return fail(NotifyType::PayloadMalformed, msg + "no ID payload", tell);
  crypto::ikev1::Phase1Transcript t{g_xi_, g_xr_, icookie_, rcookie_, sai_b_};
  Bytes id_b = body_of(*id);
  auto expect = initiator_ ? crypto::ikev1::hash_r(chosen_.hash, skeyid_, t, id_b)
                           : crypto::ikev1::hash_i(chosen_.hash, skeyid_, t, id_b);
  if (!expect) return fail(NotifyType::AuthenticationFailed, msg + expect.error(), tell);
  std::string which = initiator_ ? "HASH_R" : "HASH_I";
  if (chosen_.auth == AuthMethod::PreSharedKey) {
    const auto* hp = first<HashPayload>(ps);
    if (!hp) return fail(NotifyType::PayloadMalformed, msg + "no HASH payload", tell);
    if (!crypto::equal_constant_time(hp->data, *expect))
      return fail(NotifyType::AuthenticationFailed, msg + which + " mismatch (wrong pre-shared key?)", tell);
  } else {
    const auto* cert = first<CertificatePayload>(ps);
    const auto* sig = first<SignaturePayload>(ps);
    if (!cert || !sig) return fail(NotifyType::PayloadMalformed, msg + "no CERT or SIG payload", tell);
    if (cert->encoding != kCertX509Signature)
      return fail(NotifyType::InvalidCertEncoding, msg + "certificate encoding " + std::to_string(cert->encoding), tell);
    auto pc = creds_->verify_certificate(cert->data);
    if (!pc) return fail(NotifyType::InvalidCertificate, msg + pc.error(), tell);
    if (id->type == static_cast<std::uint8_t>(IdType::DerAsn1Dn) && id->data != pc->subject_der)
      return fail(NotifyType::InvalidIdInformation, msg + "ID_DER_ASN1_DN differs from the certificate subject " + pc->subject, tell);
    if (auto ok = crypto::verify_hash(pc->key, crypto::SignatureScheme::RsaPkcs1Raw, chosen_.hash, *expect, sig->data); !ok)
      return fail(NotifyType::InvalidSignature, msg + "SIG over " + which + " does not verify: " + ok.error(), tell);
    peer_cert_ = std::move(*pc);
  }
  iv_ = crypto::last_cipher_block(chosen_.cipher, body);

  Step s;
  if (!initiator_) {
    auto reply = authentication_message();
    if (!reply) return fail(NotifyType::AuthenticationFailed, reply.error(), false);
    last_sent_ = *reply;
    s.send = std::move(*reply);
  }
  Phase1Sa sa;
  sa.initiator_cookie = icookie_;
  sa.responder_cookie = rcookie_;
  sa.we_initiated = initiator_;
  sa.transform = chosen_;
  sa.skeyid_d = keys_.d;
  sa.skeyid_a = keys_.a;
  sa.skeyid_e = keys_.e;
  sa.key = enc_key_;
  sa.last_phase1_block = iv_;  // after message 6, sent or received
  sa.peer = peer_;
  sa.peer_id = *id;
  if (peer_cert_) sa.peer_subject = peer_cert_->subject;
  sa.peer_vendor_ids = peer_vendor_ids_;
  sa.established_at = now;
  s.established = std::move(sa);
  state_ = State::Done;
  // Secrets that only this exchange needed.
  g_xy_ = {};
  skeyid_ = {};
  dh_.reset();
  return s;
}

}  // namespace covey::ike
