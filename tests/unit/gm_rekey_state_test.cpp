// The member's key state (gm/rekey_state.h) driven by real GROUPKEY-PUSH
// datagrams (gdoi::build_push, signed with a key made here) and by time:
// what is installed when, what is acknowledged, and that every refused push
// leaves the keys exactly as they were.
#include <gtest/gtest.h>

#include "fixtures.h"

#include <algorithm>

#include "coveyctl/render.h"
#include "crypto/random.h"
#include "gdoi/policy_codec.h"
#include "gdoi/push.h"
#include "gm/rekey_state.h"
#include "gm/status.h"
#include "ike/main_mode.h"
#include "wire/message.h"

using namespace covey;
using namespace covey::gdoi;
using covey::fixtures::prefix;
using covey::fixtures::psk;
using covey::gm::PushOutcome;
using covey::gm::PushVia;
using covey::gm::RekeyState;
using covey::gm::TekState;

namespace {

const Address kKsAddress = *Address::parse("10.1.12.1");
const Endpoint kKs{kKsAddress, 848};
const Address kMember = *Address::parse("10.1.23.3");
const std::int64_t kRegistered = 1000;
const std::uint32_t kTekA = 0x1A2B3C4D, kTekB = 0x2B3C4D5E, kTekC = 0x3C4D5E6F;

crypto::PrivateKey ec_key() { return crypto::PrivateKey::generate_ec(crypto::EcCurve::P256).value(); }

Bytes public_der(const crypto::PrivateKey& k) { return k.public_key().value().to_der().value(); }

// One group, its key server's signing key and KEK, and a member registered
// with it at kRegistered holding TEK A.
struct World {
  GroupPolicy policy;
  crypto::PrivateKey signing_key = ec_key();
  Kek kek;
  // The key server's pseudotime that registrations and pushes built from
  // now on carry (with the policy's TBAR window); nullopt: none.
  std::optional<std::uint32_t> ks_pseudotime;
  RekeyState member;

  explicit World(std::uint32_t activation_delay_s = 0, std::uint32_t deactivation_delay_s = 0,
                 std::uint32_t kek_lifetime_s = 86400)
      : member(options()) {
    policy.name = "GET_VPN";
    policy.identity = 134;
    AclEntry permit;
    permit.source = prefix("192.168.0.0", 16);
    permit.destination = prefix("192.168.0.0", 16);
    policy.acl = {permit};
    policy.kek.signature = KekPolicy::Signature::EcdsaP256;
    policy.kek.signature_hash = crypto::HashAlgorithm::Sha256;
    policy.kek.signature_key_bits = 256;
    policy.activation_delay_s = activation_delay_s;
    policy.deactivation_delay_s = deactivation_delay_s;
    kek = fresh_kek(kek_lifetime_s);
    auto ok = member.registered(registration({tek(kTekA, 3600)}, 0), kRegistered);
    EXPECT_TRUE(ok.ok()) << ok.error();
  }

  static gm::RekeyOptions options() {
    gm::RekeyOptions o;
    o.group_name = "GET_VPN";
    o.member = kMember;
    return o;
  }

  Tek tek(std::uint32_t spi, std::uint32_t lifetime_s) const {
    Tek t;
    t.spi = spi;
    t.encryption_key = *crypto::random_secret(tek_encryption_key_size(policy.tek.cipher));
    t.integrity_key = *crypto::random_secret(tek_integrity_key_size(policy.tek.integrity));
    t.lifetime_s = lifetime_s;
    return t;
  }

  Kek fresh_kek(std::uint32_t lifetime_s = 86400) const {
    Kek k;
    auto spi = *crypto::random_bytes(16);
    std::copy(spi.begin(), spi.end(), k.spi.begin());
    k.algorithm_key = *crypto::random_secret(crypto::block_size(policy.kek.cipher) + crypto::key_size(policy.kek.cipher));
    k.signature_public_key = public_der(signing_key);
    k.lifetime_s = lifetime_s;
    return k;
  }

  // Message 2's SA and message 4's KD as the member decodes them.
  Registration registration(const std::vector<Tek>& teks, std::uint32_t seq) const {
    auto wire_sa = encode_group_sa(policy, KekAnnouncement{kek.spi, kKsAddress, kek.lifetime_s}, teks, true, PeerTraits{true},
                                   ks_pseudotime);
    auto sa = decode_group_sa(wire_sa);
    EXPECT_TRUE(sa.ok()) << sa.error();
    KeyMaterial km;
    km.kek = kek;
    km.teks = teks;
    km.sids = {7};
    auto keys = decode_key_download(encode_key_download(km), *sa);
    EXPECT_TRUE(keys.ok()) << keys.error();
    Registration r;
    r.group_id = 134;
    r.policy = sa->policy;
    r.keys = std::move(*keys);
    r.seq = seq;
    r.pseudotime_ms = sa->pseudotime_ms;
    r.kek_ack_requested = std::any_of(wire_sa.kek->attributes.begin(), wire_sa.kek->attributes.end(),
                                      [](const wire::Attribute& a) { return a.type == wire::kek_attr::KekAckRequested; });
    return r;
  }

  // A push as the key server builds it: under `under` (default: the KEK
  // the member holds), signed by `signer` (default: the group's key).
  Bytes push(std::uint32_t seq, const std::vector<Tek>& teks, const std::optional<Kek>& new_kek = std::nullopt,
             PushDeletes deletes = {}, const Kek* under = nullptr, const crypto::PrivateKey* signer = nullptr,
             bool with_gap = true) const {
    PushContent c;
    c.seq = seq;
    c.deletes = std::move(deletes);
    if (!teks.empty() || new_kek) {
      std::optional<KekAnnouncement> ann;
      if (new_kek) ann = KekAnnouncement{new_kek->spi, kKsAddress, new_kek->lifetime_s};
      c.sa = encode_group_sa(policy, ann, teks, with_gap, PeerTraits{true}, ks_pseudotime);
      c.keys.teks = teks;
      c.keys.kek = new_kek;
    }
    auto d = build_push(c, under ? *under : kek, policy.kek, signer ? *signer : signing_key);
    EXPECT_TRUE(d.ok()) << d.error();
    return d.ok() ? *d : Bytes{};
  }

