// coveyctl's renderers: a daemon's reply in, the page an operator reads out.
// The full pages are spelled out once; variations are rows of a table.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "covey_maps.h"
#include "coveyctl/render.h"

namespace covey::coveyctl {
namespace {

using Json = nlohmann::json;

// 2025-11-23 12:16:28 UTC; the fixtures registered 188 s before.
const RenderContext kCtx{1763900188, true};

Json ks_group_reply() {
  return Json::parse(R"({"ok":true,"groups":[{
    "name":"GET_VPN","identity":134,"members":2,"seq":3,
    "rekey":{"mode":"multicast","address":"239.1.1.1","port":848,"retransmit_period_s":10,"retransmit_count":2},
    "acl":["deny udp any eq 848 any eq 848","permit ip 192.168.0.0/16 192.168.0.0/16"],
    "fail_close_acl":[],"tbar_window_ms":5000,"pseudotime_ms":188042,
    "tek":[{"spi":"0x6263F2E0","transform":"esp-aes-256 esp-sha256-hmac","lifetime_s":3600,"remaining_s":3412}],
    "kek":{"spi":"0123456789abcdef0123456789abcdef","cipher":"AES-256-CBC","signature":"RSA 2048 SHA-256",
           "lifetime_s":86400,"remaining_s":86000}}]})");
}

Json gm_status_reply() {
  return Json::parse(R"({"ok":true,"group":{"name":"GET_VPN","identity":134},"state":"registered",
    "key_servers":[{"address":"10.1.12.1:848","active":true},{"address":"10.1.12.2:848","active":false}],
    "registered_at":1763900000,"reregister_at":1763903300,"last_error":null,
    "acl":["deny udp any eq 848 any eq 848","permit ip 192.168.0.0/16 192.168.0.0/16"],"fail_close_acl":[],
    "tbar_window_ms":null,
    "tek":[{"spi":"0x6263F2E0","transform":"esp-aes-256 esp-sha256-hmac","lifetime_s":3600,"remaining_s":3412,
            "state":"active"}],
    "kek":null,"seq":0,"sids":[0],"rekeys_received":1})");
}

bool contains(const std::string& page, const std::string& part) { return page.find(part) != std::string::npos; }

TEST(ControlRender, KsGroupPage) {
  EXPECT_EQ(render_ks_groups(ks_group_reply(), kCtx),
            "GROUP INFORMATION\n"
            "\n"
            "    Group Name               : GET_VPN\n"
            "    Group Identity           : 134\n"
            "    Group Members            : 2\n"
            "    Rekey Transport          : Multicast to 239.1.1.1, port 848\n"
            "    Rekey Retransmit Period  : 10 s\n"
            "    Rekey Retransmit Attempts: 2\n"
            "    Rekey Sequence Number    : 3\n"
            "    Anti-Replay              : time-based, 5000 ms window\n"
            "    Pseudotime               : 188042 ms\n"
            "\n"
            "    ACL Configured:\n"
            "      deny udp any eq 848 any eq 848\n"
            "      permit ip 192.168.0.0/16 192.168.0.0/16\n"
            "    Fail-Close ACL:\n"
            "      none\n"
            "\n"
            "    KEK POLICY:\n"
            "      SPI                    : 0123456789abcdef0123456789abcdef\n"
            "      Encrypt Algorithm      : AES-256-CBC\n"
            "      Signature              : RSA 2048 SHA-256\n"
            "      Remaining Lifetime     : 86000 s of 86400 s\n"
            "\n"
            "    TEK POLICY:\n"
            "      SPI                    : 0x6263F2E0\n"
            "      Transform              : esp-aes-256 esp-sha256-hmac\n"
            "      Remaining Lifetime     : 3412 s of 3600 s\n");
}

