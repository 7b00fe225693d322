// Registration end to end in memory: covey's GM (Main Mode initiator and
// GROUPKEY-PULL initiator) against covey's KS (responders and the group
// directory). The member must come out with exactly the key server's keys.
#include <gtest/gtest.h>

#include "fixtures.h"

#include "gdoi/pull.h"
#include "ks/group.h"

using namespace covey;
using covey::fixtures::prefix;
using covey::fixtures::psk;
using namespace covey::gdoi;
using covey::crypto::CipherAlgorithm;
using covey::crypto::HashAlgorithm;

namespace {


GroupPolicy lab_policy() {
  GroupPolicy p;
  p.name = "GET_VPN";
  p.identity = 134;
  AclEntry deny;
  deny.action = AclEntry::Action::Deny;
  deny.protocol = 17;
  deny.source = prefix("0.0.0.0", 0);
  deny.destination = prefix("0.0.0.0", 0);
  deny.source_port = {848, 848};
  deny.destination_port = {848, 848};
  AclEntry permit;
  permit.source = prefix("192.168.0.0", 16);
  permit.destination = prefix("192.168.0.0", 16);
  AclEntry ranged;
  ranged.protocol = 6;
  ranged.source = prefix("10.9.0.0", 24);
  ranged.destination = prefix("10.8.0.0", 24);
  ranged.destination_port = {8000, 8080};
  p.acl = {deny, permit, ranged};
  p.fail_close_acl = {permit};
  p.activation_delay_s = 30;
  p.deactivation_delay_s = 90;
  return p;
}


struct Lab {
  ks::Groups groups;
  std::optional<ike::Phase1Sa> gm_sa, ks_sa;

  explicit Lab(GroupPolicy policy = lab_policy(), std::vector<Prefix> allowed = {prefix("10.1.0.0", 16)}) {
    auto key = crypto::PrivateKey::generate_rsa(2048);
    EXPECT_TRUE(key.ok());
    auto g = ks::Group::create(std::move(policy), ks::Authorization{std::move(allowed), {}}, std::move(*key),
                               *Address::parse("10.1.12.1"), 1000);
    EXPECT_TRUE(g.ok()) << g.error();
    groups.add(std::move(*g));
    groups.set_clock_ms(1000 * 1000 + 234);  // 234 ms after the group was created
  }

  void phase1(const char* gm_addr) {
    ike::Phase1Transform t;
    // A covey member, as covey-gm's registrar: its message 1 carries covey's Vendor ID.
    auto gm = ike::MainMode::initiator({t}, psk("k"), Endpoint{*Address::parse("10.1.12.1"), 848}, *Address::parse(gm_addr),
                                       {gdoi::covey_vendor_id()});
    auto ks = ike::MainMode::responder({t}, psk("k"), Endpoint{*Address::parse(gm_addr), 848}, *Address::parse("10.1.12.1"));
    Bytes to_ks = *gm.start();
    for (int i = 0; i < 3; ++i) {
      auto r = ks.receive(to_ks, 1000);
      if (r.established) ks_sa = std::move(r.established);
      auto g = gm.receive(*r.send, 1000);
      if (g.established) gm_sa = std::move(g.established);
      if (g.send) to_ks = *g.send;
    }
    ASSERT_TRUE(gm_sa && ks_sa);
  }

  // Runs the pull; returns the member's step at the end.
  PullStep pull(std::uint32_t group, std::uint16_t sids = 0, std::optional<ike::Failure>* ks_failure = nullptr) {
    PullInitiator gm(group, sids);
    PullResponder ks;
    Bytes to_ks = *gm.start(*gm_sa);
    PullStep last;
    for (int i = 0; i < 2; ++i) {
      auto h = wire::decode_header(to_ks);
      auto r = ks.receive(*ks_sa, *h, to_ks, groups);
      if (r.failure && ks_failure) *ks_failure = r.failure;
      if (!r.send) return r;
      auto hh = wire::decode_header(*r.send);
      last = gm.receive(*gm_sa, *hh, *r.send);
      if (!last.send || last.registered || last.failure) return last;
      to_ks = *last.send;
    }
    return last;
  }
};

}  // namespace