  PushOutcome receive(const Bytes& d, std::int64_t now, PushVia via = PushVia::Unicast) {
    return member.receive_push(d, kKs, via, now);
  }

  TekState state(std::uint32_t spi, std::int64_t now) const {
    for (const auto& v : member.teks(now))
      if (v.tek->spi == spi) return v.state;
    ADD_FAILURE() << "TEK " << spi << " not held";
    return TekState::Expired;
  }
  bool holds(std::uint32_t spi) const {
    auto v = member.teks(0);
    return std::any_of(v.begin(), v.end(), [&](const gm::TekView& t) { return t.tek->spi == spi; });
  }
  const gm::TekView view(std::uint32_t spi, std::int64_t now) const {
    for (const auto& v : member.teks(now))
      if (v.tek->spi == spi) return v;
    ADD_FAILURE() << "TEK " << spi << " not held";
    return {};
  }
};

// What a refused push must leave untouched.
struct Snapshot {
  KekSpi kek;
  std::uint32_t receiver_seq;
  std::optional<std::uint32_t> last_seq;
  std::vector<std::pair<std::uint32_t, TekState>> teks;
  std::uint64_t rekeys;
  std::optional<std::pair<std::uint32_t, std::uint64_t>> pseudotime;  // ms, serial
  Snapshot(const RekeyState& m, std::int64_t now)
      : kek(m.receiver()->kek().spi), receiver_seq(m.receiver()->seq()), last_seq(m.last_seq()), rekeys(m.counters().rekeys_received) {
    if (auto pt = m.pseudotime()) pseudotime = std::make_pair(pt->ms, pt->serial);
    for (const auto& v : m.teks(now)) teks.emplace_back(v.tek->spi, v.state);
  }
  bool operator==(const Snapshot&) const = default;
};

bool logged(const PushOutcome& o, const std::string& part) {
  return std::any_of(o.log.begin(), o.log.end(), [&](const gm::LogEvent& e) { return e.text.find(part) != std::string::npos; });
}
std::string all_log(const PushOutcome& o) {
  std::string s;
  for (const auto& e : o.log) s += e.text + "\n";
  return s;
}

std::uint64_t refused_total(const gm::RekeyCounters& c) {
  return c.unknown_kek + c.undecryptable + c.malformed + c.replay + c.bad_signature;
}

}  // namespace

TEST(GmRekeyState, RegistrationHoldsTheKeysAndTheDeadline) {
  World w;
  EXPECT_TRUE(w.member.is_registered());
  EXPECT_EQ(w.state(kTekA, kRegistered), TekState::Active);
  EXPECT_EQ(w.member.last_seq(), 0u);
  EXPECT_TRUE(w.member.receiver()->ack_requested());  // unicast: KEK_ACK_REQUESTED
  EXPECT_EQ(w.member.sids(), std::vector<std::uint32_t>{7});
  // The fallback: the newest TEK's lifetime less a tenth, at most a minute.
  EXPECT_EQ(w.member.next_rekey_expected_by(), kRegistered + 3600 - 60);
  EXPECT_EQ(w.member.counters().rekeys_received, 0u);
}

TEST(GmRekeyState, AcceptedPushInstallsTheTekAndIsAcknowledged) {
  World w;
  const std::int64_t t = 2000;
  PushOutcome o = w.receive(w.push(1, {w.tek(kTekB, 3600)}), t);
  ASSERT_EQ(o.kind, PushOutcome::Kind::Applied) << all_log(o);
  EXPECT_TRUE(logged(o, "Received rekey SEQ 1 for group GET_VPN from KS 10.1.12.1: TEK SPI 0x2B3C4D5E")) << all_log(o);
  EXPECT_EQ(w.state(kTekB, t), TekState::Active);
  // No DEACTIVATION_TIME_DELAY: the replaced TEK is received on until its own end.
  EXPECT_EQ(w.state(kTekA, t), TekState::ReceiveOnly);
  EXPECT_EQ(w.view(kTekA, t).deactivates_at, kRegistered + 3600);
  EXPECT_EQ(w.member.last_seq(), 1u);
  EXPECT_EQ(w.member.counters().rekeys_received, 1u);
  EXPECT_EQ(w.member.counters().rekeys_since_registration, 1u);
  EXPECT_EQ(w.member.next_rekey_expected_by(), t + 3600 - 60);  // measured on the newest TEK

  // RFC 8263: the ack verifies under the KEK that decrypted the push and
  // names this member and the SEQ.
  ASSERT_TRUE(o.ack);
  auto ack = verify_ack(w.kek, w.policy.kek.cipher, *o.ack);
  ASSERT_TRUE(ack.ok()) << ack.error();
  EXPECT_EQ(ack->seq, 1u);
  EXPECT_EQ(ack->member, kMember);
  EXPECT_EQ(w.member.counters().acks_sent, 0u);  // counted when the agent has sent it
  w.member.ack_sent();
  EXPECT_EQ(w.member.counters().acks_sent, 1u);

  // Later pushes count on; the replaced TEK expires at its end and is dropped.
  ASSERT_EQ(w.receive(w.push(2, {w.tek(kTekC, 3600)}), 3000).kind, PushOutcome::Kind::Applied);
  EXPECT_EQ(w.state(kTekB, 3000), TekState::ReceiveOnly);
  EXPECT_EQ(w.state(kTekA, kRegistered + 3600), TekState::Expired);
  auto log = w.member.tick(kRegistered + 3600);
  EXPECT_FALSE(w.holds(kTekA));
  EXPECT_TRUE(std::any_of(log.begin(), log.end(), [](const gm::LogEvent& e) {
    return e.text == "TEK SPI 0x1A2B3C4D of group GET_VPN: receive-only -> expired, removed";
  }));
  EXPECT_EQ(w.member.counters().rekeys_received, 2u);
}

