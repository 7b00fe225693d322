// The key server's rekeys (ks/rekey.h) in memory: the schedule, what a
// rekey changes and saves before anything is sent, unicast delivery with
// RFC 8263 acknowledgements, retransmission, misses, member removal and a
// restart from the state file. Every push is checked by the real member
// side, gdoi::PushReceiver, as registration set it up: the cross-check
// between key server and member.
#include <gtest/gtest.h>

#include "fixtures.h"

#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>

#include "crypto/random.h"
#include "gdoi/policy_codec.h"
#include "gdoi/push.h"
#include "ks/rekey.h"
#include "ks/state_store.h"
#include "wire/message.h"

using namespace covey;
using covey::fixtures::prefix;
using gdoi::PushAccepted;
using gdoi::PushReceiver;
using ks::RekeyReason;

namespace {

const std::int64_t kStart = 1'000'000;
// The rekeyer takes ms where it builds a push (the pseudotime); the tests
// count seconds like its schedule.
constexpr std::int64_t ms(std::int64_t s) { return s * 1000; }
const Address kKs = *Address::parse("10.1.12.1");
const Address kGm3 = *Address::parse("10.1.23.3");
const Address kGm4 = *Address::parse("10.1.24.4");
const Address kKs6 = *Address::parse("2001:db8:12::1");
const Address kGm6 = *Address::parse("2001:db8:23::3");

const crypto::PrivateKey& signing_key() {
  static crypto::PrivateKey k = crypto::PrivateKey::generate_ec(crypto::EcCurve::P256).value();
  return k;
}

crypto::PrivateKey clone(const crypto::PrivateKey& k) { return crypto::PrivateKey::from_pem(*k.to_pem()).value(); }

gdoi::GroupPolicy lab_policy() {
  gdoi::GroupPolicy p = fixtures::group_policy();
  p.tek_lifetime_s = 3600;
  p.kek.lifetime_s = 86400;
  p.kek.signature = gdoi::KekPolicy::Signature::EcdsaP256;
  p.kek.signature_key_bits = 256;
  p.rekey.retransmit_period_s = 10;
  p.rekey.retransmit_count = 2;
  return p;
}

const PushAccepted* accepted(const gdoi::PushResult& r) { return std::get_if<PushAccepted>(&r); }
std::string describe(const gdoi::PushResult& r) {
  if (auto* f = std::get_if<gdoi::PushRefused>(&r)) return std::string(f->counter()) + ": " + f->detail;
  return "accepted SEQ " + std::to_string(std::get<PushAccepted>(r).seq);
}

std::uint32_t push_seq(ByteView datagram, const gdoi::Kek& kek, const gdoi::KekPolicy& policy);
std::optional<std::uint32_t> push_pseudotime(ByteView datagram, const gdoi::Kek& kek, const gdoi::KekPolicy& policy);

class KsRekey : public ::testing::Test {
 protected:
  void SetUp() override { make(lab_policy()); }

  void make(gdoi::GroupPolicy p) {
    groups = std::make_unique<ks::Groups>();
    auto g = ks::Group::create(std::move(p),
                               ks::Authorization{{prefix("10.1.0.0", 16), prefix("2001:db8:23::", 48)}, {}},
                               clone(signing_key()), kKs, kStart);
    ASSERT_TRUE(g.ok()) << g.error();
    groups->add(std::move(*g));
    rekeyer = std::make_unique<ks::Rekeyer>(*groups);
    members.clear();
  }

  ks::Group& group() { return *groups->find(134); }

  // Registers `addr` as GROUPKEY-PULL does (message 2's offer, admission
  // at message 3) and gives it a receiver from what messages 2 and 4 carry.
  // A covey member: its Main Mode carried covey's Vendor ID.
  // `ks`: the key server address it registered to.
  void join(const Address& addr, std::uint16_t port = 848, const Address& ks = kKs) {
    auto offer = group().offer(gdoi::PeerTraits{true}, ms(now));
    offer.group_id = 134;
    ike::Phase1Sa sa;
    sa.peer = Endpoint{addr, port};
    sa.peer_vendor_ids = {gdoi::covey_vendor_id()};
    groups->set_clock_ms(ms(now));
    groups->set_local(ks);
    auto admitted = groups->admit(offer, sa, 1);
    auto* a = std::get_if<gdoi::GroupDirectory::Admission>(&admitted);
    ASSERT_NE(a, nullptr) << std::get<ike::Failure>(admitted).reason;
    auto rsa = gdoi::decode_group_sa(offer.sa);
    ASSERT_TRUE(rsa.ok()) << rsa.error();
    auto keys = gdoi::decode_key_download(gdoi::encode_key_download(offer.keys), *rsa);
    ASSERT_TRUE(keys.ok()) << keys.error();
    bool ack = false;
    for (const auto& attr : offer.sa.kek->attributes) ack |= attr.type == wire::kek_attr::KekAckRequested;
    auto r = PushReceiver::create(*keys->kek, rsa->policy.kek, a->seq.value_or(0), ack);
    ASSERT_TRUE(r.ok()) << r.error();
    members.erase(addr);
    members.emplace(addr, std::move(*r));
  }

  PushReceiver& gm(const Address& a) { return members.at(a); }

  // The member takes the push; its acknowledgement, when it should send one.
  std::optional<Bytes> receive(const Address& a, ByteView datagram) {
    auto r = gm(a).receive(datagram);
    const PushAccepted* ok = accepted(r);
    EXPECT_TRUE(ok) << a.str() << ": " << describe(r);
    if (!ok || !ok->ack_requested) return std::nullopt;
    auto ack = gdoi::build_ack(ok->ack_key, ok->seq, a);
    EXPECT_TRUE(ack.ok()) << ack.error();
    return *ack;
  }

  std::vector<ks::PushDatagram> sent() { return rekeyer->take_outgoing(); }

  std::string log() {
    std::string out;
    for (const auto& e : rekeyer->take_events()) out += e.text + "\n";
    return out;
  }

