#include "gm/rekey_state.h"

#include <algorithm>
#include <cstdio>

#include "common/bytes.h"
#include "crypto/hash.h"
#include "wire/message.h"

namespace covey::gm {

std::optional<Endpoint> multicast_group(const gdoi::GroupPolicy& p) {
  if (p.rekey.mode != gdoi::RekeyTransport::Mode::Multicast) return std::nullopt;
  Endpoint e;
  e.address.family = p.rekey.multicast_address.family;
  e.address.bytes = p.rekey.multicast_address.address;
  e.port = p.rekey.port;
  return e;
}

namespace {

constexpr std::size_t kFormerKeks = 8;  // enough to recognize late copies across a few KEK rekeys

std::string joined(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

std::optional<gdoi::KekSpi> cookies_of(ByteView datagram) {
  auto h = wire::decode_header(datagram);
  if (!h) return std::nullopt;
  gdoi::KekSpi spi;
  std::copy(h->initiator_cookie.begin(), h->initiator_cookie.end(), spi.begin());
  std::copy(h->responder_cookie.begin(), h->responder_cookie.end(), spi.begin() + 8);
  return spi;
}

bool all_zero(const gdoi::KekSpi& s) {
  return std::all_of(s.begin(), s.end(), [](std::uint8_t b) { return b == 0; });
}

}  // namespace

const char* name(TekState s) {
  switch (s) {
    case TekState::Pending: return "pending";
    case TekState::Active: return "active";
    case TekState::ReceiveOnly: return "receive-only";
    case TekState::Expired: return "expired";
  }
  return "expired";
}

std::string RekeyState::tek_name(std::uint32_t spi) const {
  return "TEK SPI " + spi_hex(spi) + " of group " + options_.group_name;
}

// ------------------------------------------------------------ TEK lifecycle

// When a replaced TEK stops being received on. RFC 6407 5.4.1 counts the
// DEACTIVATION_TIME_DELAY from the receipt of the new SAs (not from their
// activation), so that is the base. Two bounds around it:
// - never before the new TEK activates: until then the old one is the only
//   one this member sends on, and RFC 6407 5.4.1 itself calls a DTD above
//   the ATD "the most effective policy" so that traffic never stops;
// - never after its own lifetime: no key is used past it.
// A delay of 0 (or no GAP: the two read the same) keeps the replaced TEK
// for receiving until its own lifetime ends, as GET VPN members do: the key
// server shortens that lifetime in the push when it must (member removal),
// and dropping it at once would lose the packets of every member the rekey
// has not reached yet. A DELETE is different: it is the key server's
// explicit word that the SA is over, so there a delay of 0 means now.
std::int64_t RekeyState::deactivates_at(const HeldTek& t) const {
  std::int64_t d = t.expires_at;
  if (t.deleted_at) d = std::min(d, *t.deleted_at);
  const HeldTek* successor = nullptr;  // the first newer TEK to take over sending
  for (const HeldTek& u : teks_)
    if (u.generation > t.generation && !u.deleted_at && (!successor || u.activates_at < successor->activates_at))
      successor = &u;
  if (successor && successor->replaces_older_at)
    d = std::min(d, std::max(successor->activates_at, *successor->replaces_older_at));
  return d;
}

TekState RekeyState::state_of(const HeldTek& t, std::int64_t now) const {
  if (now >= deactivates_at(t)) return TekState::Expired;
  if (now < t.activates_at) return TekState::Pending;
  for (const HeldTek& u : teks_)
    if (u.generation > t.generation && !u.deleted_at && u.activates_at <= now) return TekState::ReceiveOnly;
  return TekState::Active;
}

std::vector<LogEvent> RekeyState::tick(std::int64_t now) {
  std::vector<LogEvent> log;
  for (HeldTek& t : teks_) {
    TekState s = state_of(t, now);
    if (s == t.logged) continue;
    std::string text = tek_name(t.tek.spi) + ": " + name(t.logged) + " -> " + name(s);
    if (s == TekState::ReceiveOnly) text += " until " + std::to_string(deactivates_at(t));
    if (s == TekState::Expired) text += ", removed";
    log.push_back({LogLevel::Info, std::move(text)});
    t.logged = s;
  }
  // Expired is final: nothing can bring a TEK back but a new registration
  // or push, which brings it as received then.
  std::erase_if(teks_, [&](const HeldTek& t) { return t.logged == TekState::Expired; });
  return log;
}

std::vector<TekView> RekeyState::teks(std::int64_t now) const {
  std::vector<const HeldTek*> order;
  for (const HeldTek& t : teks_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const HeldTek* a, const HeldTek* b) { return a->generation < b->generation; });
  std::vector<TekView> out;
  for (const HeldTek* t : order)
    out.push_back(TekView{&t->tek, state_of(*t, now), t->activates_at, deactivates_at(*t), t->expires_at - t->lifetime_from,
                          std::max<std::int64_t>(0, t->expires_at - now)});
  return out;
}

// Registration hands over every TEK the key server holds (during a
// rollover, the old and the new): they are all usable now, so none waits
// for an activation delay, and the one with the longest life is the newest.
// A push hands over new TEKs, which wait ATD before this member sends on them.
void RekeyState::take_teks(const std::vector<gdoi::Tek>& teks, std::int64_t now, bool registration) {
  if (registration)
    std::erase_if(teks_, [&](const HeldTek& h) {
      return std::none_of(teks.begin(), teks.end(), [&](const gdoi::Tek& t) { return t.spi == h.tek.spi; });
    });
  std::vector<const gdoi::Tek*> order;
  for (const gdoi::Tek& t : teks) order.push_back(&t);
  if (registration)
    std::stable_sort(order.begin(), order.end(), [](const gdoi::Tek* a, const gdoi::Tek* b) { return a->lifetime_s < b->lifetime_s; });
  for (const gdoi::Tek* t : order) {
    auto held = std::find_if(teks_.begin(), teks_.end(), [&](const HeldTek& h) { return h.tek.spi == t->spi; });
    if (held != teks_.end()) {
      // The same SA again (GET VPN sends the current TEK beside the new
      // one): its keys and remaining lifetime are the key server's latest
      // word; its place in the rollover is unchanged.
      held->tek = *t;
      held->lifetime_from = now;
      held->expires_at = now + t->lifetime_s;
      if (registration) held->deleted_at.reset();
      continue;
    }
    HeldTek h;
    h.tek = *t;
    h.generation = next_generation_++;
    h.received_at = now;
    h.activates_at = registration ? now : now + policy_.activation_delay_s;
    h.lifetime_from = now;
    h.expires_at = now + t->lifetime_s;
    if (!registration && policy_.deactivation_delay_s > 0) h.replaces_older_at = now + policy_.deactivation_delay_s;
    teks_.push_back(std::move(h));
  }
}

std::optional<std::int64_t> RekeyState::next_rekey_expected_by() const {
  if (!registered_at_) return std::nullopt;
  const HeldTek* newest = nullptr;
  for (const HeldTek& t : teks_)
    if (!t.deleted_at && (!newest || t.generation > newest->generation)) newest = &t;
  std::optional<std::int64_t> by;
  if (newest) {
    // The key server rekeys before a TEK ends; if nothing came by the last
    // tenth of the newest TEK's life, a push was lost or the member was
    // dropped: register again while the TEK still carries traffic. At most
    // a minute early, though: the key server pushes min(90 s, a quarter of
    // the lifetime) before the end (GET VPN's 90 s), and a member that
    // registered before that push would cost the key server a registration
    // per member and rekey.
    const std::int64_t life = newest->expires_at - newest->lifetime_from;
    const std::int64_t margin = std::clamp<std::int64_t>(life / 10, 1, 60);
    by = std::max(newest->lifetime_from + 1, newest->expires_at - margin);
  }
  if (kek_expires_at_) by = by ? std::min(*by, *kek_expires_at_) : *kek_expires_at_;
  return by.value_or(*registered_at_);  // nothing to wait for: register now
}

// ------------------------------------------------------------ registration

crypto::Result<void> RekeyState::registered(const gdoi::Registration& r, std::int64_t now) {
  std::optional<gdoi::PushReceiver> receiver;
  if (r.keys.kek) {
    auto rx = gdoi::PushReceiver::create(*r.keys.kek, r.policy.kek, r.seq.value_or(0), r.kek_ack_requested);
    if (!rx) return crypto::Error{"group " + options_.group_name + ": " + rx.error()};
    receiver = std::move(*rx);
  }
  if (receiver_ && (!receiver || receiver->kek().spi != receiver_->kek().spi)) {
    former_keks_.push_back(receiver_->kek().spi);
    if (former_keks_.size() > kFormerKeks) former_keks_.erase(former_keks_.begin());
  }
  receiver_ = std::move(receiver);
  kek_lifetime_s_ = r.keys.kek ? r.keys.kek->lifetime_s : 0;
  kek_expires_at_ = r.keys.kek ? std::optional<std::int64_t>(now + r.keys.kek->lifetime_s) : std::nullopt;
  policy_ = r.policy;
  sids_ = r.keys.sids;
  take_teks(r.keys.teks, now, true);
  for (HeldTek& t : teks_) t.logged = state_of(t, now);  // the registration's log line names them
  last_seq_ = r.seq;
  // A registration starts afresh: a sample from before it may be of
  // another key server's clock.
  if (r.pseudotime_ms) sample_pseudotime(*r.pseudotime_ms);
  else pseudotime_.reset();
  registered_at_ = now;
  counters_.rekeys_since_registration = 0;
  unknown_kek_at_.clear();
  return {};
}

// ------------------------------------------------------------ GROUPKEY-PUSH

std::uint64_t& RekeyCounters::refused(gdoi::PushRefused::Reason r) {
  using R = gdoi::PushRefused::Reason;
  switch (r) {
    case R::UnknownKek: return unknown_kek;
    case R::Undecryptable: return undecryptable;
    case R::Malformed: return malformed;
    case R::Replay: return replay;
    case R::BadSignature: return bad_signature;
    case R::RetiredSigningKey: return retired_signing_key;
  }
  return malformed;
}

void RekeyState::count(const gdoi::PushRefused& r) { ++counters_.refused(r.reason); }

// A push under cookies this member holds no KEK for. Nothing in it can be
// read or checked without that KEK, so the cookies are all there is to go
// on, and KEK SPIs are random, so they cannot be ordered:
// - cookies of a KEK this member replaced: a late copy of an old push
//   (the key server retransmitting to a member that was slow to ack, or a
//   replay); the member is ahead, nothing to do.
// - cookies it never held: a KEK generation newer than its own (it missed
//   the push that announced it, and every later push is under it), or a
//   forgery. One datagram proves nothing, but the key server sends each
//   unicast push several times within its retransmit window, so more than
//   `unknown_kek_limit` in that window is taken as a missed KEK rekey and
//   the member registers again, which fetches the current KEK. Because
//   anyone can send such datagrams, that re-registration is rate limited.
// A multicast group has no retransmissions, and may carry the rekeys of
// other groups under their own KEKs, so there unknown cookies are only
// counted; a KEK rekey missed there is caught by next_rekey_expected_by.
std::optional<std::string> RekeyState::unknown_kek(ByteView datagram, PushVia via, std::int64_t now, std::string& detail) {
  auto spi = cookies_of(datagram);
  if (!spi) return std::nullopt;
  if (std::find(former_keks_.begin(), former_keks_.end(), *spi) != former_keks_.end()) {
    detail += " (a KEK this member has replaced: a late copy)";
    return std::nullopt;
  }
  if (via == PushVia::Multicast) return std::nullopt;
  while (!unknown_kek_at_.empty() && now - unknown_kek_at_.front() >= options_.unknown_kek_window_s) unknown_kek_at_.pop_front();
  unknown_kek_at_.push_back(now);
  const std::string seen = std::to_string(unknown_kek_at_.size()) + " within " + std::to_string(options_.unknown_kek_window_s) + " s";
  if (unknown_kek_at_.size() <= options_.unknown_kek_limit) {
    detail += " (" + seen + ")";
    return std::nullopt;
  }
  if (unknown_kek_reregistered_at_ && now - *unknown_kek_reregistered_at_ < options_.unknown_kek_reregister_interval_s) {
    detail += " (" + seen + "; registering again is held back until " +
              std::to_string(*unknown_kek_reregistered_at_ + options_.unknown_kek_reregister_interval_s) + ")";
    return std::nullopt;
  }
  unknown_kek_reregistered_at_ = now;
  unknown_kek_at_.clear();
  return "pushes under a KEK this member does not hold (" + seen + "): it missed a KEK rekey";
}

void RekeyState::apply(const gdoi::PushAccepted& a, const std::string& ks, std::int64_t now, PushOutcome& out) {
  std::vector<std::string> said;
  // Policy: what a push's SA omits stays as it was (a KEK-only rekey has
  // no SA TEK, and so no ACL; a push without GAP no delays).
  if (a.sa) {
    const gdoi::GroupPolicy& p = a.sa->policy;
    if (a.sa->kek_spi) {
      policy_.kek = p.kek;
      out.transport_changed = policy_.rekey.mode != p.rekey.mode ||
                              policy_.rekey.multicast_address != p.rekey.multicast_address || policy_.rekey.port != p.rekey.port;
      policy_.rekey.mode = p.rekey.mode;
      policy_.rekey.multicast_address = p.rekey.multicast_address;
      policy_.rekey.port = p.rekey.port;
    }
    if (!a.sa->tek_spis.empty()) {
      if (policy_.acl != p.acl || policy_.tek != p.tek) said.push_back("new policy (" + std::to_string(p.acl.size()) + " ACL entries, " + p.tek.str() + ")");
      policy_.acl = p.acl;
      policy_.tek = p.tek;
      policy_.tek_lifetime_s = p.tek_lifetime_s;
      policy_.tbar_window_ms = p.tbar_window_ms;
    }
    if (a.gap) {
      policy_.activation_delay_s = p.activation_delay_s;
      policy_.deactivation_delay_s = p.deactivation_delay_s;
      policy_.fail_close_acl = p.fail_close_acl;
    }
    if (a.sa->pseudotime_ms) sample_pseudotime(*a.sa->pseudotime_ms);
  }

  // RFC 6407 5.9: DELETEs name SAs held before this push; SPI 0 all TEKs.
  std::vector<std::string> deleted;
  const bool all = std::find(a.deletes.tek_spis.begin(), a.deletes.tek_spis.end(), 0u) != a.deletes.tek_spis.end();
  for (HeldTek& t : teks_) {
    if (!all && std::find(a.deletes.tek_spis.begin(), a.deletes.tek_spis.end(), t.tek.spi) == a.deletes.tek_spis.end()) continue;
    t.deleted_at = now + policy_.deactivation_delay_s;
    deleted.push_back(spi_hex(t.tek.spi));
  }
  if (!a.deletes.tek_spis.empty()) said.push_back("DELETE TEK SPI " + (deleted.empty() ? std::string("none held") : joined(deleted, ", ")));

  std::vector<std::string> fresh;
  for (const gdoi::Tek& t : a.keys.teks)
    if (std::none_of(teks_.begin(), teks_.end(), [&](const HeldTek& h) { return h.tek.spi == t.spi; })) fresh.push_back(spi_hex(t.spi));
  take_teks(a.keys.teks, now, false);
  if (!fresh.empty()) said.insert(said.begin(), "TEK SPI " + joined(fresh, ", "));
  else if (!a.keys.teks.empty()) said.push_back("TEK lifetimes refreshed");

  // The KEK that decrypted this push is a.ack_key.spi; the receiver holds
  // the new one already when the push replaced it.
  if (a.keys.kek) {
    kek_lifetime_s_ = a.keys.kek->lifetime_s;
    kek_expires_at_ = now + a.keys.kek->lifetime_s;
    if (a.kek_replaced) {
      former_keks_.push_back(a.ack_key.spi);
      if (former_keks_.size() > kFormerKeks) former_keks_.erase(former_keks_.begin());
      said.push_back("new KEK SPI " + to_hex(a.keys.kek->spi));
    }
    if (a.signing_key_replaced)
      said.push_back("new rekey signing key SHA-256 " + gdoi::signing_key_id(a.keys.kek->signature_public_key) +
                     " (pushes signed with the old one are refused from now on)");
  }
  for (const gdoi::KekSpi& spi : a.deletes.kek_spis) {
    said.push_back("DELETE KEK SPI " + to_hex(spi));
    // Deleting the KEK it was decrypted with, with no new one: this member
    // can follow no further rekey of the group; registering again tells it
    // where the group stands (a fresh start, or that it is gone).
    if (!a.kek_replaced && receiver_ && (all_zero(spi) || spi == receiver_->kek().spi)) {
      former_keks_.push_back(receiver_->kek().spi);
      receiver_.reset();
      kek_expires_at_.reset();
      out.reregister = "the key server deleted the KEK of group " + options_.group_name + " (rekey SEQ " + std::to_string(a.seq) + ")";
    }
  }
  if (said.empty()) said.push_back("policy only");
  out.log.push_back({LogLevel::Info,
                     "Received rekey SEQ " + std::to_string(a.seq) + " for group " + options_.group_name + " from KS " +
                         ks + ": " + joined(said, ", "),
                     {{"COVEY_PEER", ks}, {"COVEY_GROUP", options_.group_name}, {"COVEY_SEQ", std::to_string(a.seq)},
                      {"COVEY_EVENT", "rekey"}}});
  if (!a.interop_note.empty())
    out.log.push_back({LogLevel::Info, "Rekey SEQ " + std::to_string(a.seq) + " for group " + options_.group_name + " from KS " +
                                           ks + ": " + a.interop_note});

  last_seq_ = a.seq;
  ++counters_.rekeys_received;
  ++counters_.rekeys_since_registration;
  unknown_kek_at_.clear();
}

PushOutcome RekeyState::receive_push(ByteView datagram, const Endpoint& from, PushVia via, std::int64_t now) {
  PushOutcome out;
  const std::string ks = from.address.str();
  auto digest = crypto::digest(crypto::HashAlgorithm::Sha256, {datagram});

  // The key server retransmits a push until it is acknowledged. A copy of
  // the last one accepted (the same octets, so the same SEQ) is answered
  // with the same ack and not applied again. It must be recognized before
  // the receiver sees it: the receiver would call it a replay, or, after a
  // push that replaced the KEK, a push under a KEK it no longer holds.
  if (digest && !last_digest_.empty() && *digest == last_digest_) {
    out.kind = PushOutcome::Kind::Retransmission;
    ++counters_.retransmissions;
    const bool may = via == PushVia::Unicast && last_ack_ && (!reacked_once_ || now - last_reack_at_ >= options_.reack_interval_s);
    if (may) {
      out.ack = *last_ack_;
      last_reack_at_ = now;
      reacked_once_ = true;
    }
    out.log.push_back({LogLevel::Info, "Received rekey SEQ " + std::to_string(last_accepted_seq_) + " for group " +
                                           options_.group_name + " from KS " + ks + " again: already applied" +
                                           (may ? ", acknowledged again" : "")});
    return out;
  }

  auto refuse = [&](const gdoi::PushRefused& f, std::string detail) {
    out.kind = PushOutcome::Kind::Refused;
    out.refused = f.counter();
    count(f);
    out.log.push_back({LogLevel::Warning,
                       "Refused GROUPKEY-PUSH from " + ks + " for group " + options_.group_name + ": " + detail,
                       {{"COVEY_PEER", ks}, {"COVEY_GROUP", options_.group_name}, {"COVEY_EVENT", "push-refused"}}});
    if (out.reregister) out.log.push_back({LogLevel::Warning, "Group " + options_.group_name + ": registering again: " + *out.reregister});
    return out;
  };
  if (!receiver_)
    return refuse({gdoi::PushRefused::Reason::UnknownKek, ""}, "no KEK held (" +
                                                                   std::string(registered_at_ ? "the key server deleted it" : "not registered") + ")");

  gdoi::PushResult r = receiver_->receive(datagram);
  if (const auto* f = std::get_if<gdoi::PushRefused>(&r)) {
    std::string detail = f->detail;
    if (f->reason == gdoi::PushRefused::Reason::UnknownKek) out.reregister = unknown_kek(datagram, via, now, detail);
    return refuse(*f, detail);
  }

  const auto& a = std::get<gdoi::PushAccepted>(r);
  out.kind = PushOutcome::Kind::Applied;
  apply(a, ks, now, out);
  // RFC 8263: unicast pushes only; a multicast push is never acknowledged
  // (thousands of acks at once would be the storm RFC 8263 2 warns of).
  last_ack_.reset();
  if (a.ack_requested && via == PushVia::Unicast) {
    auto ack = gdoi::build_ack(a.ack_key, a.seq, options_.member);
    if (ack) {
      out.ack = *ack;
      last_ack_ = std::move(*ack);
    } else {
      out.log.push_back({LogLevel::Error, "Group " + options_.group_name + ": cannot acknowledge rekey SEQ " + std::to_string(a.seq) + ": " + ack.error()});
    }
  }
  if (digest) last_digest_ = std::move(*digest);
  last_accepted_seq_ = a.seq;
  reacked_once_ = false;
  for (LogEvent& e : tick(now)) out.log.push_back(std::move(e));
  return out;
}

}  // namespace covey::gm
