// covey-gm configuration: the lab members' files, the defaults, the key
// server list forms, and each class of mistake on its line.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "config/gm_config.h"

namespace covey::config {
namespace {

namespace fs = std::filesystem;

const fs::path kExamples = fs::path(COVEY_TEST_DATA) / ".." / ".." / ".." / "examples";

std::string all(const std::vector<Problem>& problems) {
  return format_problems(problems);
}

std::string replace(std::string text, std::string_view from, std::string_view to) {
  auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << "test bug: \"" << from << "\" not in the config";
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

std::uint32_t line_of(const std::string& text, std::string_view marker) {
  auto at = text.find(marker);
  EXPECT_NE(at, std::string::npos) << "test bug: \"" << marker << "\" not in the config";
  return static_cast<std::uint32_t>(std::count(text.begin(), text.begin() + static_cast<long>(at), '\n') + 1);
}

const std::string kBase =
    "[member]\n"
    "wan_interface = \"wan0\"\n"
    "\n"
    "[group]\n"
    "identity = 134\n"
    "key_servers = [\"10.1.12.1\"]\n"
    "\n"
    "[isakmp]\n"
    "pre_shared_key = \"lab\"\n";

Parsed<GmConfig> parse(const std::string& text) {
  return parse_gm_config(text, "/etc/covey/gm.toml");
}

TEST(GmConfig, LabMembersParse) {
  struct Lab {
    const char* file;
    const char* address;
    const char* socket;
    const char* key_server;  // gm4 speaks GDOI over IPv6
  };
  for (const Lab& lab : {Lab{"gm3.toml", "10.1.23.3", "/run/covey-lab/gm3.sock", "10.1.12.1"},
                         Lab{"gm4.toml", "2001:db8:24::4", "/run/covey-lab/gm4.sock", "2001:db8:12::1"}}) {
    SCOPED_TRACE(lab.file);
    auto parsed = load_gm_config((kExamples / "lab" / lab.file).string());
    ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
    EXPECT_TRUE(parsed.problems.empty()) << all(parsed.problems);
    const GmConfig& c = *parsed.config;
    EXPECT_EQ(c.member.local_address, Address::parse(lab.address));
    EXPECT_EQ(c.member.wan_interface, "wan0");
    EXPECT_EQ(c.member.lan_interfaces, std::vector<std::string>{"lan0"});
    EXPECT_EQ(c.member.control_socket, lab.socket);
    EXPECT_EQ(c.group.name, "GET_VPN");
    EXPECT_EQ(c.group.identity, 134u);
    ASSERT_EQ(c.group.key_servers.size(), 1u);
    EXPECT_EQ(c.group.key_servers[0].address, Address::parse(lab.key_server));
    EXPECT_EQ(c.group.key_servers[0].port, 848);
    EXPECT_TRUE(c.isakmp.pre_shared_key_for(*Address::parse(lab.key_server)));
  }
}

TEST(GmConfig, ReferenceExampleParses) {
  auto parsed = load_gm_config((kExamples / "gm.toml").string());
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  EXPECT_TRUE(parsed.problems.empty()) << all(parsed.problems);
}

TEST(GmConfig, ContainerHostExampleParses) {
  auto parsed = load_gm_config((kExamples / "container-host" / "gm.toml").string());
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  EXPECT_TRUE(parsed.problems.empty()) << all(parsed.problems);
  EXPECT_EQ(parsed.config->member.lan_interfaces, std::vector<std::string>{"covey0"});
}

TEST(GmConfig, EveryOptionalKeyHasItsDefault) {
  auto parsed = parse(kBase);
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  EXPECT_TRUE(parsed.problems.empty()) << all(parsed.problems);
  const GmConfig& c = *parsed.config;
  EXPECT_FALSE(c.member.local_address);
  EXPECT_TRUE(c.member.lan_interfaces.empty());
  EXPECT_EQ(c.member.state_dir, "/var/lib/covey");
  EXPECT_EQ(c.member.control_socket, "/run/covey-gm/gm.sock");
  EXPECT_EQ(c.member.keylog, "");
  EXPECT_EQ(c.group.name, "");
  EXPECT_FALSE(c.member.anchors);
  EXPECT_FALSE(c.member.anchors_v6);
  EXPECT_FALSE(c.metrics.listen);  // no metrics endpoint unless asked
  EXPECT_EQ(c.isakmp.dh_group, (std::vector<std::uint16_t>{19, 20, 14}));
  EXPECT_EQ(c.isakmp.lifetime_s, 86400u);
}

TEST(GmConfig, KeyServerForms) {
  std::string text = replace(kBase, "[\"10.1.12.1\"]",
                             "[\"10.1.12.1\", \"10.1.12.2:1848\", \"2001:db8::1\", \"[2001:db8::2]:848\", "
                             "\"[2001:db8::3]\"]");
  auto parsed = parse(text);
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  std::vector<std::string> got;
  for (const auto& e : parsed.config->group.key_servers) got.push_back(e.str());
  EXPECT_EQ(got, (std::vector<std::string>{"10.1.12.1:848", "10.1.12.2:1848", "[2001:db8::1]:848",
                                           "[2001:db8::2]:848", "[2001:db8::3]:848"}));
}

TEST(GmConfig, MetricsListenForms) {
  auto listen = [](const std::string& value) {
    auto parsed = parse(kBase + "\n[metrics]\nlisten = \"" + value + "\"\n");
    return parsed.ok() && parsed.config->metrics.listen ? parsed.config->metrics.listen->str() : all(parsed.problems);
  };
  EXPECT_EQ(listen("127.0.0.1:9100"), "127.0.0.1:9100");
  EXPECT_EQ(listen("127.0.0.1"), "127.0.0.1:9849");
  EXPECT_EQ(listen("[::1]:9849"), "[::1]:9849");
  EXPECT_EQ(listen("::1"), "[::1]:9849");
  EXPECT_EQ(listen("localhost:9849"),
            "/etc/covey/gm.toml:12:10: error: [metrics] listen \"localhost:9849\" is not an address[:port]; write "
            "e.g. \"127.0.0.1:9849\" or \"[::1]:9849\"\n1 error, 0 warnings\n");
  auto typo = parse(kBase + "\n[metrics]\nlisen = \"127.0.0.1\"\n");
  EXPECT_FALSE(typo.ok()) << "a misspelt key must not leave metrics silently off";
}

TEST(GmConfig, AnchorsOfBothFamilies) {
  std::string text = replace(kBase, "wan_interface = \"wan0\"",
                             "wan_interface = \"wan0\"\n"
                             "anchors = [\"100.127.77.1\", \"100.127.77.2\", \"100.127.77.3\"]\n"
                             "anchors_v6 = [\"2001:db8:ffff::1\", \"2001:db8:ffff::2\", \"2001:db8:ffff::3\"]");
  auto parsed = parse(text);
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  const GmMemberConfig& m = parsed.config->member;
  ASSERT_TRUE(m.anchors && m.anchors_v6);
  EXPECT_EQ((*m.anchors)[0], *Address::parse("100.127.77.1"));
  EXPECT_EQ((*m.anchors)[2], *Address::parse("100.127.77.3"));
  EXPECT_EQ((*m.anchors_v6)[1], *Address::parse("2001:db8:ffff::2"));
}

TEST(GmConfig, PerKeyServerPreSharedKeys) {
  std::string text = kBase + "[isakmp.peer_keys]\n\"10.1.12.2\" = \"backup\"\n";
  auto parsed = parse(text);
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  auto psk = [&](const char* a) {
    const crypto::SecretBytes* k = parsed.config->isakmp.pre_shared_key_for(*Address::parse(a));
    return k ? std::string(k->view().begin(), k->view().end()) : std::string("(none)");
  };
  EXPECT_EQ(psk("10.1.12.2"), "backup");
  EXPECT_EQ(psk("10.1.12.1"), "lab");
}

struct Row {
  const char* what;
  std::string from, to, at, message;
};

TEST(GmConfig, EachMistakeIsReportedOnItsLine) {
  const std::vector<Row> rows = {
      {"missing wan interface", "wan_interface = \"wan0\"\n", "", "[member]", "has no wan_interface"},
      {"unknown key with suggestion", "wan_interface", "wan_interfce", "wan_interfce",
       "did you mean \"wan_interface\"?"},
      {"bad interface name", "\"wan0\"", "\"eth0/1\"", "wan_interface", "not a Linux interface name"},
      {"interface name too long", "\"wan0\"", "\"a-very-long-interface\"", "wan_interface",
       "1-15 characters"},
      {"LAN is the WAN", "wan_interface = \"wan0\"", "wan_interface = \"wan0\"\nlan_interfaces = [\"wan0\"]",
       "lan_interfaces", "is the WAN interface"},
      {"bad local address", "wan_interface = \"wan0\"",
       "wan_interface = \"wan0\"\nlocal_address = \"10.1.23\"", "local_address",
       "not an IPv4 or IPv6 address"},
      {"two anchors", "wan_interface = \"wan0\"",
       "wan_interface = \"wan0\"\nanchors = [\"169.254.77.1\", \"169.254.77.2\"]", "anchors",
       "takes three addresses"},
      {"IPv6 anchor among IPv4's", "wan_interface = \"wan0\"",
       "wan_interface = \"wan0\"\nanchors = [\"169.254.77.1\", \"169.254.77.2\", \"fd00::3\"]", "anchors",
       "\"fd00::3\" is not an IPv4 address"},
      {"multicast anchor", "wan_interface = \"wan0\"",
       "wan_interface = \"wan0\"\nanchors = [\"169.254.77.1\", \"239.1.1.1\", \"169.254.77.3\"]", "anchors",
       "not a unicast address"},
      {"link-local IPv6 anchor", "wan_interface = \"wan0\"",
       "wan_interface = \"wan0\"\nanchors_v6 = [\"fe80::1\", \"fd00::2\", \"fd00::3\"]", "anchors_v6",
       "is link-local"},
      {"same anchor twice", "wan_interface = \"wan0\"",
       "wan_interface = \"wan0\"\nanchors_v6 = [\"fd00::1\", \"fd00::2\", \"fd00::1\"]", "anchors_v6",
       "listed twice"},
      {"missing identity", "identity = 134\n", "", "[group]", "has no identity"},
      {"missing key servers", "key_servers = [\"10.1.12.1\"]\n", "", "[group]", "has no key_servers"},
      {"empty key servers", "[\"10.1.12.1\"]", "[]", "key_servers", "key_servers is empty"},
      {"bad key server", "\"10.1.12.1\"", "\"10.1.12.1:0\"", "key_servers", "not an address[:port]"},
      {"bad key server name", "\"10.1.12.1\"", "\"ks.example.net\"", "key_servers", "not an address[:port]"},
      {"duplicate key server", "\"10.1.12.1\"", "\"10.1.12.1\", \"10.1.12.1:848\"", "key_servers", "twice"},
      {"[[group]] in a member", "[group]", "[[group]]", "[[group]]", "single brackets"},
      {"no [member]", "[member]\nwan_interface = \"wan0\"\n", "", "[group]", "no [member]"},
      {"dh group 5 without legacy", "pre_shared_key = \"lab\"", "pre_shared_key = \"lab\"\ndh_group = [5]",
       "dh_group", "is legacy"},
      {"no authentication", "pre_shared_key = \"lab\"\n", "", "[isakmp]", "has no authentication"},
      {"unknown hash", "pre_shared_key = \"lab\"", "pre_shared_key = \"lab\"\nhash = [\"sha512\"]", "hash",
       "write sha256, sha384 or sha1"},
      {"string lifetime", "pre_shared_key = \"lab\"", "pre_shared_key = \"lab\"\nlifetime = \"1d\"",
       "lifetime", "must be an integer"},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.what);
    std::string text = replace(kBase, row.from, row.to);
    auto parsed = parse(text);
    EXPECT_FALSE(parsed.ok());
    // "no [member]" is about the file as a whole, reported on line 1.
    const std::uint32_t line = row.message == "no [member]" ? 1 : line_of(text, row.at);
    auto hit = std::find_if(parsed.problems.begin(), parsed.problems.end(), [&](const Problem& p) {
      return p.is_error() && p.line == line && p.message.find(row.message) != std::string::npos;
    });
    EXPECT_NE(hit, parsed.problems.end()) << "want line " << line << ": " << row.message << "\ngot:\n"
                                          << all(parsed.problems) << "in:\n"
                                          << text;
  }
}

TEST(GmConfig, KeylogWarns) {
  std::string text =
      replace(kBase, "wan_interface = \"wan0\"", "wan_interface = \"wan0\"\nkeylog = \"gm.keylog\"");
  auto parsed = parse(text);
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  EXPECT_EQ(parsed.config->member.keylog, "/etc/covey/gm.keylog");  // relative to the config's folder
  ASSERT_EQ(parsed.problems.size(), 1u);
  EXPECT_FALSE(parsed.problems[0].is_error());
  EXPECT_EQ(parsed.problems[0].line, 3u);
}

}  // namespace
}  // namespace covey::config
