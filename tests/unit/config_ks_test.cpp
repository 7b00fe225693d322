// covey-ks configuration: the lab and reference files parse, every default
// holds, and each class of mistake is reported on its line with its fix.
// Keys and certificates are generated into a temporary folder per run.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "config/ks_config.h"

namespace covey::config {
namespace {

namespace fs = std::filesystem;

const fs::path kExamples = fs::path(COVEY_TEST_DATA) / ".." / ".." / ".." / "examples";

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write(const fs::path& p, const std::string& text,
           fs::perms mode = fs::perms::owner_read | fs::perms::owner_write) {
  std::ofstream(p) << text;
  fs::permissions(p, mode);
}

std::string replace(std::string text, std::string_view from, std::string_view to) {
  auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << "test bug: \"" << from << "\" not in the config";
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

// 1-based line of the first occurrence of `marker`.
std::uint32_t line_of(const std::string& text, std::string_view marker) {
  auto at = text.find(marker);
  EXPECT_NE(at, std::string::npos) << "test bug: \"" << marker << "\" not in the config";
  return static_cast<std::uint32_t>(std::count(text.begin(), text.begin() + static_cast<long>(at), '\n') + 1);
}

std::string pem_of(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return pem;
}

std::string self_signed_cert(EVP_PKEY* key, const char* cn) {
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_sign(cert, key, EVP_sha256());
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  X509_free(cert);
  return pem;
}

class KsConfigTest : public ::testing::Test {
 protected:
  // RSA key generation is slow: once for the whole suite.
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("covey-config-ks-test." + std::to_string(::getpid()));
    fs::create_directories(dir_);
    EVP_PKEY* rsa2048 = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048});
    EVP_PKEY* rsa1024 = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{1024});
    EVP_PKEY* p256 = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    EVP_PKEY* p384 = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
    ASSERT_TRUE(rsa2048 && rsa1024 && p256 && p384);
    write(dir_ / "rsa2048.pem", pem_of(rsa2048));
    write(dir_ / "rsa1024.pem", pem_of(rsa1024));
    write(dir_ / "p256.pem", pem_of(p256));
    write(dir_ / "p384.pem", pem_of(p384));
    write(dir_ / "ks.crt", self_signed_cert(rsa2048, "ks.covey.lab"));
    write(dir_ / "small.crt", self_signed_cert(rsa1024, "small.covey.lab"));
    write(dir_ / "ec.crt", self_signed_cert(p256, "ec.covey.lab"));
    write(dir_ / "garbage.pem", "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n");
    EVP_PKEY_free(rsa2048);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static std::string key(const char* name) { return (dir_ / name).string(); }

  // A small valid config; rows below change one thing in it.
  static std::string base() {
    return "[server]\n"
           "port = 848\n"
           "\n"
           "[isakmp]\n"
           "pre_shared_key = \"lab\"\n"
           "\n"
           "[[group]]\n"
           "name = \"GET_VPN\"\n"
           "identity = 134\n"
           "acl = [\n"
           "  \"deny udp any eq 848 any eq 848\",\n"
           "  \"permit ip 192.168.0.0/16 192.168.0.0/16\",\n"
           "]\n"
           "lifetime = 3600\n"
           "\n"
           "[group.rekey]\n"
           "signing_key = \"" +
           key("rsa2048.pem") + "\"\n";
  }

  static Parsed<KsConfig> parse(const std::string& text) {
    return parse_ks_config(text, (dir_ / "ks.toml").string());
  }

  static inline fs::path dir_;
};

std::string all(const std::vector<Problem>& problems) {
  return format_problems(problems);
}

std::size_t count(const std::vector<Problem>& problems, Problem::Severity s) {
  return static_cast<std::size_t>(
      std::count_if(problems.begin(), problems.end(), [s](const Problem& p) { return p.severity == s; }));
}

TEST_F(KsConfigTest, LabConfigParses) {
  // The lab file names its key relatively: copy it next to a fresh key.
  fs::path lab = dir_ / "lab";
  fs::create_directories(lab);
  fs::copy_file(kExamples / "lab" / "ks.toml", lab / "ks.toml", fs::copy_options::overwrite_existing);
  fs::copy_file(dir_ / "rsa2048.pem", lab / "ks-rekey.pem", fs::copy_options::overwrite_existing);

  auto parsed = load_ks_config((lab / "ks.toml").string());
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  EXPECT_TRUE(parsed.problems.empty()) << all(parsed.problems);
  const KsConfig& c = *parsed.config;
  EXPECT_EQ(c.server.address, Address::parse("10.1.12.1"));
  EXPECT_EQ(c.server.control_socket, "/run/covey-lab/ks.sock");
  ASSERT_TRUE(c.isakmp.default_key);
  EXPECT_EQ(c.isakmp.default_key->size(), std::string("covey-lab-not-a-secret").size());

  ASSERT_EQ(c.groups.size(), 1u);
  const KsGroupConfig& g = c.groups[0];
  EXPECT_EQ(g.policy.name, "GET_VPN");
  EXPECT_EQ(g.policy.identity, 134u);
  ASSERT_EQ(g.policy.acl.size(), 5u);
  EXPECT_EQ(g.policy.acl[0].str(), "deny udp any eq 848 any eq 848");
  EXPECT_EQ(g.policy.acl[1].str(), "permit ip 192.168.0.0/16 192.168.0.0/16");
  EXPECT_EQ(g.policy.acl[2].str(), "permit ip 2001:db8::/45 2001:db8::/45");
  EXPECT_EQ(g.policy.acl[3].str(), "permit ip 2001:db8::/45 2001:db8:33::/64");
  EXPECT_EQ(g.policy.acl[4].str(), "permit ip 2001:db8:33::/64 2001:db8::/45");
  EXPECT_EQ(g.policy.tek_lifetime_s, 3600u);
  EXPECT_EQ(g.policy.rekey.mode, gdoi::RekeyTransport::Mode::Unicast);
  EXPECT_EQ(g.signing_key, (lab / "ks-rekey.pem").lexically_normal().string());
  EXPECT_EQ(g.authorization, (std::vector<gdoi::Prefix>{*gdoi::Prefix::parse("10.1.23.3"),
                                                        *gdoi::Prefix::parse("2001:db8:24::4")}));
}

