#include "ks/rekey.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>

#include "common/bytes.h"
#include "gdoi/policy_codec.h"
#include "wire/message.h"

namespace covey::ks {

using crypto::Error;

namespace {

// GET VPN drops a member after three rekeys in a row it did not acknowledge.
constexpr std::uint32_t kMissesBeforeDrop = 3;
// Pushes an acknowledgement may name: far more than can be outstanding,
// since a new rekey ends the previous one's delivery.
constexpr std::size_t kRecentPushes = 16;
// A scheduled rekey that could not be made (state file not writable) is
// tried again this much later, not every second.
constexpr std::int64_t kRetryAfterFailure_s = 10;

// When the k-th of n members a push goes to is due its first
// retransmission: the members are spread evenly over the second half of
// the period (whole seconds, as the rekeyer ticks), so that the members
// that did not acknowledge a rekey of 100,000 are retransmitted to a slice
// a second, not all in one burst the socket buffers would drop. Each
// later retransmission follows its own previous copy by the full period,
// so the spread stays and the delivery span (ks/schedule.h) does not grow.
// Without retransmissions this is when the miss is counted: a member has
// the whole period to acknowledge its last copy, so no spread then.
std::int64_t first_retransmit_at(std::int64_t sent_at, std::uint32_t period_s, std::uint32_t retransmit_count,
                                 std::size_t k, std::size_t n) {
  const std::uint64_t slots = retransmit_count ? period_s / 2 + 1 : 1;  // offsets 0 .. period/2
  const auto offset = static_cast<std::int64_t>(n ? k * slots / n : 0);
  return sent_at + period_s - offset;
}

std::string label(const Group& g) { return g.policy().name + " (" + std::to_string(g.policy().identity) + ")"; }

bool specified(const Address& a) {
  return std::any_of(a.bytes.begin(), a.bytes.begin() + static_cast<std::ptrdiff_t>(a.size()),
                     [](std::uint8_t b) { return b != 0; });
}

Address multicast_group(const gdoi::RekeyTransport& t) {
  Address a;
  a.family = t.multicast_address.family;
  a.bytes = t.multicast_address.address;
  return a;
}

gdoi::KekSpi cookies(const wire::Header& h) {
  gdoi::KekSpi spi;
  std::copy(h.initiator_cookie.begin(), h.initiator_cookie.end(), spi.begin());
  std::copy(h.responder_cookie.begin(), h.responder_cookie.end(), spi.begin() + 8);
  return spi;
}

void request_ack(wire::SaKekPayload& kek) {
  for (const auto& a : kek.attributes)
    if (a.type == wire::kek_attr::KekAckRequested) return;
  kek.attributes.push_back(wire::Attribute::tv(wire::kek_attr::KekAckRequested, wire::kek_value::RekeyAckKekSha256));
}

}  // namespace

const char* reason_name(RekeyReason r) {
  switch (r) {
    case RekeyReason::TekLifetime: return "tek-lifetime";
    case RekeyReason::KekLifetime: return "kek-lifetime";
    case RekeyReason::PolicyChange: return "policy-change";
    case RekeyReason::Operator: return "operator";
    case RekeyReason::MemberRemoved: return "member-removed";
    case RekeyReason::SigningKey: return "signing-key";
  }
  return "operator";
}

bool member_visible_change(const gdoi::GroupPolicy& a, const gdoi::GroupPolicy& b) {
  // Not here: name and identity (a reload refuses changes to them), and
  // the retransmission settings and multicast TTL, which only the key
  // server uses.
  return a.acl != b.acl || !(a.tek == b.tek) || a.tek_lifetime_s != b.tek_lifetime_s || !(a.kek == b.kek) ||
         a.rekey.mode != b.rekey.mode || a.rekey.multicast_address != b.rekey.multicast_address ||
         a.rekey.port != b.rekey.port || a.tbar_window_ms != b.tbar_window_ms || a.fail_close_acl != b.fail_close_acl ||
         a.activation_delay_s != b.activation_delay_s || a.deactivation_delay_s != b.deactivation_delay_s;
}

// ------------------------------------------------------------- schedule

const Rekeyer::GroupState* Rekeyer::find_state(std::uint32_t identity) const {
  auto it = states_.find(identity);
  return it == states_.end() ? nullptr : &it->second;
}

RekeyMargins Rekeyer::margins(const Group& g) const {
  const GroupState* st = find_state(g.policy().identity);
  return st ? st->margins : RekeyMargins{};
}

std::int64_t Rekeyer::tek_rekey_at(const Group& g) const {
  // The newest TEK is the one whose successor is due; none at all (the key
  // server was down past every lifetime) is due at once.
  if (g.teks().empty()) return std::numeric_limits<std::int64_t>::min();
  std::int64_t newest = g.teks().front().expires_at;
  for (const auto& t : g.teks()) newest = std::max(newest, t.expires_at);
  return newest - tek_margin(margins(g), g.policy());
}

std::int64_t Rekeyer::kek_rekey_at(const Group& g) const {
  return g.kek_expires_at() - kek_margin(margins(g), g.policy());
}

std::int64_t Rekeyer::next_rekey_at(const Group& g) const { return std::min(tek_rekey_at(g), kek_rekey_at(g)); }

void Rekeyer::tick(std::int64_t now_ms) {
  const std::int64_t now = seconds_of(now_ms);
  for (const auto& [id, owned] : groups_.all()) {
    Group& g = *owned;
    GroupState& st = state(id);
    if (g.prune_teks(now) > 0) groups_.mark_state_dirty();
    retransmit(g, st, now);
    if (now < st.retry_at) continue;
    const bool kek_due = now >= kek_rekey_at(g);
    const bool tek_due = now >= tek_rekey_at(g);
    if (!kek_due && !tek_due) continue;
    // A KEK rekey carries a new TEK too: every push has the same form
    // (SA KEK, GAP, SA TEK), which members handle in one way.
    Plan plan;
    plan.reason = kek_due ? RekeyReason::KekLifetime : RekeyReason::TekLifetime;
    plan.new_kek = kek_due;
    if (!run(g, std::move(plan), now_ms)) st.retry_at = now + kRetryAfterFailure_s;
  }
}

// ---------------------------------------------------------------- rekeys

crypto::Result<std::uint32_t> Rekeyer::rekey(Group& g, RekeyReason reason, std::int64_t now_ms) {
  Plan plan;
  plan.reason = reason;
  plan.new_kek = reason == RekeyReason::KekLifetime;
  // GET VPN shortens the replaced TEKs on a triggered rekey only; on a
  // lifetime rekey they are about to end anyway.
  plan.shorten_old = reason == RekeyReason::Operator;
  return run(g, std::move(plan), now_ms);
}

crypto::Result<std::optional<std::uint32_t>> Rekeyer::change_policy(Group& g, gdoi::GroupPolicy policy,
                                                                    std::int64_t now_ms,
                                                                    std::optional<crypto::PrivateKey> signing_key) {
  if (!signing_key && !member_visible_change(g.policy(), policy)) {
    g.set_policy(std::move(policy));
    return std::optional<std::uint32_t>{};
  }
  Plan plan;
  plan.reason = signing_key ? RekeyReason::SigningKey : RekeyReason::PolicyChange;
  // A KEK of another cipher has another size; a new lifetime is a new KEK's.
  // A rollover renews the KEK too (see rekey.h).
  plan.new_kek = signing_key || !(g.policy().kek == policy.kek);
  // The old TEKs are cut short when members must leave them for the new
  // policy; a new signature key alone (or of another algorithm or length)
  // changes nothing about them.
  gdoi::GroupPolicy same_signature = policy;
  same_signature.kek.signature = g.policy().kek.signature;
  same_signature.kek.signature_hash = g.policy().kek.signature_hash;
  same_signature.kek.signature_key_bits = g.policy().kek.signature_key_bits;
  plan.shorten_old = member_visible_change(g.policy(), same_signature);
  plan.policy = std::move(policy);
  plan.signing_key = std::move(signing_key);
  auto seq = run(g, std::move(plan), now_ms);
  if (!seq) return Error{seq.error()};
  return std::optional<std::uint32_t>{*seq};
}

crypto::Result<std::uint32_t> Rekeyer::remove_member(const Address& member, const std::optional<std::string>& group,
                                                     std::int64_t now_ms) {
  Group* g = nullptr;
  if (group) {
    g = groups_.find(*group);
    if (!g) {
      char* end = nullptr;
      unsigned long id = std::strtoul(group->c_str(), &end, 10);
      if (!group->empty() && *end == '\0' && id <= 0xffffffffUL) g = groups_.find(static_cast<std::uint32_t>(id));
    }
    if (!g) return Error{"no group named " + *group};
    if (!g->member(member)) return Error{"GM " + member.str() + " is not a member of group " + label(*g)};
  } else {
    std::vector<Group*> have;
    for (const auto& [id, owned] : groups_.all())
      if (owned->member(member)) have.push_back(owned.get());
    if (have.empty()) return Error{"GM " + member.str() + " is not a member of any group"};
    if (have.size() > 1) {
      std::string names;
      for (const Group* h : have) names += (names.empty() ? "" : ", ") + h->policy().name;
      return Error{"GM " + member.str() + " is a member of groups " + names + "; name one (--group NAME)"};
    }
    g = have.front();
  }
  GroupState& st = state(g->policy().identity);
  Member removed = *g->member(member);
  g->remove_member(member);
  auto delivery = st.deliveries.find(member);
  std::optional<Delivery> kept;
  if (delivery != st.deliveries.end()) {
    kept = std::move(delivery->second);
    st.deliveries.erase(delivery);
  }
  // The member must not follow: a new KEK it does not hold encrypts every
  // later push, and new TEKs reach only the others. It still holds the
  // current TEKs; they are shortened as GET VPN shortens them.
  Plan plan;
  plan.reason = RekeyReason::MemberRemoved;
  plan.new_kek = true;
  plan.shorten_old = true;
  plan.force_unicast = true;
  auto seq = run(*g, std::move(plan), now_ms);
  if (!seq) {
    // Nothing was sent: the member is as it was, so the operator can retry.
    g->put_member(std::move(removed));
    if (kept) st.deliveries.emplace(member, std::move(*kept));
    return Error{seq.error()};
  }
  groups_.mark_state_dirty();
  log(Severity::Info,
      "GM " + member.str() + " removed from group " + label(*g) + " by the operator; rekey SEQ " + std::to_string(*seq) +
          " excludes it",
      {{"COVEY_PEER", member.str()}, {"COVEY_GROUP", g->policy().name}, {"COVEY_SEQ", std::to_string(*seq)},
       {"COVEY_EVENT", "removal"}});
  return *seq;
}

crypto::Result<std::uint32_t> Rekeyer::run(Group& g, Plan plan, std::int64_t now_ms) {
  const std::int64_t now = seconds_of(now_ms);
  GroupState& st = state(g.policy().identity);
  const std::string name = label(g);
  Group::Keys before = g.keys();
  // The push is encrypted under the KEK members hold now, with that KEK's
  // policy, and travels the way they listen now (a policy change that
  // moves the transport takes effect with the next push).
  const gdoi::Kek current_kek = g.kek();
  const gdoi::KekPolicy current_kek_policy = g.policy().kek;
  const gdoi::RekeyTransport transport = g.policy().rekey;
  const bool unicast = plan.force_unicast || transport.mode == gdoi::RekeyTransport::Mode::Unicast;
  auto undo = [&](const std::string& why) -> crypto::Result<std::uint32_t> {
    g.restore_keys(std::move(before));
    log(Severity::Error, "Rekey of group " + name + " (" + reason_name(plan.reason) + ") not sent: " + why);
    return Error{"group " + g.policy().name + ": rekey not sent: " + why};
  };
  if (g.seq() == std::numeric_limits<std::uint32_t>::max())
    return undo("SEQ would wrap past 4294967295; remove the state file and let every member register again");

  if (plan.policy) g.set_policy(*plan.policy);
  const gdoi::GroupPolicy& p = g.policy();
  // A KEK rekey due before this push has reached every member would
  // replace it while some still wait for a retransmission (and would bring
  // them a TEK too late to activate in time): the KEK is renewed in this
  // push instead, at most a delivery span early.
  const bool new_kek = plan.new_kek || now + delivery_span(p, unicast) >= kek_rekey_at(g);
  auto tek = g.new_tek(now);
  if (!tek) return undo(tek.error());
  tek->lifetime_s = p.tek_lifetime_s;
  std::optional<gdoi::Kek> kek;
  if (new_kek) {
    auto k = g.new_kek();
    if (!k) return undo(k.error());
    kek = std::move(*k);
  }
  // A rollover: the new KEK's SIG_ALGORITHM_KEY is the new public key; the
  // push itself is signed below with the key members hold.
  if (plan.signing_key) {
    auto pub = plan.signing_key->public_key();
    auto der = pub ? pub->to_der() : crypto::Result<Bytes>(Error{pub.error()});
    if (!der) return undo("new rekey signing key: " + der.error());
    if (!kek) return undo("a signing-key rollover without a new KEK");  // not reached: plan.new_kek
    kek->signature_public_key = std::move(*der);
  }

  // How long members keep the TEKs this rekey replaces. RFC 6407 5.4.1's
  // DEACTIVATION_TIME_DELAY says it: "how long after receiving new SAs
  // [a member] SHOULD deactivate SAs that are destroyed by the rekey
  // event", so a triggered rekey sends the shortened lifetime there and
  // the key server shortens its own copies to match (registrations from
  // now on get the short lifetime). The alternatives RFC 6407 does not
  // support as well: sending the old TEK again in SA/KD with a shorter
  // lifetime (an SA TEK announces a NEW Data-Security SA, RFC 6407 4 and
  // 4.3), or a DELETE (RFC 5.9), which takes effect on receipt, so it
  // would cut off traffic still on the old TEK unless sent in a second
  // push after the delay, one more delivery round that a member which
  // got this push does not need.
  std::uint32_t deactivation = p.deactivation_delay_s;
  if (plan.shorten_old) {
    std::vector<std::pair<std::uint32_t, std::uint32_t>> shortened;  // SPI, seconds left
    for (const auto& t : g.teks())
      if (t.expires_at > now) shortened.emplace_back(t.tek.spi, shortened_lifetime(t.expires_at - now, p));
    if (!shortened.empty()) {
      deactivation = 0;
      for (const auto& [spi, left] : shortened) {
        g.set_tek_expiry(spi, now + left);
        deactivation = std::max(deactivation, left);
      }
    }
  }

  const std::uint32_t seq = g.seq() + 1;
  const std::int64_t kek_expires_at = kek ? now + p.kek.lifetime_s : g.kek_expires_at();
  gdoi::Kek announced = kek ? *kek : current_kek;
  announced.lifetime_s = static_cast<std::uint32_t>(std::max<std::int64_t>(kek_expires_at - now, 0));
  gdoi::GroupPolicy sa_policy = p;
  sa_policy.deactivation_delay_s = deactivation;
  // Who gets which encoding (docs/ARCHITECTURE.md, "covey's Vendor ID"):
  // as at registration, covey's extensions, and with them the group's
  // pseudotime, only to members that sent covey's Vendor ID. Unicast: one
  // datagram per kind of member. Multicast: one for all, with what every
  // member understands.
  std::set<gdoi::PeerTraits> kinds;
  if (unicast) {
    for (const auto& [addr, m] : g.members()) kinds.insert(m.traits);
  } else {
    gdoi::PeerTraits all{true};
    for (const auto& [addr, m] : g.members()) all = all.common(m.traits);
    kinds.insert(all);
  }
  std::map<gdoi::PeerTraits, std::shared_ptr<const Bytes>> datagrams;
  const std::uint32_t pseudotime = g.pseudotime_ms(now_ms);
  for (const gdoi::PeerTraits& kind : kinds) {
    gdoi::PushContent content;
    content.seq = seq;
    // Every push carries the SA KEK (with the KEK in KD, new or current):
    // members learn the KEK's remaining lifetime and whether to acknowledge
    // from each push, and a policy change of the KEK or transport reaches
    // them at once.
    content.sa = gdoi::encode_group_sa(sa_policy, gdoi::KekAnnouncement{announced.spi, g.ks_address(), announced.lifetime_s},
                                       {*tek}, true, kind, pseudotime);
    // Unicast is acknowledged (RFC 8263), also the unicast push of a member
    // removal in a multicast group.
    if (unicast) request_ack(*content.sa->kek);
    content.keys.teks = {*tek};
    content.keys.kek = announced;
    auto datagram = gdoi::build_push(content, current_kek, current_kek_policy, g.signing_key());
    if (!datagram) return undo(datagram.error());
    datagrams.emplace(kind, std::make_shared<const Bytes>(std::move(*datagram)));
  }
  auto ack_key = gdoi::derive_ack_key(current_kek, current_kek_policy.cipher);
  if (!ack_key) return undo(ack_key.error());

  const bool transform_changed = !(before.policy.tek == p.tek);
  g.install_tek(Group::LiveTek{*tek, now, now + p.tek_lifetime_s});
  if (kek) g.install_kek(std::move(*kek), kek_expires_at);
  g.set_seq(seq);
  if (transform_changed) g.keep_only_tek(tek->spi);
  // Durable before anyone sees it: after a crash the next SEQ must be
  // higher and neither SPI may be handed out again. In a cluster the push
  // is stored with the keys, so that a new primary can finish its delivery.
  std::optional<Group::LastPush> previous_push = g.last_push();
  g.set_last_push(Group::LastPush{seq, now, static_cast<std::uint8_t>(plan.reason), unicast,
                                  std::max<std::uint32_t>(p.rekey.retransmit_period_s, 1), p.rekey.retransmit_count,
                                  *ack_key, datagrams});
  if (auto saved = groups_.write_now(); !saved) {
    g.set_last_push(std::move(previous_push));
    return undo(saved.error());
  }
  const std::string old_signing_key = gdoi::signing_key_id(current_kek.signature_public_key);
  if (plan.signing_key) g.set_signing_key(std::move(*plan.signing_key));

  auto push = std::make_shared<SentPush>();
  push->record = RekeyRecord{g.policy().identity, seq, now, plan.reason, unicast, 0, 0};
  push->datagrams = std::move(datagrams);
  push->ack_key = std::move(*ack_key);
  push->retransmit_period_s = std::max<std::uint32_t>(p.rekey.retransmit_period_s, 1);
  push->retransmit_count = p.rekey.retransmit_count;
  st.recent.push_back(push);
  while (st.recent.size() > kRecentPushes) st.recent.pop_front();
  ++st.rekeys_sent;
  st.retry_at = 0;
  deliver(g, st, push, transport, unicast, now);

  if (logs(Severity::Info)) {
    std::string how = unicast ? "unicast" : "multicast";
    std::string detail = std::string(reason_name(plan.reason)) + ", TEK SPI " + spi_hex(tek->spi);
    if (new_kek) detail += ", new KEK " + to_hex(g.kek().spi);
    if (plan.reason == RekeyReason::SigningKey)
      detail += ", new signing key SHA-256 " + gdoi::signing_key_id(g.kek().signature_public_key) + " (" +
                g.policy().kek.signature_str() + ") announced in a push signed with the old one, SHA-256 " +
                old_signing_key + "; later pushes are signed with the new one";
    if (push->datagrams.size() > 1)
      detail += ", " + std::to_string(push->datagrams.size()) + " encodings by the members' Vendor IDs";
    if (!unicast)
      detail += ", to " + Endpoint{multicast_group(transport), transport.port}.str() + " TTL " + std::to_string(transport.ttl);
    log(Severity::Info,
        "Sending rekey SEQ " + std::to_string(seq) + " for group " + name + " to " +
            std::to_string(push->record.members) + " members (" + how + "): " + detail,
        {{"COVEY_GROUP", g.policy().name}, {"COVEY_SEQ", std::to_string(seq)}, {"COVEY_SPI", spi_hex(tek->spi)},
         {"COVEY_EVENT", "rekey"}});
  }
  return seq;
}

// -------------------------------------------------------------- delivery

void Rekeyer::deliver(Group& g, GroupState& st, const std::shared_ptr<SentPush>& push,
                      const gdoi::RekeyTransport& transport, bool unicast, std::int64_t now) {
  const std::optional<Address> ks = specified(g.ks_address()) ? std::optional<Address>(g.ks_address()) : std::nullopt;
  if (!unicast) {
    // A source of the group's family (a reload may have changed the
    // group's family under it): else the kernel's choice.
    const Address to = multicast_group(transport);
    outgoing_.push_back(PushDatagram{Endpoint{to, transport.port},
                                     ks && ks->family == to.family ? ks : std::nullopt,
                                     push->datagrams.begin()->second, transport.ttl});
    push->record.members = g.members().size();
    warn_multicast_loss(g, st, push->datagrams.begin()->first);
    return;
  }
  std::vector<Address> members;
  members.reserve(g.members().size());
  for (const auto& [addr, m] : g.members()) members.push_back(addr);
  std::size_t sent = 0, k = 0;
  for (const Address& addr : members) {
    const std::size_t index = k++;
    auto older = st.deliveries.find(addr);
    if (older != st.deliveries.end() && older->second.outstanding) {
      // Replaced before it was acknowledged: the older push is a miss.
      older->second.outstanding = false;
      if (miss(g, st, addr, older->second.push->record.seq)) continue;
    }
    const Member* m = g.member(addr);
    Delivery d;
    d.push = push;
    d.datagram = push->datagrams.at(m->traits);
    d.sent = 1;
    d.next_at = first_retransmit_at(now, push->retransmit_period_s, push->retransmit_count, index, members.size());
    d.outstanding = true;
    d.to = m->endpoint();
    d.from = m->registered_to && !own_address_ ? m->registered_to : ks;
    outgoing_.push_back(PushDatagram{d.to, d.from, d.datagram, std::nullopt});
    st.deliveries.insert_or_assign(addr, std::move(d));
    ++sent;
  }
  push->record.members = sent;
}

void Rekeyer::stand_down() {
  for (auto& [id, st] : states_) st.deliveries.clear();
}

void Rekeyer::take_over(Group& g, std::int64_t now_ms) {
  const std::int64_t now = seconds_of(now_ms);
  const std::optional<Group::LastPush>& last = g.last_push();
  if (!last || !last->unicast) return;  // a multicast push is not acknowledged: nothing to finish
  GroupState& st = state(g.policy().identity);
  // This key server's own push when it was primary before (its lease
  // lapsed and came back): the same record, delivered again.
  std::shared_ptr<SentPush> push;
  if (!st.recent.empty() && st.recent.back()->record.seq == last->seq) {
    push = st.recent.back();
  } else {
    push = std::make_shared<SentPush>();
    push->record =
        RekeyRecord{g.policy().identity, last->seq, last->at, static_cast<RekeyReason>(last->reason), true, 0, 0};
    push->datagrams = last->datagrams;
    push->ack_key = last->ack_key;
    push->retransmit_period_s = last->retransmit_period_s;
    push->retransmit_count = last->retransmit_count;
    st.recent.push_back(push);
    while (st.recent.size() > kRecentPushes) st.recent.pop_front();
  }
  const std::optional<Address> ks = specified(g.ks_address()) ? std::optional<Address>(g.ks_address()) : std::nullopt;
  std::size_t sent = 0, k = 0;
  for (const auto& [addr, m] : g.members()) {
    const std::size_t index = k++;
    // Acknowledged it, or registered since (and so got its keys or newer).
    if ((m.last_acked_seq && *m.last_acked_seq >= last->seq) || m.registered_at > last->at) continue;
    auto datagram = push->datagrams.find(m.traits);
    if (datagram == push->datagrams.end()) continue;  // a kind of member that registered since
    Delivery d;
    d.push = push;
    d.datagram = datagram->second;
    d.sent = 1;
    d.next_at = first_retransmit_at(now, push->retransmit_period_s, push->retransmit_count, index, g.members().size());
    d.outstanding = true;
    d.to = m.endpoint();
    d.from = ks;
    outgoing_.push_back(PushDatagram{d.to, d.from, d.datagram, std::nullopt});
    st.deliveries.insert_or_assign(addr, std::move(d));
    ++sent;
  }
  push->record.members = sent;
  if (sent > 0)
    log(Severity::Info, "Taking over the delivery of rekey SEQ " + std::to_string(last->seq) + " for group " +
                            label(g) + ": sent to " + std::to_string(sent) +
                            " members that had not acknowledged it to the previous primary");
}

void Rekeyer::warn_multicast_loss(const Group& g, GroupState& st, const gdoi::PeerTraits& sent) {
  const std::uint32_t lost = sent.lacks(gdoi::features_needed(g.policy()));
  if (lost == st.multicast_lost) return;
  st.multicast_lost = lost;
  if (!lost) {
    log(Severity::Info, "Group " + label(g) + ": every member understands covey's extensions again; multicast rekeys carry them");
    return;
  }
  constexpr std::size_t kNamed = 5;
  std::string who;
  std::size_t n = 0;
  for (const auto& [addr, m] : g.members()) {
    if (!m.traits.lacks(lost)) continue;
    if (n++ < kNamed) who += (who.empty() ? "" : ", ") + addr.str();
  }
  if (n > kNamed) who += " and " + std::to_string(n - kNamed) + " more";
  log(Severity::Warning, "Group " + label(g) +
                             (sent.covey ? " has members whose covey Vendor ID lacks features (" + who +
                                               "): its multicast rekeys carry the policy"
                                         : " has members without covey's Vendor ID (" + who +
                                               "): its multicast rekeys carry RFC 6407 policy alone") +
                             ", without: " + gdoi::feature_names(lost));
}

void Rekeyer::retransmit(Group& g, GroupState& st, std::int64_t now) {
  std::vector<std::pair<Address, std::uint32_t>> missed;
  std::map<std::uint32_t, std::size_t> resent;  // SEQ -> members, for one log line each
  for (auto it = st.deliveries.begin(); it != st.deliveries.end();) {
    Delivery& d = it->second;
    if (!d.outstanding || now < d.next_at) {
      ++it;
      continue;
    }
    const Member* m = g.member(it->first);
    if (!m) {  // removed or dropped meanwhile
      it = st.deliveries.erase(it);
      continue;
    }
    // A registration since the push gave it the same keys and a SEQ at
    // least as high: nothing is missing.
    if (m->registered_seq >= d.push->record.seq) {
      d.outstanding = false;
      ++it;
      continue;
    }
    if (d.sent <= d.push->retransmit_count) {
      outgoing_.push_back(PushDatagram{d.to, d.from, d.datagram, std::nullopt});
      ++d.sent;
      d.next_at = now + d.push->retransmit_period_s;
      ++counters_.retransmissions;
      ++resent[d.push->record.seq];
    } else {
      d.outstanding = false;
      missed.emplace_back(it->first, d.push->record.seq);
    }
    ++it;
  }
  if (logs(Severity::Info))
    for (const auto& [seq, n] : resent)
      log(Severity::Info, "Retransmitting rekey SEQ " + std::to_string(seq) + " for group " + label(g) + " to " +
                              std::to_string(n) + (n == 1 ? " member" : " members") + " that did not acknowledge it");
  for (const auto& [addr, seq] : missed) miss(g, st, addr, seq);
}

bool Rekeyer::miss(Group& g, GroupState& st, const Address& member, std::uint32_t seq) {
  Member* m = g.find_member(member);
  if (!m) return false;
  ++m->missed_rekeys;
  ++counters_.misses;
  groups_.mark_state_dirty();
  if (m->missed_rekeys >= kMissesBeforeDrop) {
    log(Severity::Warning,
        "GM " + member.str() + " removed from group " + g.policy().name + ": " + std::to_string(m->missed_rekeys) +
            " consecutive rekeys not acknowledged",
        {{"COVEY_PEER", member.str()}, {"COVEY_GROUP", g.policy().name}, {"COVEY_SEQ", std::to_string(seq)},
         {"COVEY_EVENT", "removal"}});
    g.remove_member(member);
    st.deliveries.erase(member);
    ++counters_.dropped_members;
    return true;
  }
  log(Severity::Warning, "GM " + member.str() + " did not acknowledge rekey SEQ " + std::to_string(seq) + " of group " +
                             g.policy().name + " (" + std::to_string(m->missed_rekeys) + " in a row)");
  return false;
}

void Rekeyer::receive_ack(const Endpoint& from, ByteView datagram, std::int64_t now) {
  (void)now;
  // Until the HASH checks out, anyone who saw a push's cookies on the wire
  // can make these: counted, but logged only at debug, so that a flood of
  // them cannot flood the log. After it, only a KEK holder can.
  bool authenticated = false;
  auto refuse = [&](const std::string& group, const std::string& why) {
    ++counters_.acks_refused;
    const Severity s = authenticated ? Severity::Warning : Severity::Debug;
    if (!logs(s)) return;
    LogFields fields{{"COVEY_PEER", from.address.str()}, {"COVEY_EVENT", "ack-refused"}};
    if (!group.empty()) fields.push_back({"COVEY_GROUP", group});
    log(s, "Refused GROUPKEY-PUSH ACK from " + from.str() + (group.empty() ? "" : " for group " + group) + ": " + why,
        std::move(fields));
  };
  auto h = wire::decode_header(datagram);
  if (!h) return refuse("", h.error().message());
  // The cookies name the KEK the acknowledged push was encrypted under;
  // its ack key (RFC 8263 3.2) checks the HASH.
  const gdoi::KekSpi spi = cookies(*h);
  Group* g = nullptr;
  GroupState* st = nullptr;
  const SentPush* keyed = nullptr;
  for (auto& [id, s] : states_) {
    for (const auto& p : s.recent)
      if (p->ack_key.spi == spi) keyed = p.get();
    if (keyed) {
      g = groups_.find(id);
      st = &s;
      break;
    }
  }
  if (!keyed || !g) return refuse("", "cookies " + to_hex(spi) + " name no KEK a recent rekey was encrypted under");
  const std::string name = g->policy().name;
  auto ack = gdoi::verify_ack(keyed->ack_key, datagram);
  if (!ack) return refuse(name, ack.error());
  authenticated = true;
  // RFC 8263 3.4: the ID is the address of the member's last GROUPKEY-PULL,
  // and the acknowledgement comes from it (members send it from the socket
  // they registered with).
  if (ack->member != from.address)
    return refuse(name, "its ID names " + ack->member.str() + ", not the address it came from");
  if (!g->member(ack->member)) return refuse(name, ack->member.str() + " is not a registered member (RFC 8263 3.4)");
  const SentPush* acked = nullptr;
  for (const auto& p : st->recent)
    if (p->record.seq == ack->seq && p->ack_key.spi == spi) acked = p.get();
  if (!acked)
    return refuse(name, "SEQ " + std::to_string(ack->seq) + " is not a rekey of this group encrypted under KEK " + to_hex(spi));
  const std::string who = "GM " + ack->member.str();
  if (!acked->record.unicast) {
    if (logs(Severity::Debug))
      log(Severity::Debug, who + " acknowledged multicast rekey SEQ " + std::to_string(ack->seq) + " of group " + name +
                               ", which asked for no acknowledgement; ignored");
    return;
  }
  auto d = st->deliveries.find(ack->member);
  if (d == st->deliveries.end() || !d->second.push) return refuse(name, "SEQ " + std::to_string(ack->seq) + " was not sent to it");
  Delivery& dl = d->second;
  if (dl.push->record.seq != ack->seq) {
    if (ack->seq < dl.push->record.seq) {
      ++counters_.acks_late;
      log(Severity::Info, who + " acknowledged rekey SEQ " + std::to_string(ack->seq) + " of group " + name +
                              " after SEQ " + std::to_string(dl.push->record.seq) + " replaced it; ignored");
      return;
    }
    return refuse(name, "SEQ " + std::to_string(ack->seq) + " was not sent to it (last sent: SEQ " +
                            std::to_string(dl.push->record.seq) + ")");
  }
  if (!dl.outstanding) {
    // A second acknowledgement of a retransmission, or one after the miss
    // was counted: the member holds the keys, the count stands.
    ++counters_.acks_late;
    if (logs(Severity::Debug))
      log(Severity::Debug, who + " acknowledged rekey SEQ " + std::to_string(ack->seq) + " of group " + name + " again");
    return;
  }
  dl.outstanding = false;
  ++dl.push->record.acked;
  Member* m = g->find_member(ack->member);  // from here on it changes
  m->last_acked_seq = ack->seq;
  m->missed_rekeys = 0;
  groups_.mark_state_dirty();
  ++counters_.acks;
  log(Severity::Info, who + " acknowledged rekey SEQ " + std::to_string(ack->seq) + " of group " + name,
      {{"COVEY_PEER", ack->member.str()}, {"COVEY_GROUP", name}, {"COVEY_SEQ", std::to_string(ack->seq)},
       {"COVEY_EVENT", "ack"}});
}

// ---------------------------------------------------------------- status

std::uint64_t Rekeyer::rekeys_sent(const Group& g) const {
  const GroupState* st = find_state(g.policy().identity);
  return st ? st->rekeys_sent : 0;
}

std::optional<RekeyRecord> Rekeyer::last_rekey(const Group& g) const {
  const GroupState* st = find_state(g.policy().identity);
  if (!st || st->recent.empty()) return std::nullopt;
  return st->recent.back()->record;
}

std::size_t Rekeyer::pending(const Group& g) const {
  const GroupState* st = find_state(g.policy().identity);
  if (!st) return 0;
  return static_cast<std::size_t>(
      std::count_if(st->deliveries.begin(), st->deliveries.end(), [](const auto& d) { return d.second.outstanding; }));
}

}  // namespace covey::ks
