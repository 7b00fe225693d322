// The Cisco-syntax parsers: ACL lines, transform sets, prefixes. Table
// driven: adding a case is adding a row.
#include <gtest/gtest.h>

#include <variant>

#include "config/policy_syntax.h"

namespace covey::config {
namespace {

using gdoi::AclEntry;
using gdoi::Prefix;

AclEntry parse_ok(std::string_view line) {
  auto parsed = parse_acl_entry(line);
  if (auto* err = std::get_if<SyntaxError>(&parsed)) {
    ADD_FAILURE() << "\"" << line << "\": " << err->message;
    return {};
  }
  return std::get<AclEntry>(parsed);
}

struct RoundTrip {
  const char* line;
  const char* canonical;  // what AclEntry::str() prints
};

// Every form the parser takes, and the shortest form str() gives back.
const RoundTrip kRoundTrips[] = {
    {"deny udp any eq 848 any eq 848", "deny udp any eq 848 any eq 848"},
    {"permit ip 192.168.0.0/16 192.168.0.0/16", "permit ip 192.168.0.0/16 192.168.0.0/16"},
    {"permit ip 192.168.0.0 0.0.255.255 192.168.0.0 0.0.255.255", "permit ip 192.168.0.0/16 192.168.0.0/16"},
    {"permit ip 10.0.0.0 0.255.255.255 host 10.1.2.3", "permit ip 10.0.0.0/8 host 10.1.2.3"},
    {"permit ip 10.1.2.3 0.0.0.0 any", "permit ip host 10.1.2.3 any"},
    {"permit ip 0.0.0.0 255.255.255.255 any", "permit ip any any"},
    {"permit ip 10.1.2.3/32 any", "permit ip host 10.1.2.3 any"},
    {"permit tcp host 10.1.1.1 any range 5000 5100", "permit tcp host 10.1.1.1 any range 5000 5100"},
    {"permit tcp any lt 1024 any gt 1023", "permit tcp any lt 1024 any gt 1023"},
    {"permit tcp 10.0.0.0/8 eq www any", "permit tcp 10.0.0.0/8 eq 80 any"},
    {"permit udp any eq isakmp any eq non500-isakmp", "permit udp any eq 500 any eq 4500"},
    {"permit udp any range 0 99 any", "permit udp any lt 100 any"},
    {"permit udp any range 100 65535 any", "permit udp any gt 99 any"},
    {"permit udp any range 0 65535 any", "permit udp any any"},
    {"deny esp any any", "deny esp any any"},
    {"deny 47 any any", "deny gre any any"},
    {"permit 132 10.0.0.0/8 10.0.0.0/8", "permit 132 10.0.0.0/8 10.0.0.0/8"},
    {"permit icmp any any", "permit icmp any any"},
    {"  permit\tip   any    any  ", "permit ip any any"},
    {"permit ipv6 2001:db8::/32 2001:db8::/32", "permit ip 2001:db8::/32 2001:db8::/32"},
    {"permit ip host 2001:db8::1 2001:db8:1::/48", "permit ip host 2001:db8::1 2001:db8:1::/48"},
    {"permit icmp 2001:db8::/32 any", "permit icmp 2001:db8::/32 any"},
    {"deny tcp any 2001:db8::/32 eq 179", "deny tcp any 2001:db8::/32 eq 179"},
    {"permit ipv6 any any", "permit ipv6 any any"},
    {"deny tcp ::/0 any eq 179", "deny tcp ::/0 any eq 179"},
};

TEST(ConfigAcl, EveryFormRoundTripsThroughStr) {
  for (const auto& t : kRoundTrips) {
    SCOPED_TRACE(t.line);
    AclEntry e = parse_ok(t.line);
    EXPECT_EQ(e.str(), t.canonical);
    EXPECT_EQ(parse_ok(e.str()), e);
  }
}

TEST(ConfigAcl, FieldsOfTheLabPolicy) {
  AclEntry deny = parse_ok("deny udp any eq 848 any eq 848");
  EXPECT_EQ(deny.action, AclEntry::Action::Deny);
  EXPECT_EQ(deny.protocol, 17);
  EXPECT_TRUE(deny.source.is_any());
  EXPECT_EQ(deny.source_port, (gdoi::PortRange{848, 848}));
  EXPECT_EQ(deny.destination_port, (gdoi::PortRange{848, 848}));

  AclEntry permit = parse_ok("permit ip 192.168.0.0/16 192.168.0.0/16");
  EXPECT_EQ(permit.action, AclEntry::Action::Permit);
  EXPECT_EQ(permit.protocol, 0);
  EXPECT_EQ(permit.source, *Prefix::parse("192.168.0.0/16"));
  EXPECT_EQ(permit.destination.length, 16);
  EXPECT_TRUE(permit.source_port.is_any());
}

TEST(ConfigAcl, AnyTakesTheFamilyOfTheOtherSide) {
  EXPECT_EQ(parse_ok("permit ip any 2001:db8::/32").source.family, 6);
  EXPECT_EQ(parse_ok("permit ip 2001:db8::/32 any").destination.family, 6);
  EXPECT_EQ(parse_ok("permit ip any any").source.family, 4);
  // "ipv6" names the family when no address does, as Cisco's IPv6 ACLs'
  // "permit ipv6 any any" does (issue 12: a dual-stack group's catch-all).
  EXPECT_EQ(parse_ok("permit ipv6 any any").source.family, 6);
  EXPECT_EQ(parse_ok("permit ipv6 any any").destination.family, 6);
  EXPECT_EQ(parse_ok("deny tcp ::/0 any eq 179").destination.family, 6);
  EXPECT_EQ(parse_ok("permit icmp any 2001:db8::/32").protocol, 58);  // ICMPv6, as IOS reads it
  EXPECT_EQ(parse_ok("permit icmp any 10.0.0.0/8").protocol, 1);
}

struct Bad {
  const char* line;
  const char* word;     // where the error must point (its first occurrence), "" = end of line
  const char* message;  // a part of the message
};

const Bad kBadLines[] = {
    {"", "", "empty ACL entry"},
    {"10 permit ip any any", "10", "sequence number"},
    {"remark branch traffic", "remark", "TOML comments"},
    {"allow ip any any", "allow", "permit (encrypt) or deny"},
    {"permit", "", "missing protocol"},
    {"permit upd any any", "upd", "did you mean \"udp\""},
    {"permit 256 any any", "256", "unknown protocol"},
    {"permit ip any", "", "missing destination"},
    {"permit icmp any eq 80 any", "eq", "only to tcp and udp"},
    {"permit ip any any eq 848", "eq", "only to tcp and udp"},
    {"permit esp any range 1 2 any", "range", "only to tcp and udp"},
    {"permit ip 10.0.0.0 0.255.0.255 any", "0.255.0.255", "not contiguous"},
    {"permit ip 192.168.1.0/16 any", "192.168.1.0/16", "did you mean 192.168.0.0/16?"},
    {"permit ip 192.168.1.0 0.0.255.255 any", "192.168.1.0", "did you mean 192.168.0.0/16?"},
    {"permit ip 10.0.0.0/33 any", "10.0.0.0/33", "must be 0..32"},
    {"permit ip 10.0.0.0/x any", "10.0.0.0/x", "prefix length"},
    {"permit ip 10.0.0.256/8 any", "10.0.0.256/8", "not an IPv4 or IPv6 address"},
    {"permit ip 10.0.0.1 any", "10.0.0.1", "wildcard mask"},
    {"permit ip 2001:db8::1 any", "2001:db8::1", "host 2001:db8::1"},
    {"permit ip host any any", "any", "not an IPv4 or IPv6 address"},
    {"permit ip host", "", "missing address after \"host\""},
    {"permit ip somewhere any", "somewhere", "is not a source"},
    {"permit ip 10.0.0.0/8 2001:db8::/32", "2001:db8::/32", "one entry per address family"},
    {"permit ipv6 10.0.0.0/8 any", "10.0.0.0/8", "\"ipv6\" entry with an IPv4 source"},
    {"permit ipv6 any host 10.1.2.3", "host", "\"ipv6\" entry with an IPv4 destination"},
    {"permit tcp any neq 80 any", "neq", "two entries"},
    {"permit tcp any range 100 50 any", "range", "backwards; write range 50 100"},
    {"permit tcp any eq 70000 any", "70000", "not a port"},
    {"permit tcp any eq isakmpp any", "isakmpp", "did you mean \"isakmp\""},
    {"permit tcp any lt 0 any", "lt", "matches no port"},
    {"permit tcp any gt 65535 any", "gt", "matches no port"},
    {"permit tcp any eq", "", "missing port number"},
    {"permit ip any any log", "log", "remove \"log\""},
    {"permit icmp any any echo", "echo", "unexpected \"echo\""},
};

TEST(ConfigAcl, EachMistakeIsNamedAtItsWord) {
  for (const auto& t : kBadLines) {
    SCOPED_TRACE(t.line);
    auto parsed = parse_acl_entry(t.line);
    ASSERT_TRUE(std::holds_alternative<SyntaxError>(parsed));
    const auto& err = std::get<SyntaxError>(parsed);
    std::string_view line = t.line;
    std::size_t expected = *t.word ? line.find(t.word) : line.size();
    EXPECT_EQ(err.offset, expected);
    EXPECT_NE(err.message.find(t.message), std::string::npos) << err.message;
  }
}

TEST(ConfigTransform, CiscoFormsAndTheirMeaning) {
  using C = gdoi::TekTransform::Cipher;
  using I = gdoi::TekTransform::Integrity;
  struct Row {
    const char* text;
    gdoi::TekTransform want;
  };
  const Row rows[] = {
      {"esp-aes 256 esp-sha256-hmac", {C::Aes256Cbc, I::HmacSha256_128}},
      {"esp-aes-256 esp-sha256-hmac", {C::Aes256Cbc, I::HmacSha256_128}},
      {"esp-sha256-hmac esp-aes 256", {C::Aes256Cbc, I::HmacSha256_128}},
      {"esp-aes esp-sha-hmac", {C::Aes128Cbc, I::HmacSha1_96}},
      {"esp-aes 128 esp-sha256-hmac", {C::Aes128Cbc, I::HmacSha256_128}},
      {"esp-3des esp-sha-hmac", {C::TripleDesCbc, I::HmacSha1_96}},
      {"esp-gcm 256", {C::AesGcm256, I::None}},
      {"esp-gcm", {C::AesGcm128, I::None}},
      {"esp-gcm-128", {C::AesGcm128, I::None}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.text);
    auto parsed = parse_tek_transform(r.text);
    ASSERT_TRUE(std::holds_alternative<gdoi::TekTransform>(parsed)) << std::get<SyntaxError>(parsed).message;
    const auto& t = std::get<gdoi::TekTransform>(parsed);
    EXPECT_EQ(t, r.want);
    // str() prints a form the parser takes back.
    auto again = parse_tek_transform(t.str());
    ASSERT_TRUE(std::holds_alternative<gdoi::TekTransform>(again)) << t.str();
    EXPECT_EQ(std::get<gdoi::TekTransform>(again), t);
  }
  EXPECT_EQ(gdoi::TekTransform{}.str(), "esp-aes-256 esp-sha256-hmac");
}

TEST(ConfigTransform, RefusalsSayWhatToWrite) {
  const std::pair<const char*, const char*> rows[] = {
      {"", "no cipher"},
      {"esp-sha256-hmac", "no cipher"},
      {"esp-aes 256", "add esp-sha256-hmac"},
      {"esp-gcm 256 esp-sha256-hmac", "GCM authenticates by itself"},
      {"esp-aes 192 esp-sha-hmac", "192-bit AES"},
      {"esp-des esp-md5-hmac", "not safe"},
      {"esp-aes 256 esp-md5-hmac", "not safe"},
      {"esp-aes 256 esp-sha512-hmac", "write esp-sha256-hmac"},
      {"esp-aes 256 esp-3des esp-sha-hmac", "one cipher"},
      {"esp-aes 256 esp-sha-hmac esp-sha256-hmac", "one integrity"},
      {"esp-aes256 esp-sha256-hmac", "unknown transform \"esp-aes256\""},
  };
  for (const auto& [text, message] : rows) {
    SCOPED_TRACE(text);
    auto parsed = parse_tek_transform(text);
    ASSERT_TRUE(std::holds_alternative<SyntaxError>(parsed));
    EXPECT_NE(std::get<SyntaxError>(parsed).message.find(message), std::string::npos)
        << std::get<SyntaxError>(parsed).message;
  }
}

TEST(ConfigPrefix, ParseContainsAndStr) {
  auto p = Prefix::parse("192.168.0.0/16");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->str(), "192.168.0.0/16");
  EXPECT_TRUE(p->contains(*Address::parse("192.168.3.10")));
  EXPECT_FALSE(p->contains(*Address::parse("192.169.0.1")));
  EXPECT_FALSE(p->contains(*Address::parse("::ffff:192.168.3.10")));

