// The key server's state file: a round trip keeps keys, SPIs, SIDs, SEQ and
// members; every kind of bad file is refused by name; a failed write
// leaves the old file as it was.
#include <gtest/gtest.h>

#include "fixtures.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "ks/state_store.h"
#include "ks/store.h"

using namespace covey;
using covey::fixtures::prefix;

namespace {

namespace fs = std::filesystem;

const crypto::PrivateKey& signing_key() {
  static crypto::PrivateKey k = crypto::PrivateKey::generate_ec(crypto::EcCurve::P256).value();
  return k;
}

crypto::PrivateKey clone(const crypto::PrivateKey& k) { return crypto::PrivateKey::from_pem(*k.to_pem()).value(); }

// The groups a config names, with fresh keys, as covey-ks makes them at startup.
std::unique_ptr<ks::Groups> make_groups(std::vector<gdoi::GroupPolicy> policies,
                                        const crypto::PrivateKey& key = signing_key(), std::int64_t now = 1000) {
  auto groups = std::make_unique<ks::Groups>();
  for (auto& p : policies) {
    auto g = ks::Group::create(std::move(p), ks::Authorization{{prefix("10.1.0.0", 16)}, {}}, clone(key),
                               *Address::parse("10.1.12.1"), now);
    EXPECT_TRUE(g.ok()) << g.error();
    groups->add(std::move(*g));
  }
  return groups;
}

std::vector<gdoi::GroupPolicy> lab_config() {
  return {fixtures::ecdsa_group("GET_VPN", 134), fixtures::ecdsa_group("VOICE", 200)};
}

std::vector<std::uint32_t> admit(ks::Groups& groups, std::uint32_t group, const char* addr, std::uint16_t sids = 1) {
  ike::Phase1Sa sa;
  sa.peer = Endpoint{*Address::parse(addr), 848};
  gdoi::GroupDirectory::Offer offer;
  offer.group_id = group;
  auto a = groups.admit(offer, sa, sids);
  auto* admission = std::get_if<gdoi::GroupDirectory::Admission>(&a);
  EXPECT_NE(admission, nullptr) << std::get<ike::Failure>(a).reason;
  return admission ? admission->sids : std::vector<std::uint32_t>{};
}

std::string read(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
}

// A file whose body was edited, with a SHA-256 line that fits again: what
// a file from another configuration or another policy looks like.
std::string reseal(const std::string& file, const std::function<void(std::string&)>& edit) {
  std::size_t body_at = 0;
  for (int i = 0; i < 3; ++i) body_at = file.find('\n', body_at) + 1;
  std::string body = file.substr(body_at);
  edit(body);
  auto d = crypto::digest(crypto::HashAlgorithm::Sha256, {ByteView(reinterpret_cast<const std::uint8_t*>(body.data()), body.size())});
  std::string head = file.substr(0, body_at);
  std::size_t sha_at = head.find("sha256 ");
  return head.substr(0, sha_at) + "sha256 " + to_hex(*d) + "\n" + body;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
}

class KsState : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("covey-ks-state-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    path_ = ks::state_file_path((dir_ / "state").string());
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path dir_;
  std::string path_;
};

bool same(ByteView a, ByteView b) { return crypto::equal_constant_time(a, b); }

TEST_F(KsState, RoundTripKeepsKeysSpisSidsSeqAndMembers) {
  auto before = make_groups(lab_config());
  before->set_write_now([&] { return ks::save_state(path_, *before); });
  ks::Group& g = *before->find(134);
  // A SEQ that rekeys have raised (the rekey work raises it; here by hand).
  ks::Group::State raised = g.export_state();
  raised.seq = 41;
  raised.pseudotime_epoch_ms = 1700000000123;
  ASSERT_TRUE(g.restore_state(std::move(raised)));
  std::uint32_t max_sid = 0;
  for (const char* a : {"10.1.23.3", "10.1.24.4", "10.1.25.5"})
    for (std::uint32_t sid : admit(*before, 134, a, 4)) max_sid = std::max(max_sid, sid);
  admit(*before, 200, "10.1.23.3");
  ASSERT_TRUE(g.new_tek(2000));  // an SPI used, e.g. by a rekey in progress
  // Where rekeys go and how they fared.
  ks::Member& delivered = *g.find_member(*Address::parse("10.1.24.4"));
  delivered.port = 40000;
  delivered.registered_to = *Address::parse("10.1.12.1");
  delivered.last_acked_seq = 40;
  delivered.missed_rekeys = 2;
  // What Main Mode announced: covey with some features, covey with all,
  // no Vendor ID.
  delivered.traits = gdoi::PeerTraits{true, gdoi::covey_feature::AclAction | gdoi::covey_feature::Tbar};
  g.find_member(*Address::parse("10.1.23.3"))->traits = gdoi::PeerTraits{true};
  ASSERT_TRUE(ks::save_state(path_, *before));

  auto after = make_groups(lab_config());
  auto restored = ks::restore_state(path_, *after);
  ASSERT_TRUE(restored) << restored.error();
  const ks::Group& h = *after->find(134);
  EXPECT_EQ(h.kek().spi, g.kek().spi);
  EXPECT_TRUE(same(h.kek().algorithm_key, g.kek().algorithm_key));
  EXPECT_EQ(h.kek_expires_at(), g.kek_expires_at());
  ASSERT_EQ(h.teks().size(), g.teks().size());
  for (std::size_t i = 0; i < g.teks().size(); ++i) {
    EXPECT_EQ(h.teks()[i].tek.spi, g.teks()[i].tek.spi);
    EXPECT_TRUE(same(h.teks()[i].tek.encryption_key, g.teks()[i].tek.encryption_key));
    EXPECT_TRUE(same(h.teks()[i].tek.integrity_key, g.teks()[i].tek.integrity_key));
    EXPECT_EQ(h.teks()[i].expires_at, g.teks()[i].expires_at);
  }
  EXPECT_EQ(h.seq(), 41u);
  EXPECT_EQ(h.export_state().pseudotime_epoch_ms, 1700000000123);
  EXPECT_EQ(h.export_state().used_spis, g.export_state().used_spis);
  EXPECT_EQ(h.export_state().used_spis.size(), 2u);
  ASSERT_EQ(h.members().size(), 3u);
  for (const auto& [addr, m] : g.members()) {
    const ks::Member& r = h.members().at(addr);
    EXPECT_EQ(r.identity, m.identity);
    EXPECT_EQ(r.registered_at, m.registered_at);
    EXPECT_EQ(r.sids, m.sids);
    EXPECT_EQ(r.registrations, m.registrations);
    EXPECT_EQ(r.port, m.port);
    EXPECT_EQ(r.registered_to, m.registered_to);
    EXPECT_EQ(r.last_acked_seq, m.last_acked_seq);
    EXPECT_EQ(r.missed_rekeys, m.missed_rekeys);
    EXPECT_EQ(r.traits, m.traits) << addr.str();
  }
  EXPECT_EQ(h.members().at(*Address::parse("10.1.24.4")).traits.features, 0x5u);
  EXPECT_FALSE(h.members().at(*Address::parse("10.1.25.5")).traits.covey);
  EXPECT_EQ(h.members().at(*Address::parse("10.1.24.4")).port, 40000);
  EXPECT_EQ(h.members().at(*Address::parse("10.1.24.4")).last_acked_seq, 40u);
  EXPECT_FALSE(h.members().at(*Address::parse("10.1.23.3")).last_acked_seq);
  EXPECT_EQ(after->find(200)->members().size(), 1u);
  EXPECT_TRUE(same(after->find(200)->teks()[0].tek.encryption_key, before->find(200)->teks()[0].tek.encryption_key));

  // Nothing used before the restart is used again after it.
  auto used = g.export_state().used_spis;
  for (int i = 0; i < 200; ++i) {
    auto t = after->find(134)->new_tek(3000);
    ASSERT_TRUE(t);
    EXPECT_FALSE(used.count(t->spi)) << t->spi;
  }
  for (std::uint32_t sid : admit(*after, 134, "10.1.26.6")) EXPECT_GT(sid, max_sid);
}

// The pseudotime epoch is fixed when a group is first created and kept:
// a restart an hour later (which creates the group again from the config)
// goes on counting from it, so members' TBAR stamps stay comparable.
// RFC 6407 3.5: SIDs are for counter-mode TEKs (and covey's TBAR stamp,
// which names its sender by SID). A group with neither hands out none and
// reserves none, so that the 16-bit SID space does not refuse its 65,536th
// registration (gm-swarm's 100,000 members met "SID space exhausted").
TEST_F(KsState, SidsOnlyForGroupsThatNeedThem) {
  gdoi::GroupPolicy plain = fixtures::ecdsa_group("PLAIN", 134);
  plain.tbar_window_ms = std::nullopt;
  gdoi::GroupPolicy gcm = fixtures::ecdsa_group("GCM", 300);
  gcm.tbar_window_ms = std::nullopt;
  gcm.tek.cipher = gdoi::TekTransform::Cipher::AesGcm256;
  gcm.tek.integrity = gdoi::TekTransform::Integrity::None;
  auto groups = make_groups({plain, fixtures::ecdsa_group("TBAR", 200), gcm});
  int writes = 0;
  groups->set_write_now([&]() -> crypto::Result<void> {
    ++writes;
    return {};
  });
  EXPECT_TRUE(admit(*groups, 134, "10.1.23.3", 4).empty());
  EXPECT_EQ(groups->find(134)->next_sid(), 0u);
  EXPECT_EQ(writes, 0) << "no SID block reserved for a group that hands out none";
  EXPECT_EQ(admit(*groups, 200, "10.1.23.3").size(), 1u);
  EXPECT_EQ(admit(*groups, 300, "10.1.23.3", 2).size(), 2u);
  EXPECT_EQ(writes, 2);
}

TEST_F(KsState, ThePseudotimeRunsOnAcrossARestart) {
  auto before = make_groups(lab_config(), signing_key(), 1000);
  const ks::Group& g = *before->find(134);
  EXPECT_EQ(g.pseudotime_epoch_ms(), 1'000'000);
  EXPECT_EQ(g.pseudotime_ms(1'000'000 + 250), 250u);
  ASSERT_TRUE(ks::save_state(path_, *before));

  auto after = make_groups(lab_config(), signing_key(), 4600);
  EXPECT_EQ(after->find(134)->pseudotime_ms(4'600'000), 0u);  // a new group's clock
  ASSERT_TRUE(ks::restore_state(path_, *after));
  const ks::Group& h = *after->find(134);
  EXPECT_EQ(h.pseudotime_epoch_ms(), 1'000'000);
  EXPECT_EQ(h.pseudotime_ms(4'600'000 + 17), 3'600'017u);
  EXPECT_EQ(h.pseudotime_ms(4'600'000 + 17), g.pseudotime_ms(4'600'000 + 17));
}

// A file from before covey kept pseudotime has epoch 0: the group keeps
// the epoch of its creation, and the next save writes that down.
TEST_F(KsState, AFileWithoutAnEpochGetsTheCreationsOnItsNextSave) {
  auto before = make_groups(lab_config());
  ASSERT_TRUE(ks::save_state(path_, *before));
  write(path_, reseal(read(path_), [](std::string& body) {
          nlohmann::json doc = nlohmann::json::parse(body);
          for (auto& g : doc["groups"]) g["pseudotime_epoch"] = 0;
          body = doc.dump(1);
        }));
  auto after = make_groups(lab_config(), signing_key(), 2000);
  ASSERT_TRUE(ks::restore_state(path_, *after));
  EXPECT_EQ(after->find(134)->pseudotime_epoch_ms(), 2'000'000);
  ASSERT_TRUE(ks::save_state(path_, *after));
  auto again = make_groups(lab_config(), signing_key(), 3000);
  ASSERT_TRUE(ks::restore_state(path_, *again));
  EXPECT_EQ(again->find(134)->pseudotime_epoch_ms(), 2'000'000);
}

// A file from a covey-ks before rekeys were sent has no delivery fields
// and was written the way that covey-ks wrote it, a JSON DOM dumped with
// one-space indentation: its members are rekeyed at the GDOI port until
// they register again.
TEST_F(KsState, OldFilesWithoutDeliveryFieldsLoad) {
  auto before = make_groups(lab_config());
  admit(*before, 134, "10.1.23.3");
  ASSERT_TRUE(ks::save_state(path_, *before));
  std::string old = reseal(read(path_), [](std::string& body) {
    nlohmann::json doc = nlohmann::json::parse(body);
    for (auto& g : doc["groups"])
      for (auto& m : g["members"])
        for (const char* field : {"port", "registered_to", "last_acked_seq", "missed_rekeys"}) {
          ASSERT_TRUE(m.contains(field)) << field;
          m.erase(field);
        }
    body = doc.dump(1);
  });
  ASSERT_NE(old.find("\n   \"members\": [\n    {\n     \"address\": \"10.1.23.3\",\n"), std::string::npos) << old;
  write(path_, old);
  auto after = make_groups(lab_config());
  auto restored = ks::restore_state(path_, *after);
  ASSERT_TRUE(restored) << restored.error() << "\n" << old;
  const ks::Member& m = after->find(134)->members().at(*Address::parse("10.1.23.3"));
  EXPECT_EQ(m.port, 848);
  EXPECT_FALSE(m.registered_to);
  EXPECT_FALSE(m.last_acked_seq);
  EXPECT_EQ(m.missed_rekeys, 0u);
  EXPECT_EQ(after->find(134)->seq(), before->find(134)->seq());
  EXPECT_TRUE(same(after->find(134)->kek().algorithm_key, before->find(134)->kek().algorithm_key));
}

// A file from before covey exchanged Vendor IDs: its members were all sent
// covey's extensions, and keep getting them until they register again.
TEST_F(KsState, OldFilesWithoutCoveyFeaturesRestoreMembersAsCovey) {
  auto before = make_groups(lab_config());
  admit(*before, 134, "10.1.23.3");
  ASSERT_FALSE(before->find(134)->members().at(*Address::parse("10.1.23.3")).traits.covey);
  ASSERT_TRUE(ks::save_state(path_, *before));
  std::string old = reseal(read(path_), [](std::string& body) {
    nlohmann::json doc = nlohmann::json::parse(body);
    for (auto& g : doc["groups"])
      for (auto& m : g["members"]) {
        ASSERT_TRUE(m.contains("covey_features"));
        EXPECT_TRUE(m["covey_features"].is_null());
        m.erase("covey_features");
      }
    body = doc.dump(1);
  });
  write(path_, old);
  auto after = make_groups(lab_config());
  auto restored = ks::restore_state(path_, *after);
  ASSERT_TRUE(restored) << restored.error() << "\n" << old;
  const ks::Member& m = after->find(134)->members().at(*Address::parse("10.1.23.3"));
  EXPECT_EQ(m.traits, gdoi::PeerTraits{true});
  EXPECT_EQ(m.traits.features, gdoi::covey_feature::All);
}

// Identities are certificate subjects: whatever bytes they hold, the file
// stays JSON that restore reads. UTF-8 comes back as it was, quotes and
// control characters escaped; bytes that are not UTF-8 become U+FFFD.
TEST_F(KsState, IdentitiesAreEscapedAndStayUtf8) {
  auto before = make_groups(lab_config());
  ks::Group& g = *before->find(134);
  const std::vector<std::pair<std::string, std::string>> rows = {
      {"C=DE, O=Zo\xC3\xAB \xE2\x82\xAC \xF0\x9F\x94\x91, CN=gm", "C=DE, O=Zo\xC3\xAB \xE2\x82\xAC \xF0\x9F\x94\x91, CN=gm"},
      {"CN=\"quoted\\back\"\n\t\r\x01\x1f\x7f", "CN=\"quoted\\back\"\n\t\r\x01\x1f\x7f"},
      {"latin1 Zo\xEB", "latin1 Zo\xEF\xBF\xBD"},
      {"cut \xE2\x82", "cut \xEF\xBF\xBD\xEF\xBF\xBD"},
      {"overlong \xC0\xAF surrogate \xED\xA0\x80", "overlong \xEF\xBF\xBD\xEF\xBF\xBD surrogate \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
      {std::string("nul \0 inside", 12), std::string("nul \0 inside", 12)},
  };
  for (std::size_t i = 0; i < rows.size(); ++i) {
    ks::Member m;
    m.address = *Address::parse("10.1.40." + std::to_string(i + 1));
    m.identity = rows[i].first;
    g.put_member(std::move(m));
  }
  ks::Member v6;
  v6.address = *Address::parse("2001:db8::4");
  v6.identity = "v6";
  v6.registered_to = *Address::parse("2001:db8::1");
  g.put_member(std::move(v6));
  auto saved = ks::save_state(path_, *before);
  ASSERT_TRUE(saved) << saved.error();
  auto after = make_groups(lab_config());
  auto restored = ks::restore_state(path_, *after);
  ASSERT_TRUE(restored) << restored.error() << "\n" << read(path_);
  const auto& members = after->find(134)->members();
  for (std::size_t i = 0; i < rows.size(); ++i)
    EXPECT_EQ(members.at(*Address::parse("10.1.40." + std::to_string(i + 1))).identity, rows[i].second) << i;
  EXPECT_EQ(members.at(*Address::parse("2001:db8::4")).registered_to, *Address::parse("2001:db8::1"));
}

// The same identities through a journal record: its members are read as a
// snapshot's are (without a DOM while they read as written, by nlohmann
// when an escape makes the fast reader give up), with the same result.
TEST_F(KsState, JournalRecordsKeepEscapedIdentitiesAsSnapshotsDo) {
  auto before = make_groups(lab_config());
  ks::StateFile file((dir_ / "state").string());
  admit(*before, 134, "10.1.1.1");
  ASSERT_TRUE(file.save(*before));  // the snapshot
  before->mark_state_written();
  ks::Group& g = *before->find(134);
  const std::vector<std::string> identities = {"CN=plain", "CN=\"quoted\\back\"\n\x01", "C=DE, O=Zo\xC3\xAB"};
  for (std::size_t i = 0; i < identities.size(); ++i) {
    ks::Member m;
    m.address = *Address::parse("10.1.41." + std::to_string(i + 1));
    m.identity = identities[i];
    g.put_member(std::move(m));
  }
  ASSERT_TRUE(file.save(*before));
  ASSERT_TRUE(fs::exists(path_ + ks::kJournalSuffix));
  auto after = make_groups(lab_config());
  ks::StateFile again((dir_ / "state").string());
  auto restored = again.restore(*after);
  ASSERT_TRUE(restored) << restored.error();
  const auto& members = after->find(134)->members();
  EXPECT_EQ(members.size(), 4u);
  for (std::size_t i = 0; i < identities.size(); ++i)
    EXPECT_EQ(members.at(*Address::parse("10.1.41." + std::to_string(i + 1))).identity, identities[i]) << i;
}

// kill -9 between lazy member writes: members admitted since the last
// write are lost (they register again), but their SIDs are not reused.
TEST_F(KsState, SidsAreReservedInBlocksAndNeverReusedAfterACrash) {
  auto before = make_groups(lab_config());
  ASSERT_TRUE(ks::save_state(path_, *before));
  int writes = 0;
  before->set_write_now([&] {
    ++writes;
    return ks::save_state(path_, *before);
  });
  std::uint32_t max_sid = 0;
  for (int i = 0; i < 300; ++i) {
    std::string a = "10.1." + std::to_string(30 + i / 250) + "." + std::to_string(i % 250);
    for (std::uint32_t sid : admit(*before, 134, a.c_str(), 4)) max_sid = std::max(max_sid, sid);
  }
  EXPECT_EQ(writes, 2);  // 1200 SIDs: two blocks of 1024, not 300 fsyncs
  EXPECT_TRUE(before->state_dirty());

  auto after = make_groups(lab_config());  // "crash": the lazy write never happened
  ASSERT_TRUE(ks::restore_state(path_, *after));
  EXPECT_LT(after->find(134)->members().size(), before->find(134)->members().size());
  for (std::uint32_t sid : admit(*after, 134, "10.1.31.1", 16)) EXPECT_GT(sid, max_sid);
}

TEST_F(KsState, FailedSidReservationRefusesTheAdmission) {
  auto groups = make_groups(lab_config());
  groups->set_write_now([]() -> crypto::Result<void> { return crypto::Error{"disk full"}; });
  ike::Phase1Sa sa;
  sa.peer = Endpoint{*Address::parse("10.1.23.3"), 848};
  gdoi::GroupDirectory::Offer offer;
  offer.group_id = 134;
  auto a = groups->admit(offer, sa, 1);
  ASSERT_TRUE(std::holds_alternative<ike::Failure>(a));
  EXPECT_NE(std::get<ike::Failure>(a).reason.find("disk full"), std::string::npos);
  EXPECT_TRUE(groups->find(134)->members().empty());
}

// Each row: a file made bad one way, and the words the refusal must hold.
struct BadFile {
  const char* description;
  std::function<std::string(const std::string& good)> make;
  std::vector<gdoi::GroupPolicy> config;
  const char* expected;
};

TEST_F(KsState, BadFilesAreRefusedByName) {
  auto alt_tek = lab_config();
  alt_tek[0].tek.cipher = gdoi::TekTransform::Cipher::Aes128Cbc;
  auto renamed = lab_config();
  renamed[1].name = "VIDEO";
  auto other_identity = lab_config();
  other_identity[1].identity = 201;
  auto more = lab_config();
  more.push_back(fixtures::ecdsa_group("DATA", 300));
  auto fewer = lab_config();
  fewer.pop_back();
  const std::vector<BadFile> rows = {
      {"truncated", [](const std::string& s) { return s.substr(0, s.size() - 20); }, lab_config(),
       "does not match its SHA-256 (truncated or corrupt)"},
      {"truncated in the header", [](const std::string& s) { return s.substr(0, 20); }, lab_config(),
       "truncated after the first line"},
      {"empty", [](const std::string&) { return std::string(); }, lab_config(), "not a covey-ks state file"},
      {"flipped byte",
       [](std::string s) {
         s[s.size() / 2] ^= 0x01;
         return s;
       },
       lab_config(), "does not match its SHA-256"},
      {"wrong magic",
       [](std::string s) {
         s.replace(0, 5, "cozey");
         return s;
       },
       lab_config(), "not a covey-ks state file"},
      {"wrong version",
       [](std::string s) {
         replace_all(s, "\nversion 1\n", "\nversion 2\n");
         return s;
       },
       lab_config(), "format version 2, this covey-ks reads version 1"},
      {"foreign: another identity", [](const std::string& s) { return s; }, other_identity,
       "group VOICE (200) is not configured"},
      {"foreign: another name", [](const std::string& s) { return s; }, renamed,
       "group VOICE (200) is named \"VIDEO\" in the config"},
      {"missing group", [](const std::string& s) { return s; }, more,
       "configured group DATA (300) is not in the file"},
      {"extra group", [](const std::string& s) { return s; }, fewer, "group VOICE (200) is not configured"},
      {"TEK transform changed", [](const std::string& s) { return s; }, alt_tek,
       "group GET_VPN (134): tek_transform is \"esp-aes-256 esp-sha256-hmac\" in the file but \"esp-aes-128 esp-sha256-hmac\""},
      {"field missing",
       [](const std::string& s) {
         return reseal(s, [](std::string& b) { replace_all(b, "\"next_sid\"", "\"next_sad\""); });
       },
       lab_config(), "group GET_VPN (134): no field \"next_sid\""},
      {"not JSON",
       [](const std::string& s) { return reseal(s, [](std::string& b) { b.resize(b.size() / 2); }); },
       lab_config(), "not JSON"},
      {"TEK SPI not recorded as used",
       [](const std::string& s) {
         return reseal(s, [](std::string& b) {
           auto at = b.find("\"used_spis\"");
           auto open = b.find('[', at), close = b.find(']', at);
           b.replace(open, close - open + 1, "[]");
         });
       },
       lab_config(), "is not among the used SPIs"},
  };
  auto good_groups = make_groups(lab_config());
  ASSERT_TRUE(ks::save_state(path_, *good_groups));
  const std::string good = read(path_);
  for (const BadFile& row : rows) {
    SCOPED_TRACE(row.description);
    write(path_, row.make(good));
    auto groups = make_groups(row.config);
    auto kek_before = groups->find(134) ? groups->find(134)->kek().spi : std::array<std::uint8_t, 16>{};
    auto r = ks::restore_state(path_, *groups);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().find("state file " + path_ + ": "), std::string::npos) << r.error();
    EXPECT_NE(r.error().find(row.expected), std::string::npos) << r.error();
    if (groups->find(134)) {
      EXPECT_EQ(groups->find(134)->kek().spi, kek_before) << "a refused file changed a group";
    }
  }
}

TEST_F(KsState, ANewSigningKeyIsRefused) {
  auto before = make_groups(lab_config());
  ASSERT_TRUE(ks::save_state(path_, *before));
  auto other_key = crypto::PrivateKey::generate_ec(crypto::EcCurve::P256).value();
  auto after = make_groups(lab_config(), other_key);
  auto r = ks::restore_state(path_, *after);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("not that of the configured signing key"), std::string::npos) << r.error();
}

