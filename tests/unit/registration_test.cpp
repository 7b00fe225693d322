// The key server's dispatcher and the member's registrar, wired together
// in memory: the whole registration as the daemons run it, minus sockets.
#include <gtest/gtest.h>

#include "fixtures.h"

#include <random>

#include "gm/registrar.h"
#include "ks/dispatcher.h"
#include "samples.h"

using namespace covey;
using covey::fixtures::prefix;
using covey::fixtures::psk;

namespace {



struct World {
  ks::Groups groups;
  std::unique_ptr<ks::Dispatcher> ks;
  Endpoint ks_ep{*Address::parse("10.1.12.1"), 848};

  explicit World(std::size_t half_open_cap = 1024, gdoi::GroupPolicy p = fixtures::group_policy(),
                 std::vector<gdoi::Prefix> authorized = {prefix("10.1.0.0", 16)}) {
    auto key = crypto::PrivateKey::generate_ec(crypto::EcCurve::P256);
    auto g =
        ks::Group::create(p, ks::Authorization{std::move(authorized), {}}, std::move(*key), ks_ep.address, 0);
    groups.add(std::move(*g));
    ks::DispatcherOptions o;
    o.phase1 = {ike::Phase1Transform{}};
    o.credentials = psk("lab");
    o.half_open_cap = half_open_cap;
    ks = std::make_unique<ks::Dispatcher>(o, groups, ks_ep.address);
  }

  // `ks_at`: the key server address it registers to (one of a dual-stack
  // key server's), ks_ep's by default.
  gm::Registrar member(const char* addr, std::string key = "lab", std::uint32_t group = 134,
                       std::optional<Endpoint> ks_at = std::nullopt) {
    gm::RegistrarOptions o;
    o.group_id = group;
    o.offers = {ike::Phase1Transform{}};
    o.credentials = psk(key);
    return gm::Registrar(o, ks_at.value_or(ks_ep), *Address::parse(addr));
  }

  // Runs a registration to its end, carrying datagrams both ways.
  void run(gm::Registrar& r, const char* addr, std::int64_t now = 10) {
    Endpoint me{*Address::parse(addr), 848};
    std::vector<Bytes> to_ks = r.start(now);
    for (int i = 0; i < 10 && !to_ks.empty(); ++i) {
      std::vector<Bytes> next;
      for (const Bytes& d : to_ks)
        for (const ks::Outgoing& o : ks->receive(me, r.key_server().address, d, now * 1000)) {  // ms
          EXPECT_EQ(o.to, me);
          for (Bytes& b : r.receive(o.datagram, now)) next.push_back(std::move(b));
        }
      to_ks = std::move(next);
    }
  }
};

std::string events(ks::Dispatcher& d) {
  std::string s;
  for (auto& e : d.take_events()) s += e.text + "\n";
  return s;
}

}  // namespace

TEST(Registration, TwoMembersHoldTheSameTek) {
  World w;
  auto a = w.member("10.1.23.3");
  auto b = w.member("10.1.24.4");
  w.run(a, "10.1.23.3");
  w.run(b, "10.1.24.4");
  ASSERT_TRUE(a.registration()) << a.failure().value_or("");
  ASSERT_TRUE(b.registration()) << b.failure().value_or("");
  EXPECT_EQ(a.registration()->keys.teks[0].spi, b.registration()->keys.teks[0].spi);
  EXPECT_TRUE(crypto::equal_constant_time(a.registration()->keys.teks[0].encryption_key, b.registration()->keys.teks[0].encryption_key));
  std::string log = events(*w.ks);
  EXPECT_NE(log.find("Registration of GM 10.1.23.3 complete for group GET_VPN (134)"), std::string::npos) << log;
  EXPECT_NE(log.find("Registration of GM 10.1.24.4 complete for group GET_VPN (134)"), std::string::npos) << log;
  EXPECT_EQ(w.ks->counters().registrations, 2u);
  EXPECT_EQ(w.ks->half_open(), 0u);
  EXPECT_EQ(w.ks->established(), 2u);
}

