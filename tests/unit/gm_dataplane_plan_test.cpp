// The pure part of the member's data path (gm/dataplane.h, plan_sas): which
// XFRM states a member adds and removes as its TEKs move through pending,
// active, receive-only and expired, and in which order, so that a rollover
// never leaves a moment without an inbound state for a TEK a peer may send
// on, and the sender switches only at activation.
#include <gtest/gtest.h>

#include "gm/dataplane.h"

using namespace covey;
using covey::gm::forget_expired;
using covey::gm::InstalledSa;
using covey::gm::plan_sas;
using covey::gm::SaStep;
using covey::gm::TekState;
using covey::gm::TekView;
using K = SaStep::Kind;

namespace {

const std::uint32_t kOld = 0x1A2B3C4D, kNew = 0x2B3C4D5E;

struct Teks {
  std::vector<gdoi::Tek> teks;
  std::vector<TekView> views;
  Teks& add(std::uint32_t spi, TekState state) {
    teks.reserve(8);  // views point into teks
    gdoi::Tek t;
    t.spi = spi;
    teks.push_back(std::move(t));
    TekView v;
    v.tek = &teks.back();
    v.state = state;
    views.push_back(v);
    return *this;
  }
};

TEST(DataplanePlan, FirstTekIsReceivedThenSentOn) {
  Teks t;
  t.add(kOld, TekState::Active);
  EXPECT_EQ(plan_sas(t.views, {}), (std::vector<SaStep>{{K::AddInbound, kOld}, {K::AddOutbound, kOld}}));
}

TEST(DataplanePlan, PendingTekIsReceivedOnlyBeforeItsActivation) {
  Teks t;
  t.add(kOld, TekState::Active).add(kNew, TekState::Pending);
  std::map<std::uint32_t, InstalledSa> installed{{kOld, {true, true}}};
  EXPECT_EQ(plan_sas(t.views, installed), (std::vector<SaStep>{{K::AddInbound, kNew}}));
}

TEST(DataplanePlan, ActivationSwitchesTheSenderAndKeepsReceivingOnTheOld) {
  Teks t;
  t.add(kOld, TekState::ReceiveOnly).add(kNew, TekState::Active);
  std::map<std::uint32_t, InstalledSa> installed{{kOld, {true, true}}, {kNew, {true, false}}};
  // The new outbound state before the old one goes: never a moment with none.
  EXPECT_EQ(plan_sas(t.views, installed), (std::vector<SaStep>{{K::AddOutbound, kNew}, {K::RemoveOutbound, kOld}}));
}

TEST(DataplanePlan, DeactivationRemovesTheOldInboundState) {
  Teks t;
  t.add(kOld, TekState::Expired).add(kNew, TekState::Active);
  std::map<std::uint32_t, InstalledSa> installed{{kOld, {true, false}}, {kNew, {true, true}}};
  EXPECT_EQ(plan_sas(t.views, installed), (std::vector<SaStep>{{K::RemoveInbound, kOld}}));
  // A TEK the member no longer holds at all goes the same way.
  Teks only_new;
  only_new.add(kNew, TekState::Active);
  EXPECT_EQ(plan_sas(only_new.views, installed), (std::vector<SaStep>{{K::RemoveInbound, kOld}}));
}

TEST(DataplanePlan, RegistrationThatReplacesEverythingAddsBeforeItRemoves) {
  // A member registers again after the key server cut its TEKs short.
  Teks t;
  t.add(kNew, TekState::Active);
  std::map<std::uint32_t, InstalledSa> installed{{kOld, {true, true}}};
  EXPECT_EQ(plan_sas(t.views, installed), (std::vector<SaStep>{{K::AddInbound, kNew},
                                                               {K::AddOutbound, kNew},
                                                               {K::RemoveOutbound, kOld},
                                                               {K::RemoveInbound, kOld}}));
}

TEST(DataplanePlan, NothingToDoWhenTheKernelMatches) {
  Teks t;
  t.add(kOld, TekState::ReceiveOnly).add(kNew, TekState::Active);
  std::map<std::uint32_t, InstalledSa> installed{{kOld, {true, false}}, {kNew, {true, true}}};
  EXPECT_TRUE(plan_sas(t.views, installed).empty());
  EXPECT_TRUE(plan_sas({}, {}).empty());
}

gdoi::Prefix net(const char* text) { return *gdoi::Prefix::parse(text); }

TEST(DataplaneBypass, TrafficBetweenTheMembersOwnLansStaysInClear) {
  const auto out = gm::own_lan_bypass({net("192.168.3.0/24"), net("192.168.33.0/24"), net("2001:db8:3::/64")});
  std::vector<std::string> lines;
  for (const auto& e : out) lines.push_back(e.str());
  // Both directions of each pair of one family; nothing across families,
  // nothing from a prefix to itself.
  EXPECT_EQ(lines, (std::vector<std::string>{"deny ip 192.168.3.0/24 192.168.33.0/24",
                                             "deny ip 192.168.33.0/24 192.168.3.0/24"}));
  EXPECT_TRUE(gm::own_lan_bypass({net("192.168.3.0/24")}).empty());
  EXPECT_TRUE(gm::own_lan_bypass({}).empty());
}

}  // namespace

