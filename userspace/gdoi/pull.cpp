#include "gdoi/pull.h"

#include <algorithm>

#include "crypto/gdoi.h"
#include "crypto/random.h"
#include "wire/buffer.h"

namespace covey::gdoi {

using namespace wire;
using crypto::Error;
namespace cg = crypto::gdoi;

namespace {

constexpr auto kPull = static_cast<std::uint8_t>(ExchangeType::GroupkeyPull);

template <class T>
const T* first(const std::vector<Payload>& ps) {
  for (const auto& p : ps)
    if (auto* v = std::get_if<T>(&p)) return v;
  return nullptr;
}

// A decrypted GROUPKEY-PULL message: its payloads, and the octets after
// its HASH payload that the HASH covers (RFC 6407 3.2: "the entire message
// that follows the hash ... excluding any padding").
struct Opened {
  Bytes clear;
  PayloadChain chain;
  ByteView tail;
  const HashPayload* hash = nullptr;
};

crypto::Result<Opened> open(ike::Phase1Sa& sa, const Header& h, ByteView datagram) {
  auto clear = sa.unprotect(h, datagram);
  if (!clear) return Error{clear.error()};
  Opened o;
  o.clear = std::move(*clear);
  auto chain = ike::decode_body(h, o.clear);
  if (!chain) return Error{chain.error().message()};
  o.chain = std::move(*chain);
  if (o.chain.payloads.empty() || !std::holds_alternative<HashPayload>(o.chain.payloads[0]))
    return Error{"the first payload is not HASH (RFC 6407 3.2)"};
  o.hash = &std::get<HashPayload>(o.chain.payloads[0]);
  std::size_t after = o.chain.extents[0].length;
  o.tail = ByteView(o.clear).subspan(after, o.chain.consumed - after);
  return o;
}

std::uint32_t random_message_id() {
  for (;;) {
    auto b = crypto::random_bytes(4);
    if (!b) continue;
    std::uint32_t v = static_cast<std::uint32_t>((*b)[0] << 24 | (*b)[1] << 16 | (*b)[2] << 8 | (*b)[3]);
    if (v != 0) return v;  // 0 is phase 1's
  }
}

Header pull_header(std::uint32_t mid) {
  Header h;
  h.exchange = kPull;
  h.message_id = mid;
  return h;
}

// Payloads after HASH, the HASH over them, and the protected datagram.
template <class HashFn>
crypto::Result<Bytes> seal(ike::Phase1Sa& sa, std::uint32_t mid, std::vector<Payload> rest, HashFn hash_of) {
  Bytes tail = encode_payloads(rest);
  auto hash = hash_of(ByteView(tail));
  if (!hash) return Error{hash.error()};
  rest.insert(rest.begin(), HashPayload{std::move(*hash)});
  return sa.protect(pull_header(mid), rest);
}

PullStep sending(Bytes d) {
  PullStep s;
  s.send = std::move(d);
  return s;
}

PullStep dropped(std::string why) {
  PullStep s;
  s.dropped = std::move(why);
  return s;
}

bool nonce_ok(std::size_t n) { return n >= 8 && n <= 128; }  // RFC 6407 5.8

}  // namespace

// ------------------------------------------------------------ group member

PullInitiator::PullInitiator(std::uint32_t group_id, std::uint16_t sid_request)
    : group_id_(group_id), sid_request_(sid_request) {}

crypto::Result<Bytes> PullInitiator::start(ike::Phase1Sa& sa) {
  mid_ = random_message_id();
  auto ni = crypto::random_bytes(32);
  if (!ni) return Error{ni.error()};
  ni_b_ = *ni;
  auto d = seal(sa, mid_, {NoncePayload{ni_b_}, IdentificationPayload::group(group_id_)}, [&](ByteView tail) {
    return cg::hash1(sa.transform.hash, sa.skeyid_a, mid_, tail, {});
  });
  if (!d) return d;
  state_ = 1;
  last_sent_ = *d;
  return d;
}

PullStep PullInitiator::fail(ike::Phase1Sa& sa, NotifyType n, std::string reason, bool tell) {
  state_ = 5;
  PullStep s;
  s.failure = ike::Failure{n, std::move(reason)};
  if (tell) {
    auto note = sa.notify(n, kDoiGdoi, {});
    if (note) s.send = std::move(*note);
  }
  sa.forget(mid_);
  return s;
}

PullStep PullInitiator::receive(ike::Phase1Sa& sa, const Header& h, ByteView datagram) {
  if (h.message_id != mid_ || h.exchange != kPull || (state_ != 1 && state_ != 3)) return {};
  int n = state_ + 1;
  std::string at = "GROUPKEY-PULL message " + std::to_string(n) + ": ";
  auto o = open(sa, h, datagram);
  if (!o) return dropped(at + o.error());
  const auto& ps = o->chain.payloads;
  if (state_ == 1) {
    const auto* nr = first<NoncePayload>(ps);
    if (!nr) return fail(sa, NotifyType::PayloadMalformed, at + "no NONCE payload");
    auto expect = cg::hash2(sa.transform.hash, sa.skeyid_a, mid_, ni_b_, o->tail, {});
    if (!expect || !crypto::equal_constant_time(o->hash->data, *expect))
      return dropped(at + "HASH(2) mismatch");
    sa.accepted(h, datagram);
    if (!nonce_ok(nr->data.size()))
      return fail(sa, NotifyType::PayloadMalformed, at + "Nr of " + std::to_string(nr->data.size()) + " octets (8 to 128, RFC 6407 5.8)");
    const auto* gsa = first<GroupSaPayload>(ps);
    if (!gsa) return fail(sa, NotifyType::PayloadMalformed, at + "no SA payload");
    auto received = decode_group_sa(*gsa);
    if (!received)
      return fail(sa, NotifyType::AttributesNotSupported,
                  at + "policy of group " + std::to_string(group_id_) + " refused: " + received.error());
    if (received->tek_spis.empty() && !received->kek_spi) return fail(sa, NotifyType::PayloadMalformed, at + "SA holds no TEK and no KEK");
    sa_ = std::move(*received);
    kek_ack_requested_ = gsa->kek && std::any_of(gsa->kek->attributes.begin(), gsa->kek->attributes.end(), [](const Attribute& a) {
                           return a.type == kek_attr::KekAckRequested;
                         });
    nr_b_ = nr->data;
    std::vector<Payload> rest;
    if (sid_request_ > 1) rest.push_back(GapPayload{{Attribute::tv(gap_attr::SenderIdRequest, sid_request_)}});
    auto d = seal(sa, mid_, rest, [&](ByteView tail) {
      return cg::hash3(sa.transform.hash, sa.skeyid_a, mid_, ni_b_, nr_b_, tail);
    });
    if (!d) return fail(sa, NotifyType::PayloadMalformed, at + d.error(), false);
    state_ = 3;
    last_sent_ = *d;
    return sending(std::move(*d));
  }
  // Message 4.
  auto expect = cg::hash4(sa.transform.hash, sa.skeyid_a, mid_, ni_b_, nr_b_, {}, o->tail);
  if (!expect || !crypto::equal_constant_time(o->hash->data, *expect))
    return dropped(at + "HASH(4) mismatch");
  sa.accepted(h, datagram);
  const auto* kd = first<KeyDownloadPayload>(ps);
  if (!kd) return fail(sa, NotifyType::PayloadMalformed, at + "no KD payload");
  auto keys = decode_key_download(*kd, *sa_);
  if (!keys) return fail(sa, NotifyType::InvalidKeyInformation, at + keys.error());
  Registration r;
  r.group_id = group_id_;
  r.policy = sa_->policy;
  r.keys = std::move(*keys);
  r.kek_ack_requested = kek_ack_requested_;
  r.pseudotime_ms = sa_->pseudotime_ms;
  if (const auto* seq = first<SequenceNumberPayload>(ps)) r.seq = seq->number;
  state_ = 5;
  sa.forget(mid_);
  PullStep s;
  s.registered = std::move(r);
  return s;
}

// -------------------------------------------------------------- key server

PullStep PullResponder::fail(ike::Phase1Sa& sa, NotifyType n, std::string reason) {
  state_ = 5;
  PullStep s;
  s.failure = ike::Failure{n, std::move(reason)};
  auto note = sa.notify(n, kDoiGdoi, {});
  if (note) s.send = std::move(*note);
  sa.forget(mid_);
  return s;
}

PullStep PullResponder::receive(ike::Phase1Sa& sa, const Header& h, ByteView datagram, GroupDirectory& groups) {
  // A retransmission of the member's last message: repeat our answer.
  if (!last_received_.empty() && std::equal(datagram.begin(), datagram.end(), last_received_.begin(), last_received_.end()))
    return sending(last_sent_);
  if (h.exchange != kPull || state_ == 5 || state_ == 4) return {};
  if (state_ == 0) mid_ = h.message_id;
  if (h.message_id != mid_) return {};
  int n = state_ + 1;
  std::string at = "GROUPKEY-PULL message " + std::to_string(n) + ": ";
  auto o = open(sa, h, datagram);
  if (!o) return dropped(at + o.error());
  const auto& ps = o->chain.payloads;
  if (state_ == 0) {
    auto expect = cg::hash1(sa.transform.hash, sa.skeyid_a, mid_, o->tail, {});
    if (!expect || !crypto::equal_constant_time(o->hash->data, *expect))
      return dropped(at + "HASH(1) mismatch");
    sa.accepted(h, datagram);
    const auto* ni = first<NoncePayload>(ps);
    const auto* id = first<IdentificationPayload>(ps);
    if (!ni || !id) return fail(sa, NotifyType::PayloadMalformed, at + "needs NONCE and ID payloads");
    if (!nonce_ok(ni->data.size()))
      return fail(sa, NotifyType::PayloadMalformed, at + "Ni of " + std::to_string(ni->data.size()) + " octets (8 to 128, RFC 6407 5.8)");
    auto offer = groups.offer(*id, sa);
    if (auto* f = std::get_if<ike::Failure>(&offer)) return fail(sa, f->notify, at + f->reason);
    offer_ = std::move(std::get<GroupDirectory::Offer>(offer));
    ni_b_ = ni->data;
    auto nr = crypto::random_bytes(32);
    if (!nr) return fail(sa, NotifyType::PayloadMalformed, at + nr.error());
    nr_b_ = *nr;
    auto d = seal(sa, mid_, {NoncePayload{nr_b_}, offer_->sa}, [&](ByteView tail) {
      return cg::hash2(sa.transform.hash, sa.skeyid_a, mid_, ni_b_, tail, {});
    });
    if (!d) return fail(sa, NotifyType::PayloadMalformed, at + d.error());
    state_ = 2;
    last_received_.assign(datagram.begin(), datagram.end());
    last_sent_ = *d;
    return sending(std::move(*d));
  }
  // Message 3: proof of liveness.
  auto expect = cg::hash3(sa.transform.hash, sa.skeyid_a, mid_, ni_b_, nr_b_, o->tail);
  if (!expect || !crypto::equal_constant_time(o->hash->data, *expect))
    return dropped(at + "HASH(3) mismatch");
  sa.accepted(h, datagram);
  std::uint16_t sid_request = 0;
  if (const auto* gap = first<GapPayload>(ps)) {
    for (const Attribute& a : gap->attributes) {
      if (a.type != gap_attr::SenderIdRequest)
        return fail(sa, NotifyType::AttributesNotSupported, at + "GAP attribute class " + std::to_string(a.type) + " in message 3");
      sid_request = static_cast<std::uint16_t>(std::min<std::uint32_t>(a.as_u32().value_or(0), 0xffff));
    }
  }
  auto admission = groups.admit(*offer_, sa, sid_request);
  if (auto* f = std::get_if<ike::Failure>(&admission)) return fail(sa, f->notify, at + f->reason);
  auto& adm = std::get<GroupDirectory::Admission>(admission);
  KeyMaterial keys = offer_->keys;
  keys.sids = adm.sids;
  std::vector<Payload> rest;
  if (adm.seq) rest.push_back(SequenceNumberPayload{*adm.seq});
  rest.push_back(encode_key_download(keys));
  auto d = seal(sa, mid_, rest, [&](ByteView tail) {
    return cg::hash4(sa.transform.hash, sa.skeyid_a, mid_, ni_b_, nr_b_, {}, tail);
  });
  if (!d) return fail(sa, NotifyType::PayloadMalformed, at + d.error());
  state_ = 4;
  last_received_.assign(datagram.begin(), datagram.end());
  last_sent_ = *d;
  sa.forget(mid_);
  PullStep s;
  s.send = std::move(*d);
  s.admitted = true;
  return s;
}

}  // namespace covey::gdoi