// A dual-stack key server: one member registers over IPv6 (Main Mode IDs
// ID_IPV6_ADDR, the pre-shared key found by its IPv6 address, authorized
// by an IPv6 prefix) while another registers over IPv4, to one group whose
// ACL holds both families. Both hold the same TEK and the key server's
// ACL in its order; the key server knows the IPv6 member by its address
// and the address it registered to.
TEST(Registration, OverIpv6AndIpv4IntoOneDualStackGroup) {
  gdoi::GroupPolicy p = fixtures::group_policy();
  gdoi::AclEntry v6 = p.acl[0];
  v6.source = prefix("2001:db8:3::", 64);
  v6.destination = prefix("2001:db8:4::", 64);
  gdoi::AclEntry v6_host = v6;
  v6_host.protocol = 6;
  v6_host.source = prefix("2001:db8:4::10", 128);
  v6_host.destination = prefix("2001:db8:3::10", 128);
  gdoi::AclEntry v4_more = p.acl[0];
  v4_more.source = prefix("10.9.0.0", 16);
  v4_more.destination = prefix("10.8.0.0", 16);
  p.acl = {p.acl[0], v6, v4_more, v6_host};
  World w(1024, p, {prefix("10.1.0.0", 16), prefix("2001:db8:23::", 48)});
  const Endpoint ks6{*Address::parse("2001:db8:12::1"), 848};
  auto a = w.member("2001:db8:23::3", "lab", 134, ks6);
  auto b = w.member("10.1.24.4");
  auto outsider = w.member("2001:db8:99::9", "lab", 134, ks6);
  w.run(a, "2001:db8:23::3");
  w.run(b, "10.1.24.4");
  w.run(outsider, "2001:db8:99::9");
  ASSERT_TRUE(a.registration()) << a.failure().value_or("");
  ASSERT_TRUE(b.registration()) << b.failure().value_or("");
  EXPECT_EQ(a.registration()->keys.teks[0].spi, b.registration()->keys.teks[0].spi);
  EXPECT_EQ(a.registration()->policy.acl, p.acl);
  EXPECT_EQ(b.registration()->policy.acl, p.acl);
  std::string log = events(*w.ks);
  EXPECT_NE(log.find("Registration of GM 2001:db8:23::3 complete for group GET_VPN (134)"), std::string::npos)
      << log;
  EXPECT_NE(log.find("Registration of GM 10.1.24.4 complete for group GET_VPN (134)"), std::string::npos)
      << log;
  EXPECT_NE(log.find("GM 2001:db8:99::9 is not in the authorization list"), std::string::npos) << log;
  EXPECT_FALSE(outsider.registration());
  ks::Group& g = *w.groups.find(134);
  ASSERT_EQ(g.members().size(), 2u);
  ks::Member* m = g.find_member(*Address::parse("2001:db8:23::3"));
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->registered_to, ks6.address);
  EXPECT_EQ(m->endpoint(), (Endpoint{*Address::parse("2001:db8:23::3"), 848}));
  EXPECT_EQ(g.find_member(*Address::parse("10.1.24.4"))->registered_to, w.ks_ep.address);
}

TEST(Registration, WrongPreSharedKeyIsLoggedWithThePeer) {
  World w;
  auto a = w.member("10.1.23.3", "not-the-key");
  w.run(a, "10.1.23.3");
  EXPECT_FALSE(a.registration());
  std::string log = events(*w.ks);
  EXPECT_NE(log.find("Main Mode with 10.1.23.3:848 failed at message"), std::string::npos) << log;
  EXPECT_NE(log.find("wrong pre-shared key"), std::string::npos) << log;
  EXPECT_EQ(w.ks->counters().phase1_failed, (std::map<std::string, std::uint64_t>{{"AUTHENTICATION-FAILED", 1}}));
  // The member hears the key server's clear AUTHENTICATION-FAILED as a hint
  // (unauthenticated, so it does not end the exchange by itself).
  std::string gm_log;
  for (auto& e : a.take_events()) gm_log += e + "\n";
  EXPECT_NE(gm_log.find("AUTHENTICATION-FAILED: wrong pre-shared key?"), std::string::npos) << gm_log;
  EXPECT_FALSE(a.done());
}