TEST_F(KsConfigTest, ReferenceExampleParses) {
  std::string text =
      replace(read(kExamples / "ks.toml"), "/etc/covey/ks-rekey.pem\"", key("rsa2048.pem") + "\"");
  auto parsed = parse(text);
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  EXPECT_TRUE(parsed.problems.empty()) << all(parsed.problems);
}

// examples/container-host: one ACL line covers every host's container networks.
TEST_F(KsConfigTest, ContainerHostExampleParses) {
  std::string text =
      replace(read(kExamples / "container-host" / "ks.toml"), "/etc/covey/ks-rekey.pem\"", key("rsa2048.pem") + "\"");
  auto parsed = parse(text);
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  EXPECT_TRUE(parsed.problems.empty()) << all(parsed.problems);
}

// Uncommenting every "# key = value" line of the reference keeps it valid
// and changes nothing (only options that need other files or another mode
// stay commented): the reference documents real keys with their defaults.
TEST_F(KsConfigTest, ReferenceExampleShowsTheDefaults) {
  const std::string reference =
      replace(read(kExamples / "ks.toml"), "/etc/covey/ks-rekey.pem\"", key("rsa2048.pem") + "\"");
  const std::set<std::string> stay_commented = {
      "[server] keylog", "[server] address",      "[isakmp] certificate", "[isakmp] private_key",
      "[isakmp] ca",     "[group.rekey] address", "[group.rekey] port",   "[group.rekey] ttl"};
  std::istringstream in(reference);
  std::string uncommented, line, table;
  while (std::getline(in, line)) {
    if (line.rfind("[", 0) == 0) table = line.substr(0, line.find(']') + 1);
    if (table == "[[group]]") table = "[group]";
    auto end = line.find(" = ");
    bool option = line.rfind("# ", 0) == 0 && end != std::string::npos &&
                  std::all_of(line.begin() + 2, line.begin() + static_cast<long>(end),
                              [](char c) { return std::islower(static_cast<unsigned char>(c)) || c == '_'; });
    if (option && !stay_commented.count(table + " " + line.substr(2, end - 2))) line = line.substr(2);
    uncommented += line + "\n";
  }
  auto parsed = parse(uncommented);
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems) << uncommented;
  EXPECT_TRUE(parsed.problems.empty()) << all(parsed.problems);
  auto as_is = parse(reference);
  ASSERT_TRUE(as_is.ok()) << all(as_is.problems);
  EXPECT_EQ(parsed.config->groups[0].policy, as_is.config->groups[0].policy);
  EXPECT_EQ(parsed.config->groups[0].authorization, as_is.config->groups[0].authorization);
  EXPECT_EQ(parsed.config->server.listen, as_is.config->server.listen);
  EXPECT_EQ(parsed.config->isakmp.dh_group, as_is.config->isakmp.dh_group);
}