// RFC 6407 5.4.1: ATD from receipt to activation; DTD from receipt of the
// new TEK to the old one's deactivation, never before the new one activates
// and never after the old one's own end. Rows: delays, the new TEK's
// arrival, and the times at which the states must hold.
TEST(GmRekeyState, ActivationAndDeactivationFollowTheDelays) {
  struct Row {
    const char* what;
    std::uint32_t atd, dtd;
    std::int64_t new_active_at;  // B: pending before, active from
    std::int64_t old_gone_at;    // A: receive-only from new_active_at, expired from
  };
  const std::int64_t t = 2000;
  const Row rows[] = {
      {"DTD above ATD", 30, 90, t + 30, t + 90},
      {"DTD below ATD: kept until B takes over", 60, 10, t + 60, t + 60},
      {"no delays: A to its own end", 0, 0, t, kRegistered + 3600},
      {"DTD beyond A's life: its own end", 0, 5000, t, kRegistered + 3600},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.what);
    World w(r.atd, r.dtd);
    ASSERT_EQ(w.receive(w.push(1, {w.tek(kTekB, 3600)}), t).kind, PushOutcome::Kind::Applied);
    if (r.new_active_at > t) {
      EXPECT_EQ(w.state(kTekB, t), TekState::Pending);
      EXPECT_EQ(w.state(kTekA, t), TekState::Active);
      EXPECT_EQ(w.state(kTekB, r.new_active_at - 1), TekState::Pending);
      EXPECT_EQ(w.state(kTekA, r.new_active_at - 1), TekState::Active);
    }
    EXPECT_EQ(w.view(kTekB, t).activates_at, r.new_active_at);
    EXPECT_EQ(w.view(kTekA, t).deactivates_at, r.old_gone_at);
    EXPECT_EQ(w.state(kTekB, r.new_active_at), TekState::Active);
    if (r.old_gone_at > r.new_active_at) {
      EXPECT_EQ(w.state(kTekA, r.new_active_at), TekState::ReceiveOnly);
      EXPECT_EQ(w.state(kTekA, r.old_gone_at - 1), TekState::ReceiveOnly);
    }
    EXPECT_EQ(w.state(kTekA, r.old_gone_at), TekState::Expired);
    // The transitions are logged by tick, once each.
    auto log = w.member.tick(r.new_active_at);
    if (r.new_active_at > t) {
      EXPECT_TRUE(std::any_of(log.begin(), log.end(), [](const gm::LogEvent& e) {
        return e.text == "TEK SPI 0x2B3C4D5E of group GET_VPN: pending -> active";
      }));
    }
    EXPECT_TRUE(w.member.tick(r.new_active_at).empty());
    w.member.tick(r.old_gone_at);
    EXPECT_FALSE(w.holds(kTekA));
    EXPECT_TRUE(w.holds(kTekB));
  }
}

TEST(GmRekeyState, ReplayIsRefusedCountedAndChangesNothing) {
  World w;
  Bytes one = w.push(1, {w.tek(kTekB, 3600)});
  Bytes two = w.push(2, {w.tek(kTekC, 3600)});
  ASSERT_EQ(w.receive(two, 2000).kind, PushOutcome::Kind::Applied);
  const Snapshot before(w.member, 2000);
  // An older SEQ, and the same SEQ in other octets: replays, not retransmissions.
  for (const Bytes& d : {one, w.push(2, {w.tek(0x4D5E6F70, 3600)})}) {
    PushOutcome o = w.receive(d, 2001);
    EXPECT_EQ(o.kind, PushOutcome::Kind::Refused);
    EXPECT_EQ(o.refused, "replay");
    EXPECT_FALSE(o.ack);
    EXPECT_TRUE(logged(o, "Refused GROUPKEY-PUSH from 10.1.12.1 for group GET_VPN: GROUPKEY-PUSH SEQ ")) << all_log(o);
    EXPECT_EQ(Snapshot(w.member, 2000), before);
  }
  EXPECT_EQ(w.member.counters().replay, 2u);
  EXPECT_EQ(w.member.counters().retransmissions, 0u);
}

TEST(GmRekeyState, BitFlipsAreRefusedAndChangeNothing) {
  World w;
  const Bytes good = w.push(1, {w.tek(kTekB, 3600)});
  const Snapshot before(w.member, 2000);
  // One bit in every 16th octet, header and ciphertext alike: each refused
  // (under its counter) and none changes anything.
  int n = 0;
  for (std::size_t i = 0; i < good.size(); i += 16) {
    Bytes d = good;
    d[i] ^= 0x04;
    PushOutcome o = w.receive(d, 2000);
    EXPECT_EQ(o.kind, PushOutcome::Kind::Refused) << "octet " << i;
    EXPECT_FALSE(o.ack);
    EXPECT_FALSE(o.reregister);
    EXPECT_EQ(Snapshot(w.member, 2000), before) << "octet " << i;
    ++n;
  }
  EXPECT_EQ(refused_total(w.member.counters()), static_cast<std::uint64_t>(n));
  // A flip in the last ciphertext block breaks the signed octets or padding.
  Bytes d = good;
  d[d.size() - 20] ^= 0x01;
  EXPECT_EQ(w.receive(d, 2000).kind, PushOutcome::Kind::Refused);
  // The intact push is still accepted afterwards.
  EXPECT_EQ(w.receive(good, 2001).kind, PushOutcome::Kind::Applied);
}