TEST(ControlRender, GmStatusPage) {
  EXPECT_EQ(render_gm_status(gm_status_reply(), kCtx),
            "GROUP INFORMATION\n"
            "\n"
            "    Group Name               : GET_VPN\n"
            "    Group Identity           : 134\n"
            "    Group Server List        : 10.1.12.1:848 (active), 10.1.12.2:848\n"
            "    Registration Status      : Registered\n"
            "    Registered               : 2025-11-23 12:13:20 UTC (188 s ago)\n"
            "    Re-registers             : 2025-11-23 13:08:20 UTC (in 3112 s)\n"
            "    Rekeys Received          : 1\n"
            "    Rekey Sequence Number    : 0\n"
            "    Sender IDs               : 0\n"
            "    Anti-Replay              : off (counter-based replay window only)\n"
            "\n"
            "    ACL Downloaded From KS 10.1.12.1:848:\n"
            "      deny udp any eq 848 any eq 848\n"
            "      permit ip 192.168.0.0/16 192.168.0.0/16\n"
            "    Fail-Close ACL:\n"
            "      none\n"
            "\n"
            "    KEK POLICY: none (no rekey SA)\n"
            "\n"
            "    TEK POLICY:\n"
            "      SPI                    : 0x6263F2E0\n"
            "      Transform              : esp-aes-256 esp-sha256-hmac\n"
            "      Remaining Lifetime     : 3412 s of 3600 s\n"
            "      State                  : active\n");
}

TEST(ControlRender, KsMembersTable) {
  Json reply = Json::parse(R"({"ok":true,"groups":[
    {"name":"GET_VPN","identity":134,"members":[
      {"address":"10.1.23.3","identity":"10.1.23.3","registered_at":1763900000,"registrations":1,"sids":[0]},
      {"address":"10.1.24.4","identity":"gm2.example.com","registered_at":1763900100,"registrations":3,"sids":[1,2]}]},
    {"name":"SPARE","identity":7,"members":[]}]})");
  EXPECT_EQ(render_ks_members(reply, kCtx),
            "Group GET_VPN (identity 134): 2 members\n"
            "  ADDRESS    IDENTITY         REGISTERED                           REGISTRATIONS  SIDS\n"
            "  10.1.23.3  10.1.23.3        2025-11-23 12:13:20 UTC (188 s ago)  1              0\n"
            "  10.1.24.4  gm2.example.com  2025-11-23 12:15:00 UTC (88 s ago)   3              1,2\n"
            "\n"
            "Group SPARE (identity 7): 0 members\n");
}

// Which members sent covey's Vendor ID, and so get covey's extensions.
TEST(ControlRender, KsMembersSaysWhichPolicyEachGets) {
  Json reply = Json::parse(R"({"ok":true,"groups":[
    {"name":"GET_VPN","identity":134,"members":[
      {"address":"10.1.23.3","identity":"10.1.23.3","registered_at":1763900000,"registrations":1,"sids":[0],
       "last_acked_seq":null,"missed_rekeys":0,"covey_features":15},
      {"address":"10.1.24.4","identity":"10.1.24.4","registered_at":1763900100,"registrations":1,"sids":[1],
       "last_acked_seq":null,"missed_rekeys":0,"covey_features":null}]}]})");
  EXPECT_EQ(render_ks_members(reply, kCtx),
            "Group GET_VPN (identity 134): 2 members\n"
            "  ADDRESS    IDENTITY   REGISTERED                           REGISTRATIONS  SIDS  LAST ACK  MISSED  POLICY\n"
            "  10.1.23.3  10.1.23.3  2025-11-23 12:13:20 UTC (188 s ago)  1              0     none      0       covey 0xf\n"
            "  10.1.24.4  10.1.24.4  2025-11-23 12:15:00 UTC (88 s ago)   1              1     none      0       RFC 6407\n");
}

// A dual-stack key server: members reached it at more than one address,
// and the table says which (unicast rekeys come from it).
TEST(ControlRender, KsMembersRegisteredToTwoAddressesSayWhich) {
  Json reply = Json::parse(R"({"ok":true,"groups":[
    {"name":"GET_VPN","identity":134,"members":[
      {"address":"10.1.24.4","identity":"10.1.24.4","registered_at":1763900000,"registrations":1,"sids":[0],
       "registered_to":"10.1.12.1"},
      {"address":"2001:db8:23::3","identity":"2001:db8:23::3","registered_at":1763900100,"registrations":2,"sids":[1],
       "registered_to":"2001:db8:12::1"}]}]})");
  EXPECT_EQ(
      render_ks_members(reply, kCtx),
      "Group GET_VPN (identity 134): 2 members\n"
      "  ADDRESS         IDENTITY        REGISTERED                           REGISTRATIONS  SIDS  VIA KS\n"
      "  10.1.24.4       10.1.24.4       2025-11-23 12:13:20 UTC (188 s ago)  1              0     "
      "10.1.12.1\n"
      "  2001:db8:23::3  2001:db8:23::3  2025-11-23 12:15:00 UTC (88 s ago)   2              1     "
      "2001:db8:12::1\n");
  // One address for all: nothing to tell apart.
  reply["groups"][0]["members"][1]["registered_to"] = "10.1.12.1";
  EXPECT_EQ(render_ks_members(reply, kCtx).find("VIA KS"), std::string::npos);
}

