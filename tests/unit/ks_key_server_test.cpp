// The key server's core (ks/key_server.h) without sockets: opening from a
// config and the state file, the control commands, reload, and when the
// members are written. The store is the real state file in a temporary
// folder.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ks/key_server.h"
#include "ks/metrics.h"

namespace covey::ks {
namespace {

namespace fs = std::filesystem;

constexpr std::int64_t kT0 = 1'800'000'000'000;  // ms

class KeyServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("covey-ks-core-test." + std::to_string(::getpid()) + "." +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_NO_FATAL_FAILURE(write_signing_key());
    write_config("permit ip 192.168.0.0/16 192.168.0.0/16");
  }
  void TearDown() override { fs::remove_all(dir_); }
  // A fresh P-256 rekey signing key in rekey.pem, mode 0600 as key files must be.
  void write_signing_key() {
    EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    ASSERT_TRUE(key);
    FILE* f = std::fopen((dir_ / "rekey.pem").c_str(), "w");
    ASSERT_TRUE(f);
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    EVP_PKEY_free(key);
    fs::permissions(dir_ / "rekey.pem", fs::perms::owner_read | fs::perms::owner_write);
  }

  // `server_extra`: more lines in [server].
  void write_config(const std::string& permit, const std::string& server_extra = "") {
    std::ofstream(dir_ / "ks.toml") << "[server]\n"
                                       "listen = [\"127.0.0.1\"]\n"
                                       "state_dir = \""
                                    << (dir_ / "state").string() << "\"\n"
                                    << server_extra
                                    << "\n"
                                       "[isakmp]\n"
                                       "pre_shared_key = \"lab\"\n"
                                       "\n"
                                       "[[group]]\n"
                                       "name = \"GET_VPN\"\n"
                                       "identity = 134\n"
                                       "acl = [\"deny udp any eq 848 any eq 848\", \""
                                    << permit
                                    << "\"]\n"
                                       "\n"
                                       "[group.rekey]\n"
                                       "signing_key = \""
                                    << (dir_ / "rekey.pem").string()
                                    << "\"\n"
                                       "signature = \"ecdsa-p256\"\n";
  }

  std::unique_ptr<KeyServer> open(std::int64_t now_ms = kT0) {
    auto parsed = config::load_ks_config((dir_ / "ks.toml").string());
    EXPECT_TRUE(parsed.ok());
    if (!parsed.ok()) return nullptr;
    const std::string state = parsed.config->server.state_dir;
    auto ks = KeyServer::open(std::move(*parsed.config), (dir_ / "ks.toml").string(), std::make_unique<StateFile>(state),
                              false, now_ms);
    EXPECT_TRUE(ks) << ks.error();
    return ks ? std::move(*ks) : nullptr;
  }

  static std::string text(const std::vector<Event>& events) {
    std::string out;
    for (const Event& e : events) out += e.text + "\n";
    return out;
  }

  fs::path dir_;
};

TEST_F(KeyServerTest, OpensWritesTheStoreAndCarriesOnFromIt) {
  auto ks = open();
  ASSERT_TRUE(ks);
  EXPECT_TRUE(fs::exists(dir_ / "state" / "ks-state"));
  EXPECT_NE(text(ks->take_events()).find("groups start with new keys"), std::string::npos);
  auto reply = ks->handle({{"cmd", "ks.rekey"}, {"group", "GET_VPN"}}, kT0 + 1000);
  ASSERT_TRUE(reply["ok"]) << reply.dump();
  EXPECT_EQ(reply["seq"], 1);
  const auto kek_spi = ks->groups().find("GET_VPN")->kek().spi;

  // A second core on the same store: the rekey was durable before it was sent.
  ks.reset();
  auto again = open(kT0 + 2000);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->groups().find(134)->seq(), 1u);
  EXPECT_EQ(again->groups().find(134)->kek().spi, kek_spi);
  EXPECT_NE(text(again->take_events()).find("state restored from state file"), std::string::npos);
}