TEST(GmRekeyState, AnotherSignerIsRefused) {
  World w;
  const crypto::PrivateKey other = ec_key();
  const Snapshot before(w.member, 2000);
  PushOutcome o = w.receive(w.push(1, {w.tek(kTekB, 3600)}, std::nullopt, {}, nullptr, &other), 2000);
  EXPECT_EQ(o.kind, PushOutcome::Kind::Refused);
  EXPECT_EQ(o.refused, "bad_signature");
  EXPECT_EQ(w.member.counters().bad_signature, 1u);
  EXPECT_EQ(Snapshot(w.member, 2000), before);
  EXPECT_FALSE(w.holds(kTekB));
}

TEST(GmRekeyState, RetransmissionIsAcknowledgedAgainNotApplied) {
  World w;
  const Bytes d = w.push(1, {w.tek(kTekB, 3600)});
  PushOutcome first = w.receive(d, 2000);
  ASSERT_EQ(first.kind, PushOutcome::Kind::Applied);
  ASSERT_TRUE(first.ack);
  const Snapshot after(w.member, 2000);

  PushOutcome again = w.receive(d, 2010);  // our ack was lost; the KS sent it again
  EXPECT_EQ(again.kind, PushOutcome::Kind::Retransmission);
  ASSERT_TRUE(again.ack);
  EXPECT_EQ(*again.ack, *first.ack);
  EXPECT_EQ(Snapshot(w.member, 2010), after);
  EXPECT_EQ(w.member.counters().rekeys_received, 1u);
  EXPECT_EQ(w.member.counters().replay, 0u);
  EXPECT_EQ(w.member.counters().retransmissions, 1u);
  EXPECT_TRUE(logged(again, "Received rekey SEQ 1 for group GET_VPN from KS 10.1.12.1 again: already applied, acknowledged again"))
      << all_log(again);
  // Many copies within a second (a replaying attacker) get one ack.
  EXPECT_FALSE(w.receive(d, 2010).ack);
  EXPECT_TRUE(w.receive(d, 2011).ack);
  // A multicast copy is never acknowledged.
  EXPECT_FALSE(w.receive(d, 2020, PushVia::Multicast).ack);
  EXPECT_EQ(w.member.counters().replay, 0u);
}

// The key server's pseudotime comes with the registration and each applied
// push, each a new sample (a higher serial) for the agent to pair with its
// own clock; a refused push or a copy of the last one brings none.
TEST(GmRekeyState, PseudotimeFromTheRegistrationAndEachAppliedPush) {
  World w;  // registered without one
  EXPECT_FALSE(w.member.pseudotime());
  w.ks_pseudotime = 5000;
  ASSERT_TRUE(w.member.registered(w.registration({w.tek(kTekA, 3600)}, 0), 1005).ok());
  ASSERT_TRUE(w.member.pseudotime());
  EXPECT_EQ(w.member.pseudotime()->ms, 5000u);
  const std::uint64_t at_registration = w.member.pseudotime()->serial;

  w.ks_pseudotime = 65000;
  const Bytes one = w.push(1, {w.tek(kTekB, 3600)});
  ASSERT_EQ(w.receive(one, 1065).kind, PushOutcome::Kind::Applied);
  ASSERT_TRUE(w.member.pseudotime());
  EXPECT_EQ(w.member.pseudotime()->ms, 65000u);
  const std::uint64_t at_push = w.member.pseudotime()->serial;
  EXPECT_GT(at_push, at_registration);

  // The key server's retransmission of that push: the same octets, the
  // same (by now older) reading; not a new sample.
  EXPECT_EQ(w.receive(one, 1075).kind, PushOutcome::Kind::Retransmission);
  EXPECT_EQ(w.member.pseudotime()->serial, at_push);
  // A replay of SEQ 1 in other octets, a push signed by someone else, a
  // push under a KEK not held: refused, and their clocks ignored.
  w.ks_pseudotime = 99000;
  const crypto::PrivateKey other = ec_key();
  const Kek stranger = w.fresh_kek();
  for (const Bytes& d : {w.push(1, {w.tek(kTekC, 3600)}), w.push(2, {w.tek(kTekC, 3600)}, std::nullopt, {}, nullptr, &other),
                         w.push(2, {w.tek(kTekC, 3600)}, std::nullopt, {}, &stranger)}) {
    EXPECT_EQ(w.receive(d, 1099).kind, PushOutcome::Kind::Refused);
    EXPECT_EQ(w.member.pseudotime()->ms, 65000u);
    EXPECT_EQ(w.member.pseudotime()->serial, at_push);
  }
  // The same reading in a later push is still a new sample: the agent
  // pairs it with the time it arrived.
  w.ks_pseudotime = 65000;
  ASSERT_EQ(w.receive(w.push(2, {w.tek(kTekC, 3600)}), 1100).kind, PushOutcome::Kind::Applied);
  EXPECT_EQ(w.member.pseudotime()->ms, 65000u);
  EXPECT_GT(w.member.pseudotime()->serial, at_push);

  // A registration without one (TBAR turned off, or another key server)
  // ends the old key server's sample.
  w.ks_pseudotime.reset();
  ASSERT_TRUE(w.member.registered(w.registration({w.tek(kTekA, 3600)}, 2), 1200).ok());
  EXPECT_FALSE(w.member.pseudotime());
}

TEST(GmRekeyState, MulticastPushIsAppliedWithoutAck) {
  World w;
  PushOutcome o = w.receive(w.push(1, {w.tek(kTekB, 3600)}), 2000, PushVia::Multicast);
  EXPECT_EQ(o.kind, PushOutcome::Kind::Applied);
  EXPECT_FALSE(o.ack);
  EXPECT_EQ(w.state(kTekB, 2000), TekState::Active);
}