TEST_F(KsConfigTest, EveryOptionalKeyHasItsDefault) {
  auto parsed = parse(base());
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  EXPECT_TRUE(parsed.problems.empty()) << all(parsed.problems);
  const KsConfig& c = *parsed.config;

  EXPECT_EQ(c.server.listen, (std::vector<Address>{*Address::parse("0.0.0.0"), *Address::parse("::")}));
  EXPECT_EQ(c.server.port, 848);
  EXPECT_FALSE(c.server.address);
  EXPECT_EQ(c.server.max_half_open, 1024u);
  EXPECT_FALSE(c.server.workers);  // one per CPU the daemon may run on
  EXPECT_EQ(c.server.state_dir, "/var/lib/covey");
  EXPECT_EQ(c.server.control_socket, "/run/covey/ks.sock");
  EXPECT_EQ(c.server.keylog, "");
  EXPECT_EQ(c.server.user, "");  // stays who it was started as

  const Phase1Config& p1 = c.isakmp;
  EXPECT_TRUE(p1.pre_share());
  EXPECT_FALSE(p1.rsa_sig());
  EXPECT_TRUE(p1.peer_keys.empty());
  EXPECT_EQ(p1.encryption,
            (std::vector{crypto::CipherAlgorithm::Aes256Cbc, crypto::CipherAlgorithm::Aes128Cbc}));
  EXPECT_EQ(p1.hash, (std::vector{crypto::HashAlgorithm::Sha256, crypto::HashAlgorithm::Sha384,
                                  crypto::HashAlgorithm::Sha1}));
  EXPECT_EQ(p1.dh_group, (std::vector<std::uint16_t>{19, 20, 14}));
  EXPECT_EQ(p1.lifetime_s, 86400u);
  EXPECT_FALSE(p1.allow_legacy);

  ASSERT_EQ(c.groups.size(), 1u);
  const KsGroupConfig& g = c.groups[0];
  const gdoi::GroupPolicy& p = g.policy;
  EXPECT_EQ(p.tek, (gdoi::TekTransform{gdoi::TekTransform::Cipher::Aes256Cbc,
                                       gdoi::TekTransform::Integrity::HmacSha256_128}));
  EXPECT_EQ(p.tek_lifetime_s, 3600u);
  EXPECT_EQ(p.tbar_window_ms, 5000u);
  EXPECT_TRUE(p.fail_close_acl.empty());
  EXPECT_EQ(p.activation_delay_s, 0u);
  EXPECT_EQ(p.deactivation_delay_s, 0u);
  EXPECT_EQ(p.kek.cipher, crypto::CipherAlgorithm::Aes256Cbc);
  EXPECT_EQ(p.kek.lifetime_s, 86400u);
  EXPECT_EQ(p.kek.signature, gdoi::KekPolicy::Signature::Rsa);
  EXPECT_EQ(p.kek.signature_hash, crypto::HashAlgorithm::Sha256);
  EXPECT_EQ(p.kek.signature_key_bits, 2048);
  EXPECT_EQ(p.rekey.mode, gdoi::RekeyTransport::Mode::Unicast);
  EXPECT_EQ(p.rekey.port, 848);
  EXPECT_EQ(p.rekey.ttl, 16);
  EXPECT_EQ(p.rekey.retransmit_period_s, 10u);
  EXPECT_EQ(p.rekey.retransmit_count, 2u);
  EXPECT_EQ(g.authorization,
            (std::vector<gdoi::Prefix>{*gdoi::Prefix::parse("0.0.0.0/0"), *gdoi::Prefix::parse("::/0")}));
  EXPECT_TRUE(g.authorization_subjects.empty());
}

TEST_F(KsConfigTest, EveryOptionSet) {
  std::string text = base();
  text = replace(text, "port = 848\n",
                 "port = 1848\nlisten = [\"10.1.12.1\", \"2001:db8::1\"]\naddress = \"10.1.12.1\"\n"
                 "max_half_open = 64\nworkers = 0\nstate_dir = \"state\"\ncontrol_socket = \"/run/k.sock\"\nuser = \"covey\"\n");
  text = replace(text, "pre_shared_key = \"lab\"\n",
                 "pre_shared_key = \"lab\"\nencryption = [\"aes 128\"]\nhash = [\"sha\", \"sha384\"]\n"
                 "dh_group = [14]\nlifetime = 28800\n"
                 "[isakmp.peer_keys]\n\"10.1.23.3\" = \"gm3\"\n\"10.1.0.0/16\" = \"branches\"\n"
                 "\"2001:db8::/32\" = \"v6\"\n");
  text = replace(text, "lifetime = 3600\n",
                 "lifetime = 7200\ntransform = \"esp-aes 128 esp-sha-hmac\"\ntbar_window = \"off\"\n"
                 "fail_close = [\"permit ip 192.168.3.0/24 any\"]\nactivation_delay = 30\n"
                 "deactivation_delay = 60\nauthorization = [\"10.1.0.0/16\", \"any\"]\n");
  text +=
      "signature = \"rsa\"\nalgorithm = \"aes-128\"\nlifetime = 43200\ntransport = \"multicast\"\n"
      "address = \"239.192.1.1\"\nport = 1848\nttl = 8\nretransmit_period = 5\nretransmit_count = 3\n";
  auto parsed = parse(text);
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  EXPECT_TRUE(parsed.problems.empty()) << all(parsed.problems);
  const KsConfig& c = *parsed.config;
  EXPECT_EQ(c.server.port, 1848);
  EXPECT_EQ(c.server.listen.size(), 2u);
  EXPECT_EQ(c.server.max_half_open, 64u);
  EXPECT_EQ(c.server.workers, 0u);
  EXPECT_EQ(c.server.user, "covey");
  EXPECT_EQ(c.server.state_dir, (dir_ / "state").string());  // relative to the config's folder
  EXPECT_EQ(c.isakmp.encryption, std::vector{crypto::CipherAlgorithm::Aes128Cbc});
  EXPECT_EQ(c.isakmp.hash, (std::vector{crypto::HashAlgorithm::Sha1, crypto::HashAlgorithm::Sha384}));
  EXPECT_EQ(c.isakmp.dh_group, std::vector<std::uint16_t>{14});
  EXPECT_EQ(c.isakmp.lifetime_s, 28800u);

  // Longest prefix wins; the default covers the rest.
  auto psk = [&](const char* a) {
    const crypto::SecretBytes* k = c.isakmp.pre_shared_key_for(*Address::parse(a));
    return k ? std::string(k->view().begin(), k->view().end()) : std::string("(none)");
  };
  EXPECT_EQ(psk("10.1.23.3"), "gm3");
  EXPECT_EQ(psk("10.1.24.4"), "branches");
  EXPECT_EQ(psk("2001:db8::5"), "v6");
  EXPECT_EQ(psk("172.16.0.1"), "lab");

  const gdoi::GroupPolicy& p = c.groups[0].policy;
  EXPECT_EQ(p.tek_lifetime_s, 7200u);
  EXPECT_EQ(p.tek.str(), "esp-aes-128 esp-sha-hmac");
  EXPECT_FALSE(p.tbar_window_ms);
  ASSERT_EQ(p.fail_close_acl.size(), 1u);
  EXPECT_EQ(p.fail_close_acl[0].str(), "permit ip 192.168.3.0/24 any");
  EXPECT_EQ(p.activation_delay_s, 30u);
  EXPECT_EQ(p.deactivation_delay_s, 60u);
  EXPECT_EQ(c.groups[0].authorization.size(), 3u);  // the prefix, then any as both families
  EXPECT_EQ(p.kek.cipher, crypto::CipherAlgorithm::Aes128Cbc);
  EXPECT_EQ(p.kek.lifetime_s, 43200u);
  EXPECT_EQ(p.rekey.mode, gdoi::RekeyTransport::Mode::Multicast);
  EXPECT_EQ(p.rekey.multicast_address, *gdoi::Prefix::parse("239.192.1.1/32"));
  EXPECT_EQ(p.rekey.port, 1848);
  EXPECT_EQ(p.rekey.ttl, 8);
  EXPECT_EQ(p.rekey.retransmit_period_s, 5u);
  EXPECT_EQ(p.rekey.retransmit_count, 3u);
}