// The kernel deleted a state on its own (its hard lifetime): covey-gm no
// longer counts it as installed, and the plan puts it back while the TEK
// is held.
namespace {

const kmod::GroupAnchors kAnchors{*Address::parse("169.254.77.1"), *Address::parse("169.254.77.2"),
                                  *Address::parse("169.254.77.3")};
constexpr std::uint32_t kReqid = 0xc0e00007;

kmod::StateExpiry expiry(std::uint32_t spi, const Address& destination, std::uint32_t reqid, kmod::Mark mark, bool hard) {
  kmod::StateExpiry e;
  e.state.spi = spi;
  e.state.protocol = 50;
  e.state.source = kAnchors.local;
  e.state.destination = destination;
  e.state.reqid = reqid;
  e.state.mark = mark;
  e.hard = hard;
  return e;
}

}  // namespace

TEST(DataplaneExpiry, HardExpiryOfTheOutboundStateIsPutBackWhileTheTekIsActive) {
  Teks t;
  t.add(kOld, TekState::Active);
  std::map<std::uint32_t, InstalledSa> installed{{kOld, {true, true}}};
  EXPECT_TRUE(forget_expired(installed, expiry(kOld, kAnchors.group, kReqid, kmod::kDefaultSteeringMark, true), kReqid, kAnchors));
  EXPECT_EQ(installed, (std::map<std::uint32_t, InstalledSa>{{kOld, {true, false}}}));
  EXPECT_EQ(plan_sas(t.views, installed), (std::vector<SaStep>{{K::AddOutbound, kOld}}));
}

TEST(DataplaneExpiry, HardExpiryOfBothStatesOfATekNoLongerHeldForgetsIt) {
  Teks t;
  t.add(kNew, TekState::Active);
  std::map<std::uint32_t, InstalledSa> installed{{kOld, {true, false}}, {kNew, {true, true}}};
  EXPECT_TRUE(forget_expired(installed, expiry(kOld, kAnchors.in, kReqid, {0, 0xf00}, true), kReqid, kAnchors));
  EXPECT_EQ(installed, (std::map<std::uint32_t, InstalledSa>{{kNew, {true, true}}}));
  EXPECT_TRUE(plan_sas(t.views, installed).empty());
}

TEST(DataplaneExpiry, SoftExpiriesAndOtherGroupsOrDaemonsStatesChangeNothing) {
  const std::map<std::uint32_t, InstalledSa> held{{kOld, {true, true}}};
  auto installed = held;
  EXPECT_TRUE(forget_expired(installed, expiry(kOld, kAnchors.group, kReqid, kmod::kDefaultSteeringMark, false), kReqid, kAnchors));
  EXPECT_FALSE(forget_expired(installed, expiry(kOld, kAnchors.group, kReqid + 1, kmod::kDefaultSteeringMark, true), kReqid, kAnchors));
  EXPECT_FALSE(forget_expired(installed, expiry(kOld, kAnchors.group, kReqid, {}, true), kReqid, kAnchors));
  EXPECT_FALSE(forget_expired(installed, expiry(kOld, *Address::parse("10.9.9.9"), kReqid, kmod::kDefaultSteeringMark, true), kReqid,
                              kAnchors));
  EXPECT_EQ(installed, held);
}

// Each family's states are planned apart (one pair per family, same SPI):
// the kernel expiring the IPv6 outbound state takes it from the IPv6
// family only, and only that family's plan puts it back.
TEST(DataplaneExpiry, AnExpiryBelongsToTheFamilyOfItsAnchor) {
  const kmod::GroupAnchors v6{*Address::parse("fd00:c0e1:77::1"), *Address::parse("fd00:c0e1:77::2"),
                              *Address::parse("fd00:c0e1:77::3")};
  Teks t;
  t.add(kOld, TekState::Active);
  std::map<std::uint32_t, InstalledSa> four{{kOld, {true, true}}}, six = four;
  auto gone = expiry(kOld, v6.group, kReqid, kmod::kDefaultSteeringMark, true);
  EXPECT_FALSE(forget_expired(four, gone, kReqid, kAnchors));
  EXPECT_TRUE(forget_expired(six, gone, kReqid, v6));
  EXPECT_TRUE(plan_sas(t.views, four).empty());
  EXPECT_EQ(plan_sas(t.views, six), (std::vector<SaStep>{{K::AddOutbound, kOld}}));
}