TEST(GmRekeyState, KekRolloverThenOnlyTheNewKekIsFollowed) {
  World w;
  const Kek old_kek = w.kek;
  const Kek new_kek = w.fresh_kek();
  const Bytes rollover = w.push(1, {w.tek(kTekB, 3600)}, new_kek);
  PushOutcome o = w.receive(rollover, 2000);
  ASSERT_EQ(o.kind, PushOutcome::Kind::Applied) << all_log(o);
  EXPECT_TRUE(logged(o, "new KEK SPI " + to_hex(new_kek.spi))) << all_log(o);
  EXPECT_EQ(w.member.receiver()->kek().spi, new_kek.spi);
  // Acknowledged under the KEK that decrypted it, the old one.
  ASSERT_TRUE(o.ack);
  EXPECT_TRUE(verify_ack(old_kek, w.policy.kek.cipher, *o.ack).ok());
  EXPECT_FALSE(verify_ack(new_kek, w.policy.kek.cipher, *o.ack).ok());

  // The rollover push again (its ack was lost): under cookies the member
  // no longer holds, yet recognized and acknowledged again.
  PushOutcome again = w.receive(rollover, 2005);
  EXPECT_EQ(again.kind, PushOutcome::Kind::Retransmission);
  EXPECT_TRUE(again.ack);

  // The key server continues SEQ under the new KEK.
  PushOutcome next = w.receive(w.push(2, {w.tek(kTekC, 3600)}, std::nullopt, {}, &new_kek), 2100);
  ASSERT_EQ(next.kind, PushOutcome::Kind::Applied) << all_log(next);
  ASSERT_TRUE(next.ack);
  EXPECT_TRUE(verify_ack(new_kek, w.policy.kek.cipher, *next.ack).ok());

  // Pushes under the old KEK: refused, counted, never a reason to
  // register again (the member is ahead of them).
  const Snapshot before(w.member, 2200);
  for (int i = 0; i < 5; ++i) {
    PushOutcome stale = w.receive(w.push(3 + static_cast<std::uint32_t>(i), {w.tek(0x50000000u + static_cast<std::uint32_t>(i), 3600)},
                                         std::nullopt, {}, &old_kek),
                                  2200);
    EXPECT_EQ(stale.kind, PushOutcome::Kind::Refused);
    EXPECT_EQ(stale.refused, "unknown_kek");
    EXPECT_FALSE(stale.reregister);
    EXPECT_TRUE(logged(stale, "a KEK this member has replaced")) << all_log(stale);
  }
  EXPECT_EQ(w.member.counters().unknown_kek, 5u);
  EXPECT_EQ(Snapshot(w.member, 2200), before);
}

TEST(GmRekeyState, KekOnlyRekeyKeepsThePolicy) {
  World w;
  const Kek new_kek = w.fresh_kek(7200);
  PushOutcome o = w.receive(w.push(1, {}, new_kek), 2000);
  ASSERT_EQ(o.kind, PushOutcome::Kind::Applied) << all_log(o);
  EXPECT_EQ(w.member.policy().acl, w.policy.acl);  // no SA TEK: the ACL stays
  EXPECT_TRUE(w.holds(kTekA));
  EXPECT_EQ(w.member.kek_expires_at(), 2000 + 7200);
  EXPECT_FALSE(o.transport_changed);
}

TEST(GmRekeyState, DeletesAreHonoured) {
  const std::int64_t t = 2000;
  {
    SCOPED_TRACE("DELETE of the old TEK with its replacement, no DTD: gone at once");
    World w;
    PushOutcome o = w.receive(w.push(1, {w.tek(kTekB, 3600)}, std::nullopt, PushDeletes{{kTekA}, {}}), t);
    ASSERT_EQ(o.kind, PushOutcome::Kind::Applied) << all_log(o);
    EXPECT_TRUE(logged(o, "DELETE TEK SPI 0x1A2B3C4D")) << all_log(o);
    EXPECT_FALSE(w.holds(kTekA));  // expired and dropped as the push was applied
    EXPECT_EQ(w.state(kTekB, t), TekState::Active);
  }
  {
    SCOPED_TRACE("DELETE with a DTD: received on for the delay");
    World w(0, 30);
    ASSERT_EQ(w.receive(w.push(1, {w.tek(kTekB, 3600)}, std::nullopt, PushDeletes{{kTekA}, {}}), t).kind,
              PushOutcome::Kind::Applied);
    EXPECT_EQ(w.state(kTekA, t), TekState::ReceiveOnly);
    EXPECT_EQ(w.state(kTekA, t + 30), TekState::Expired);
  }
  {
    SCOPED_TRACE("SPI 0 deletes every TEK held, not the ones the push brings");
    World w;
    ASSERT_EQ(w.receive(w.push(1, {w.tek(kTekB, 3600)}), t).kind, PushOutcome::Kind::Applied);
    ASSERT_EQ(w.receive(w.push(2, {w.tek(kTekC, 3600)}, std::nullopt, PushDeletes{{0}, {}}), t + 1).kind,
              PushOutcome::Kind::Applied);
    EXPECT_FALSE(w.holds(kTekA));
    EXPECT_FALSE(w.holds(kTekB));
    EXPECT_EQ(w.state(kTekC, t + 1), TekState::Active);
  }
  {
    SCOPED_TRACE("a DELETE-only push of the KEK: the member must register again");
    World w;
    const KekSpi spi = w.kek.spi;
    PushOutcome o = w.receive(w.push(1, {}, std::nullopt, PushDeletes{{}, {spi}}), t);
    ASSERT_EQ(o.kind, PushOutcome::Kind::Applied) << all_log(o);
    EXPECT_TRUE(o.reregister);
    EXPECT_FALSE(w.member.receiver());
    EXPECT_TRUE(w.holds(kTekA));  // TEKs not named stay until registration replaces them
    // Later pushes under that KEK: no KEK held.
    PushOutcome late = w.receive(w.push(2, {w.tek(kTekB, 3600)}), t + 1);
    EXPECT_EQ(late.refused, "unknown_kek");
  }
}