// A streamed ks.members (PROTOCOL.md, "Streamed replies") printed as it
// arrives: the first members line sets the columns; later lines keep them.
std::string print_stream(const std::vector<Json>& lines, bool json) {
  MembersPrinter printer(kCtx, json);
  std::string out = printer.start();
  for (const Json& l : lines) {
    EXPECT_FALSE(printer.done());
    out += printer.line(l);
  }
  EXPECT_TRUE(printer.done());
  return out;
}

std::vector<Json> members_stream() {
  return {Json::parse(R"({"group":{"name":"GET_VPN","identity":134,"registered":3}})"),
          Json::parse(R"({"members":[
            {"address":"10.1.23.3","identity":"10.1.23.3","registered_at":1763900000,"registrations":1,"sids":[0]}]})"),
          Json::parse(R"({"members":[
            {"address":"10.1.24.4","identity":"gm2.example.com","registered_at":1763900100,"registrations":3,"sids":[1,2]}]})"),
          Json::parse(R"({"group":{"name":"SPARE","identity":7,"registered":0}})"),
          Json::parse(R"({"end":true,"listed":2})")};
}

TEST(ControlRender, KsMembersStreamedTable) {
  EXPECT_EQ(print_stream(members_stream(), false),
            "Group GET_VPN (identity 134): 3 members\n"
            "  ADDRESS    IDENTITY   REGISTERED                           REGISTRATIONS  SIDS\n"
            "  10.1.23.3  10.1.23.3  2025-11-23 12:13:20 UTC (188 s ago)  1              0\n"
            // Wider than the first line's column: the rest of the row moves right.
            "  10.1.24.4  gm2.example.com  2025-11-23 12:15:00 UTC (88 s ago)   3              1,2\n"
            // A filter (or a member gone meanwhile) listed fewer than the group has.
            "  2 of them listed\n"
            "\n"
            "Group SPARE (identity 7): 0 members\n");
  EXPECT_EQ(print_stream({Json::parse(R"({"end":true,"listed":0})")}, false), "No GDOI groups configured.\n");
}

// --json prints one document shaped as the one-line reply, a member a line.
TEST(ControlRender, KsMembersStreamedJsonIsOneDocument) {
  std::string out = print_stream(members_stream(), true);
  Json doc = Json::parse(out);
  EXPECT_EQ(doc["ok"], true);
  EXPECT_EQ(doc["listed"], 2);
  ASSERT_EQ(doc["groups"].size(), 2u);
  EXPECT_EQ(doc["groups"][0]["name"], "GET_VPN");
  EXPECT_EQ(doc["groups"][0]["registered"], 3);
  EXPECT_EQ(doc["groups"][0]["listed"], 2);
  EXPECT_EQ(doc["groups"][0]["members"][1]["identity"], "gm2.example.com");
  EXPECT_EQ(doc["groups"][1]["members"], Json::array());
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 8) << out;
  EXPECT_EQ(Json::parse(print_stream({Json::parse(R"({"end":true,"listed":0})")}, true)),
            Json::parse(R"({"ok":true,"groups":[],"listed":0})"));
}

TEST(ControlRender, KsMemberCount) {
  Json reply = Json::parse(R"({"ok":true,"count":13,"groups":[
    {"name":"GET_VPN","identity":134,"registered":100000,"count":12},
    {"name":"VOICE","identity":200,"registered":1,"count":1}]})");
  EXPECT_EQ(render_ks_member_count(reply, kCtx),
            "Group GET_VPN (identity 134): 12 of 100000 members\n"
            "Group VOICE (identity 200): 1 member\n");
}