  std::unique_ptr<ks::Groups> groups;
  std::unique_ptr<ks::Rekeyer> rekeyer;
  std::map<Address, PushReceiver> members;
  std::int64_t now = kStart;
};

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// ------------------------------------------------------------- schedule

TEST_F(KsRekey, ScheduleIsExpiryMinusTheMargins) {
  // Defaults: min(90 s, TEK lifetime / 4), min(300 s, KEK lifetime / 4).
  EXPECT_EQ(rekeyer->tek_rekey_at(group()), kStart + 3600 - 90);
  EXPECT_EQ(rekeyer->kek_rekey_at(group()), kStart + 86400 - 300);
  EXPECT_EQ(rekeyer->next_rekey_at(group()), kStart + 3600 - 90);
  gdoi::GroupPolicy shortlived = lab_policy();
  shortlived.tek_lifetime_s = 200;
  shortlived.kek.lifetime_s = 1000;
  EXPECT_EQ(ks::tek_margin({}, shortlived), 50u);
  EXPECT_EQ(ks::kek_margin({}, shortlived), 250u);
  // Never shorter than the activation delay and the retransmissions (2 x
  // 10 s, + 5 s of ticks and transit) take.
  gdoi::GroupPolicy delayed = lab_policy();
  delayed.activation_delay_s = 120;
  EXPECT_EQ(ks::tek_margin({}, delayed), 145u);
  rekeyer->set_margins(134, ks::RekeyMargins{30, 600});
  EXPECT_EQ(rekeyer->tek_rekey_at(group()), kStart + 3600 - 30);
  EXPECT_EQ(rekeyer->kek_rekey_at(group()), kStart + 86400 - 600);
}

TEST_F(KsRekey, TekRekeyAtItsTimeNotBefore) {
  join(kGm3);
  rekeyer->tick(ms(kStart + 3600 - 91));
  EXPECT_TRUE(sent().empty());
  EXPECT_EQ(group().seq(), 0u);
  now = kStart + 3600 - 90;
  const gdoi::KekSpi kek_before = group().kek().spi;
  rekeyer->tick(ms(now));
  auto out = sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(group().seq(), 1u);
  EXPECT_EQ(group().kek().spi, kek_before);  // the KEK is not due
  ASSERT_EQ(group().teks().size(), 2u);      // the old TEK stays until it expires
  EXPECT_EQ(group().teks()[0].expires_at, kStart + 3600);
  EXPECT_EQ(group().teks()[1].expires_at, now + 3600);
  EXPECT_EQ(rekeyer->last_rekey(group())->reason, RekeyReason::TekLifetime);
  EXPECT_TRUE(has(log(), "Sending rekey SEQ 1 for group GET_VPN (134) to 1 members (unicast): tek-lifetime"));
  auto ack = receive(kGm3, *out[0].datagram);
  ASSERT_TRUE(ack);
  rekeyer->receive_ack(Endpoint{kGm3, 848}, *ack, now);
  // The next one is due from the new TEK; the old TEK is forgotten when it ends.
  EXPECT_EQ(rekeyer->tek_rekey_at(group()), now + 3600 - 90);
  rekeyer->tick(ms(kStart + 3600));
  EXPECT_EQ(group().teks().size(), 1u);
  EXPECT_TRUE(sent().empty());
}

// A KEK rekey due while a TEK rekey's push is still being delivered would
// replace that push before every member has it: the TEK rekey takes the
// new KEK along instead.
TEST_F(KsRekey, ATekRekeyTakesAlongAKekDueWithinItsDelivery) {
  gdoi::GroupPolicy p = lab_policy();
  p.kek.lifetime_s = 3820;  // KEK rekey due at +3520, 10 s after the TEK's
  make(p);
  join(kGm3);
  ASSERT_EQ(rekeyer->kek_rekey_at(group()), kStart + 3520);
  ASSERT_LT(10u, ks::delivery_span(group().policy()));
  const gdoi::KekSpi kek_before = group().kek().spi;
  now = kStart + 3510;
  rekeyer->tick(ms(now));
  ASSERT_EQ(sent().size(), 1u);
  EXPECT_EQ(rekeyer->last_rekey(group())->reason, RekeyReason::TekLifetime);
  EXPECT_NE(group().kek().spi, kek_before);
  EXPECT_EQ(group().kek_expires_at(), now + 3820);
  rekeyer->tick(ms(kStart + 3520));  // nothing left due
  EXPECT_EQ(group().seq(), 1u);
}

TEST_F(KsRekey, KekRekeyRollsTheKekUnderTheOldOne) {
  join(kGm3);
  const gdoi::Kek old = group().kek();
  now = kStart + 86400 - 300;
  rekeyer->tick(ms(now));
  auto out = sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_NE(group().kek().spi, old.spi);
  EXPECT_EQ(group().kek().signature_public_key, old.signature_public_key);
  EXPECT_EQ(group().kek_expires_at(), now + 86400);
  EXPECT_EQ(rekeyer->last_rekey(group())->reason, RekeyReason::KekLifetime);
  // Encrypted under the KEK the member holds, carrying the new one.
  auto r = gm(kGm3).receive(*out[0].datagram);
  ASSERT_TRUE(accepted(r)) << describe(r);
  EXPECT_TRUE(accepted(r)->kek_replaced);
  EXPECT_EQ(accepted(r)->keys.kek->spi, group().kek().spi);
  EXPECT_EQ(accepted(r)->ack_key.spi, old.spi);
  EXPECT_EQ(gm(kGm3).kek().spi, group().kek().spi);
}

// ------------------------------------------------------ the push itself

TEST_F(KsRekey, OneDatagramForEveryMemberThatTheMemberAccepts) {
  join(kGm3, 848);
  join(kGm4, 40000);
  join(*Address::parse("10.1.25.5"), 848);
  auto seq = rekeyer->rekey(group(), RekeyReason::Operator, ms(now));
  ASSERT_TRUE(seq.ok()) << seq.error();
  EXPECT_EQ(*seq, 1u);
  auto out = sent();
  ASSERT_EQ(out.size(), 3u);
  for (const auto& d : out) {
    EXPECT_EQ(d.datagram, out[0].datagram);  // built and signed once
    EXPECT_EQ(d.from, kKs);                  // the address it registered to
    EXPECT_FALSE(d.multicast_ttl);
  }
  std::map<Address, std::uint16_t> ports;
  for (const auto& d : out) ports[d.to.address] = d.to.port;
  EXPECT_EQ(ports.at(kGm4), 40000);  // the port it registered from
  EXPECT_EQ(ports.at(kGm3), 848);

  const ks::Group::LiveTek& fresh = group().teks().back();
  auto r = gm(kGm3).receive(*out[0].datagram);
  const PushAccepted* a = accepted(r);
  ASSERT_TRUE(a) << describe(r);
  EXPECT_EQ(a->seq, 1u);
  ASSERT_EQ(a->keys.teks.size(), 1u);
  EXPECT_EQ(a->keys.teks[0].spi, fresh.tek.spi);
  EXPECT_TRUE(crypto::equal_constant_time(a->keys.teks[0].encryption_key, fresh.tek.encryption_key));
  EXPECT_TRUE(crypto::equal_constant_time(a->keys.teks[0].integrity_key, fresh.tek.integrity_key));
  ASSERT_TRUE(a->keys.kek);  // the current KEK, with its remaining lifetime
  EXPECT_EQ(a->keys.kek->spi, group().kek().spi);
  EXPECT_FALSE(a->kek_replaced);
  EXPECT_TRUE(a->ack_requested);
  ASSERT_TRUE(a->sa);
  EXPECT_EQ(a->sa->policy.acl, group().policy().acl);
  EXPECT_EQ(a->sa->tek_remaining_s, (std::vector<std::uint32_t>{3600}));
}

TEST_F(KsRekey, SeqGrowsAndIsSavedBeforeAnythingIsSent) {
  join(kGm3);
  std::vector<std::uint32_t> saved;
  groups->set_write_now([&]() -> crypto::Result<void> {
    saved.push_back(group().seq());
    EXPECT_TRUE(rekeyer->take_outgoing().empty()) << "a datagram was handed out before the state was saved";
    return {};
  });
  for (std::uint32_t want = 1; want <= 3; ++want) {
    auto seq = rekeyer->rekey(group(), RekeyReason::Operator, ms(now));
    ASSERT_TRUE(seq.ok()) << seq.error();
    EXPECT_EQ(*seq, want);
    auto out = sent();
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(push_seq(*out[0].datagram, gm(kGm3).kek(), gm(kGm3).kek_policy()), want);
    ASSERT_TRUE(receive(kGm3, *out[0].datagram));
    now += 5;
  }
  EXPECT_EQ(saved, (std::vector<std::uint32_t>{1, 2, 3}));
}

TEST_F(KsRekey, AFailedSaveSendsNothingAndChangesNothing) {
  join(kGm3);
  groups->set_write_now([]() -> crypto::Result<void> {
    return crypto::Error{"state file /var/lib/covey/ks-state: cannot fsync: No space left on device"};
  });
  const auto spi = group().kek().spi;
  const auto teks = group().teks().size();
  auto seq = rekeyer->rekey(group(), RekeyReason::Operator, ms(now));
  ASSERT_FALSE(seq.ok());
  EXPECT_TRUE(has(seq.error(), "GET_VPN")) << seq.error();
  EXPECT_TRUE(sent().empty());
  EXPECT_EQ(group().seq(), 0u);
  EXPECT_EQ(group().kek().spi, spi);
  EXPECT_EQ(group().teks().size(), teks);
  EXPECT_EQ(rekeyer->rekeys_sent(group()), 0u);
  std::string text = log();
  EXPECT_TRUE(has(text, "Rekey of group GET_VPN (134) (operator) not sent: state file /var/lib/covey/ks-state")) << text;
  // A member removal that cannot be saved leaves the member in the group.
  auto removed = rekeyer->remove_member(kGm3, std::nullopt, ms(now));
  EXPECT_FALSE(removed.ok());
  EXPECT_NE(group().find_member(kGm3), nullptr);
  // A scheduled rekey that fails is tried again later, not every second.
  rekeyer->tick(ms(kStart + 3600 - 90));
  EXPECT_TRUE(sent().empty());
  groups->set_write_now([]() -> crypto::Result<void> { return {}; });
  rekeyer->tick(ms(kStart + 3600 - 89));
  EXPECT_TRUE(sent().empty());
  rekeyer->tick(ms(kStart + 3600 - 80));
  EXPECT_EQ(sent().size(), 1u);
  EXPECT_EQ(group().seq(), 1u);
}

// ----------------------------------------------------- acknowledgements

TEST_F(KsRekey, AckFromTheMemberMarksItDelivered) {
  join(kGm3);
  join(kGm4);
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now)).ok());
  auto out = sent();
  ASSERT_EQ(out.size(), 2u);
  group().find_member(kGm3)->missed_rekeys = 2;
  auto ack = receive(kGm3, *out[0].datagram);
  ASSERT_TRUE(ack);
  rekeyer->receive_ack(Endpoint{kGm3, 848}, *ack, now);
  EXPECT_EQ(group().find_member(kGm3)->last_acked_seq, 1u);
  EXPECT_EQ(group().find_member(kGm3)->missed_rekeys, 0u);
  EXPECT_FALSE(group().find_member(kGm4)->last_acked_seq);
  EXPECT_EQ(rekeyer->last_rekey(group())->acked, 1u);
  EXPECT_EQ(rekeyer->last_rekey(group())->members, 2u);
  EXPECT_EQ(rekeyer->pending(group()), 1u);
  EXPECT_TRUE(has(log(), "GM 10.1.23.3 acknowledged rekey SEQ 1 of group GET_VPN"));
  // Acknowledged: no retransmission to it; the other one is retransmitted.
  rekeyer->tick(ms(now + 10));
  out = sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to.address, kGm4);
  // The same acknowledgement again changes nothing.
  rekeyer->receive_ack(Endpoint{kGm3, 848}, *ack, now);
  EXPECT_EQ(rekeyer->last_rekey(group())->acked, 1u);
  EXPECT_EQ(rekeyer->counters().acks, 1u);
}