TEST_F(KsState, FileIsRootsAloneInADirectoryCreatedForIt) {
  auto groups = make_groups(lab_config());
  ::mode_t old = ::umask(0);
  auto r = ks::save_state(path_, *groups);
  ::umask(old);
  ASSERT_TRUE(r) << r.error();
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::stat((dir_ / "state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  const std::string text = read(path_);
  EXPECT_EQ(text.rfind("covey-ks-state\nversion 1\nsha256 ", 0), 0u);
  EXPECT_FALSE(fs::exists(path_ + ".tmp"));
}

// A write that fails halfway (the file size limit stops it after 200
// bytes, as a full disk would) leaves the previous file whole.
TEST_F(KsState, AFailedWriteLeavesTheOldFileIntact) {
  auto groups = make_groups(lab_config());
  ASSERT_TRUE(ks::save_state(path_, *groups));
  const std::string old = read(path_);
  admit(*groups, 134, "10.1.23.3");

  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit tight = saved;
  tight.rlim_cur = 200;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &tight), 0);
  auto r = ks::save_state(path_, *groups);
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);

  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("cannot write"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("previous state file, if any, is unchanged"), std::string::npos) << r.error();
  EXPECT_EQ(read(path_), old);
  EXPECT_FALSE(fs::exists(path_ + ".tmp"));
  auto again = make_groups(lab_config());
  EXPECT_TRUE(ks::restore_state(path_, *again));
}