TEST(ControlRender, SinceIsRfc3339UtcOrATimeAgo) {
  std::string why;
  EXPECT_EQ(parse_since("2025-11-23T12:13:20Z", 0, &why), 1763900000);
  EXPECT_EQ(parse_since("2025-11-23 12:13:20z", 0, &why), 1763900000);
  EXPECT_EQ(parse_since("90s", 1000, &why), 910);
  EXPECT_EQ(parse_since("10m", 1000, &why), 400);
  EXPECT_EQ(parse_since("2h", 10000, &why), 2800);
  EXPECT_EQ(parse_since("1d", 100000, &why), 13600);
  for (const char* bad : {"", "m", "10", "-5m", "10w", "2025-11-23T12:13:20+01:00", "2025-11-23T12:13:20",
                          "2025-13-23T12:13:20Z", "2025-11-23T12:13:20.5Z", "yesterday"}) {
    why.clear();
    EXPECT_FALSE(parse_since(bad, 1000, &why)) << bad;
    EXPECT_NE(why.find("RFC 3339 UTC"), std::string::npos) << bad << ": " << why;
  }
}

// Key material appears only when the daemon put it in the reply (it does so
// only for a request with "show_keys":true).
TEST(ControlRender, KeysOnlyWhenTheReplyHasThem) {
  Json reply = ks_group_reply();
  EXPECT_FALSE(contains(render_ks_groups(reply, kCtx), "Key "));
  reply["groups"][0]["tek"][0]["keys"] = {{"encryption", "00112233"}, {"integrity", "aabbccdd"}};
  reply["groups"][0]["kek"]["keys"] = {{"algorithm_key", "ffeeddcc"}};
  std::string page = render_ks_groups(reply, kCtx);
  EXPECT_TRUE(contains(page, "      Encryption Key         : 00112233\n"));
  EXPECT_TRUE(contains(page, "      Integrity Key          : aabbccdd\n"));
  EXPECT_TRUE(contains(page, "      Algorithm Key          : ffeeddcc\n"));

  Json gm = gm_status_reply();
  gm["tek"][0]["keys"] = {{"encryption", "0a0b"}};
  EXPECT_TRUE(contains(render_gm_status(gm, kCtx), "      Encryption Key         : 0a0b\n"));
}

// One change to a fixture, one line the page must then hold.
TEST(ControlRender, Variations) {
  struct Row {
    const char* what;
    bool gm;  // patch the gm.status fixture, else the ks.group group
    const char* pointer;
    Json value;
    const char* expected_line;
  };
  const Row rows[] = {
      {"unicast rekey", false, "/rekey", Json{{"mode", "unicast"}, {"port", 848}},
       "    Rekey Transport          : Unicast, port 848\n"},
      {"TBAR off", false, "/tbar_window_ms", nullptr, "    Anti-Replay              : off"},
      {"no KEK", false, "/kek", nullptr, "    KEK POLICY: none (no rekey SA)\n"},
      {"no TEK", false, "/tek", Json::array(), "    TEK POLICY: none\n"},
      {"fail-close ACL", false, "/fail_close_acl", Json{"permit ip any any"},
       "    Fail-Close ACL:\n      permit ip any any\n"},
      {"string identity", false, "/identity", Json("x"), "    Group Identity           : x\n"},
      {"backoff", true, "/state", "waiting", "    Registration Status      : Waiting to retry registration\n"},
      {"last error", true, "/last_error", "KS 10.1.12.1:848 group 134: HASH(3) mismatch",
       "    Last Error               : KS 10.1.12.1:848 group 134: HASH(3) mismatch\n"},
      {"never registered", true, "/registered_at", nullptr, "    Registered               : never\n"},
      {"no active KS", true, "/key_servers", Json::array(), "    ACL Downloaded From KS:\n"},
      {"KEK present", true, "/kek",
       Json{{"spi", "00ff"}, {"cipher", "AES-128-CBC"}, {"signature", "RSA 2048 SHA-256"}, {"lifetime_s", 100},
            {"remaining_s", 40}},
       "    KEK POLICY:\n      SPI                    : 00ff\n"},
      {"two TEKs", true, "/tek/1", Json{{"spi", "0x00000002"}, {"state", "installing"}},
       "      State                  : active\n\n      SPI                    : 0x00000002\n"},
  };
  for (const Row& r : rows) {
    Json reply = r.gm ? gm_status_reply() : ks_group_reply();
    Json& target = r.gm ? reply : reply["groups"][0];
    target[Json::json_pointer(r.pointer)] = r.value;
    std::string page = r.gm ? render_gm_status(reply, kCtx) : render_ks_groups(reply, kCtx);
    EXPECT_TRUE(contains(page, r.expected_line)) << r.what << ":\n" << page;
  }
}