TEST(GmRekeyState, PushesUnderANeverHeldKekMakeTheMemberRegisterAgainRateLimited) {
  World w;
  const Kek missed = w.fresh_kek();
  auto under_missed = [&](std::uint32_t seq, std::int64_t now) {
    return w.receive(w.push(seq, {w.tek(0x60000000u + seq, 3600)}, std::nullopt, {}, &missed), now);
  };
  // One or two could be anyone's: counted only.
  EXPECT_FALSE(under_missed(1, 2000).reregister);
  EXPECT_FALSE(under_missed(1, 2010).reregister);
  // The third within the retransmit window: a KEK rekey was missed.
  PushOutcome third = under_missed(1, 2020);
  EXPECT_EQ(third.refused, "unknown_kek");
  ASSERT_TRUE(third.reregister);
  EXPECT_NE(third.reregister->find("missed a KEK rekey"), std::string::npos);
  // More of them soon after: held back (they cannot be authenticated).
  for (std::int64_t t = 2021; t < 2030; ++t) EXPECT_FALSE(under_missed(2, t).reregister);
  EXPECT_FALSE(under_missed(3, 2100).reregister);
  // Once the interval has passed, a new burst counts again.
  EXPECT_FALSE(under_missed(4, 2200).reregister);
  EXPECT_FALSE(under_missed(4, 2201).reregister);
  EXPECT_TRUE(under_missed(4, 2202).reregister);
  // On a multicast group (no retransmissions; other groups' rekeys may
  // share it): counted, never a reason to register.
  World m;
  for (std::int64_t t = 2000; t < 2010; ++t) {
    PushOutcome o = m.receive(m.push(1, {m.tek(kTekB, 3600)}, std::nullopt, {}, &missed), t, PushVia::Multicast);
    EXPECT_EQ(o.refused, "unknown_kek");
    EXPECT_FALSE(o.reregister);
  }
  EXPECT_EQ(m.member.counters().unknown_kek, 10u);
  // Spread thinner than the window: never.
  World v;
  for (std::int64_t t = 2000; t < 2400; t += 31)
    EXPECT_FALSE(v.receive(v.push(1, {v.tek(kTekB, 3600)}, std::nullopt, {}, &missed), t).reregister);
  EXPECT_TRUE(v.holds(kTekA));
  EXPECT_FALSE(v.holds(kTekB));
}

TEST(GmRekeyState, FreshRegistrationResetsOnlyTheSinceRegistrationCounters) {
  World w;
  ASSERT_EQ(w.receive(w.push(1, {w.tek(kTekB, 3600)}), 2000).kind, PushOutcome::Kind::Applied);
  ASSERT_EQ(w.receive(w.push(2, {w.tek(kTekC, 3600)}), 2100).kind, PushOutcome::Kind::Applied);
  w.receive(w.push(1, {w.tek(kTekB, 3600)}), 2101);  // a replay, counted
  auto r = w.registration({w.tek(kTekC, 3000)}, 2);
  ASSERT_TRUE(w.member.registered(r, 2200).ok());
  EXPECT_EQ(w.member.counters().rekeys_received, 2u);
  EXPECT_EQ(w.member.counters().rekeys_since_registration, 0u);
  EXPECT_EQ(w.member.counters().replay, 1u);
  EXPECT_EQ(w.member.registered_at(), 2200);
  // The key server no longer hands out A and B: dropped. C is the same SA.
  EXPECT_FALSE(w.holds(kTekA));
  EXPECT_FALSE(w.holds(kTekB));
  EXPECT_EQ(w.state(kTekC, 2200), TekState::Active);
  EXPECT_EQ(w.member.next_rekey_expected_by(), 2200 + 3000 - 60);
  // The receiver starts from message 4's SEQ.
  EXPECT_EQ(w.receive(w.push(2, {w.tek(0x7000000u, 3600)}), 2300).refused, "replay");
  EXPECT_EQ(w.receive(w.push(3, {w.tek(0x7000000u, 3600)}), 2301).kind, PushOutcome::Kind::Applied);
  EXPECT_EQ(w.member.counters().rekeys_since_registration, 1u);
  EXPECT_EQ(w.member.counters().rekeys_received, 3u);
}

TEST(GmRekeyState, RegistrationDuringARolloverActivatesTheNewestTek) {
  World w;
  auto r = w.registration({w.tek(kTekB, 3500), w.tek(kTekC, 60)}, 4);
  ASSERT_TRUE(w.member.registered(r, 2000).ok());
  EXPECT_EQ(w.state(kTekB, 2000), TekState::Active);  // the longest-lived is the newest
  EXPECT_EQ(w.state(kTekC, 2000), TekState::ReceiveOnly);
  EXPECT_EQ(w.state(kTekC, 2060), TekState::Expired);
  EXPECT_EQ(w.member.next_rekey_expected_by(), 2000 + 3500 - 60);
}

TEST(GmRekeyState, TheDeadlineFollowsTheNewestTekAndTheKek) {
  struct Row {
    std::uint32_t tek_s, kek_s;
    std::int64_t by;  // after kRegistered
  };
  // A tenth of the TEK's life early, at most a minute; never past the KEK's end.
  for (const Row& r : {Row{20, 86400, 18}, Row{300, 86400, 270}, Row{3600, 86400, 3540}, Row{3600, 2000, 2000}}) {
    World w(0, 0, r.kek_s);
    ASSERT_TRUE(w.member.registered(w.registration({w.tek(kTekB, r.tek_s)}, 0), kRegistered).ok());
    EXPECT_EQ(w.member.next_rekey_expected_by(), kRegistered + r.by) << r.tek_s << " " << r.kek_s;
  }
}

TEST(GmRekeyState, NothingIsAcceptedBeforeRegistration) {
  World w;
  RekeyState fresh(World::options());
  PushOutcome o = fresh.receive_push(w.push(1, {w.tek(kTekB, 3600)}), kKs, PushVia::Unicast, 2000);
  EXPECT_EQ(o.refused, "unknown_kek");
  EXPECT_FALSE(o.reregister);
  EXPECT_FALSE(fresh.next_rekey_expected_by());
}

