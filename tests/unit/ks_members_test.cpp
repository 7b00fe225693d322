// ks.members in the key server: the filters (address prefix, registered
// since), the count, and the streamed reply's framing and its pieces.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "fixtures.h"
#include "ks/status.h"

using namespace covey;
using Json = nlohmann::json;

namespace {

class KsMembers : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto [name, identity] : {std::pair<const char*, std::uint32_t>{"GET_VPN", 134}, {"VOICE", 200}}) {
      auto g = ks::Group::create(fixtures::ecdsa_group(name, identity), ks::Authorization{},
                                 crypto::PrivateKey::generate_ec(crypto::EcCurve::P256).value(),
                                 *Address::parse("10.1.12.1"), 1000);
      ASSERT_TRUE(g.ok()) << g.error();
      groups_.add(std::move(*g));
    }
  }

  // As a registration records it (ks::Group::admit): address, identity, time, SIDs.
  void add(std::uint32_t group, const std::string& address, std::int64_t registered_at) {
    ks::Member m;
    m.address = *Address::parse(address);
    m.identity = address;
    m.registered_at = registered_at;
    m.registrations = 1;
    m.sids = {static_cast<std::uint32_t>(groups_.find(group)->members().size())};
    m.registered_to = *Address::parse(m.address.family == 4 ? "10.1.12.1" : "2001:db8::1");
    groups_.find(group)->put_member(std::move(m));
  }

  // 10.1.0.0 .. 10.1.x.y, one a second from t=2000, and three IPv6 members.
  void fill(std::uint32_t group, int n) {
    for (int i = 0; i < n; ++i)
      add(group, "10.1." + std::to_string(i / 256) + "." + std::to_string(i % 256), 2000 + i);
    for (int i = 1; i <= 3; ++i) add(group, "2001:db8::" + std::to_string(i), 3000 + i);
  }

  // Every line a stream produces, piece by piece.
  std::vector<std::vector<Json>> pieces(const Json& request, std::int64_t wall_offset_s = 0) {
    ks::MemberStream stream(groups_, request, wall_offset_s);
    std::vector<std::vector<Json>> out;
    for (auto piece = stream.next(); piece; piece = stream.next()) {
      EXPECT_TRUE(piece->empty() || piece->back() == '\n');
      std::istringstream lines(*piece);
      out.emplace_back();
      for (std::string l; std::getline(lines, l);) out.back().push_back(Json::parse(l));
      EXPECT_LT(out.size(), 10000u) << "the stream does not end";
      if (out.size() >= 10000) break;
    }
    return out;
  }

  static std::vector<std::string> addresses(const std::vector<std::vector<Json>>& ps) {
    std::vector<std::string> out;
    for (const auto& p : ps)
      for (const Json& l : p)
        if (l.contains("members"))
          for (const Json& m : l["members"]) out.push_back(m["address"]);
    return out;
  }

  ks::Groups groups_;
};

TEST_F(KsMembers, PrefixFiltersIpv4AndIpv6) {
  fill(134, 600);
  auto count = [&](const Json& filter) {
    Json req = filter;
    req["cmd"] = "ks.members";
    std::string why;
    auto f = ks::MemberFilter::of(req, 0, &why);
    EXPECT_TRUE(f) << why;
    return ks::member_count(groups_, std::string("GET_VPN"), f.value_or(ks::MemberFilter{}))["count"]
        .get<int>();
  };
  EXPECT_EQ(count({}), 603);
  EXPECT_EQ(count({{"prefix", "10.1.0.0/16"}}), 600);
  EXPECT_EQ(count({{"prefix", "10.1.1.0/24"}}), 256);
  EXPECT_EQ(count({{"prefix", "10.1.2.0/25"}}), 88);  // 10.1.2.0 .. 10.1.2.87
  EXPECT_EQ(count({{"prefix", "10.1.2.87"}}), 1);
  EXPECT_EQ(count({{"prefix", "10.2.0.0/16"}}), 0);
  EXPECT_EQ(count({{"prefix", "2001:db8::/32"}}), 3);
  EXPECT_EQ(count({{"prefix", "2001:db8::2/128"}}), 1);
  EXPECT_EQ(count({{"prefix", "0.0.0.0/0"}}), 600);  // every IPv4 member, no IPv6 one
  EXPECT_EQ(count({{"prefix", "::/0"}}), 3);
}