// The pseudotime is the members' TBAR clock: no window, no line (and none
// from a key server too old to report it).
TEST(ControlRender, KsPseudotimeOnlyWithATbarWindow) {
  Json off = ks_group_reply();
  off["groups"][0]["tbar_window_ms"] = nullptr;
  EXPECT_FALSE(contains(render_ks_groups(off, kCtx), "Pseudotime"));
  Json old = ks_group_reply();
  old["groups"][0].erase("pseudotime_ms");
  EXPECT_FALSE(contains(render_ks_groups(old, kCtx), "Pseudotime"));
}

// "data_path" as covey-gm sends it: every covey_stats counter (bpf/covey_maps.h),
// zero unless `counters` sets it.
Json data_path(const char* state, const Json& counters) {
  Json stats = Json::object();
#define COVEY_STAT(name, section, drop, text) #name,
  for (const char* name : {COVEY_STATS(COVEY_STAT)})
#undef COVEY_STAT
    stats[name] = std::uint64_t{0};
  stats.update(counters);
  return Json{{"state", state},           {"error", nullptr},
              {"wan", "wan0"},            {"lans", {"lan0"}},
              {"pin_dir", "/sys/fs/bpf/covey/GET_VPN"},
              {"sending_spi", nullptr},   {"inbound_spis", Json::array()},
              {"stats", stats},           {"acl_hits", Json::array()},
              {"fail_close_hits", Json::array()}};
}

// The page from the data-path heading on (the section is the page's last).
std::string data_path_part(const std::string& page) {
  std::size_t at = page.find("    DATA PATH");
  return at == std::string::npos ? "(no DATA PATH section)\n" + page : page.substr(at);
}

// data_path = false in gm.toml: keys only, one line says so.
TEST(ControlRender, GmDataPathOff) {
  Json reply = gm_status_reply();
  reply["data_path"] = {{"state", "off"}};
  std::string page = render_gm_status(reply, kCtx);
  EXPECT_EQ(data_path_part(page), "    DATA PATH: off (keys only: nothing installed in the kernel)\n");
  EXPECT_TRUE(contains(page, "      State                  : active\n\n    DATA PATH"));
  // A covey-gm older than the data path sends no "data_path": no section.
  EXPECT_FALSE(contains(render_gm_status(gm_status_reply(), kCtx), "DATA PATH"));
}

// Before the first registration: no TEK, the local fail-close ACL dropping,
// everything else still in clear (no group ACL yet).
TEST(ControlRender, GmDataPathSaysWhereInboundIsDecided) {
  Json reply = gm_status_reply();
  reply["data_path"] = data_path("active", {{"packets", 1}});
  EXPECT_FALSE(contains(render_gm_status(reply, kCtx), "Inbound Decisions At"));  // an older covey-gm
  reply["data_path"]["inbound"] = "tc ingress";
  EXPECT_TRUE(contains(render_gm_status(reply, kCtx), "      Inbound Decisions At   : tc ingress\n"))
      << render_gm_status(reply, kCtx);
}

TEST(ControlRender, GmDataPathFailCloseBeforeRegistration) {
  Json reply = gm_status_reply();
  reply["state"] = "registering";
  reply["registered_at"] = nullptr;
  reply["acl"] = Json::array();
  reply["tek"] = Json::array();
  reply["data_path"] = data_path("fail-close", {{"packets", 40}, {"bypass_implicit", 28}, {"fail_close_drop", 12}});
  reply["data_path"]["fail_close_hits"] = Json::parse(R"([{"line":"permit ip 192.168.0.0/16 192.168.0.0/16","hits":12}])");
  EXPECT_EQ(data_path_part(render_gm_status(reply, kCtx)),
            "    DATA PATH:\n"
            "      State                  : Fail-close (no TEK active)\n"
            "      WAN Interface          : wan0\n"
            "      LAN Interfaces         : lan0\n"
            "      Sending SPI            : none\n"
            "      Inbound SPIs           : none\n"
            "      BPF Maps Pinned At     : /sys/fs/bpf/covey/GET_VPN\n"
            "      ACL Installed:\n"
            "        none\n"
            "      Fail-Close ACL Installed:\n"
            "        permit ip 192.168.0.0/16 192.168.0.0/16 (12 matches)\n"
            "      Classification:\n"
            "        packets          40  seen by the classifier\n"
            "        bypass_implicit  28  matched no entry: sent in clear\n"
            "      Dropped (12 packets):\n"
            "        fail_close_drop  12  fail-close ACL permit while no TEK is active\n");
}