// A signing-key rollover as the member's log and counters show it: the
// push that brings the new key says so; one signed with the old key after
// it is counted as retired_signing_key and logged with group, key server
// and both keys, and changes nothing; `coveyctl gm status` names it.
TEST(GmRekeyState, RolloverIsLoggedAndTheRetiredKeyCountedApart) {
  World w;
  const crypto::PrivateKey old_key = crypto::PrivateKey::from_pem(*w.signing_key.to_pem()).value();
  const crypto::PrivateKey next_key = ec_key();
  Kek next = w.fresh_kek();
  next.signature_public_key = public_der(next_key);
  PushOutcome o = w.receive(w.push(1, {w.tek(kTekB, 3600)}, next), 2000);
  ASSERT_EQ(o.kind, PushOutcome::Kind::Applied);
  ASSERT_FALSE(o.log.empty());
  const std::string next_id = gdoi::signing_key_id(next.signature_public_key);
  EXPECT_NE(o.log[0].text.find("new rekey signing key SHA-256 " + next_id), std::string::npos) << o.log[0].text;
  w.kek = next;
  w.signing_key = crypto::PrivateKey::from_pem(*next_key.to_pem()).value();
  ASSERT_EQ(w.receive(w.push(2, {w.tek(kTekC, 3600)}), 2001).kind, PushOutcome::Kind::Applied);

  Snapshot before(w.member, 2002);
  o = w.receive(w.push(3, {w.tek(0x3C4D5E6F, 3600)}, std::nullopt, {}, nullptr, &old_key), 2002);
  EXPECT_EQ(o.kind, PushOutcome::Kind::Refused);
  EXPECT_EQ(o.refused, "retired_signing_key");
  EXPECT_FALSE(o.reregister);
  ASSERT_EQ(o.log.size(), 1u);
  EXPECT_EQ(o.log[0].level, LogLevel::Warning);
  for (const std::string& part : {std::string("Refused GROUPKEY-PUSH from 10.1.12.1 for group GET_VPN"),
                                  std::string("SEQ 3: signed with the retired signing key (SHA-256 ") +
                                      gdoi::signing_key_id(public_der(old_key)),
                                  "only pushes signed with SHA-256 " + next_id})
    EXPECT_NE(o.log[0].text.find(part), std::string::npos) << part << "\n" << o.log[0].text;
  EXPECT_EQ(Snapshot(w.member, 2002), before);
  EXPECT_EQ(w.member.counters().retired_signing_key, 1u);
  EXPECT_EQ(w.member.counters().bad_signature, 0u);

  nlohmann::json reply = gm::key_status(w.member, 2002, false, false);
  EXPECT_EQ(reply["kek"]["signing_key"], next_id);
  reply["ok"] = true;
  reply["group"] = {{"name", "GET_VPN"}, {"identity", 134}};
  reply["state"] = "registered";
  const std::string page = coveyctl::render_gm_status(reply, coveyctl::RenderContext{2002, true});
  EXPECT_NE(page.find("    Rekeys Refused           : 1 (retired signing key 1)\n"), std::string::npos) << page;
}

// gm.status's key fields, as control/PROTOCOL.md names them, and the page
// `coveyctl gm status` makes of them.
TEST(GmRekeyState, StatusReportsTheRekeyStateAndCoveyctlShowsIt) {
  using nlohmann::json;
  World w(30, 90);
  ASSERT_EQ(w.receive(w.push(1, {w.tek(kTekB, 3600)}), 2000).kind, PushOutcome::Kind::Applied);
  w.member.ack_sent();
  w.receive(w.push(1, {w.tek(kTekC, 3600)}), 2001);  // a replay
  const std::int64_t t = 2040;  // B activated at 2030, A receive-only until 2090
  json j = gm::key_status(w.member, t, false, false);
  EXPECT_EQ(j["rekeys_received"], 1);
  EXPECT_EQ(j["rekeys_since_registration"], 1);
  EXPECT_EQ(j["acks_sent"], 1);
  EXPECT_EQ(j["last_seq"], 1);
  EXPECT_EQ(j["seq"], 1);
  EXPECT_EQ(j["next_rekey_expected_by"], 2000 + 3600 - 60);
  EXPECT_EQ(j["pushes_refused"],
            json::parse(R"({"unknown_kek":0,"undecryptable":0,"malformed":0,"replay":1,"bad_signature":0,
                            "retired_signing_key":0})"));
  EXPECT_EQ(j["rekey"], json::parse(R"({"mode":"unicast","port":848,"acknowledged":true})"));
  ASSERT_EQ(j["tek"].size(), 2u);
  EXPECT_EQ(j["tek"][0], json::parse(R"({"spi":"0x1A2B3C4D","transform":"esp-aes-256 esp-sha256-hmac","lifetime_s":3600,
    "remaining_s":2560,"state":"receive-only","activates_at":1000,"deactivates_at":2090})"));
  EXPECT_EQ(j["tek"][1], json::parse(R"({"spi":"0x2B3C4D5E","transform":"esp-aes-256 esp-sha256-hmac","lifetime_s":3600,
    "remaining_s":3560,"state":"active","activates_at":2030,"deactivates_at":5600})"));
  EXPECT_EQ(j["kek"]["spi"], to_hex(w.kek.spi));
  EXPECT_EQ(j["kek"]["signature"], "ECDSA P-256 SHA-256");
  EXPECT_EQ(j["kek"]["signing_key"], gdoi::signing_key_id(public_der(w.signing_key)));
  EXPECT_FALSE(j["tek"][0].contains("keys"));
  EXPECT_FALSE(j["kek"].contains("keys"));
  json keyed = gm::key_status(w.member, t, true, false);
  EXPECT_TRUE(keyed["tek"][0].contains("keys"));
  EXPECT_TRUE(keyed["kek"].contains("keys"));

  json reply = j;
  reply["ok"] = true;
  reply["group"] = {{"name", "GET_VPN"}, {"identity", 134}};
  reply["state"] = "registered";
  const coveyctl::RenderContext ctx{t, true};
  const std::string page = coveyctl::render_gm_status(reply, ctx);
  for (const char* line : {"    Rekey Transport          : Unicast with ACK, port 848\n",
                           "    Rekeys Received          : 1 (1 since registration)\n",
                           "    Rekey ACKs Sent          : 1\n",
                           "    Rekeys Refused           : 1 (replay 1)\n",
                           "    Rekey Sequence Number    : 1\n",
                           "    Next Rekey Expected By   : 1970-01-01 01:32:20 UTC (in 3500 s)\n",
                           "      SPI                    : 0x1A2B3C4D\n",
                           "      State                  : receive-only\n",
                           "      Deactivates            : 1970-01-01 00:34:50 UTC (in 50 s)\n",
                           "      Activates              : 1970-01-01 00:33:50 UTC (10 s ago)\n"})
    EXPECT_NE(page.find(line), std::string::npos) << line << page;
}

