// The group SA codec's private GAP attribute COVEY_PSEUDOTIME_MS (201):
// the key server's TBAR clock, sent to covey members only and only with a
// TBAR window, read back as a reading of the clock, never as policy. And
// the SA KEK's cipher rule, which coveyctl decode shares with the member.
#include <gtest/gtest.h>

#include "fixtures.h"

#include "gdoi/policy_codec.h"
#include "wire/message.h"
#include "wire/names.h"

using namespace covey;
using namespace covey::gdoi;
using covey::fixtures::prefix;

namespace {

GroupPolicy tbar_policy() {
  GroupPolicy p = fixtures::group_policy();
  p.tbar_window_ms = 5000;
  return p;
}

Tek tek() {
  Tek t;
  t.spi = 0x1A2B3C4D;
  t.lifetime_s = 3600;
  return t;
}

const wire::Attribute* gap_attribute(const wire::GroupSaPayload& sa, std::uint16_t type) {
  return sa.gap ? wire::find(sa.gap->attributes, type) : nullptr;
}

// Through the bytes on the wire and back, as a member reads it.
ReceivedSa over_the_wire(const wire::GroupSaPayload& sa) {
  Bytes bytes = wire::encode_payloads({sa});
  auto back = wire::decode_payloads(bytes, static_cast<std::uint8_t>(wire::PayloadType::SecurityAssociation),
                                    static_cast<std::uint8_t>(wire::ExchangeType::GroupkeyPull), 0, false);
  EXPECT_TRUE(back.ok()) << back.error().message();
  const auto* gsa = back.ok() && back->payloads.size() == 1 ? std::get_if<wire::GroupSaPayload>(&back->payloads[0]) : nullptr;
  EXPECT_NE(gsa, nullptr);
  auto r = decode_group_sa(gsa ? *gsa : sa);
  EXPECT_TRUE(r.ok()) << r.error();
  return r.ok() ? *r : ReceivedSa{};
}

TEST(PolicyCodecPseudotime, RoundTripsAsFourOctetsInTheGap) {
  for (std::uint32_t pt : {0u, 1u, 123456789u, 0xffffffffu}) {
    auto sa = encode_group_sa(tbar_policy(), std::nullopt, {tek()}, true, PeerTraits{true}, pt);
    const wire::Attribute* a = gap_attribute(sa, covey_attr::PseudotimeMs);
    ASSERT_NE(a, nullptr) << pt;
    EXPECT_EQ(a->type, 201);
    EXPECT_FALSE(a->basic);
    EXPECT_EQ(a->value.size(), 4u);
    EXPECT_EQ(over_the_wire(sa).pseudotime_ms, pt);
  }
}

// GroupPolicy is compared whole to tell a policy change: two readings of
// the clock must not look like two policies.
TEST(PolicyCodecPseudotime, IsNotPartOfThePolicy) {
  auto early = over_the_wire(encode_group_sa(tbar_policy(), std::nullopt, {tek()}, true, PeerTraits{true}, 1000));
  auto late = over_the_wire(encode_group_sa(tbar_policy(), std::nullopt, {tek()}, true, PeerTraits{true}, 9000));
  EXPECT_EQ(early.pseudotime_ms, 1000u);
  EXPECT_EQ(late.pseudotime_ms, 9000u);
  EXPECT_EQ(early.policy, late.policy);
  EXPECT_EQ(early.policy.tbar_window_ms, 5000u);
}

TEST(PolicyCodecPseudotime, OnlyForCoveyPeersWithATbarWindowAndAGap) {
  GroupPolicy off = tbar_policy();
  off.tbar_window_ms.reset();
  struct Case {
    const char* what;
    GroupPolicy policy;
    bool with_gap;
    bool covey;
    std::optional<std::uint32_t> pt;
  } cases[] = {
      {"another implementation's member", tbar_policy(), true, false, 42},
      {"TBAR off", off, true, true, 42},
      {"no GAP in this SA", tbar_policy(), false, true, 42},
      {"no clock given", tbar_policy(), true, true, std::nullopt},
  };
  for (const Case& c : cases) {
    auto sa = encode_group_sa(c.policy, std::nullopt, {tek()}, c.with_gap, PeerTraits{c.covey}, c.pt);
    EXPECT_EQ(gap_attribute(sa, covey_attr::PseudotimeMs), nullptr) << c.what;
    EXPECT_FALSE(over_the_wire(sa).pseudotime_ms) << c.what;
  }
}

TEST(PolicyCodecPseudotime, AnythingButFourOctetsIsRefused) {
  for (const wire::Attribute& bad : {wire::Attribute::tv(covey_attr::PseudotimeMs, 7),
                                     wire::Attribute::tlv(covey_attr::PseudotimeMs, Bytes{0, 7}),
                                     wire::Attribute::tlv(covey_attr::PseudotimeMs, Bytes{0, 0, 0, 0, 7})}) {
    auto sa = encode_group_sa(tbar_policy(), std::nullopt, {tek()}, true, PeerTraits{true});
    sa.gap->attributes.push_back(bad);
    auto r = decode_group_sa(sa);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().find("COVEY_PSEUDOTIME_MS"), std::string::npos) << r.error();
  }
}