TEST_F(KsConfigTest, SeveralGroups) {
  std::string text =
      base() +
      "[[group]]\nname = \"VOICE\"\nidentity = 200\nacl = [\"permit udp 10.0.0.0/8 range 16384 32767 "
      "10.0.0.0/8\"]\n[group.rekey]\nsignature = \"ecdsa-p384\"\nsigning_key = \"" +
      key("p384.pem") + "\"\n";
  auto parsed = parse(text);
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  ASSERT_EQ(parsed.config->groups.size(), 2u);
  const gdoi::GroupPolicy& voice = parsed.config->groups[1].policy;
  EXPECT_EQ(voice.name, "VOICE");
  EXPECT_EQ(voice.identity, 200u);
  EXPECT_EQ(voice.kek.signature, gdoi::KekPolicy::Signature::EcdsaP384);
  EXPECT_EQ(voice.kek.signature_hash, crypto::HashAlgorithm::Sha384);
  EXPECT_EQ(voice.kek.signature_key_bits, 384);
}

TEST_F(KsConfigTest, EcdsaP256SigningKey) {
  std::string text = replace(base(), key("rsa2048.pem"), key("p256.pem")) + "signature = \"ecdsa-p256\"\n";
  auto parsed = parse(text);
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  EXPECT_EQ(parsed.config->groups[0].policy.kek.signature, gdoi::KekPolicy::Signature::EcdsaP256);
  EXPECT_EQ(parsed.config->groups[0].policy.kek.signature_hash, crypto::HashAlgorithm::Sha256);
}

// One row per class of mistake: replace `from` by `to` in base(); the error
// must be on the line holding `at` and its message must contain `message`.
struct ErrorRow {
  const char* what;
  std::string from, to, at, message;
};