TEST_F(KsMembers, SinceIsRegisteredAtOrAfterOnTheHostsClock) {
  fill(134, 600);
  auto listed = [&](std::int64_t since, std::int64_t wall_offset_s) {
    std::string why;
    auto f = ks::MemberFilter::of({{"since", since}}, wall_offset_s, &why);
    EXPECT_TRUE(f) << why;
    Json reply = ks::member_status(groups_, std::string("GET_VPN"), wall_offset_s, *f);
    return reply["groups"][0]["members"];
  };
  EXPECT_EQ(listed(2599, 0).size(), 4u);  // 10.1.2.87 (2599) and the IPv6 three
  EXPECT_EQ(listed(2599, 0)[0]["address"], "10.1.2.87");
  // The request says host time; the key server's clock runs 100 s behind it.
  EXPECT_EQ(listed(2699, 100).size(), 4u);
  EXPECT_EQ(listed(2699, 100)[0]["registered_at"], 2699);
  EXPECT_EQ(listed(3004, 0).size(), 0u);
  EXPECT_EQ(listed(0, 0).size(), 603u);
  // Both filters: the members of the prefix registered since.
  std::string why;
  auto both = ks::MemberFilter::of({{"prefix", "10.1.1.0/24"}, {"since", 2500}}, 0, &why);
  ASSERT_TRUE(both) << why;
  EXPECT_EQ(ks::member_count(groups_, std::nullopt, *both)["count"], 12);  // 10.1.1.244 .. 10.1.1.255
}

TEST_F(KsMembers, CountIsPerGroupWithTheGroupsSize) {
  fill(134, 10);
  add(200, "10.1.9.9", 5000);
  Json reply =
      ks::member_count(groups_, std::nullopt, *ks::MemberFilter::of({{"prefix", "10.1.0.0/16"}}, 0, nullptr));
  EXPECT_EQ(reply, Json::parse(R"({"ok":true,"count":11,"groups":[
    {"name":"GET_VPN","identity":134,"registered":13,"count":10},
    {"name":"VOICE","identity":200,"registered":1,"count":1}]})"));
  EXPECT_EQ(ks::member_count(groups_, std::string("NOPE"))["ok"], false);
}

TEST_F(KsMembers, MalformedFiltersSayWhatTheyWant) {
  std::string why;
  EXPECT_FALSE(ks::MemberFilter::of({{"prefix", "10.1.0.0/33"}}, 0, &why));
  EXPECT_NE(why.find("prefix length \"33\" must be 0..32"), std::string::npos) << why;
  EXPECT_FALSE(ks::MemberFilter::of({{"prefix", 10}}, 0, &why));
  EXPECT_NE(why.find("\"prefix\" must be an address prefix"), std::string::npos) << why;
  EXPECT_FALSE(ks::MemberFilter::of({{"since", "yesterday"}}, 0, &why));
  EXPECT_NE(why.find("\"since\" must be unix seconds"), std::string::npos) << why;
  // A stream refuses in one line, as a one-line reply would.
  auto ps = pieces({{"cmd", "ks.members"}, {"stream", true}, {"prefix", "10.1.0.0/33"}});
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(ps[0].size(), 1u);
  EXPECT_EQ(ps[0][0]["ok"], false);
  EXPECT_NE(ps[0][0]["error"].get<std::string>().find("ks.members: \"prefix\""), std::string::npos)
      << ps[0][0];
  ps = pieces({{"cmd", "ks.members"}, {"stream", true}, {"group", "NOPE"}});
  ASSERT_EQ(ps.size(), 1u);
  EXPECT_EQ(ps[0][0], Json::parse(R"({"ok":false,"error":"no group named NOPE"})"));
}