// Sending and receiving: hits per ACL line, the non-zero counters by stage
// (zeros left out), the drops last with their total.
TEST(ControlRender, GmDataPathActive) {
  Json reply = gm_status_reply();
  Json dp = data_path("active", {{"packets", 1320},
                                 {"encrypt", 1200},
                                 {"bypass_deny", 20},
                                 {"bypass_implicit", 100},
                                 {"steer_claimed", 4},
                                 {"rewritten", 1200},
                                 {"esp_out", 1200},
                                 {"esp_in", 1180},
                                 {"clear_drop", 1},
                                 {"tbar_stamped", 1200},
                                 {"tbar_accepted", 1177},
                                 {"tbar_late", 3},
                                 {"frag_needed_sent", 2}});
  dp["lans"] = {"lan0", "lan1"};
  dp["sending_spi"] = "0x6263F2E0";
  dp["inbound_spis"] = {"0x6263F2E0", "0x0BADCAFE"};
  dp["acl_hits"] = Json::parse(R"([{"line":"deny udp any eq 848 any eq 848","hits":0},
                                   {"line":"permit ip 192.168.0.0/16 192.168.0.0/16","hits":1200}])");
  reply["data_path"] = dp;
  EXPECT_EQ(data_path_part(render_gm_status(reply, kCtx)),
            "    DATA PATH:\n"
            "      State                  : Active\n"
            "      WAN Interface          : wan0\n"
            "      LAN Interfaces         : lan0, lan1\n"
            "      Sending SPI            : 0x6263F2E0\n"
            "      Inbound SPIs           : 0x6263F2E0, 0x0BADCAFE\n"
            "      BPF Maps Pinned At     : /sys/fs/bpf/covey/GET_VPN\n"
            "      ACL Installed:\n"
            "        deny udp any eq 848 any eq 848 (0 matches)\n"
            "        permit ip 192.168.0.0/16 192.168.0.0/16 (1200 matches)\n"
            "      Fail-Close ACL Installed:\n"
            "        none\n"
            "      Classification:\n"
            "        packets           1320  seen by the classifier\n"
            "        encrypt           1200  matched a permit: steered into the group SA\n"
            "        bypass_deny         20  matched a deny: sent in clear\n"
            "        bypass_implicit    100  matched no entry: sent in clear\n"
            "      Steering:\n"
            "        steer_claimed        4  slot taken for a new address pair\n"
            "        rewritten         1200  ESP given its real addresses back\n"
            "        esp_out           1200  group ESP sent out the WAN\n"
            "      Inbound:\n"
            "        esp_in            1180  group ESP (known SPI) steered to the inbound anchor\n"
            "      TBAR:\n"
            "        tbar_stamped      1200  stamped on the way into the SA\n"
            "        tbar_accepted     1177  stamp inside the window: checked, stripped\n"
            "      Path MTU:\n"
            "        frag_needed_sent     2  too big once stamped: ICMP frag. needed or Packet Too Big sent\n"
            "      Dropped (4 packets):\n"
            "        clear_drop           1  arrived in clear, but the ACL says encrypted\n"
            "        tbar_late            3  stamp older than the window\n");
}

// One change to an active data path, one line the page must then hold.
TEST(ControlRender, GmDataPathVariations) {
  struct Row {
    const char* what;
    const char* pointer;
    Json value;
    const char* expected;
  };
  const Row rows[] = {
      {"error", "/error", "attaching XDP to wan0: Operation not supported",
       "      Error                  : attaching XDP to wan0: Operation not supported\n"},
      {"one match", "/acl_hits", Json::parse(R"([{"line":"permit ip any any","hits":1}])"),
       "        permit ip any any (1 match)\n"},
      {"hits missing", "/fail_close_hits", Json::parse(R"([{"line":"permit ip any any"}])"),
       "        permit ip any any (- matches)\n"},
      {"all zero", "/stats/packets", 0, "      Counters               : all zero\n"},
      {"counter unknown to this coveyctl", "/stats/tbar_reordered", 5, "      Other:\n        tbar_reordered  5\n"},
      {"u64 counter", "/stats/packets", std::uint64_t{18446744073709551615ULL},
       "        packets  18446744073709551615  seen by the classifier\n"},
      {"one drop", "/stats/esp_unknown_drop", 1,
       "      Dropped (1 packet):\n        esp_unknown_drop  1  ESP with an unknown SPI (drop_unknown_spi)\n"},
      {"no LANs", "/lans", Json::array(), "      LAN Interfaces         : none\n"},
      {"mistyped stats", "/stats", "x", "      Counters               : -\n"},
  };
  for (const Row& r : rows) {
    Json reply = gm_status_reply();
    reply["data_path"] = data_path("active", Json::object());
    reply["data_path"][Json::json_pointer(r.pointer)] = r.value;
    std::string page = render_gm_status(reply, kCtx);
    EXPECT_TRUE(contains(page, r.expected)) << r.what << ":\n" << page;
  }
}