TEST_F(KsConfigTest, EachMistakeIsReportedOnItsLine) {
  const std::string rekey_key = "signing_key = \"" + key("rsa2048.pem") + "\"";
  const std::vector<ErrorRow> rows = {
      {"TOML syntax", "identity = 134", "identity = = 134", "identity", "TOML syntax"},
      {"bad ACL line", "\"permit ip 192.168.0.0/16 192.168.0.0/16\"",
       "\"permit ip 192.168.0.0/16 192.168.0.0/33\"", "192.168.0.0/33", "group GET_VPN acl[1]"},
      {"port on a non-tcp/udp entry", "\"permit ip 192.168.0.0/16 192.168.0.0/16\"",
       "\"permit esp any eq 50 any\"", "permit esp", "only to tcp and udp"},
      {"unknown key, with suggestion", "lifetime = 3600", "liftime = 3600", "liftime",
       "unknown key \"liftime\" in group GET_VPN (did you mean \"lifetime\"?)"},
      {"unknown table key", "port = 848", "prot = 848", "prot", "did you mean \"port\"?"},
      {"unknown top-level table", "[server]", "[sever]", "[sever]", "did you mean \"server\"?"},
      {"unknown key, no suggestion", "lifetime = 3600", "colour = 3", "colour", "known keys are:"},
      {"duplicate identity", rekey_key,
       rekey_key +
           "\n[[group]]\nname = \"OTHER\"\nidentity = 134\nacl = [\"permit ip any any\"]\n[group.rekey]\n" +
           rekey_key,
       "identity = 134\nacl = [\"permit ip any any\"]",
       "identity 134 is already used by the [[group]] at line 7"},
      {"duplicate name", rekey_key,
       rekey_key +
           "\n[[group]]\nname = \"GET_VPN\"\nidentity = 135\nacl = [\"permit ip any any\"]\n[group.rekey]\n" +
           rekey_key,
       "name = \"GET_VPN\"\nidentity = 135", "group name \"GET_VPN\" is already used"},
      {"missing identity", "identity = 134\n", "", "[[group]]", "has no identity; add e.g. identity = 134"},
      {"empty user", "port = 848", "user = \"\"", "user", "[server] user is empty"},
      {"missing acl", "acl = [", "xacl = [", "[[group]]", "has no acl"},
      {"missing name", "name = \"GET_VPN\"\n", "", "[[group]]", "has no name"},
      {"missing signing key", rekey_key, "", "[group.rekey]", "has no signing_key"},
      {"missing rekey table", "[group.rekey]\n" + rekey_key, "", "[[group]]", "has no rekey"},
      {"[group] not [[group]]", "[[group]]", "[group]", "[group]\n", "double brackets"},
      {"bad group name", "name = \"GET_VPN\"", "name = \"GET VPN\"", "GET VPN", "letters, digits"},
      {"bad prefix in authorization", "lifetime = 3600", "authorization = [\"10.1.23.3/24\"]",
       "authorization", "did you mean 10.1.23.0/24?"},
      {"wrong type", "port = 848", "port = \"848\"", "port",
       "[server] port must be an integer, e.g. port = 848"},
      {"out of range", "port = 848", "port = 70000", "port", "out of range 1..65535"},
      {"workers out of range", "port = 848", "port = 848\nworkers = -1", "workers", "out of range 0..1024"},
      {"empty listen", "port = 848", "listen = []", "listen", "listen is empty"},
      {"bad listen address", "port = 848", "listen = [\"10.1.12.300\"]", "listen",
       "not an IPv4 or IPv6 address"},
      {"rsa key too small", key("rsa2048.pem"), key("rsa1024.pem"), "signing_key",
       "1024-bit RSA key; rekey signatures need 2048 bits or more"},
      {"key/algorithm mismatch (RSA key, ECDSA declared)", rekey_key,
       rekey_key + "\nsignature = \"ecdsa-p256\"", "signing_key",
       "holds a 2048-bit RSA key but signature = \"ecdsa-p256\""},
      {"key/algorithm mismatch (P-256 key, P-384 declared)", rekey_key,
       "signing_key = \"" + key("p256.pem") + "\"\nsignature = \"ecdsa-p384\"", "signing_key",
       "holds an EC prime256v1 key but signature = \"ecdsa-p384\""},
      {"key/algorithm mismatch (EC key, rsa by default)", key("rsa2048.pem"), key("p256.pem"), "signing_key",
       "but the default signature = \"rsa\""},
      {"unknown signature", rekey_key, rekey_key + "\nsignature = \"ecdsa\"", "signature",
       "did you mean \"ecdsa-p256\"?"},
      {"missing key file", key("rsa2048.pem"), key("absent.pem"), "signing_key", "No such file or directory"},
      {"key path is a folder", key("rsa2048.pem"), dir_.string(), "signing_key", "not a regular file"},
      {"key file is not a key", key("rsa2048.pem"), key("garbage.pem"), "signing_key",
       "is not a PEM private key"},
      {"3des without legacy", "pre_shared_key = \"lab\"", "pre_shared_key = \"lab\"\nencryption = [\"3des\"]",
       "encryption", "\"3des\" is legacy; set allow_legacy = true"},
      {"dh group 2 without legacy", "pre_shared_key = \"lab\"",
       "pre_shared_key = \"lab\"\ndh_group = [14, 2]", "dh_group",
       "dh_group 2 (MODP 1024) is legacy; set allow_legacy = true"},
      {"unsupported dh group", "pre_shared_key = \"lab\"", "pre_shared_key = \"lab\"\ndh_group = [21]",
       "dh_group", "write 14, 19 or 20"},
      {"unknown cipher", "pre_shared_key = \"lab\"", "pre_shared_key = \"lab\"\nencryption = [\"aes-265\"]",
       "encryption", "did you mean \"aes-256\"?"},
      {"no phase-1 authentication", "pre_shared_key = \"lab\"", "", "[isakmp]", "has no authentication"},
      {"empty pre-shared key", "pre_shared_key = \"lab\"", "pre_shared_key = \"\"", "pre_shared_key",
       "is empty"},
      {"bad peer key prefix", "pre_shared_key = \"lab\"", "[isakmp.peer_keys]\n\"10.1.23.0/33\" = \"x\"",
       "10.1.23.0/33", "must be 0..32"},
      {"half of rsa-sig", "pre_shared_key = \"lab\"",
       "pre_shared_key = \"lab\"\ncertificate = \"" + key("ks.crt") + "\"", "certificate",
       "need certificate, private_key and ca together; add private_key"},
      {"certificate and key do not match", "pre_shared_key = \"lab\"",
       "certificate = \"" + key("small.crt") + "\"\nprivate_key = \"" + key("rsa2048.pem") + "\"\nca = \"" +
           key("ks.crt") + "\"",
       "certificate", "does not belong to certificate"},
      {"EC phase-1 certificate", "pre_shared_key = \"lab\"",
       "certificate = \"" + key("ec.crt") + "\"\nprivate_key = \"" + key("p256.pem") + "\"\nca = \"" +
           key("ks.crt") + "\"",
       "certificate", "phase 1 signs with RSA"},
      {"subjects without certificates", "lifetime = 3600", "authorization_subjects = [\"CN=gm*\"]",
       "authorization_subjects", "[isakmp] has no certificate"},
      {"tbar window zero", "lifetime = 3600", "tbar_window = 0", "tbar_window", "1..100"},
      {"activation delay past the lifetime", "lifetime = 3600", "lifetime = 3600\nactivation_delay = 3600",
       "activation_delay", "shorter than the TEK lifetime"},
      {"lifetime too short", "lifetime = 3600", "lifetime = 10", "lifetime", "out of range 20.."},
      {"tek margin shorter than the activation delay and the retransmissions",
       "lifetime = 3600\n\n[group.rekey]\n" + rekey_key,
       "lifetime = 3600\nactivation_delay = 120\n\n[group.rekey]\n" + rekey_key + "\ntek_margin = 90",
       "tek_margin",
       "group GET_VPN rekey tek_margin = 90 s is shorter than activation_delay 120 s + retransmit_count 2 x "
       "retransmit_period 10 s + 5 s of key server ticks and transit = 145 s"},
      {"TEK lifetime too short for the retransmissions", "lifetime = 3600", "lifetime = 40", "[group.rekey]",
       "group GET_VPN rekey tek_margin (the default, 25 s: activation_delay 0 s + retransmit_count 2 x "
       "retransmit_period 10 s + 5 s of key server ticks and transit) leaves 15 s of the TEK lifetime "
       "([[group]] "
       "lifetime = 40 s) between two rekeys, not more than the 25 s a push takes to reach every member"},
      {"KEK lifetime too short for the retransmissions", rekey_key, rekey_key + "\nlifetime = 30",
       "[group.rekey]",
       "group GET_VPN rekey kek_margin (the default, 7 s) leaves 23 s of the KEK lifetime ([group.rekey] "
       "lifetime = "
       "30 s) between two rekeys, not more than the 25 s"},
      {"bad transform", "lifetime = 3600", "transform = \"esp-aes 256\"", "transform", "add esp-sha256-hmac"},
      {"multicast without address", rekey_key, rekey_key + "\ntransport = \"multicast\"", "[group.rekey]",
       "has no address"},
      {"multicast address not multicast", rekey_key,
       rekey_key + "\ntransport = \"multicast\"\naddress = \"10.1.12.1\"", "address = \"10",
       "not a multicast group"},
      {"IPv6 multicast of link scope", rekey_key,
       rekey_key + "\ntransport = \"multicast\"\naddress = \"ff02::1:3\"", "address = \"ff02",
       "group GET_VPN rekey address ff02::1:3 is not a site-local (ff05::/16) or organization-local "
       "(ff08::/16) "
       "IPv6 multicast group"},
      {"IPv6 global multicast", rekey_key, rekey_key + "\ntransport = \"multicast\"\naddress = \"ff0e::1:3\"",
       "address = \"ff0e", "group GET_VPN rekey address ff0e::1:3 is not a site-local"},
      {"IPv6 unicast as the multicast address", rekey_key,
       rekey_key + "\ntransport = \"multicast\"\naddress = \"2001:db8::1\"", "address = \"2001",
       "group GET_VPN rekey address 2001:db8::1 is not a multicast group"},
      {"unicast with a multicast option", rekey_key, rekey_key + "\nttl = 4", "ttl",
       "applies to multicast rekeys"},
      {"bad transport", rekey_key, rekey_key + "\ntransport = \"broadcast\"", "transport",
       "must be \"unicast\" or \"multicast\""},
      {"acl entry not a string", "\"deny udp any eq 848 any eq 848\",", "848,", "848,",
       "acl[0] must be a string"},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.what);
    std::string text = replace(base(), row.from, row.to);
    auto parsed = parse(text);
    EXPECT_FALSE(parsed.ok());
    ASSERT_FALSE(parsed.problems.empty());
    const std::uint32_t line = line_of(text, row.at);
    auto hit = std::find_if(parsed.problems.begin(), parsed.problems.end(), [&](const Problem& p) {
      return p.is_error() && p.line == line && p.message.find(row.message) != std::string::npos;
    });
    EXPECT_NE(hit, parsed.problems.end()) << "want line " << line << ": " << row.message << "\ngot:\n"
                                          << all(parsed.problems) << "in:\n"
                                          << text;
    for (const auto& p : parsed.problems) EXPECT_EQ(p.file, (dir_ / "ks.toml").string());
  }
}