// A dual-stack key server: a member registered over IPv6 gets its push
// from the IPv6 address it registered to, and acknowledges with its
// address as ID_IPV6_ADDR (RFC 8263 3.4); the IPv4 member beside it as
// ever.
TEST_F(KsRekey, AMemberRegisteredOverIpv6IsRekeyedAndAcksOverIpv6) {
  join(kGm3);
  join(kGm6, 848, kKs6);
  EXPECT_EQ(group().find_member(kGm6)->registered_to, kKs6);
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now)).ok());
  auto out = sent();
  ASSERT_EQ(out.size(), 2u);
  std::map<Address, ks::PushDatagram> by_member;
  for (const auto& d : out) by_member.emplace(d.to.address, d);
  ASSERT_EQ(by_member.count(kGm6), 1u);
  EXPECT_EQ(by_member.at(kGm6).to, (Endpoint{kGm6, 848}));
  EXPECT_EQ(by_member.at(kGm6).from, kKs6);
  EXPECT_EQ(by_member.at(kGm3).from, kKs);
  auto ack = receive(kGm6, *by_member.at(kGm6).datagram);
  ASSERT_TRUE(ack);
  // HDR, HASH, SEQ, ID: the ID payload ends the datagram, ID_IPV6_ADDR
  // with the member's 16 octets.
  ASSERT_GT(ack->size(), 20u);
  EXPECT_EQ((*ack)[ack->size() - 20], static_cast<std::uint8_t>(wire::IdType::Ipv6Addr));
  EXPECT_TRUE(std::equal(kGm6.bytes.begin(), kGm6.bytes.end(), ack->end() - 16));
  rekeyer->receive_ack(Endpoint{kGm6, 848}, *ack, now);
  EXPECT_EQ(group().find_member(kGm6)->last_acked_seq, 1u);
  EXPECT_FALSE(group().find_member(kGm3)->last_acked_seq);
  EXPECT_TRUE(has(log(), "GM 2001:db8:23::3 acknowledged rekey SEQ 1 of group GET_VPN"));
  // The IPv4 member's ACK names it as ID_IPV4_ADDR, and is taken too.
  auto ack4 = receive(kGm3, *by_member.at(kGm3).datagram);
  ASSERT_TRUE(ack4);
  EXPECT_EQ((*ack4)[ack4->size() - 8], static_cast<std::uint8_t>(wire::IdType::Ipv4Addr));
  rekeyer->receive_ack(Endpoint{kGm3, 848}, *ack4, now);
  EXPECT_EQ(rekeyer->last_rekey(group())->acked, 2u);
  // An IPv6 member's ACK naming the IPv4 member is refused.
  rekeyer->receive_ack(Endpoint{kGm6, 848}, *ack4, now);
  EXPECT_EQ(rekeyer->counters().acks_refused, 1u);
}