// Header, per group a group line and member lines, the end line with the
// total: every member once, in address order, in pieces of bounded size.
TEST_F(KsMembers, StreamFramingAndPieces) {
  fill(134, 5000);
  add(200, "10.9.9.9", 5000);
  auto ps = pieces({{"cmd", "ks.members"}, {"stream", true}});
  ASSERT_GE(ps.size(), 3u);
  EXPECT_EQ(ps[0][0], Json::parse(R"({"ok":true,"stream":"ks.members"})"));
  EXPECT_EQ(ps[0][1], Json::parse(R"({"group":{"name":"GET_VPN","identity":134,"registered":5003}})"));
  std::vector<std::string> kinds;
  for (const auto& p : ps) {
    std::size_t in_piece = 0;
    for (const Json& l : p) {
      kinds.push_back(l.begin().key());
      if (l.contains("members")) {
        EXPECT_LE(l["members"].size(), ks::MemberStream::kMembersPerLine);
        EXPECT_FALSE(l["members"].empty());
        in_piece += l["members"].size();
      }
    }
    EXPECT_LE(in_piece, ks::MemberStream::kMembersPerPiece);
  }
  EXPECT_EQ(ps.back().back(), Json::parse(R"({"end":true,"listed":5004})"));
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "group"), 2);
  auto listed = addresses(ps);
  ASSERT_EQ(listed.size(), 5004u);
  EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()).size(), 5004u);
  EXPECT_EQ(listed[0], "10.1.0.0");
  EXPECT_EQ(listed[5000], "2001:db8::1");  // addresses in order: IPv4, then IPv6
  EXPECT_EQ(listed[5003], "10.9.9.9");     // the next group's
  // Each member as the one-line reply shows it.
  Json one = ks::member_status(groups_, std::string("VOICE"));
  EXPECT_EQ(ps.back()[ps.back().size() - 2]["members"][0], one["groups"][0]["members"][0]);
}

// A filter that passes over many members still yields: a piece examines a
// bounded number of records, even when it lists none.
TEST_F(KsMembers, SparseFilterStillYieldsBetweenPieces) {
  fill(134, 50000);
  auto ps = pieces({{"cmd", "ks.members"}, {"stream", true}, {"since", 2000 + 49990}});
  EXPECT_GE(ps.size(), 50000 / ks::MemberStream::kExaminedPerPiece);
  auto listed = addresses(ps);
  ASSERT_EQ(listed.size(), 10u);  // the last ten IPv4 members
  EXPECT_EQ(listed[0], "10.1.195.70");
  // A prefix scans only its own run of addresses: one piece.
  ps = pieces({{"cmd", "ks.members"}, {"stream", true}, {"prefix", "10.1.195.0/24"}});
  EXPECT_EQ(ps.size(), 1u);
  EXPECT_EQ(addresses(ps).size(), 80u);  // 10.1.195.0 .. 10.1.195.79
}

// No snapshot: members that stay are listed once; one removed ahead of the
// cursor is not listed, one added ahead of it is, one added behind is not.
TEST_F(KsMembers, MembersChangingMidStream) {
  fill(134, 5000);
  ks::MemberStream stream(groups_, {{"cmd", "ks.members"}, {"stream", true}}, 0);
  std::string text = stream.next().value();  // 10.1.0.0 .. 10.1.7.207
  ks::Group& g = *groups_.find(134);
  ASSERT_TRUE(g.remove_member(*Address::parse("10.1.15.0")));  // ahead
  ASSERT_TRUE(g.remove_member(*Address::parse("10.1.0.5")));   // already listed
  add(134, "10.1.0.6", 9999);                                  // behind: already listed, now newer
  add(134, "10.0.0.1", 9999);                                  // behind: new
  add(134, "10.1.200.1", 9999);                                // ahead: new
  for (auto piece = stream.next(); piece; piece = stream.next()) text += *piece;
  std::istringstream lines(text);
  std::vector<std::string> listed;
  Json end;
  for (std::string l; std::getline(lines, l);) {
    Json j = Json::parse(l);
    if (j.contains("members"))
      for (const Json& m : j["members"]) listed.push_back(m["address"]);
    if (j.contains("end")) end = j;
  }
  std::set<std::string> seen(listed.begin(), listed.end());
  EXPECT_EQ(seen.size(), listed.size()) << "a member listed twice";
  EXPECT_EQ(seen.count("10.1.15.0"), 0u);
  EXPECT_EQ(seen.count("10.1.0.5"), 1u);
  EXPECT_EQ(seen.count("10.0.0.1"), 0u);
  EXPECT_EQ(seen.count("10.1.200.1"), 1u);
  EXPECT_EQ(listed.size(), 5003u - 1 + 1);
  EXPECT_EQ(end["listed"], listed.size());
}

TEST_F(KsMembers, OnlyAStreamedRequestWithoutCountStreams) {
  EXPECT_TRUE(ks::streams_members({{"cmd", "ks.members"}, {"stream", true}}));
  EXPECT_FALSE(ks::streams_members({{"cmd", "ks.members"}}));
  EXPECT_FALSE(ks::streams_members({{"cmd", "ks.members"}, {"stream", true}, {"count", true}}));
  EXPECT_FALSE(ks::streams_members({{"cmd", "ks.group"}, {"stream", true}}));
}

}  // namespace