// Rekeys to an IPv6 group: site-local (ff05::/16) and organization-local
// (ff08::/16) scopes, the ones a GET VPN WAN spans; ttl is the hop limit.
TEST_F(KsConfigTest, IPv6MulticastRekeys) {
  for (const char* group : {"ff05::1:3", "ff08::db8:1"}) {
    SCOPED_TRACE(group);
    std::string text = base();
    text = replace(
        text, "\"permit ip 192.168.0.0/16 192.168.0.0/16\"",
        "\"permit ip 192.168.0.0/16 192.168.0.0/16\", \"permit ipv6 2001:db8:3::/64 2001:db8:4::/64\"");
    text += std::string("transport = \"multicast\"\naddress = \"") + group + "\"\nttl = 3\n";
    auto parsed = parse(text);
    ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
    const gdoi::GroupPolicy& p = parsed.config->groups[0].policy;
    EXPECT_EQ(p.rekey.mode, gdoi::RekeyTransport::Mode::Multicast);
    EXPECT_EQ(p.rekey.multicast_address, gdoi::Prefix::host(*Address::parse(group)));
    EXPECT_EQ(p.rekey.ttl, 3);
    ASSERT_EQ(p.acl.size(), 3u);
    EXPECT_EQ(p.acl[2].str(), "permit ip 2001:db8:3::/64 2001:db8:4::/64");
  }
}