namespace {

// The key server's side of a GROUPKEY-PULL, as small as the exchange
// allows: one group, World's policy and keys.
struct OneGroup : GroupDirectory {
  const World& w;
  std::vector<Tek> teks;
  explicit OneGroup(const World& world, std::vector<Tek> t) : w(world), teks(std::move(t)) {}
  std::variant<Offer, ike::Failure> offer(const wire::IdentificationPayload&, const ike::Phase1Sa&) override {
    Offer o;
    o.group_id = 134;
    o.sa = encode_group_sa(w.policy, KekAnnouncement{w.kek.spi, kKsAddress, w.kek.lifetime_s}, teks, true, PeerTraits{true});
    o.keys.kek = w.kek;
    o.keys.teks = teks;
    return o;
  }
  std::variant<Admission, ike::Failure> admit(const Offer&, const ike::Phase1Sa&, std::uint16_t) override {
    return Admission{{1}, 9};
  }
};

// Main Mode, then GROUPKEY-PULL, in memory; the member's Registration.
std::optional<Registration> register_over_the_wire(const World& w, const std::vector<Tek>& teks) {
  ike::Phase1Transform t;
  auto gm = ike::MainMode::initiator({t}, psk("k"), kKs, kMember);
  auto ks = ike::MainMode::responder({t}, psk("k"), Endpoint{kMember, 848}, kKsAddress);
  std::optional<ike::Phase1Sa> gm_sa, ks_sa;
  Bytes to_ks = *gm.start();
  for (int i = 0; i < 3 && !(gm_sa && ks_sa); ++i) {
    auto r = ks.receive(to_ks, kRegistered);
    if (r.established) ks_sa = std::move(r.established);
    auto g = gm.receive(*r.send, kRegistered);
    if (g.established) gm_sa = std::move(g.established);
    if (g.send) to_ks = *g.send;
  }
  if (!gm_sa || !ks_sa) return std::nullopt;
  OneGroup directory(w, teks);
  PullInitiator member(134);
  PullResponder server;
  to_ks = *member.start(*gm_sa);
  for (int i = 0; i < 2; ++i) {
    auto r = server.receive(*ks_sa, *wire::decode_header(to_ks), to_ks, directory);
    if (!r.send) return std::nullopt;
    auto step = member.receive(*gm_sa, *wire::decode_header(*r.send), *r.send);
    if (step.registered) return step.registered;
    if (!step.send) return std::nullopt;
    to_ks = *step.send;
  }
  return std::nullopt;
}

}  // namespace

// KEK_ACK_REQUESTED travels from the key server's SA KEK through the pull
// into the member's rekey SA: unicast rekeys are acknowledged, multicast
// ones are not, and the member learns the group to join.
TEST(GmRekeyState, TheRegistrationSaysWhetherToAcknowledge) {
  {
    SCOPED_TRACE("unicast");
    World w;
    auto r = register_over_the_wire(w, {w.tek(kTekB, 3600)});
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->kek_ack_requested);
    EXPECT_EQ(r->seq, 9u);
    RekeyState m(World::options());
    ASSERT_TRUE(m.registered(*r, kRegistered).ok());
    EXPECT_EQ(m.last_seq(), 9u);
    PushOutcome o = m.receive_push(w.push(10, {w.tek(kTekC, 3600)}), kKs, PushVia::Unicast, 2000);
    ASSERT_EQ(o.kind, PushOutcome::Kind::Applied) << all_log(o);
    EXPECT_TRUE(o.ack);
  }
  {
    SCOPED_TRACE("multicast");
    World w;
    w.policy.rekey.mode = RekeyTransport::Mode::Multicast;
    w.policy.rekey.multicast_address = prefix("239.192.1.1", 32);
    w.policy.rekey.port = 8848;
    auto r = register_over_the_wire(w, {w.tek(kTekB, 3600)});
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->kek_ack_requested);
    RekeyState m(World::options());
    ASSERT_TRUE(m.registered(*r, kRegistered).ok());
    EXPECT_EQ(m.policy().rekey.mode, RekeyTransport::Mode::Multicast);
    EXPECT_EQ(m.policy().rekey.multicast_address, prefix("239.192.1.1", 32));
    EXPECT_EQ(m.policy().rekey.port, 8848);
    // Even a unicast copy of a push of a multicast rekey SA is not acknowledged.
    PushOutcome o = m.receive_push(w.push(10, {w.tek(kTekC, 3600)}), kKs, PushVia::Unicast, 2000);
    ASSERT_EQ(o.kind, PushOutcome::Kind::Applied) << all_log(o);
    EXPECT_FALSE(o.ack);
    auto status = gm::key_status(m, 2000, false, true);
    EXPECT_EQ(status["rekey"], nlohmann::json::parse(R"({"mode":"multicast","address":"239.192.1.1","port":8848,"joined":true})"));
  }
}