TEST(Registration, UnauthorizedMemberIsRefusedAndNamed) {
  World w;
  auto a = w.member("10.2.0.9");
  w.run(a, "10.2.0.9");
  EXPECT_FALSE(a.registration());
  ASSERT_TRUE(a.failure());
  EXPECT_NE(a.failure()->find("AUTHENTICATION-FAILED"), std::string::npos) << *a.failure();
  std::string log = events(*w.ks);
  EXPECT_NE(log.find("GM 10.2.0.9 is not in the authorization list"), std::string::npos) << log;
}

TEST(Registration, UnknownGroupIsRefusedAndNamed) {
  World w;
  auto a = w.member("10.1.23.3", "lab", 77);
  w.run(a, "10.1.23.3");
  ASSERT_TRUE(a.failure());
  EXPECT_NE(a.failure()->find("INVALID-ID-INFORMATION"), std::string::npos) << *a.failure();
  EXPECT_NE(events(*w.ks).find("unknown group 77"), std::string::npos);
}

TEST(Registration, HalfOpenExchangesAreCappedOldestFirst) {
  World w(8);
  Endpoint spoof{*Address::parse("10.9.9.9"), 500};
  for (int i = 0; i < 100; ++i) {
    auto r = w.member("10.9.9.9");
    auto m1 = r.start(1);
    w.ks->receive(spoof, w.ks_ep.address, m1[0], 1000);
  }
  EXPECT_EQ(w.ks->half_open(), 8u);
  EXPECT_EQ(w.ks->counters().half_open_evicted, 92u);
  w.ks->expire(1 + 31);
  EXPECT_EQ(w.ks->half_open(), 0u);
  // And the server still registers a member afterwards.
  auto a = w.member("10.1.23.3");
  w.run(a, "10.1.23.3", 40);
  EXPECT_TRUE(a.registration());
}

TEST(Registration, GarbageAndMutatedDatagramsLeaveTheServerServing) {
  World w;
  std::mt19937 rng(848);
  Endpoint peer{*Address::parse("10.1.23.3"), 848};
  std::vector<Bytes> seeds = samples::all_datagrams();
  // A real exchange's messages too, so mutations reach deep states.
  {
    auto a = w.member("10.1.23.3");
    auto m1 = a.start(0);
    seeds.push_back(m1[0]);
  }
  for (int i = 0; i < 2000; ++i) {
    Bytes d(rng() % 300);
    for (auto& b : d) b = static_cast<std::uint8_t>(rng());
    w.ks->receive(peer, w.ks_ep.address, d, 1000);
    Bytes m = seeds[rng() % seeds.size()];
    switch (rng() % 3) {
      case 0: m[rng() % m.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8)); break;
      case 1: m.resize(rng() % m.size()); break;
      default: m.resize(m.size() + rng() % 64, static_cast<std::uint8_t>(rng())); break;
    }
    w.ks->receive(peer, w.ks_ep.address, m, 1000);
  }
  w.ks->take_events();
  auto a = w.member("10.1.23.3");
  w.run(a, "10.1.23.3", 100);
  EXPECT_TRUE(a.registration()) << a.failure().value_or("");
}