TEST(GroupkeyPull, MemberHoldsTheKeyServersKeysAndPolicy) {
  Lab lab;
  lab.phase1("10.1.23.3");
  PullStep s = lab.pull(134);
  ASSERT_FALSE(s.failure) << s.failure->reason;
  ASSERT_TRUE(s.registered);
  const Registration& r = *s.registered;
  const ks::Group& g = *lab.groups.find(134);
  ASSERT_EQ(r.keys.teks.size(), 1u);
  EXPECT_EQ(r.keys.teks[0].spi, g.teks()[0].tek.spi);
  EXPECT_TRUE(crypto::equal_constant_time(r.keys.teks[0].encryption_key, g.teks()[0].tek.encryption_key));
  EXPECT_TRUE(crypto::equal_constant_time(r.keys.teks[0].integrity_key, g.teks()[0].tek.integrity_key));
  EXPECT_EQ(r.keys.teks[0].encryption_key.size(), 32u);
  EXPECT_EQ(r.keys.teks[0].integrity_key.size(), 32u);
  ASSERT_TRUE(r.keys.kek);
  EXPECT_EQ(r.keys.kek->spi, g.kek().spi);
  EXPECT_TRUE(crypto::equal_constant_time(r.keys.kek->algorithm_key, g.kek().algorithm_key));
  EXPECT_EQ(r.keys.kek->signature_public_key, g.kek().signature_public_key);
  EXPECT_EQ(r.seq, 0u);
  EXPECT_EQ(r.keys.sids, (std::vector<std::uint32_t>{0}));
  // The policy survives the wire whole: deny first, port range, fail-close, delays.
  EXPECT_EQ(r.policy.acl, g.policy().acl);
  EXPECT_EQ(r.policy.fail_close_acl, g.policy().fail_close_acl);
  EXPECT_EQ(r.policy.tek, g.policy().tek);
  EXPECT_EQ(r.policy.tek_lifetime_s, 3600u);
  EXPECT_EQ(r.policy.kek.cipher, CipherAlgorithm::Aes256Cbc);
  EXPECT_EQ(r.policy.kek.signature_hash, HashAlgorithm::Sha256);
  EXPECT_EQ(r.policy.activation_delay_s, 30u);
  EXPECT_EQ(r.policy.deactivation_delay_s, 90u);
  EXPECT_EQ(r.policy.tbar_window_ms, g.policy().tbar_window_ms);
  EXPECT_EQ(r.pseudotime_ms, 234u);  // the key server's clock as message 2 was built
  EXPECT_EQ(r.policy.rekey.mode, RekeyTransport::Mode::Unicast);
  ASSERT_EQ(g.members().size(), 1u);
  EXPECT_EQ(g.members().begin()->first.str(), "10.1.23.3");
}

TEST(GroupkeyPull, TwoMembersGetTheSameTekAndDistinctSids) {
  Lab lab;
  lab.phase1("10.1.23.3");
  PullStep a = lab.pull(134, 3);
  lab.phase1("10.1.24.4");
  PullStep b = lab.pull(134);
  ASSERT_TRUE(a.registered && b.registered);
  EXPECT_EQ(a.registered->keys.teks[0].spi, b.registered->keys.teks[0].spi);
  EXPECT_EQ(a.registered->keys.sids, (std::vector<std::uint32_t>{0, 1, 2}));  // SENDER_ID_REQUEST 3
  EXPECT_EQ(b.registered->keys.sids, (std::vector<std::uint32_t>{3}));
  EXPECT_EQ(lab.groups.find(134)->members().size(), 2u);
}

TEST(GroupkeyPull, UnknownGroupIsInvalidIdInformation) {
  Lab lab;
  lab.phase1("10.1.23.3");
  std::optional<ike::Failure> ks_fail;
  PullStep s = lab.pull(999, 0, &ks_fail);
  ASSERT_TRUE(ks_fail);
  EXPECT_EQ(ks_fail->notify, wire::NotifyType::InvalidIdInformation);
  EXPECT_NE(ks_fail->reason.find("unknown group 999"), std::string::npos) << ks_fail->reason;
  EXPECT_FALSE(s.registered);
  EXPECT_TRUE(lab.groups.find(134)->members().empty());
}

