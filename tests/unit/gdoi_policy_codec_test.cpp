// The group SA codec's SA TEK selectors for both address families, with
// the ranges another key server may send (RFC 2407 4.6.2). Its private GAP
// attribute COVEY_PSEUDOTIME_MS (201):
// the key server's TBAR clock, sent to covey members only and only with a
// TBAR window, read back as a reading of the clock, never as policy. And
// the SA KEK's cipher rule, which coveyctl decode shares with the member.
#include <gtest/gtest.h>

#include "config/policy_syntax.h"
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

namespace {

AclEntry entry(const char* line) {
  auto parsed = config::parse_acl_entry(line);
  EXPECT_TRUE(std::holds_alternative<AclEntry>(parsed)) << line;
  return std::holds_alternative<AclEntry>(parsed) ? std::get<AclEntry>(parsed) : AclEntry{};
}

// One group, both families, in the order of a Cisco ACL pair: the IPv4
// list's entries, then the IPv6 list's, with a deny of each family first.
GroupPolicy dual_stack_policy() {
  GroupPolicy p = fixtures::group_policy();
  p.acl = {entry("deny udp any eq 848 any eq 848"),
           entry("permit ip 192.168.0.0/16 192.168.0.0/16"),
           entry("deny udp 2001:db8::/32 eq 848 2001:db8::/32 eq 848"),
           entry("permit tcp host 2001:db8:3::10 host 2001:db8:4::10 eq 443"),
           entry("permit ipv6 2001:db8:3::/64 2001:db8:4::/64"),
           entry("permit ip host 10.1.1.1 10.2.0.0/15"),
           entry("permit ipv6 any any")};
  return p;
}

std::vector<std::string> lines(const std::vector<AclEntry>& acl) {
  std::vector<std::string> out;
  for (const AclEntry& e : acl) out.push_back(e.str());
  return out;
}

Bytes bytes_of(const char* address) {
  Address a = *Address::parse(address);
  return Bytes(a.bytes.begin(), a.bytes.begin() + static_cast<std::ptrdiff_t>(a.size()));
}

wire::GroupIdentity range(const char* first, const char* last) {
  wire::GroupIdentity id;
  Bytes f = bytes_of(first), l = bytes_of(last);
  id.type =
      static_cast<std::uint8_t>(f.size() == 4 ? wire::IdType::Ipv4AddrRange : wire::IdType::Ipv6AddrRange);
  id.data = f;
  id.data.insert(id.data.end(), l.begin(), l.end());
  return id;
}

}  // namespace

// Each entry is one SA TEK payload per TEK, in ACL order, its selectors
// in the ID types of its family: hosts as ID_IPV4_ADDR / ID_IPV6_ADDR,
// prefixes as ID_IPV4_ADDR_SUBNET / ID_IPV6_ADDR_SUBNET (RFC 2407 4.6.2).
TEST(PolicyCodecFamilies, EachEntryInTheIdTypesOfItsFamily) {
  GroupPolicy p = dual_stack_policy();
  Tek second = tek();
  second.spi = 0x55667788;
  auto sa = encode_group_sa(p, std::nullopt, {tek(), second}, true, PeerTraits{true});
  ASSERT_EQ(sa.teks.size(), 2 * p.acl.size());
  auto type = [](const wire::GroupIdentity& id) { return std::string(wire::id_type_name(id.type)); };
  for (std::size_t t = 0; t < 2; ++t) {
    const auto* teks = &sa.teks[t * p.acl.size()];
    EXPECT_EQ(type(teks[1].src), "ID_IPV4_ADDR_SUBNET");
    EXPECT_EQ(teks[1].src.data, Bytes({192, 168, 0, 0, 255, 255, 0, 0}));
    EXPECT_EQ(type(teks[2].src), "ID_IPV6_ADDR_SUBNET");
    EXPECT_EQ(teks[2].src.port, 848);
    Bytes db8 = bytes_of("2001:db8::");
    Bytes mask32 = bytes_of("ffff:ffff::");
    db8.insert(db8.end(), mask32.begin(), mask32.end());
    EXPECT_EQ(teks[2].src.data, db8);
    EXPECT_EQ(type(teks[3].src), "ID_IPV6_ADDR");
    EXPECT_EQ(teks[3].src.data, bytes_of("2001:db8:3::10"));
    EXPECT_EQ(type(teks[3].dst), "ID_IPV6_ADDR");
    EXPECT_EQ(teks[3].dst.port, 443);
    EXPECT_EQ(teks[3].protocol, 6);
    EXPECT_EQ(type(teks[4].dst), "ID_IPV6_ADDR_SUBNET");
    EXPECT_EQ(type(teks[5].src), "ID_IPV4_ADDR");
    EXPECT_EQ(type(teks[6].src), "ID_IPV6_ADDR_SUBNET");  // ::/0
    EXPECT_EQ(teks[6].src.data, Bytes(32, 0));
  }
}