// GET /metrics's text follows the core: a rekey is counted for its group,
// the TEKs' lifetimes count down on the key server's clock, and a change of
// [metrics] on reload is refused (it needs a restart).
TEST_F(KeyServerTest, MetricsFollowTheCoreAndNeedARestartToMove) {
  auto ks = open();
  ASSERT_TRUE(ks);
  std::string text = metrics_text(*ks, kT0);
  EXPECT_NE(text.find("covey_ks_rekeys_sent_total{group=\"GET_VPN\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("covey_ks_registrations_total{result=\"admitted\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE covey_ks_phase1_failures_total counter\n"), std::string::npos) << text;
  ASSERT_TRUE(ks->handle({{"cmd", "ks.rekey"}, {"group", "GET_VPN"}}, kT0 + 1000)["ok"]);
  text = metrics_text(*ks, kT0 + 11'000);
  EXPECT_NE(text.find("covey_ks_rekeys_sent_total{group=\"GET_VPN\"} 1\n"), std::string::npos) << text;
  const auto& teks = ks->groups().find(134)->teks();
  const auto& newest = teks.back();
  char spi[16];
  std::snprintf(spi, sizeof spi, "0x%08X", newest.tek.spi);
  EXPECT_NE(text.find("covey_ks_tek_remaining_seconds{group=\"GET_VPN\",spi=\"" + std::string(spi) + "\"} " +
                      std::to_string(newest.expires_at - kT0 / 1000 - 11) + "\n"),
            std::string::npos)
      << text;

  write_config("permit ip 192.168.0.0/16 192.168.0.0/16", "\n[metrics]\nlisten = \"127.0.0.1\"\n");
  auto reply = ks->reload(kT0 + 12'000);
  EXPECT_FALSE(reply["ok"]) << reply.dump();
  EXPECT_NE(reply.dump().find("[metrics] listen changed from off to 127.0.0.1:9848: restart covey-ks to apply it"),
            std::string::npos)
      << reply.dump();
}

// A dual-stack key server whose [server] address is IPv4 rekeys an
// ff05:: group from its IPv6 address: the SA KEK names it, and the push
// leaves from it with the configured hop limit.
TEST_F(KeyServerTest, AnIpv6MulticastGroupIsRekeyedFromTheIpv6Address) {
  std::ofstream(dir_ / "ks.toml")
      << "[server]\nlisten = [\"10.1.12.1\", \"2001:db8:12::1\"]\naddress = \"10.1.12.1\"\n"
         "state_dir = \""
      << (dir_ / "state").string()
      << "\"\n\n[isakmp]\npre_shared_key = \"lab\"\n\n[[group]]\nname = \"GET_VPN\"\n"
         "identity = 134\nacl = [\"permit ip 192.168.0.0/16 192.168.0.0/16\", "
         "\"permit ipv6 2001:db8:3::/64 2001:db8:4::/64\"]\n\n[group.rekey]\n"
         "signing_key = \""
      << (dir_ / "rekey.pem").string()
      << "\"\nsignature = \"ecdsa-p256\"\ntransport = \"multicast\"\n"
         "address = \"ff05::1:3\"\nttl = 3\n";
  auto ks = open();
  ASSERT_TRUE(ks);
  const Address v6 = *Address::parse("2001:db8:12::1");
  EXPECT_EQ(ks->address(), *Address::parse("10.1.12.1"));
  EXPECT_EQ(ks->address(6), v6);
  EXPECT_EQ(ks->groups().find(134)->ks_address(), v6);
  auto offer = ks->groups().find(134)->offer(gdoi::PeerTraits{true}, kT0);
  ASSERT_TRUE(offer.sa.kek);
  EXPECT_EQ(offer.sa.kek->src.type, static_cast<std::uint8_t>(wire::IdType::Ipv6Addr));
  EXPECT_EQ(offer.sa.kek->src.data, Bytes(v6.bytes.begin(), v6.bytes.end()));
  const Address group = *Address::parse("ff05::1:3");
  EXPECT_EQ(offer.sa.kek->dst.data, Bytes(group.bytes.begin(), group.bytes.end()));
  ks->take_outgoing();
  auto reply = ks->handle({{"cmd", "ks.rekey"}, {"group", "GET_VPN"}}, kT0 + 1000);
  ASSERT_TRUE(reply["ok"]) << reply.dump();
  auto out = ks->take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to, (Endpoint{group, 848}));
  EXPECT_EQ(out[0].from, v6);
  EXPECT_EQ(out[0].multicast_ttl, 3);
}

TEST_F(KeyServerTest, RefusesToStartOnAStoreItCannotRead) {
  fs::create_directories(dir_ / "state");
  std::ofstream(dir_ / "state" / "ks-state") << "not a state file\n";
  auto parsed = config::load_ks_config((dir_ / "ks.toml").string());
  ASSERT_TRUE(parsed.ok());
  auto ks = KeyServer::open(std::move(*parsed.config), (dir_ / "ks.toml").string(),
                            std::make_unique<StateFile>((dir_ / "state").string()), false, kT0);
  ASSERT_FALSE(ks);
  EXPECT_NE(ks.error().find("not a covey-ks state file"), std::string::npos) << ks.error();
  // Never replaced.
  std::ifstream in(dir_ / "state" / "ks-state");
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first, "not a state file");
}

TEST_F(KeyServerTest, ControlCommandsAnswerOrNameWhatIsWrong) {
  auto ks = open();
  ASSERT_TRUE(ks);
  auto group = ks->handle({{"cmd", "ks.group"}, {"group", "GET_VPN"}}, kT0);
  EXPECT_NE(group.dump().find("GET_VPN"), std::string::npos) << group.dump();
  auto members = ks->handle({{"cmd", "ks.members"}}, kT0);
  EXPECT_FALSE(members.contains("error")) << members.dump();

  struct Case {
    nlohmann::json request;
    std::string error;
  };
  for (const Case& c :
       {Case{{{"cmd", "ks.rekey"}}, "ks.rekey needs \"group\""},
        Case{{{"cmd", "ks.rekey"}, {"group", "NOPE"}}, "no group named NOPE"},
        Case{{{"cmd", "ks.remove-member"}, {"address", "not-an-address"}}, "ks.remove-member needs \"address\""},
        Case{{{"cmd", "ks.frobnicate"}}, "unknown command \"ks.frobnicate\""}}) {
    auto reply = ks->handle(c.request, kT0);
    EXPECT_EQ(reply["ok"], false) << c.request.dump();
    EXPECT_NE(reply["error"].get<std::string>().find(c.error), std::string::npos) << reply.dump();
  }
  // A group may be named by its identity too.
  auto by_number = ks->handle({{"cmd", "ks.rekey"}, {"group", "134"}}, kT0 + 1000);
  EXPECT_EQ(by_number["ok"], true) << by_number.dump();
}

TEST_F(KeyServerTest, ReloadAppliesAPolicyChangeWholeOrNothing) {
  auto ks = open();
  ASSERT_TRUE(ks);
  const auto acl_before = ks->groups().find(134)->policy().acl;

  write_config("permit ip 10.0.0.0/8 10.0.0.0/8");
  auto changed = ks->handle({{"cmd", "ks.reload"}}, kT0 + 1000);
  ASSERT_EQ(changed["ok"], true) << changed.dump();
  EXPECT_EQ(changed["rekeyed"], nlohmann::json::array({"GET_VPN"}));
  EXPECT_NE(ks->groups().find(134)->policy().acl, acl_before);
  EXPECT_EQ(ks->groups().find(134)->seq(), 1u);

  // A change that needs a restart refuses the whole file: the ACL in it is not taken either.
  const auto acl_now = ks->groups().find(134)->policy().acl;
  write_config("permit ip 172.16.0.0/12 172.16.0.0/12", "max_half_open = 7\nworkers = 3\n");
  auto refused = ks->reload(kT0 + 2000);
  EXPECT_EQ(refused["ok"], false) << refused.dump();
  EXPECT_NE(refused["error"].get<std::string>().find("[server] max_half_open changed"), std::string::npos)
      << refused.dump();
  EXPECT_NE(refused["error"].get<std::string>().find("[server] workers changed from one per CPU to 3"), std::string::npos)
      << refused.dump();
  EXPECT_EQ(ks->groups().find(134)->policy().acl, acl_now);
  EXPECT_EQ(ks->groups().find(134)->seq(), 1u);

  // A file with an error changes nothing and says where.
  std::ofstream(dir_ / "ks.toml") << "[server\n";
  auto broken = ks->reload(kT0 + 3000);
  EXPECT_EQ(broken["ok"], false);
  EXPECT_NE(broken["error"].get<std::string>().find("ks.toml"), std::string::npos) << broken.dump();
  EXPECT_EQ(ks->groups().find(134)->policy().acl, acl_now);
}

// A new key in the signing_key file: the reload rolls it over (ks/rekey.h)
// and says so; the state file then names the new key. Starting with a
// key file unlike the state's is refused, saying how to roll over instead.
TEST_F(KeyServerTest, ReloadWithAnotherSigningKeyRollsItOver) {
  auto ks = open();
  ASSERT_TRUE(ks);
  const Bytes old_key = ks->groups().find(134)->kek().signature_public_key;
  const fs::path old_file = dir_ / "old-rekey.pem";
  fs::copy_file(dir_ / "rekey.pem", old_file);
  ASSERT_NO_FATAL_FAILURE(write_signing_key());

  auto rolled = ks->handle({{"cmd", "ks.reload"}}, kT0 + 1000);
  ASSERT_EQ(rolled["ok"], true) << rolled.dump();
  EXPECT_EQ(rolled["rolled_over"], nlohmann::json::array({"GET_VPN"}));
  EXPECT_EQ(rolled["rekeyed"], nlohmann::json::array({"GET_VPN"}));
  const Group& g = *ks->groups().find(134);
  EXPECT_NE(g.kek().signature_public_key, old_key);
  EXPECT_EQ(g.seq(), 1u);
  EXPECT_EQ(*g.signing_key().public_key()->to_der(), g.kek().signature_public_key);
  auto again = ks->handle({{"cmd", "ks.reload"}}, kT0 + 2000);  // the same key: nothing to do
  EXPECT_TRUE(again["rolled_over"].empty()) << again.dump();

  // The state carries on with the new key; the old file no longer fits it.
  ks.reset();
  EXPECT_TRUE(open(kT0 + 3000));
  fs::copy_file(old_file, dir_ / "rekey.pem", fs::copy_options::overwrite_existing);
  auto parsed = config::load_ks_config((dir_ / "ks.toml").string());
  ASSERT_TRUE(parsed.ok());
  auto refused = KeyServer::open(std::move(*parsed.config), (dir_ / "ks.toml").string(),
                                 std::make_unique<StateFile>((dir_ / "state").string()), false, kT0 + 4000);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().find("start with the old key file and reload with the new one"), std::string::npos)
      << refused.error();
}

TEST_F(KeyServerTest, MembersAreWrittenLazilyAtTheSaveCadence) {
  auto ks = open();
  ASSERT_TRUE(ks);
  ks->tick(kT0);
  ks->groups().mark_state_dirty();
  const std::int64_t due = ks->member_save_due_ms();
  EXPECT_GE(due, kT0 + KeyServer::kMemberSaveIntervalMs);
  ks->tick(due - 1);
  EXPECT_TRUE(ks->groups().state_dirty()) << "saved before the cadence allows";
  ks->tick(due);
  EXPECT_FALSE(ks->groups().state_dirty()) << "not saved when due";
  // The next lazy save is spaced from this one.
  EXPECT_GE(ks->member_save_due_ms(), due + KeyServer::kMemberSaveIntervalMs);
}

}  // namespace
}  // namespace covey::ks