// `coveyctl decode` names covey's private attributes.
TEST(PolicyCodecPseudotime, DecodeNamesCoveysPrivateAttributes) {
  using wire::AttributeSpace;
  EXPECT_EQ(wire::attribute_name(AttributeSpace::Gap, covey_attr::PseudotimeMs), "COVEY_PSEUDOTIME_MS");
  EXPECT_EQ(wire::attribute_name(AttributeSpace::Gap, covey_attr::FailCloseAcl), "COVEY_FAIL_CLOSE_ACL");
  EXPECT_EQ(wire::attribute_name(AttributeSpace::IpsecSa, covey_attr::AclAction), "COVEY_ACL_ACTION");
  EXPECT_EQ(wire::attribute_name(AttributeSpace::IpsecSa, covey_attr::PortRanges), "COVEY_PORT_RANGES");
  EXPECT_EQ(wire::attribute_name(AttributeSpace::IpsecSa, covey_attr::TbarWindowMs), "COVEY_TBAR_WINDOW_MS");
  EXPECT_EQ(wire::attribute_value_name(AttributeSpace::IpsecSa, covey_attr::AclAction, covey_attr::ActionBypass),
            "bypass");
}

// RFC 6407 5.3.3: KEK_KEY_LENGTH is optional; an AES KEK without it is AES-256.
TEST(PolicyCodecKek, CipherFromAlgorithmAndKeyLength) {
  using crypto::CipherAlgorithm;
  EXPECT_EQ(kek_cipher(wire::kek_value::KekAlgAes, 128u).value(), CipherAlgorithm::Aes128Cbc);
  EXPECT_EQ(kek_cipher(wire::kek_value::KekAlgAes, 256u).value(), CipherAlgorithm::Aes256Cbc);
  EXPECT_EQ(kek_cipher(wire::kek_value::KekAlgAes, std::nullopt).value(), CipherAlgorithm::Aes256Cbc);
  EXPECT_EQ(kek_cipher(wire::kek_value::KekAlg3des, std::nullopt).value(), CipherAlgorithm::TripleDesCbc);
  auto aes192 = kek_cipher(wire::kek_value::KekAlgAes, 192u);
  ASSERT_FALSE(aes192.ok());
  EXPECT_EQ(aes192.error(), "KEK_ALGORITHM 3 with KEK_KEY_LENGTH 192 is not supported (AES-128, AES-256, 3DES)");
}

}  // namespace

// Each private attribute goes with the feature bit of covey's Vendor ID
// that names it (gdoi/vendor_id.h). A deny entry with a port range goes
// only to a member that reads ranges: read as any port it would pass in
// clear traffic the policy encrypts.
TEST(PolicyCodecFeatures, EachPrivateAttributeOnlyWithItsFeature) {
  GroupPolicy p = tbar_policy();
  AclEntry deny_dns;
  deny_dns.action = AclEntry::Action::Deny;
  deny_dns.protocol = 17;
  deny_dns.destination_port = {53, 53};
  AclEntry deny_range = deny_dns;
  deny_range.destination_port = {5000, 5999};
  AclEntry web;
  web.protocol = 6;
  web.source = prefix("192.168.0.0", 16);
  web.destination = prefix("192.168.0.0", 16);
  web.destination_port = {8000, 8099};
  p.acl = {deny_dns, deny_range, web, p.acl[0]};
  p.fail_close_acl = {p.acl[3]};
  EXPECT_EQ(features_needed(p), covey_feature::All);

  auto deny_ports = [](const GroupPolicy& r) {
    std::vector<std::uint16_t> out;
    for (const AclEntry& e : r.acl)
      if (e.action == AclEntry::Action::Deny) out.push_back(e.destination_port.first);
    return out;
  };
  auto received = [&](std::uint32_t features) {
    return over_the_wire(encode_group_sa(p, std::nullopt, {tek()}, true, PeerTraits{true, features}, 42));
  };
  using namespace covey_feature;
  auto all = received(All);
  EXPECT_EQ(all.policy.acl, p.acl);
  EXPECT_EQ(all.policy.fail_close_acl, p.fail_close_acl);
  EXPECT_EQ(all.policy.tbar_window_ms, p.tbar_window_ms);
  EXPECT_EQ(all.pseudotime_ms, 42u);

  auto no_ranges = received(All & ~PortRanges);
  EXPECT_EQ(deny_ports(no_ranges.policy), (std::vector<std::uint16_t>{53}));
  EXPECT_EQ(no_ranges.policy.acl.size(), 3u);
  EXPECT_EQ(no_ranges.policy.acl[1].destination_port, PortRange{});  // the web range, as any port

  auto no_deny = received(All & ~AclAction);
  EXPECT_TRUE(deny_ports(no_deny.policy).empty());
  EXPECT_EQ(no_deny.policy.acl.size(), 2u);

  auto no_tbar = received(All & ~Tbar);
  EXPECT_FALSE(no_tbar.policy.tbar_window_ms);
  EXPECT_FALSE(no_tbar.pseudotime_ms);
  EXPECT_EQ(no_tbar.policy.fail_close_acl, p.fail_close_acl);

  auto no_fail_close = received(All & ~FailCloseAcl);
  EXPECT_TRUE(no_fail_close.policy.fail_close_acl.empty());
  EXPECT_EQ(no_fail_close.policy.tbar_window_ms, p.tbar_window_ms);

  // What a member lacks of what the policy needs.
  EXPECT_EQ(PeerTraits{}.lacks(features_needed(p)), All);
  EXPECT_EQ((PeerTraits{true, All & ~Tbar}.lacks(features_needed(p))), Tbar);
  EXPECT_EQ(feature_names(All), "deny entries, port ranges, TBAR, fail-close ACL");
}