TEST_F(KsState, AnUnwritableDirectoryIsAnError) {
  fs::create_directories(dir_);
  write(dir_ / "state", "a file where the state directory should be");
  auto groups = make_groups(lab_config());
  auto r = ks::save_state(path_, *groups);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find(path_), std::string::npos) << r.error();
  EXPECT_EQ(read(dir_ / "state"), "a file where the state directory should be");
}

// The lazy member save at registration-load scale: 10,000 members, every
// one restored as written. Prints how long a save takes (the key server's
// loop pays it once a second at most); asserts only the content.
TEST_F(KsState, TenThousandMembersRoundTripAndSaveTime) {
  auto before = make_groups(lab_config());
  ks::Group& g = *before->find(134);
  constexpr int kMembers = 10000;
  for (int i = 0; i < kMembers; ++i) {
    ks::Member m;
    m.address.family = 4;
    m.address.bytes[0] = 10;
    m.address.bytes[1] = 2;
    m.address.bytes[2] = static_cast<std::uint8_t>(i >> 8);
    m.address.bytes[3] = static_cast<std::uint8_t>(i);
    m.identity = m.address.str();
    m.registered_at = 1700000000 + i;
    m.sids = {static_cast<std::uint32_t>(2 * i + 1), static_cast<std::uint32_t>(2 * i + 2)};
    m.registrations = 1 + i % 3;
    m.port = static_cast<std::uint16_t>(20000 + i % 40000);
    m.registered_to = *Address::parse("10.1.12.1");
    if (i % 2) m.last_acked_seq = static_cast<std::uint32_t>(i);
    m.missed_rekeys = i % 4;
    g.put_member(std::move(m));
  }
  g.set_sid_mark(2 * kMembers + 1);  // as admit() would have raised it
  ASSERT_TRUE(ks::save_state(path_, *before));  // creates the directory
  constexpr int kRounds = 20;
  double best_ms = 1e9, total_ms = 0;
  for (int r = 0; r < kRounds; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    auto saved = ks::save_state(path_, *before);
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(saved) << saved.error();
    best_ms = std::min(best_ms, ms);
    total_ms += ms;
  }
  std::printf("save_state, %d members, %zu bytes: best %.2f ms, mean %.2f ms (incl. fsync)\n", kMembers,
              static_cast<std::size_t>(fs::file_size(path_)), best_ms, total_ms / kRounds);

  auto after = make_groups(lab_config());
  auto restored = ks::restore_state(path_, *after);
  ASSERT_TRUE(restored) << restored.error();
  const auto& want = g.members();
  const auto& got = after->find(134)->members();
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [addr, m] : want) {
    const ks::Member& r = got.at(addr);
    ASSERT_EQ(r.identity, m.identity);
    ASSERT_EQ(r.registered_at, m.registered_at);
    ASSERT_EQ(r.sids, m.sids);
    ASSERT_EQ(r.registrations, m.registrations);
    ASSERT_EQ(r.port, m.port);
    ASSERT_EQ(r.registered_to, m.registered_to);
    ASSERT_EQ(r.last_acked_seq, m.last_acked_seq);
    ASSERT_EQ(r.missed_rekeys, m.missed_rekeys);
  }
}

}  // namespace