  auto host = Prefix::parse("10.1.23.3");
  ASSERT_TRUE(host);
  EXPECT_EQ(host->length, 32);
  EXPECT_EQ(*host, Prefix::host(*Address::parse("10.1.23.3")));

  auto v6 = Prefix::parse("2001:db8:8000::/33");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->str(), "2001:db8:8000::/33");
  EXPECT_TRUE(v6->contains(*Address::parse("2001:db8:8000::1")));
  EXPECT_FALSE(v6->contains(*Address::parse("2001:db8::1")));

  auto any = Prefix::parse("any");
  ASSERT_TRUE(any);
  EXPECT_TRUE(any->is_any());
  EXPECT_EQ(any->str(), "any");
  EXPECT_TRUE(any->contains(*Address::parse("1.2.3.4")));
  EXPECT_EQ(Prefix::parse("::/0")->str(), "any");

  std::string why;
  EXPECT_FALSE(Prefix::parse("10.1.23.3/24", &why));
  EXPECT_NE(why.find("did you mean 10.1.23.0/24?"), std::string::npos) << why;
  EXPECT_FALSE(Prefix::parse("2001:db8::/129", &why));
  EXPECT_NE(why.find("0..128"), std::string::npos) << why;
  EXPECT_FALSE(Prefix::parse("10.1.23.0/", &why));
  EXPECT_FALSE(Prefix::parse("lan", &why));
}

}  // namespace
}  // namespace covey::config