TEST(GroupkeyPull, MemberOutsideTheAuthorizationListIsRefusedAndNamed) {
  Lab lab(lab_policy(), {prefix("10.1.23.3", 32)});
  lab.phase1("10.1.24.4");
  std::optional<ike::Failure> ks_fail;
  PullStep s = lab.pull(134, 0, &ks_fail);
  ASSERT_TRUE(ks_fail);
  EXPECT_EQ(ks_fail->notify, wire::NotifyType::AuthenticationFailed);
  EXPECT_NE(ks_fail->reason.find("GM 10.1.24.4 is not in the authorization list"), std::string::npos) << ks_fail->reason;
  EXPECT_FALSE(s.registered);
  EXPECT_TRUE(lab.groups.find(134)->members().empty());
}

TEST(GroupkeyPull, MemberRefusesGcmWithTheReason) {
  GroupPolicy p = lab_policy();
  p.tek.cipher = TekTransform::Cipher::AesGcm256;
  p.tek.integrity = TekTransform::Integrity::None;
  Lab lab(p);
  lab.phase1("10.1.23.3");
  PullStep s = lab.pull(134);
  ASSERT_TRUE(s.failure);
  EXPECT_NE(s.failure->reason.find("RFC 6054"), std::string::npos) << s.failure->reason;
  // The member's log names the group whose policy it refused.
  EXPECT_NE(s.failure->reason.find("message 2: policy of group 134 refused: SA TEK"), std::string::npos)
      << s.failure->reason;
  EXPECT_TRUE(lab.groups.find(134)->members().empty());  // message 3 was never sent
}

TEST(GroupkeyPull, TamperedMessageTwoFailsHashCheck) {
  Lab lab;
  lab.phase1("10.1.23.3");
  PullInitiator gm(134);
  PullResponder ks;
  Bytes m1 = *gm.start(*lab.gm_sa);
  auto r = ks.receive(*lab.ks_sa, *wire::decode_header(m1), m1, lab.groups);
  ASSERT_TRUE(r.send);
  Bytes bad = *r.send;
  bad[wire::kHeaderSize + 40] ^= 0x20;
  auto s = gm.receive(*lab.gm_sa, *wire::decode_header(bad), bad);
  ASSERT_TRUE(s.dropped);
  EXPECT_NE(s.dropped->find("GROUPKEY-PULL message 2"), std::string::npos) << *s.dropped;
  EXPECT_FALSE(s.registered || s.failure || s.send);
  // The genuine message still works: the forgery neither ended the
  // exchange nor moved its IV chain.
  auto ok = gm.receive(*lab.gm_sa, *wire::decode_header(*r.send), *r.send);
  EXPECT_TRUE(ok.send);
  EXPECT_FALSE(ok.failure);
}

TEST(GroupkeyPull, RetransmittedMessageThreeGetsMessageFourAgain) {
  Lab lab;
  lab.phase1("10.1.23.3");
  PullInitiator gm(134);
  PullResponder ks;
  Bytes m1 = *gm.start(*lab.gm_sa);
  auto r2 = ks.receive(*lab.ks_sa, *wire::decode_header(m1), m1, lab.groups);
  auto m3 = gm.receive(*lab.gm_sa, *wire::decode_header(*r2.send), *r2.send);
  auto r4 = ks.receive(*lab.ks_sa, *wire::decode_header(*m3.send), *m3.send, lab.groups);
  auto r4again = ks.receive(*lab.ks_sa, *wire::decode_header(*m3.send), *m3.send, lab.groups);
  ASSERT_TRUE(r4.send && r4again.send);
  EXPECT_EQ(*r4.send, *r4again.send);
  auto done = gm.receive(*lab.gm_sa, *wire::decode_header(*r4again.send), *r4again.send);
  EXPECT_TRUE(done.registered);
  EXPECT_EQ(lab.groups.find(134)->members().begin()->second.registrations, 1u);
}