TEST_F(KsRekey, AckIsRefusedForAnotherIdUnknownSeqOrWrongKey) {
  join(kGm3);
  join(kGm4);
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now)).ok());
  auto out = sent();
  auto r = gm(kGm3).receive(*out[0].datagram);
  ASSERT_TRUE(accepted(r)) << describe(r);
  const gdoi::AckKey& key = accepted(r)->ack_key;

  struct Case {
    const char* what;
    Bytes ack;
    Endpoint from;
    const char* reason;
  };
  gdoi::AckKey wrong{key.spi, *crypto::random_secret(32)};
  std::vector<Case> cases = {
      {"ID names gm4, sent by gm3", *gdoi::build_ack(key, 1, kGm4), Endpoint{kGm3, 848}, "not the address it came from"},
      {"ID of no member", *gdoi::build_ack(key, 1, *Address::parse("10.1.99.9")), Endpoint{*Address::parse("10.1.99.9"), 848},
       "is not a registered member"},
      {"SEQ never sent", *gdoi::build_ack(key, 7, kGm3), Endpoint{kGm3, 848}, "SEQ 7 is not a rekey of this group"},
      {"HASH under another key", *gdoi::build_ack(wrong, 1, kGm3), Endpoint{kGm3, 848}, "HASH mismatch"},
      {"cookies of no KEK", *gdoi::build_ack(gdoi::AckKey{gdoi::KekSpi{1, 2, 3}, *crypto::random_secret(32)}, 1, kGm3),
       Endpoint{kGm3, 848}, "name no KEK"},
  };
  for (const Case& c : cases) {
    rekeyer->receive_ack(c.from, c.ack, now);
    std::string text = log();
    EXPECT_TRUE(has(text, "Refused GROUPKEY-PUSH ACK from")) << c.what << ": " << text;
    EXPECT_TRUE(has(text, c.reason)) << c.what << ": " << text;
  }
  EXPECT_EQ(rekeyer->counters().acks_refused, cases.size());
  EXPECT_EQ(rekeyer->counters().acks, 0u);
  EXPECT_EQ(rekeyer->last_rekey(group())->acked, 0u);
  EXPECT_FALSE(group().find_member(kGm3)->last_acked_seq);
  EXPECT_FALSE(group().find_member(kGm4)->last_acked_seq);
  // And the right one is still taken.
  rekeyer->receive_ack(Endpoint{kGm3, 848}, *gdoi::build_ack(key, 1, kGm3), now);
  EXPECT_EQ(group().find_member(kGm3)->last_acked_seq, 1u);
}

TEST_F(KsRekey, AckOfAPushUnderTheOldKekUsesTheOldKeksAckKey) {
  join(kGm3);
  const gdoi::KekSpi old = group().kek().spi;
  now = kStart + 86400 - 300;
  rekeyer->tick(ms(now));  // KEK rollover: encrypted under the old KEK
  auto out = sent();
  ASSERT_EQ(out.size(), 1u);
  auto ack = receive(kGm3, *out[0].datagram);
  ASSERT_TRUE(ack);
  auto h = wire::decode_header(*ack);
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(std::equal(h->initiator_cookie.begin(), h->initiator_cookie.end(), old.begin()));
  rekeyer->receive_ack(Endpoint{kGm3, 848}, *ack, now);
  EXPECT_EQ(group().find_member(kGm3)->last_acked_seq, 1u);
  // The next push comes under the new KEK, and so does its acknowledgement.
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now + 1)).ok());
  out = sent();
  ack = receive(kGm3, *out[0].datagram);
  ASSERT_TRUE(ack);
  rekeyer->receive_ack(Endpoint{kGm3, 848}, *ack, now + 1);
  EXPECT_EQ(group().find_member(kGm3)->last_acked_seq, 2u);
}

// -------------------------------------------- retransmission and misses

TEST_F(KsRekey, RetransmitsTheSameBytesThenCountsAMiss) {
  join(kGm3);
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now)).ok());
  auto first = sent();
  ASSERT_EQ(first.size(), 1u);
  rekeyer->tick(ms(now + 9));
  EXPECT_TRUE(sent().empty());
  for (int k = 1; k <= 2; ++k) {  // retransmit_count = 2, every 10 s
    rekeyer->tick(ms(now + 10 * k));
    auto again = sent();
    ASSERT_EQ(again.size(), 1u) << "retransmission " << k;
    EXPECT_EQ(*again[0].datagram, *first[0].datagram);
    EXPECT_EQ(again[0].to, first[0].to);
  }
  EXPECT_TRUE(has(log(), "Retransmitting rekey SEQ 1 for group GET_VPN (134) to 1 member"));
  EXPECT_EQ(group().find_member(kGm3)->missed_rekeys, 0u);
  rekeyer->tick(ms(now + 30));
  EXPECT_TRUE(sent().empty());
  EXPECT_EQ(group().find_member(kGm3)->missed_rekeys, 1u);
  EXPECT_TRUE(has(log(), "GM 10.1.23.3 did not acknowledge rekey SEQ 1 of group GET_VPN (1 in a row)"));
  rekeyer->tick(ms(now + 100));
  EXPECT_TRUE(sent().empty());
  EXPECT_EQ(rekeyer->counters().retransmissions, 2u);
}