TEST(Registration, RetransmissionRecoversALostMessage) {
  World w;
  auto a = w.member("10.1.23.3");
  Endpoint me{*Address::parse("10.1.23.3"), 848};
  auto m1 = a.start(0);
  w.ks->receive(me, w.ks_ep.address, m1[0], 0);  // reply lost
  auto again = a.tick(2);
  ASSERT_EQ(again.size(), 1u);
  auto replies = w.ks->receive(me, w.ks_ep.address, again[0], 2000);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(w.ks->half_open(), 1u);  // the same exchange, not a second one
}

// A phase-1 SA ends once its GROUPKEY-PULL is done (issue 14: cost per
// member): it answers a retransmitted message 3 for exchange_linger_s,
// then the key server forgets it instead of holding it for its lifetime
// (a day by default). The member registers again with a new Main Mode;
// a message on the forgotten SA is dropped.
TEST(Registration, PhaseOneSaEndsSecondsAfterItsExchange) {
  World w;
  auto a = w.member("10.1.23.3");
  Endpoint me{*Address::parse("10.1.23.3"), 848};
  Bytes message3, message4;
  std::vector<Bytes> to_ks = a.start(10);
  for (int i = 0; i < 10 && !to_ks.empty(); ++i) {
    std::vector<Bytes> next;
    for (const Bytes& d : to_ks) {
      message3 = d;  // the member's last message is message 3
      for (const ks::Outgoing& o : w.ks->receive(me, w.ks_ep.address, d, 10'000)) {
        message4 = o.datagram;
        for (Bytes& b : a.receive(o.datagram, 10)) next.push_back(std::move(b));
      }
    }
    to_ks = std::move(next);
  }
  ASSERT_TRUE(a.registration()) << a.failure().value_or("");
  EXPECT_EQ(w.ks->established(), 1u);

  // Message 4 lost: the retransmitted message 3 gets it again, until the linger ends.
  w.ks->expire(10 + 9);
  ASSERT_EQ(w.ks->established(), 1u);
  auto again = w.ks->receive(me, w.ks_ep.address, message3, 19'000);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].datagram, message4);
  w.ks->expire(10 + 10);  // exchange_linger_s
  EXPECT_EQ(w.ks->established(), 0u);
  EXPECT_EQ(w.groups.find(134)->members().size(), 1u);  // the member stays; only the SA ends

  const auto dropped = w.ks->counters().dropped;
  EXPECT_TRUE(w.ks->receive(me, w.ks_ep.address, message3, 21'000).empty());
  EXPECT_EQ(w.ks->counters().dropped, dropped + 1);

  // Registering again is a new Main Mode, as covey-gm always does.
  auto b = w.member("10.1.23.3");
  w.run(b, "10.1.23.3", 22);
  ASSERT_TRUE(b.registration()) << b.failure().value_or("");
  EXPECT_EQ(w.groups.find(134)->find_member(*Address::parse("10.1.23.3"))->registrations, 2u);
}

// An SA whose member never begins a GROUPKEY-PULL ends as a stalled
// exchange does, exchange_timeout_s after Main Mode.
TEST(Registration, PhaseOneSaWithoutExchangeEndsWhenIdle) {
  World w;
  auto a = w.member("10.1.23.3");
  Endpoint me{*Address::parse("10.1.23.3"), 848};
  std::vector<Bytes> to_ks = a.start(10);
  for (int i = 0; i < 3; ++i) {  // messages 1, 3, 5: Main Mode only
    std::vector<Bytes> next;
    for (const Bytes& d : to_ks)
      for (const ks::Outgoing& o : w.ks->receive(me, w.ks_ep.address, d, 10'000))
        for (Bytes& b : a.receive(o.datagram, 10)) next.push_back(std::move(b));
    to_ks = std::move(next);
  }
  ASSERT_EQ(w.ks->established(), 1u);
  w.ks->expire(10 + 29);
  EXPECT_EQ(w.ks->established(), 1u);
  w.ks->expire(10 + 30);  // exchange_timeout_s
  EXPECT_EQ(w.ks->established(), 0u);
}