// The lazy saves append what changed to the journal (issue 14: a save's
// cost must not grow with the member count): members admitted, changed
// and removed, a rekey's keys and SEQ, and the SID mark come back from
// snapshot + journal, and the snapshot is not rewritten for them.
TEST_F(KsState, TheJournalCarriesMembersKeysAndSidMarksAcrossARestart) {
  auto before = make_groups(lab_config());
  ks::StateFile file((dir_ / "state").string());
  admit(*before, 134, "10.1.1.1");
  admit(*before, 134, "10.1.1.2");
  ASSERT_TRUE(file.save(*before));  // the first save: a snapshot
  before->mark_state_written();
  const std::string snapshot = read(path_);
  EXPECT_FALSE(fs::exists(path_ + ks::kJournalSuffix));

  admit(*before, 134, "10.1.1.3");
  admit(*before, 200, "10.1.1.3");
  ks::Group& g = *before->find(134);
  ASSERT_TRUE(g.remove_member(*Address::parse("10.1.1.1")));
  g.find_member(*Address::parse("10.1.1.2"))->last_acked_seq = 7;
  ASSERT_TRUE(file.save(*before));
  before->mark_state_written();
  auto tek = g.new_tek(2000);
  ASSERT_TRUE(tek);
  g.install_tek(ks::Group::LiveTek{*tek, 2000, 5600});
  g.set_seq(g.seq() + 1);
  g.set_sid_mark(g.sid_mark() + 4096);
  ASSERT_TRUE(file.save(*before));
  before->mark_state_written();
  EXPECT_EQ(read(path_), snapshot);  // appended, not rewritten
  EXPECT_TRUE(fs::exists(path_ + ks::kJournalSuffix));
  EXPECT_EQ(fs::status(path_ + ks::kJournalSuffix).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);

  auto after = make_groups(lab_config());
  ks::StateFile again((dir_ / "state").string());
  auto restored = again.restore(*after);
  ASSERT_TRUE(restored) << restored.error();
  ks::Group& r = *after->find(134);
  EXPECT_EQ(r.members().size(), 2u);
  EXPECT_EQ(r.find_member(*Address::parse("10.1.1.1")), nullptr);
  EXPECT_EQ(r.find_member(*Address::parse("10.1.1.2"))->last_acked_seq, 7u);
  EXPECT_NE(r.find_member(*Address::parse("10.1.1.3")), nullptr);
  EXPECT_EQ(after->find(200)->members().size(), 1u);
  EXPECT_EQ(r.seq(), g.seq());
  ASSERT_EQ(r.teks().size(), g.teks().size());
  EXPECT_EQ(r.teks().back().tek.spi, tek->spi);
  EXPECT_TRUE(same(r.teks().back().tek.encryption_key, tek->encryption_key));
  EXPECT_EQ(r.sid_mark(), g.sid_mark());
  // And the restored key server goes on appending to the same journal.
  admit(*after, 134, "10.1.1.4");
  ASSERT_TRUE(again.save(*after));
  EXPECT_EQ(read(path_), snapshot);
  auto third = make_groups(lab_config());
  ASSERT_TRUE(ks::restore_state(path_, *third));
  EXPECT_EQ(third->find(134)->members().size(), 3u);
}