// The state file's journal appends the members recorded as changed. Sending
// a push and retransmitting it change no member: at 100,000 members a rekey
// that recorded them all rewrote the whole member list. Only the ack (the
// member's last acknowledged SEQ) and the miss (its count) change one.
TEST_F(KsRekey, SendingAndRetransmittingChangeNoMemberOnlyAcksAndMissesDo) {
  join(kGm3);
  join(kGm4);
  group().clear_changed_members();
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now)).ok());
  auto out = sent();
  ASSERT_EQ(out.size(), 2u);
  rekeyer->tick(ms(now + 10));  // the first retransmission
  ASSERT_EQ(sent().size(), 2u);
  EXPECT_TRUE(group().changed_members().empty());

  auto ack = receive(kGm3, *out[0].datagram);  // built once: every member's is the same
  ASSERT_TRUE(ack);
  rekeyer->receive_ack(Endpoint{kGm3, 848}, *ack, now + 11);
  EXPECT_EQ(group().changed_members(), (std::set<Address>{kGm3}));
  group().clear_changed_members();
  rekeyer->tick(ms(now + 20));
  EXPECT_EQ(sent().size(), 1u);
  EXPECT_TRUE(group().changed_members().empty());
  rekeyer->tick(ms(now + 30));  // kGm4's retransmissions are spent: a miss
  EXPECT_EQ(group().changed_members(), (std::set<Address>{kGm4}));
  EXPECT_EQ(group().members().at(kGm4).missed_rekeys, 1u);
}

// Pacing (issue 14): a rekey that none of 120 members acknowledges. Their
// retransmissions are spread over the second half of the 10 s period, a
// slice of 20 a tick from +5 s to +10 s, not one burst of 120 at +10 s;
// the second round keeps the spread, and every miss is still counted by
// the end of the delivery span (3 periods), never later.
TEST_F(KsRekey, RetransmissionsAreSpreadOverTheSecondHalfOfThePeriod) {
  constexpr int kMembers = 120;
  for (int i = 0; i < kMembers; ++i) join(*Address::parse("10.1.30." + std::to_string(i + 1)));
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now)).ok());
  ASSERT_EQ(sent().size(), std::size_t{kMembers});
  std::map<int, std::size_t> resent;  // seconds after the push -> datagrams
  std::set<Address> first_round;
  for (int t = 1; t <= 40; ++t) {
    rekeyer->tick(ms(now + t));
    for (const auto& d : sent()) {
      ++resent[t];
      if (t <= 10) {
        EXPECT_TRUE(first_round.insert(d.to.address).second) << d.to.address.str() << " twice by +10 s";
      }
    }
  }
  const std::map<int, std::size_t> expected{{5, 20},  {6, 20},  {7, 20},  {8, 20},  {9, 20},  {10, 20},
                                            {15, 20}, {16, 20}, {17, 20}, {18, 20}, {19, 20}, {20, 20}};
  EXPECT_EQ(resent, expected);
  EXPECT_EQ(first_round.size(), std::size_t{kMembers});
  EXPECT_EQ(rekeyer->counters().retransmissions, 2u * kMembers);
  EXPECT_EQ(rekeyer->counters().misses, std::uint64_t{kMembers});
  EXPECT_EQ(rekeyer->pending(group()), 0u);
}

TEST_F(KsRekey, ThreeMissesInARowDropTheMember) {
  join(kGm3);
  join(kGm4);
  for (int k = 0; k < 3; ++k) {
    ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now)).ok());
    auto out = sent();
    for (const auto& d : out)
      if (d.to.address == kGm3) {
        auto ack = receive(kGm3, *d.datagram);
        rekeyer->receive_ack(d.to, *ack, now);
      }
    now += 31;
    rekeyer->tick(ms(now - 21));
    rekeyer->tick(ms(now - 11));
    rekeyer->tick(ms(now - 1));
    sent();
  }
  EXPECT_EQ(group().find_member(kGm4), nullptr);
  ASSERT_NE(group().find_member(kGm3), nullptr);
  EXPECT_EQ(group().find_member(kGm3)->missed_rekeys, 0u);
  EXPECT_TRUE(has(log(), "GM 10.1.24.4 removed from group GET_VPN: 3 consecutive rekeys not acknowledged"));
  EXPECT_TRUE(groups->state_dirty());
  EXPECT_EQ(rekeyer->counters().dropped_members, 1u);
}

TEST_F(KsRekey, ANewRekeyReplacesAnUnacknowledgedOneAsAMiss) {
  join(kGm3);
  for (std::uint32_t k = 1; k <= 3; ++k) {
    ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now + k)).ok());
    EXPECT_EQ(sent().size(), 1u);
  }
  // SEQ 1 and 2 replaced unacknowledged: two misses; SEQ 3 is outstanding.
  EXPECT_EQ(group().find_member(kGm3)->missed_rekeys, 2u);
  EXPECT_EQ(rekeyer->pending(group()), 1u);
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now + 4)).ok());
  EXPECT_EQ(group().find_member(kGm3), nullptr);  // the third miss
  EXPECT_TRUE(sent().empty());
}

TEST_F(KsRekey, AMemberThatRegisteredSinceThePushIsNotChased) {
  join(kGm3);
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now)).ok());
  sent();
  now += 5;
  join(kGm3);  // registered again: it has the keys and SEQ 1
  rekeyer->tick(ms(now + 10));
  EXPECT_TRUE(sent().empty());
  rekeyer->tick(ms(now + 40));
  EXPECT_EQ(group().find_member(kGm3)->missed_rekeys, 0u);
}

// ----------------------------------------------------- member removal