// Through the bytes and back, the member holds the key server's list:
// same entries, same order, both families. A member without covey's
// extension gets the permit entries alone, still in order.
TEST(PolicyCodecFamilies, AMixedListRoundTripsInOrder) {
  GroupPolicy p = dual_stack_policy();
  Tek second = tek();
  second.spi = 0x55667788;
  auto covey = over_the_wire(encode_group_sa(p, std::nullopt, {tek(), second}, true, PeerTraits{true}));
  EXPECT_EQ(lines(covey.policy.acl), lines(p.acl));
  EXPECT_EQ(covey.policy.acl, p.acl);
  EXPECT_EQ(covey.tek_spis, (std::vector<std::uint32_t>{0x1A2B3C4D, 0x55667788}));

  auto rfc = over_the_wire(encode_group_sa(p, std::nullopt, {tek()}, true, PeerTraits{}));
  EXPECT_EQ(lines(rfc.policy.acl),
            (std::vector<std::string>{"permit ip 192.168.0.0/16 192.168.0.0/16",
                                      "permit tcp host 2001:db8:3::10 host 2001:db8:4::10 eq 443",
                                      "permit ip 2001:db8:3::/64 2001:db8:4::/64",
                                      "permit ip host 10.1.1.1 10.2.0.0/15", "permit ipv6 any any"}));
}

// IOS and gdoid may send an ACL's selectors as address ranges (RFC 2407
// 4.6.2.7, 4.6.2.8). A range that spans exactly one prefix is that prefix.
TEST(PolicyCodecFamilies, ARangeThatIsAPrefixIsThePrefix) {
  struct Case {
    const char* first;
    const char* last;
    const char* prefix;
  };
  for (const Case& c :
       {Case{"10.1.0.0", "10.1.255.255", "10.1.0.0/16"}, Case{"10.1.2.3", "10.1.2.3", "10.1.2.3/32"},
        Case{"0.0.0.0", "255.255.255.255", "any"}, Case{"192.168.4.0", "192.168.5.255", "192.168.4.0/23"},
        Case{"2001:db8:3::", "2001:db8:3::ffff:ffff:ffff:ffff", "2001:db8:3::/64"},
        Case{"2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::/32"},
        Case{"2001:db8::10", "2001:db8::10", "2001:db8::10/128"}}) {
    SCOPED_TRACE(std::string(c.first) + "-" + c.last);
    GroupPolicy p = fixtures::group_policy();
    p.acl = {entry(Address::parse(c.first)->family == 4 ? "permit ip any any" : "permit ipv6 any any")};
    auto sa = encode_group_sa(p, std::nullopt, {tek()}, true, PeerTraits{});
    sa.teks[0].src = range(c.first, c.last);
    sa.teks[0].dst = range(c.first, c.last);
    auto got = over_the_wire(sa);
    ASSERT_EQ(got.policy.acl.size(), 1u);
    Prefix want = *Prefix::parse(c.prefix);
    EXPECT_EQ(got.policy.acl[0].source, want);
    EXPECT_EQ(got.policy.acl[0].destination, want);
  }
}

// covey's entries are prefixes, and a range that is not one would be
// several entries of another shape: refused, naming the field and range.
TEST(PolicyCodecFamilies, ARangeThatIsNotAPrefixIsRefusedByName) {
  struct Case {
    const char* first;
    const char* last;
    const char* error;
  };
  for (const Case& c :
       {Case{"10.0.0.1", "10.0.0.6", "DST ID_IPV4_ADDR_RANGE 10.0.0.1-10.0.0.6 is not one prefix"},
        Case{"192.168.4.0", "192.168.6.255",
             "DST ID_IPV4_ADDR_RANGE 192.168.4.0-192.168.6.255 is not one prefix"},
        Case{"10.0.1.0", "10.0.0.255",
             "DST ID_IPV4_ADDR_RANGE 10.0.1.0-10.0.0.255: the first address is above the last"},
        Case{"2001:db8::1", "2001:db8::ff",
             "DST ID_IPV6_ADDR_RANGE 2001:db8::1-2001:db8::ff is not one prefix"}}) {
    SCOPED_TRACE(c.error);
    GroupPolicy p = fixtures::group_policy();
    p.acl = {entry(Address::parse(c.first)->family == 4 ? "permit ip any any" : "permit ipv6 any any")};
    auto sa = encode_group_sa(p, std::nullopt, {tek()}, true, PeerTraits{});
    sa.teks[0].dst = range(c.first, c.last);
    auto r = decode_group_sa(sa);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().find("SA TEK SPI 0x1A2B3C4D: " + std::string(c.error)), std::string::npos)
        << r.error();
  }
}

// A Cisco ACL line is ip or ipv6: an SA TEK whose SRC and DST are of two
// families is no entry covey (or the kernel's selectors) can hold.
TEST(PolicyCodecFamilies, SourceAndDestinationOfTwoFamiliesAreRefused) {
  GroupPolicy p = fixtures::group_policy();
  auto sa = encode_group_sa(p, std::nullopt, {tek()}, true, PeerTraits{});
  sa.teks[0].dst = range("2001:db8::", "2001:db8::ffff");
  auto r = decode_group_sa(sa);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("SRC is IPv4 and DST IPv6"), std::string::npos) << r.error();
}