// The renderer names and groups every counter of struct covey_stats: with
// all of them non-zero nothing lands under "Other". A field added to the
// struct fails the size check until the fixture (and so the renderer) has it.
TEST(ControlRender, GmDataPathKnowsEveryCounter) {
  Json dp = data_path("active", Json::object());
  EXPECT_EQ(sizeof(covey_stats), dp["stats"].size() * sizeof(std::uint64_t));
  for (auto& [name, value] : dp["stats"].items()) value = 1;
  Json reply = gm_status_reply();
  reply["data_path"] = dp;
  std::string part = data_path_part(render_gm_status(reply, kCtx));
  EXPECT_FALSE(contains(part, "Other:")) << part;
  EXPECT_TRUE(contains(part, "      Dropped (21 packets):\n")) << part;
}

// Before its BPF programs load (or when loading failed) covey-gm sends no
// counters and no hits; a "data_path" that is not an object prints a dash.
TEST(ControlRender, GmDataPathWithoutPrograms) {
  Json reply = gm_status_reply();
  reply["data_path"] = {{"state", "error"}, {"error", "loading covey_dp.bpf.o: Operation not permitted"},
                        {"wan", "wan0"},    {"lans", {"lan0"}},
                        {"pin_dir", ""},    {"sending_spi", nullptr},
                        {"inbound_spis", Json::array()}};
  std::string part = data_path_part(render_gm_status(reply, kCtx));
  EXPECT_TRUE(contains(part, "      State                  : Error\n"
                             "      Error                  : loading covey_dp.bpf.o: Operation not permitted\n"))
      << part;
  EXPECT_TRUE(contains(part, "      Counters               : none (BPF programs not loaded)\n")) << part;
  EXPECT_FALSE(contains(part, "ACL Installed")) << part;

  reply["data_path"] = "on";
  EXPECT_EQ(data_path_part(render_gm_status(reply, kCtx)), "    DATA PATH: -\n");
}

TEST(ControlRender, MissingOrMistypedFieldsPrintADash) {
  Json group = Json::parse(R"({"ok":true,"groups":[{"name":"G","identity":"not a number","tek":[{"spi":5}]}]})");
  std::string page = render_ks_groups(group, kCtx);
  EXPECT_TRUE(contains(page, "    Group Members            : -\n"));
  EXPECT_TRUE(contains(page, "    Rekey Transport          : -\n"));
  EXPECT_TRUE(contains(page, "      Remaining Lifetime     : - s of - s\n"));
  // Nothing of the expected shape at all still renders instead of throwing.
  for (const Json& junk : {Json(), Json::array({1, 2}), Json("x"), Json::parse(R"({"groups":{"a":1}})")}) {
    EXPECT_NO_THROW(render_ks_groups(junk, kCtx));
    EXPECT_NO_THROW(render_ks_members(junk, kCtx));
    EXPECT_NO_THROW(render_gm_status(junk, kCtx));
    EXPECT_NO_THROW(render_message(junk, kCtx));
  }
}

TEST(ControlRender, EmptyAndMessageReplies) {
  EXPECT_EQ(render_ks_groups(Json::parse(R"({"ok":true,"groups":[]})"), kCtx), "No GDOI groups configured.\n");
  EXPECT_EQ(render_ks_members(Json::parse(R"({"ok":true,"groups":[]})"), kCtx), "No GDOI groups configured.\n");
  EXPECT_EQ(render_message(Json::parse(R"({"ok":true,"message":"group GET_VPN: rekey sent to 2 members"})"), kCtx),
            "group GET_VPN: rekey sent to 2 members\n");
  EXPECT_EQ(render_message(Json::parse(R"({"ok":true})"), kCtx), "done\n");
}

}  // namespace
}  // namespace covey::coveyctl
