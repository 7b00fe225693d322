// The ACL compiler against the reference matcher, in user space (no root):
// the compiled tables, walked the way bpf/acl.h walks them, must name the
// same first entry as a plain walk over the ACL, for every packet.
#include <gtest/gtest.h>

#include "acl_samples.h"
#include "datapath/acl_compile.h"

namespace covey::datapath {
namespace {

using covey::testing::acl_from;
using covey::testing::packet;
using covey::testing::Rng;
using gdoi::AclEntry;

std::uint32_t expected_result(const std::vector<AclEntry>& acl, const PacketFields& p) {
  const auto i = first_match(acl, p);
  if (!i) return COVEY_RESULT_NONE;
  return static_cast<std::uint32_t>(*i + 1) | (acl[*i].action == AclEntry::Action::Permit ? COVEY_RESULT_PERMIT : 0);
}

std::string describe(const PacketFields& p) {
  char buf[160];
  auto a = [&](const std::array<std::uint8_t, 16>& x) {
    Address ad;
    ad.family = p.family;
    ad.bytes = x;
    return ad.str();
  };
  std::snprintf(buf, sizeof buf, "%s -> %s proto %u ports %u -> %u", a(p.source).c_str(), a(p.destination).c_str(),
                p.protocol, p.source_port, p.destination_port);
  return buf;
}

// Compiles `acl` and checks `count` random packets of each family against the reference.
void agree(const std::vector<AclEntry>& acl, Rng& rng, int count, const CompileLimits& limits = {}) {
  auto compiled = compile_acl(acl, limits);
  ASSERT_TRUE(compiled.ok()) << compiled.error();
  for (std::uint8_t family : {std::uint8_t{4}, std::uint8_t{6}}) {
    for (int i = 0; i < count; ++i) {
      const PacketFields p = covey::testing::random_packet(rng, acl, family);
      const std::uint32_t want = expected_result(acl, p);
      const std::uint32_t got = classify(*compiled, p);
      if (got != want) {
        FAIL() << "packet " << describe(p) << ": compiled says " << std::hex << got << ", reference " << want
               << (want ? " (" + acl[(want & COVEY_RESULT_ENTRY) - 1].str() + ")" : std::string())
               << "; " << compiled->summary();
      }
    }
  }
}

struct MatchCase {
  const char* description;
  const char* entry;
  PacketFields packet;
  bool matches;
};

TEST(AclReference, CiscoSemanticsOfOneEntry) {
  const std::uint32_t unseen = COVEY_PORT_UNSEEN;
  const MatchCase cases[] = {
      {"tcp, source prefix, destination port eq", "permit tcp 10.0.0.0/8 any eq 22",
       packet("10.1.2.3", "192.0.2.1", 6, 40000, 22), true},
      {"destination port one off", "permit tcp 10.0.0.0/8 any eq 22", packet("10.1.2.3", "192.0.2.1", 6, 40000, 23),
       false},
      {"other protocol", "permit tcp 10.0.0.0/8 any eq 22", packet("10.1.2.3", "192.0.2.1", 17, 40000, 22), false},
      {"source outside the prefix", "permit tcp 10.0.0.0/8 any eq 22", packet("11.1.2.3", "192.0.2.1", 6, 1, 22),
       false},
      {"ip matches every protocol", "permit ip any host 192.0.2.1", packet("10.1.2.3", "192.0.2.1", 47), true},
      {"host is /32", "permit ip any host 192.0.2.1", packet("10.1.2.3", "192.0.2.2", 47), false},
      {"source port range, low edge", "deny udp any range 1000 2000 any", packet("1.1.1.1", "2.2.2.2", 17, 1000, 5),
       true},
      {"source port range, high edge", "deny udp any range 1000 2000 any",
       packet("1.1.1.1", "2.2.2.2", 17, 2000, 5), true},
      {"source port range, past the edge", "deny udp any range 1000 2000 any",
       packet("1.1.1.1", "2.2.2.2", 17, 2001, 5), false},
      {"unseen ports: a permit with a port match covers them", "permit tcp any any eq 80",
       packet("1.1.1.1", "2.2.2.2", 6, unseen, unseen), true},
      {"unseen ports: a deny with a port match does not", "deny tcp any any eq 80",
       packet("1.1.1.1", "2.2.2.2", 6, unseen, unseen), false},
      {"unseen ports: a deny without port match does", "deny tcp any any",
       packet("1.1.1.1", "2.2.2.2", 6, unseen, unseen), true},
      {"unseen protocol: a permit tcp covers it", "permit tcp any any",
       packet("1.1.1.1", "2.2.2.2", COVEY_PROTO_UNSEEN), true},
      {"unseen protocol: a deny tcp does not exempt it", "deny tcp any any",
       packet("1.1.1.1", "2.2.2.2", COVEY_PROTO_UNSEEN), false},
      {"unseen protocol: a deny ip does", "deny ip any any", packet("1.1.1.1", "2.2.2.2", COVEY_PROTO_UNSEEN),
       true},
      {"IPv4 entry never matches IPv6", "permit ip any any", packet("2001:db8::1", "2001:db8::2", 6, 1, 2), false},
      {"IPv6 prefix", "permit ip 2001:db8::/32 any", packet("2001:db8:1::1", "2001:db9::2", 58), true},
      {"IPv6 /128", "permit ip host 2001:db8::1 any", packet("2001:db8::2", "::1", 58), false},
  };
  for (const auto& c : cases) {
    const AclEntry e = acl_from({c.entry}).front();
    EXPECT_EQ(entry_matches(e, c.packet), c.matches) << c.description << ": " << c.entry;
  }
  const AclEntry v6_permit = acl_from({"v6: permit tcp any any"}).front();
  EXPECT_TRUE(entry_matches(v6_permit, packet("2001:db8::1", "2001:db8::2", COVEY_PROTO_UNSEEN)))
      << "an unseen protocol is covered by a permit tcp";
  const AclEntry v6_deny = acl_from({"v6: deny tcp any any"}).front();
  EXPECT_FALSE(entry_matches(v6_deny, packet("2001:db8::1", "2001:db8::2", COVEY_PROTO_UNSEEN)))
      << "an unseen protocol is not exempted by a deny tcp";
}

TEST(AclReference, FirstMatchWinsAndTheEndIsImplicit) {
  const auto acl = acl_from({"deny tcp any any eq 22", "permit ip 10.0.0.0/8 10.0.0.0/8"});
  EXPECT_EQ(first_match(acl, packet("10.0.0.1", "10.0.0.2", 6, 999, 22)), 0u);
  EXPECT_EQ(first_match(acl, packet("10.0.0.1", "10.0.0.2", 6, 999, 23)), 1u);
  EXPECT_EQ(first_match(acl, packet("10.0.0.1", "11.0.0.2", 6, 999, 23)), std::nullopt);
}

TEST(AclCompile, EmptyAclMatchesNothing) {
  auto c = compile_acl({});
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(classify(*c, packet("10.0.0.1", "10.0.0.2", 6, 1, 2)), COVEY_RESULT_NONE);
  EXPECT_EQ(classify(*c, packet("2001:db8::1", "2001:db8::2", 6, 1, 2)), COVEY_RESULT_NONE);
  EXPECT_EQ(c->v4.head.entries, 0u);
}

TEST(AclCompile, ResultNamesTheEntryAndItsAction) {
  const auto acl = acl_from({"deny udp any eq 848 any eq 848", "v6: permit ip any any",
                             "permit ip 192.168.0.0/16 192.168.0.0/16"});
  auto c = compile_acl(acl);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(classify(*c, packet("192.168.1.1", "192.168.2.2", 17, 848, 848)), 1u);
  EXPECT_EQ(classify(*c, packet("192.168.1.1", "192.168.2.2", 17, 848, 849)), 3u | COVEY_RESULT_PERMIT);
  EXPECT_EQ(classify(*c, packet("2001:db8::1", "2001:db8::2", 17, 848, 848)), 2u | COVEY_RESULT_PERMIT);
  EXPECT_EQ(classify(*c, packet("192.169.1.1", "192.168.2.2", 17, 848, 849)), COVEY_RESULT_NONE);
  ASSERT_EQ(c->entries.size(), 3u);
  EXPECT_EQ(c->entries[1].action, COVEY_ACL_PERMIT);
  EXPECT_EQ(c->entries[1].family, 6);
  EXPECT_EQ(c->entries[0].position, 1u);
  EXPECT_EQ(c->entries[0].sport_first, 848);
  EXPECT_EQ(c->v4.head.entries, 2u);
  EXPECT_EQ(c->v6.head.entries, 1u);
}

TEST(AclCompile, AgreesWithReferenceOnSmallAclsOfDistinctPrefixes) {
  Rng rng(1);
  for (int round = 0; round < 40; ++round) {
    const std::size_t n = 1 + static_cast<std::size_t>(round) * 7;
    const auto acl = covey::testing::random_acl(rng, n, 0, 0);
    SCOPED_TRACE("round " + std::to_string(round) + ", " + std::to_string(n) + " entries");
    agree(acl, rng, 300);
    if (HasFatalFailure()) return;
  }
}

TEST(AclCompile, AgreesWithReferenceOnPooledAcls) {
  Rng rng(2);
  for (std::size_t n : {10u, 100u, 1000u, 3000u}) {
    for (int round = 0; round < 2; ++round) {
      const auto acl = covey::testing::random_acl(rng, n, 0);
      SCOPED_TRACE(std::to_string(n) + " entries, round " + std::to_string(round));
      agree(acl, rng, 2000);
      if (HasFatalFailure()) return;
    }
  }
}

TEST(AclCompile, AgreesWithReferenceAtTenThousandEntries) {
  Rng rng(3);
  const auto acl = covey::testing::random_acl(rng, 10000, 4);
  agree(acl, rng, 2000);
  const auto mixed = covey::testing::random_acl(rng, 10000, 0);
  agree(mixed, rng, 2000);
  const auto sites = covey::testing::site_acl(10000);
  agree(sites, rng, 2000);
  const auto sites6 = covey::testing::site_acl(10000, 6);
  agree(sites6, rng, 2000);
}

TEST(AclCompile, SiteAclOfTenThousandEntriesStaysSmall) {
  // The cut at the first entry that decides every remaining field is what
  // keeps classes near the ACL's shape; without it the address classes of
  // this ACL would carry all six infrastructure denies' combinations.
  const auto acl = covey::testing::site_acl(10000);
  auto c = compile_acl(acl);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_LT(c->bytes(), std::size_t{8} << 20) << c->summary();
  EXPECT_LE(c->v4.classes.address, acl.size() + 1) << c->summary();
}

TEST(AclCompile, RefusesPastItsLimitsWithTheNumbers) {
  Rng rng(4);
  const auto acl = covey::testing::random_acl(rng, 300, 4, 0);
  CompileLimits tight;
  tight.max_cross_cells = 1000;
  auto c = compile_acl(acl, tight);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().find("IPv4 entries: the (source, destination) table needs"), std::string::npos) << c.error();
  EXPECT_NE(c.error().find("over the limit of 1000 cells"), std::string::npos) << c.error();
  CompileLimits small_trie;
  small_trie.max_trie_cells = 70000;
  auto t = compile_acl(acl, small_trie);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().find("trie needs"), std::string::npos) << t.error();
}

TEST(AclCompile, RefusesEntriesItCannotMatch) {
  auto mixed = acl_from({"permit ip any any", "permit ip 10.0.0.0/8 any"});
  mixed[1].destination = gdoi::Prefix::parse("2001:db8::/32").value();
  auto c = compile_acl(mixed);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().find("ACL entry 2"), std::string::npos) << c.error();
  EXPECT_NE(c.error().find("source is IPv4 but destination is IPv6"), std::string::npos) << c.error();

  auto backwards = acl_from({"permit tcp any any range 10 20"});
  backwards[0].destination_port = {20, 10};
  auto b = compile_acl(backwards);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().find("backwards"), std::string::npos) << b.error();
}

TEST(AclCompile, HostBitsBeyondThePrefixAreIgnored) {
  // A decoded entry (GAP payload) may carry them; the parser refuses them.
  auto acl = acl_from({"permit ip 10.1.0.0/16 any"});
  acl[0].source.address[3] = 7;
  auto c = compile_acl(acl);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(classify(*c, packet("10.1.200.1", "1.1.1.1", 6, 1, 2)), 1u | COVEY_RESULT_PERMIT);
}

}  // namespace
}  // namespace covey::datapath