// A crash mid-append loses that save only (it never returned); a record
// that does not match its digest with records after it is corruption and
// refused by name; the journal of an older snapshot is ignored; another
// journal version is refused. After a cut-short record the next save
// writes a snapshot rather than append after it.
TEST_F(KsState, TheJournalSurvivesACrashMidAppendAndRefusesCorruption) {
  auto groups = make_groups(lab_config());
  ks::StateFile file((dir_ / "state").string());
  ASSERT_TRUE(file.save(*groups));
  groups->mark_state_written();
  admit(*groups, 134, "10.1.2.1");
  ASSERT_TRUE(file.save(*groups));
  groups->mark_state_written();
  const std::string one = read(path_ + ks::kJournalSuffix);
  admit(*groups, 134, "10.1.2.2");
  ASSERT_TRUE(file.save(*groups));
  groups->mark_state_written();
  const std::string two = read(path_ + ks::kJournalSuffix);
  ASSERT_GT(two.size(), one.size() + 20);

  write(path_ + ks::kJournalSuffix, two.substr(0, two.size() - 20));  // the second append cut short
  auto cut = make_groups(lab_config());
  ks::StateFile after_crash((dir_ / "state").string());
  auto restored = after_crash.restore(*cut);
  ASSERT_TRUE(restored) << restored.error();
  EXPECT_EQ(cut->find(134)->members().size(), 1u);
  ASSERT_TRUE(after_crash.save(*cut));
  EXPECT_FALSE(fs::exists(path_ + ks::kJournalSuffix)) << "appended after a cut-short record";
  auto resaved = make_groups(lab_config());
  ASSERT_TRUE(ks::restore_state(path_, *resaved));
  EXPECT_EQ(resaved->find(134)->members().size(), 1u);

  // Records from here on continue the new snapshot; build a journal of two.
  admit(*cut, 134, "10.1.2.3");
  ASSERT_TRUE(after_crash.save(*cut));
  cut->mark_state_written();
  admit(*cut, 134, "10.1.2.4");
  ASSERT_TRUE(after_crash.save(*cut));
  std::string good = read(path_ + ks::kJournalSuffix);
  std::string corrupt = good;
  corrupt[corrupt.find("10.1.2.3")] = '9';  // the first record, digest now wrong
  write(path_ + ks::kJournalSuffix, corrupt);
  auto refused = ks::restore_state(path_, *make_groups(lab_config()));
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().find("ks-state.journal: record 1 does not match its SHA-256 and records follow it (corrupt)"),
            std::string::npos)
      << refused.error();

  std::string newer = good;
  replace_all(newer, "version 1\n", "version 2\n");
  write(path_ + ks::kJournalSuffix, newer);
  refused = ks::restore_state(path_, *make_groups(lab_config()));
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().find("this covey-ks reads journal version 1 only"), std::string::npos) << refused.error();

  write(path_ + ks::kJournalSuffix, one);  // based on the first snapshot, which is gone
  auto stale = make_groups(lab_config());
  ASSERT_TRUE(ks::restore_state(path_, *stale));
  EXPECT_EQ(stale->find(134)->members().size(), 1u);
  EXPECT_EQ(stale->find(134)->find_member(*Address::parse("10.1.2.2")), nullptr);
}