TEST_F(KsRekey, RemovalRekeysKekAndTekToTheOthersOnly) {
  join(kGm3);
  join(kGm4);
  const gdoi::KekSpi old_kek = group().kek().spi;
  const std::uint32_t old_tek = group().teks().back().tek.spi;
  auto seq = rekeyer->remove_member(kGm4, std::nullopt, ms(now));
  ASSERT_TRUE(seq.ok()) << seq.error();
  EXPECT_EQ(group().find_member(kGm4), nullptr);
  auto out = sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to.address, kGm3);
  EXPECT_NE(group().kek().spi, old_kek);
  EXPECT_EQ(rekeyer->last_rekey(group())->reason, RekeyReason::MemberRemoved);

  auto r = gm(kGm3).receive(*out[0].datagram);
  const PushAccepted* a = accepted(r);
  ASSERT_TRUE(a) << describe(r);
  EXPECT_TRUE(a->kek_replaced);
  EXPECT_EQ(gm(kGm3).kek().spi, group().kek().spi);
  ASSERT_EQ(a->keys.teks.size(), 1u);
  EXPECT_NE(a->keys.teks[0].spi, old_tek);
  // The old TEK lives on only as GET VPN shortens it (max(90 s, 5% of 3600 s)
  // = 180 s), and the push's DEACTIVATION_TIME_DELAY tells members so.
  ASSERT_TRUE(a->sa);
  EXPECT_EQ(a->sa->policy.deactivation_delay_s, 180u);
  EXPECT_EQ(group().teks().front().tek.spi, old_tek);
  EXPECT_EQ(group().teks().front().expires_at, now + 180);

  // gm4 missed this push: the next one comes under a KEK it does not hold.
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now + 1)).ok());
  out = sent();
  ASSERT_EQ(out.size(), 1u);
  auto refused = gm(kGm4).receive(*out[0].datagram);
  ASSERT_TRUE(std::holds_alternative<gdoi::PushRefused>(refused));
  EXPECT_EQ(std::get<gdoi::PushRefused>(refused).reason, gdoi::PushRefused::Reason::UnknownKek);
  EXPECT_TRUE(accepted(gm(kGm3).receive(*out[0].datagram)));

  EXPECT_FALSE(rekeyer->remove_member(kGm4, std::nullopt, ms(now)).ok());  // not a member any more
  auto unknown = rekeyer->remove_member(kGm3, std::string("NOPE"), ms(now));
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(has(unknown.error(), "no group named NOPE"));
}

TEST_F(KsRekey, RemovalInAMulticastGroupGoesByUnicastWithAcks) {
  gdoi::GroupPolicy p = lab_policy();
  p.rekey.mode = gdoi::RekeyTransport::Mode::Multicast;
  p.rekey.multicast_address = prefix("239.192.1.1", 32);
  p.rekey.port = 8848;
  p.rekey.ttl = 3;
  make(p);
  join(kGm3);
  join(kGm4);
  // A scheduled rekey: one datagram to the group, no acknowledgement.
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now)).ok());
  auto out = sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to, (Endpoint{*Address::parse("239.192.1.1"), 8848}));
  EXPECT_EQ(out[0].multicast_ttl, 3);
  EXPECT_EQ(out[0].from, kKs);
  EXPECT_FALSE(receive(kGm3, *out[0].datagram));  // no ACK asked
  EXPECT_TRUE(accepted(gm(kGm4).receive(*out[0].datagram)));
  EXPECT_EQ(rekeyer->pending(group()), 0u);
  EXPECT_EQ(rekeyer->last_rekey(group())->members, 2u);
  EXPECT_FALSE(rekeyer->last_rekey(group())->unicast);
  rekeyer->tick(ms(now + 100));
  EXPECT_TRUE(sent().empty());

  ASSERT_TRUE(rekeyer->remove_member(kGm4, std::string("GET_VPN"), ms(now + 101)).ok());
  out = sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to.address, kGm3);
  EXPECT_FALSE(out[0].multicast_ttl);
  auto ack = receive(kGm3, *out[0].datagram);
  ASSERT_TRUE(ack) << "a unicast push asks for an acknowledgement";
  rekeyer->receive_ack(Endpoint{kGm3, 848}, *ack, now + 101);
  EXPECT_EQ(group().find_member(kGm3)->last_acked_seq, 2u);
}

TEST(KsRekeyShortening, GetVpnFormula) {
  gdoi::GroupPolicy p = lab_policy();
  p.tek_lifetime_s = 3600;
  EXPECT_EQ(ks::shortened_lifetime(3000, p), 180u);  // 5% of 3600
  EXPECT_EQ(ks::shortened_lifetime(100, p), 100u);   // never longer than what is left
  p.tek_lifetime_s = 600;
  EXPECT_EQ(ks::shortened_lifetime(500, p), 90u);  // at least 90 s
  p.tek_lifetime_s = 86400 * 2;
  EXPECT_EQ(ks::shortened_lifetime(100000, p), 3600u);  // at most 3600 s
  p.tek_lifetime_s = 3600;
  p.activation_delay_s = 600;
  // Members need it until the new one activates, also those that take the
  // push at its last retransmission (2 x 10 s, + 5 s of ticks and transit).
  EXPECT_EQ(ks::shortened_lifetime(3000, p), 625u);
}

// ------------------------------------------------------- policy change

TEST_F(KsRekey, PolicyChangeRekeysOnlyWhenMembersWouldSeeIt) {
  join(kGm3);
  gdoi::GroupPolicy quiet = group().policy();
  quiet.rekey.retransmit_count = 5;
  auto none = rekeyer->change_policy(group(), quiet, ms(now));
  ASSERT_TRUE(none.ok()) << none.error();
  EXPECT_FALSE(*none);
  EXPECT_TRUE(sent().empty());
  EXPECT_EQ(group().policy().rekey.retransmit_count, 5u);

  gdoi::GroupPolicy acl = group().policy();
  gdoi::AclEntry deny;
  deny.action = gdoi::AclEntry::Action::Deny;
  deny.protocol = 17;
  deny.source_port = {848, 848};
  deny.destination_port = {848, 848};
  acl.acl.insert(acl.acl.begin(), deny);
  const gdoi::KekSpi kek = group().kek().spi;
  auto seq = rekeyer->change_policy(group(), acl, ms(now));
  ASSERT_TRUE(seq.ok()) << seq.error();
  ASSERT_TRUE(*seq);
  EXPECT_EQ(group().kek().spi, kek);  // the KEK policy did not change
  auto out = sent();
  ASSERT_EQ(out.size(), 1u);
  auto r = gm(kGm3).receive(*out[0].datagram);
  ASSERT_TRUE(accepted(r)) << describe(r);
  EXPECT_EQ(accepted(r)->sa->policy.acl, acl.acl);
  EXPECT_EQ(rekeyer->last_rekey(group())->reason, RekeyReason::PolicyChange);

  // A new transform: the old TEK cannot be offered under it any more.
  gdoi::GroupPolicy aes128 = group().policy();
  aes128.tek.cipher = gdoi::TekTransform::Cipher::Aes128Cbc;
  ASSERT_TRUE(rekeyer->change_policy(group(), aes128, ms(now + 1)).ok());
  ASSERT_EQ(group().teks().size(), 1u);
  EXPECT_EQ(group().teks()[0].tek.encryption_key.size(), 16u);
  out = sent();
  r = gm(kGm3).receive(*out[0].datagram);
  ASSERT_TRUE(accepted(r)) << describe(r);
  EXPECT_EQ(accepted(r)->keys.teks[0].encryption_key.size(), 16u);

  // A new KEK cipher: a new KEK, announced under the old one.
  gdoi::GroupPolicy kek128 = group().policy();
  kek128.kek.cipher = crypto::CipherAlgorithm::Aes128Cbc;
  ASSERT_TRUE(rekeyer->change_policy(group(), kek128, ms(now + 2)).ok());
  EXPECT_NE(group().kek().spi, kek);
  out = sent();
  r = gm(kGm3).receive(*out[0].datagram);
  ASSERT_TRUE(accepted(r)) << describe(r);
  EXPECT_TRUE(accepted(r)->kek_replaced);
  EXPECT_EQ(gm(kGm3).kek_policy().cipher, crypto::CipherAlgorithm::Aes128Cbc);
}

