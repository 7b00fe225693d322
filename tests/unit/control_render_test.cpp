// coveyctl's renderers: a daemon's reply in, the page an operator reads out.
// The full pages are spelled out once; variations are rows of a table.
#include <gtest/gtest.h>

#include <string>

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