// The journal is rewritten into a snapshot once it outgrows it, so that
// restoring never reads more than about twice the members' records.
TEST_F(KsState, AJournalLargerThanTheSnapshotBecomesASnapshot) {
  auto groups = make_groups(lab_config());
  ks::StateFile file((dir_ / "state").string());
  for (int i = 0; i < 20; ++i) admit(*groups, 134, ("10.1.3." + std::to_string(i)).c_str());
  ASSERT_TRUE(file.save(*groups));
  groups->mark_state_written();
  bool compacted = false;
  for (int round = 0; round < 200 && !compacted; ++round) {
    for (int i = 0; i < 5; ++i) admit(*groups, 134, ("10.1.3." + std::to_string(i)).c_str());  // registering again
    ASSERT_TRUE(file.save(*groups));
    groups->mark_state_written();
    compacted = !fs::exists(path_ + ks::kJournalSuffix);
    if (!compacted) {
      EXPECT_LE(fs::file_size(path_ + ks::kJournalSuffix), fs::file_size(path_) + 8192);
    }
  }
  EXPECT_TRUE(compacted);
  auto after = make_groups(lab_config());
  ASSERT_TRUE(ks::restore_state(path_, *after));
  EXPECT_EQ(after->find(134)->members().size(), 20u);
}