// A reload with another signing key (ks/reload.h): one push signed with
// the old key carrying the new public key (and a new KEK), then every push
// signed with the new key. Members follow it with no registration; one
// that missed the rollover push sees the next under a KEK it never held.
TEST_F(KsRekey, SigningKeyRolloverSignsWithTheOldKeyOnceThenTheNew) {
  join(kGm3);
  join(kGm4);
  auto next = crypto::PrivateKey::generate_rsa(2048).value();
  const Bytes next_spki = *next.public_key()->to_der();
  const gdoi::Kek old_kek = group().kek();
  gdoi::GroupPolicy p = group().policy();
  p.kek.signature = gdoi::KekPolicy::Signature::Rsa;  // from ECDSA P-256: the SA KEK says so
  p.kek.signature_key_bits = 2048;
  auto seq = rekeyer->change_policy(group(), p, ms(now), clone(next));
  ASSERT_TRUE(seq.ok()) << seq.error();
  ASSERT_TRUE(*seq);
  EXPECT_EQ(rekeyer->last_rekey(group())->reason, RekeyReason::SigningKey);
  EXPECT_STREQ(ks::reason_name(RekeyReason::SigningKey), "signing-key");
  EXPECT_NE(group().kek().spi, old_kek.spi);
  EXPECT_EQ(group().kek().signature_public_key, next_spki);
  EXPECT_TRUE(has(log(), "new signing key SHA-256 " + gdoi::signing_key_id(next_spki)));
  auto to = [](const std::vector<ks::PushDatagram>& out, const Address& a) -> ByteView {
    for (const auto& d : out)
      if (d.to.address == a) return *d.datagram;
    ADD_FAILURE() << "no push to " << a.str();
    return {};
  };
  auto out = sent();
  ASSERT_EQ(out.size(), 2u);
  // gm4 misses it; gm3 verifies it with the key it registered with.
  auto r = gm(kGm3).receive(to(out, kGm3));
  ASSERT_TRUE(accepted(r)) << describe(r);
  EXPECT_TRUE(accepted(r)->signing_key_replaced);
  EXPECT_EQ(gm(kGm3).kek().signature_public_key, next_spki);
  EXPECT_EQ(gm(kGm3).kek_policy().signature, gdoi::KekPolicy::Signature::Rsa);

  // The next rekey is signed with the new key: gm3 takes it, gm4 cannot
  // read it (a KEK it never held) and would register again.
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now + 1)).ok());
  out = sent();
  ASSERT_EQ(out.size(), 2u);
  r = gm(kGm3).receive(to(out, kGm3));
  ASSERT_TRUE(accepted(r)) << describe(r);
  EXPECT_FALSE(accepted(r)->signing_key_replaced);
  r = gm(kGm4).receive(to(out, kGm4));
  ASSERT_TRUE(std::holds_alternative<gdoi::PushRefused>(r));
  EXPECT_EQ(std::get<gdoi::PushRefused>(r).reason, gdoi::PushRefused::Reason::UnknownKek) << describe(r);
  // Registering again gives it the new key, and it follows.
  join(kGm4);
  EXPECT_EQ(gm(kGm4).kek().signature_public_key, next_spki);
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now + 2)).ok());
  for (const auto& d : sent()) EXPECT_TRUE(accepted(gm(d.to.address).receive(*d.datagram)));
}

TEST_F(KsRekey, TransportChangeTravelsTheOldWay) {
  join(kGm3);
  gdoi::GroupPolicy p = group().policy();
  p.rekey.mode = gdoi::RekeyTransport::Mode::Multicast;
  p.rekey.multicast_address = prefix("239.192.1.1", 32);
  ASSERT_TRUE(rekeyer->change_policy(group(), p, ms(now)).ok());
  auto out = sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to.address, kGm3);  // by unicast, as the member listens now
  EXPECT_TRUE(receive(kGm3, *out[0].datagram));
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now + 1)).ok());
  out = sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].multicast_ttl);  // and from then on to the group
}

// ---------------------------------------------------------- restart