TEST_F(KsConfigTest, NoGroupAtAll) {
  auto parsed = parse("[isakmp]\npre_shared_key = \"lab\"\n");
  ASSERT_FALSE(parsed.ok());
  ASSERT_EQ(parsed.problems.size(), 1u) << all(parsed.problems);
  EXPECT_EQ(parsed.problems[0].line, 1u);
  EXPECT_NE(parsed.problems[0].message.find("no [[group]]: add one"), std::string::npos);
}

TEST_F(KsConfigTest, AclErrorPointsAtTheWord) {
  std::string text =
      replace(base(), "\"deny udp any eq 848 any eq 848\"", "\"deny udp any eq 848 any eq 84800\"");
  auto parsed = parse(text);
  ASSERT_FALSE(parsed.ok());
  ASSERT_EQ(parsed.problems.size(), 1u) << all(parsed.problems);
  const Problem& p = parsed.problems[0];
  EXPECT_EQ(p.line, 11u);
  // Column of "84800" in: `  "deny udp any eq 848 any eq 84800",`
  EXPECT_EQ(p.column, 31u);
  EXPECT_EQ(p.str(),
            (dir_ / "ks.toml").string() +
                ":11:31: error: group GET_VPN acl[0] \"deny udp any eq 848 any eq 84800\": \"84800\" is "
                "not a port (0-65535 or a name such as isakmp)");
}

TEST_F(KsConfigTest, EveryErrorIsReportedNotJustTheFirst) {
  std::string text = replace(base(), "port = 848", "prot = 848");
  text = replace(text, "identity = 134", "identity = -1");
  text = replace(text, "192.168.0.0/16 192.168.0.0/16", "192.168.0.0/16 192.168.0.1/16");
  auto parsed = parse(text);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(count(parsed.problems, Problem::Severity::Error), 3u) << all(parsed.problems);
  // In file order.
  EXPECT_TRUE(std::is_sorted(parsed.problems.begin(), parsed.problems.end(),
                             [](const Problem& a, const Problem& b) { return a.line < b.line; }));
  EXPECT_NE(all(parsed.problems).find("3 errors, 0 warnings"), std::string::npos) << all(parsed.problems);
}

struct WarningRow {
  const char* what;
  std::string from, to, at, message;
};

TEST_F(KsConfigTest, WarningsComeWithAValidConfig) {
  const std::vector<WarningRow> rows = {
      {"GCM TEK", "lifetime = 3600", "transform = \"esp-gcm 256\"", "transform",
       "covey-gm refuses GCM TEKs, since Linux's GCM IV cannot carry the RFC 6054 sender ID"},
      {"3DES TEK", "lifetime = 3600", "transform = \"esp-3des esp-sha-hmac\"", "transform", "3DES"},
      {"3DES phase 1 with legacy", "pre_shared_key = \"lab\"",
       "pre_shared_key = \"lab\"\nallow_legacy = true\nencryption = [\"aes-256\", \"3des\"]", "encryption",
       "weak"},
      {"DH group 2 with legacy", "pre_shared_key = \"lab\"",
       "pre_shared_key = \"lab\"\nallow_legacy = true\ndh_group = [14, 2]", "dh_group", "too small"},
      {"3DES KEK", "signing_key", "algorithm = \"3des\"\nsigning_key", "algorithm", "weak"},
      {"tiny TEK lifetime", "lifetime = 3600", "lifetime = 60", "lifetime", "very short"},
      {"keylog on", "port = 848", "keylog = \"/tmp/ks.keylog\"", "keylog", "anyone who reads it can decrypt"},
      {"no permit entry", "\"permit ip 192.168.0.0/16 192.168.0.0/16\",", "", "acl", "no permit entry"},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.what);
    std::string text = replace(base(), row.from, row.to);
    auto parsed = parse(text);
    ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
    ASSERT_EQ(parsed.problems.size(), 1u) << all(parsed.problems);
    const Problem& p = parsed.problems[0];
    EXPECT_FALSE(p.is_error());
    EXPECT_EQ(p.line, line_of(text, row.at));
    EXPECT_NE(p.message.find(row.message), std::string::npos) << p.message;
    EXPECT_NE(p.str().find(": warning: "), std::string::npos);
  }
}

TEST_F(KsConfigTest, GcmPolicyIsKeptAsWritten) {
  auto parsed = parse(replace(base(), "lifetime = 3600", "transform = \"esp-gcm 128\""));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed.config->groups[0].policy.tek.cipher, gdoi::TekTransform::Cipher::AesGcm128);
}

TEST_F(KsConfigTest, WorldReadableSigningKeyWarns) {
  fs::copy_file(dir_ / "rsa2048.pem", dir_ / "open.pem", fs::copy_options::overwrite_existing);
  fs::permissions(dir_ / "open.pem", fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);
  auto parsed = parse(replace(base(), key("rsa2048.pem"), key("open.pem")));
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  ASSERT_EQ(parsed.problems.size(), 1u);
  EXPECT_NE(parsed.problems[0].message.find("chmod 600"), std::string::npos);
}