TEST_F(KsRekey, RestartContinuesSeqMembersAndSpis) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("covey-ks-rekey-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const std::string path = ks::state_file_path(dir.string());
  groups->set_write_now([&] { return ks::save_state(path, *groups); });
  ASSERT_TRUE(groups->write_now().ok());
  join(kGm3, 40000);
  for (int k = 0; k < 3; ++k) {
    ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now + k)).ok());
    ASSERT_TRUE(receive(kGm3, *sent()[0].datagram));
  }
  const std::set<std::uint32_t> used = group().export_state().used_spis;
  const std::int64_t tek_due = rekeyer->tek_rekey_at(group());
  // kill -9: nothing after the last rekey's save is written.

  ks::Groups restarted;
  auto g = ks::Group::create(lab_policy(), ks::Authorization{{prefix("10.1.0.0", 16)}, {}}, clone(signing_key()), kKs,
                             now + 50);
  ASSERT_TRUE(g.ok()) << g.error();
  restarted.add(std::move(*g));
  ASSERT_TRUE(ks::restore_state(path, restarted).ok());
  ks::Rekeyer again(restarted);
  ks::Group& rg = *restarted.find(134);
  EXPECT_EQ(rg.seq(), 3u);
  ASSERT_NE(rg.find_member(kGm3), nullptr);
  EXPECT_EQ(rg.find_member(kGm3)->port, 40000);
  EXPECT_EQ(rg.find_member(kGm3)->registered_to, kKs);
  EXPECT_EQ(again.tek_rekey_at(rg), tek_due);  // the schedule continues from the stored TEK

  auto seq = again.rekey(rg, RekeyReason::Operator, ms(now + 60) + 5);
  ASSERT_TRUE(seq.ok()) << seq.error();
  EXPECT_EQ(*seq, 4u);
  EXPECT_FALSE(used.count(rg.teks().back().tek.spi)) << "SPI reused after restart";
  auto out = again.take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to, (Endpoint{kGm3, 40000}));
  // The pseudotime goes on from the stored epoch, not from the restart's
  // creation of the group: members' stamps stay comparable.
  EXPECT_EQ(push_pseudotime(*out[0].datagram, rg.kek(), rg.policy().kek), ms(now + 60 - kStart) + 5);
  // The member carries on without registering again.
  auto ack = receive(kGm3, *out[0].datagram);
  ASSERT_TRUE(ack);
  again.receive_ack(Endpoint{kGm3, 40000}, *ack, now + 60);
  EXPECT_EQ(rg.find_member(kGm3)->last_acked_seq, 4u);
  fs::remove_all(dir);
}

TEST_F(KsRekey, ARegistrationOverlappingARekeyIsRefused) {
  auto offer = group().offer(gdoi::PeerTraits{true}, ms(now));
  offer.group_id = 134;
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now)).ok());
  ike::Phase1Sa sa;
  sa.peer = Endpoint{kGm3, 848};
  auto admitted = groups->admit(offer, sa, 1);
  ASSERT_TRUE(std::holds_alternative<ike::Failure>(admitted));
  EXPECT_TRUE(has(std::get<ike::Failure>(admitted).reason, "rekeyed during the registration"));
  EXPECT_EQ(group().find_member(kGm3), nullptr);
}

// ------------------------------------------------------------ pseudotime

// The group's pseudotime counts ms from its creation (kStart), and each
// message carries it as of the moment it is built: message 2 at its
// offer, a push at its rekey.
TEST_F(KsRekey, RegistrationsAndPushesCarryThePseudotimeOfTheirMoment) {
  EXPECT_EQ(group().pseudotime_epoch_ms(), ms(kStart));
  auto offer = group().offer(gdoi::PeerTraits{true}, ms(kStart + 2) + 345);
  auto rsa = gdoi::decode_group_sa(offer.sa);
  ASSERT_TRUE(rsa.ok()) << rsa.error();
  EXPECT_EQ(rsa->pseudotime_ms, 2345u);

  join(kGm3);
  std::optional<std::uint32_t> previous;
  for (std::int64_t at_ms : {ms(kStart + 10) + 7, ms(kStart + 70) + 999, ms(kStart + 71)}) {
    ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, at_ms).ok());
    auto out = sent();
    ASSERT_EQ(out.size(), 1u);
    auto pt = push_pseudotime(*out[0].datagram, group().kek(), group().policy().kek);
    EXPECT_EQ(pt, static_cast<std::uint32_t>(at_ms - ms(kStart))) << at_ms;
    if (previous) {
      EXPECT_GT(pt.value_or(0), *previous);
    }
    previous = pt;
    // Acknowledged, so that no retransmission or miss mixes in below.
    auto ack = receive(kGm3, *out[0].datagram);
    ASSERT_TRUE(ack);
    rekeyer->receive_ack(Endpoint{kGm3, 848}, *ack, ks::seconds_of(at_ms));
  }
  // A scheduled rekey too: the newest TEK (from kStart + 71) is due 90 s
  // before its end.
  rekeyer->tick(ms(kStart + 71 + 3600 - 90) + 42);
  auto out = sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(rekeyer->last_rekey(group())->reason, RekeyReason::TekLifetime);
  EXPECT_EQ(push_pseudotime(*out[0].datagram, group().kek(), group().policy().kek), ms(71 + 3600 - 90) + 42);
}

TEST_F(KsRekey, ThePseudotimeWrapsModulo2To32) {
  EXPECT_EQ(ks::pseudotime_ms(1000, 1000 + (std::int64_t{1} << 32) + 5), 5u);
  EXPECT_EQ(ks::pseudotime_ms(1000, 999), 0xffffffffu);  // a clock stepped back: still mod 2^32
  EXPECT_EQ(group().pseudotime_ms(ms(kStart) + (std::int64_t{1} << 32) - 1), 0xffffffffu);
  EXPECT_EQ(ks::seconds_of(1999), 1);
  EXPECT_EQ(ks::seconds_of(-1), -1);
}

// Without a TBAR window no member needs the clock: neither message 2 nor a
// push carries it.
TEST_F(KsRekey, WithoutATbarWindowNoPseudotimeIsSent) {
  gdoi::GroupPolicy p = lab_policy();
  p.tbar_window_ms.reset();
  make(p);
  auto rsa = gdoi::decode_group_sa(group().offer(gdoi::PeerTraits{true}, ms(now)).sa);
  ASSERT_TRUE(rsa.ok()) << rsa.error();
  EXPECT_FALSE(rsa->pseudotime_ms);
  join(kGm3);
  ASSERT_TRUE(rekeyer->rekey(group(), RekeyReason::Operator, ms(now)).ok());
  auto out = sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(push_pseudotime(*out[0].datagram, group().kek(), group().policy().kek));
  EXPECT_EQ(push_seq(*out[0].datagram, group().kek(), group().policy().kek), 1u);  // the push itself was read
}

// The SEQ a push carries, read by a receiver that accepts any SEQ.
std::uint32_t push_seq(ByteView datagram, const gdoi::Kek& kek, const gdoi::KekPolicy& policy) {
  auto r = PushReceiver::create(kek, policy, 0, false);
  if (!r.ok()) return 0;
  auto got = r->receive(datagram);
  return accepted(got) ? accepted(got)->seq : 0;
}

// The pseudotime a push's GAP carries, read the same way.
std::optional<std::uint32_t> push_pseudotime(ByteView datagram, const gdoi::Kek& kek, const gdoi::KekPolicy& policy) {
  auto r = PushReceiver::create(kek, policy, 0, false);
  if (!r.ok()) return std::nullopt;
  auto got = r->receive(datagram);
  return accepted(got) && accepted(got)->sa ? accepted(got)->sa->pseudotime_ms : std::nullopt;
}

}  // namespace