TEST_F(KsConfigTest, UnreadableSigningKey) {
  fs::copy_file(dir_ / "rsa2048.pem", dir_ / "locked.pem", fs::copy_options::overwrite_existing);
  fs::permissions(dir_ / "locked.pem", fs::perms::none);
  const std::string text = replace(base(), key("rsa2048.pem"), key("locked.pem"));
  auto refused = [&] {
    auto parsed = parse(text);
    return !parsed.ok() && parsed.problems.size() == 1 && parsed.problems[0].line == 17 &&
           parsed.problems[0].message.find("Permission denied") != std::string::npos;
  };
  if (::geteuid() != 0) {
    EXPECT_TRUE(refused());
    return;
  }
  // Root reads a mode-000 file: check as "nobody" in a child process.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    ::_exit(refused() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: could not become nobody; 1: not refused as unreadable";
}

TEST_F(KsConfigTest, RsaCertificates) {
  std::string text = replace(base(), "pre_shared_key = \"lab\"",
                             "certificate = \"ks.crt\"\nprivate_key = \"rsa2048.pem\"\nca = \"ks.crt\"");
  text = replace(text, "lifetime = 3600", "authorization_subjects = [\"CN=gm*\", \"CN=ks.covey.lab\"]");
  auto parsed = parse(text);
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  const KsConfig& c = *parsed.config;
  EXPECT_TRUE(c.isakmp.rsa_sig());
  EXPECT_FALSE(c.isakmp.pre_share());
  EXPECT_EQ(c.isakmp.certificate, key("ks.crt"));  // relative to the config's folder
  EXPECT_EQ(c.groups[0].authorization_subjects, (std::vector<std::string>{"CN=gm*", "CN=ks.covey.lab"}));

  auto bad = parse(replace(text, "\"CN=gm*\"", "\"CN=*.lab\""));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(all(bad.problems).find("a prefix ending in '*'"), std::string::npos) << all(bad.problems);
}

TEST_F(KsConfigTest, MissingConfigFile) {
  auto parsed = load_ks_config((dir_ / "nowhere.toml").string());
  ASSERT_FALSE(parsed.ok());
  ASSERT_EQ(parsed.problems.size(), 1u);
  EXPECT_EQ(parsed.problems[0].str(), (dir_ / "nowhere.toml").string() +
                                          ": error: cannot read the config file: No such file or directory");
}

TEST_F(KsConfigTest, ClusterSection) {
  write(dir_ / "cluster.key", std::string(64, 'a') + "\n");
  const std::string cluster = "\n[cluster]\n"
                              "endpoints = [\"http://127.0.0.1:2379\", \"http://[::1]:2380\"]\n"
                              "name = \"ks1\"\n"
                              "priority = 100\n"
                              "lease_ttl = 3\n"
                              "sealing_key = \"cluster.key\"\n"
                              "prefix = \"/covey/lab\"\n";
  const std::string server = replace(base(), "port = 848", "port = 848\naddress = \"10.1.12.1\"");
  auto parsed = parse(server + cluster);
  ASSERT_TRUE(parsed.ok()) << all(parsed.problems);
  ASSERT_TRUE(parsed.config->cluster);
  const KsClusterConfig& c = *parsed.config->cluster;
  EXPECT_EQ(c.endpoints, (std::vector<std::string>{"http://127.0.0.1:2379", "http://[::1]:2380"}));
  EXPECT_EQ(c.name, "ks1");
  EXPECT_EQ(c.priority, 100u);
  EXPECT_EQ(c.lease_ttl_s, 3u);
  EXPECT_EQ(c.sealing_key, key("cluster.key"));
  EXPECT_EQ(c.prefix, "/covey/lab");
  // Plain http is for a lab on loopback, and said so.
  EXPECT_EQ(count(parsed.problems, Problem::Severity::Warning), 1u) << all(parsed.problems);
  EXPECT_NE(all(parsed.problems).find("plain http (loopback only)"), std::string::npos) << all(parsed.problems);
  EXPECT_FALSE(parse(base()).config->cluster) << "no [cluster]: a key server alone";

  struct Case {
    const char* what;
    std::string text;
    const char* says;
  } cases[] = {
      {"http to another host", replace(server + cluster, "http://127.0.0.1:2379", "http://10.1.12.21:2379"),
       "[cluster] endpoints \"http://10.1.12.21:2379\" is plain http to another host"},
      {"https without a CA", replace(server + cluster, "http://127.0.0.1:2379", "https://10.1.12.21:2379"),
       "ca = \"/etc/covey/etcd-ca.pem\""},
      {"no [server] address", base() + cluster, "[cluster] needs [server] address"},
      {"no sealing key", replace(server + cluster, "sealing_key = \"cluster.key\"\n", ""), "sealing_key"},
      {"missing sealing key file", replace(server + cluster, "cluster.key", "nowhere.key"), "nowhere.key"},
      {"a name with a slash", replace(server + cluster, "\"ks1\"", "\"ks/1\""), "may hold only letters"},
      {"priority 0", replace(server + cluster, "priority = 100", "priority = 0"), "priority"},
      {"a prefix ending in /", replace(server + cluster, "/covey/lab", "/covey/"), "must start with '/' and not end"},
  };
  for (const Case& k : cases) {
    auto bad = parse(k.text);
    EXPECT_FALSE(bad.ok()) << k.what;
    EXPECT_NE(all(bad.problems).find(k.says), std::string::npos) << k.what << ": " << all(bad.problems);
  }
}

}  // namespace
}  // namespace covey::config
