#include "config/ks_config.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "config/config_common.h"
#include "config/key_files.h"
#include "config/policy_syntax.h"
#include "ks/schedule.h"

namespace covey::config {

using detail::Diagnostics;
using detail::TableReader;

namespace {

constexpr std::string_view kAclExample = "acl = [\"permit ip 192.168.0.0/16 192.168.0.0/16\"]";

void read_server(const toml::table& t, const std::string& folder, Diagnostics& d, KsServerConfig& s) {
  TableReader r(t, "[server]", d);
  if (auto list = r.strings("listen", "listen = [\"0.0.0.0\", \"::\"]")) {
    s.listen.clear();
    for (const auto& item : *list) {
      auto a = Address::parse(item.value);
      if (!a) {
        d.error(item.at,
                "[server] listen \"" + item.value +
                    "\" is not an IPv4 or IPv6 address; write e.g. \"10.1.12.1\" or \"0.0.0.0\" for all");
      } else if (std::find(s.listen.begin(), s.listen.end(), *a) != s.listen.end()) {
        d.error(item.at, "[server] listen lists " + item.value + " twice");
      } else {
        s.listen.push_back(*a);
      }
    }
    if (list->empty())
      d.error(r.where("listen"), "[server] listen is empty; remove it to listen on 0.0.0.0 and ::");
  }
  if (auto v = r.integer("port", 1, 65535, "port = 848")) s.port = static_cast<std::uint16_t>(*v);
  s.address = detail::read_address(r, "address", "address = \"10.1.12.1\"");
  if (auto v = r.integer("max_half_open", 1, 1'000'000, "max_half_open = 1024"))
    s.max_half_open = static_cast<std::uint32_t>(*v);
  if (auto v = r.integer("workers", 0, 1024, "workers = 2")) s.workers = static_cast<std::uint32_t>(*v);
  detail::read_daemon_files(r, folder, s.state_dir, s.control_socket, s.keylog, "ks");
  if (auto v = r.string("user", "user = \"covey\"")) {
    if (v->empty())
      d.error(r.where("user"), "[server] user is empty; remove it to stay the user covey-ks is started as");
    else
      s.user = *v;
  }
  r.finish();
}

bool loopback_url(const std::string& url) {
  for (const char* host : {"http://127.", "http://[::1]", "http://localhost:", "http://localhost/"})
    if (url.rfind(host, 0) == 0) return true;
  return url == "http://localhost";
}

void read_cluster(const toml::table& t, const std::string& folder, const KsServerConfig& server, Diagnostics& d,
                  KsClusterConfig& c) {
  TableReader r(t, "[cluster]", d);
  bool plain = false;
  if (auto list = r.strings("endpoints", "endpoints = [\"https://10.1.12.21:2379\", \"https://10.1.12.22:2379\"]")) {
    for (const auto& item : *list) {
      const bool https = item.value.rfind("https://", 0) == 0;
      if (!https && item.value.rfind("http://", 0) != 0) {
        d.error(item.at, "[cluster] endpoints \"" + item.value +
                             "\" is not an etcd client URL; write e.g. \"https://10.1.12.21:2379\"");
        continue;
      }
      if (!https && !loopback_url(item.value)) {
        d.error(item.at, "[cluster] endpoints \"" + item.value +
                             "\" is plain http to another host: etcd then carries the cluster's state and "
                             "leadership in clear; use https:// with ca, cert and key");
        continue;
      }
      plain = plain || !https;
      c.endpoints.push_back(item.value);
    }
    if (list->empty()) d.error(r.where("endpoints"), "[cluster] endpoints is empty; list the etcd members");
  } else {
    r.missing("endpoints", "endpoints = [\"https://10.1.12.21:2379\"]");
  }
  if (plain)
    d.warning(r.where("endpoints"), "[cluster] endpoints use plain http (loopback only): fine for a lab, not for a "
                                    "deployment, where etcd should be reached over https");
  auto file = [&](const char* key, std::string& out) {
    if (auto v = r.string(key, std::string(key) + " = \"/etc/covey/etcd-" + key + ".pem\"")) {
      out = detail::resolve_path(folder, *v);
      if (auto why = detail::unreadable(out)) d.error(r.where(key), "[cluster] " + std::string(key) + " " + out + ": " + *why);
    }
  };
  file("ca", c.ca);
  file("cert", c.cert);
  file("key", c.key);
  const bool any_https = std::any_of(c.endpoints.begin(), c.endpoints.end(),
                                     [](const std::string& e) { return e.rfind("https://", 0) == 0; });
  if (any_https && c.ca.empty())
    r.missing("ca", "ca = \"/etc/covey/etcd-ca.pem\" (the CA of etcd's server certificates, for https://)");
  if (c.cert.empty() != c.key.empty())
    d.error(r.where(c.cert.empty() ? "key" : "cert"), "[cluster] cert and key go together: the client certificate "
                                                      "and its private key");
  if (auto v = r.string("name", "name = \"ks1\"")) c.name = *v;
  if (c.name.empty()) r.missing("name", "name = \"ks1\" (this key server's name in the cluster)");
  for (char ch : c.name)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.')) {
      d.error(r.where("name"), "[cluster] name \"" + c.name + "\" may hold only letters, digits, '-', '_' and '.'");
      break;
    }
  if (auto v = r.integer("priority", 1, 255, "priority = 100")) c.priority = static_cast<std::uint32_t>(*v);
  if (auto v = r.integer("lease_ttl", 2, 60, "lease_ttl = 5")) c.lease_ttl_s = static_cast<std::uint32_t>(*v);
  if (auto v = r.string("sealing_key", "sealing_key = \"/etc/covey/cluster.key\"")) {
    c.sealing_key = detail::resolve_path(folder, *v);
    if (auto why = detail::unreadable(c.sealing_key))
      d.error(r.where("sealing_key"), "[cluster] sealing_key " + c.sealing_key + ": " + *why);
  } else {
    r.missing("sealing_key", "sealing_key = \"/etc/covey/cluster.key\" (openssl rand -hex 32; the same on every "
                             "key server of the cluster)");
  }
  if (auto v = r.string("prefix", "prefix = \"/covey\"")) {
    if (v->empty() || (*v)[0] != '/' || v->back() == '/')
      d.error(r.where("prefix"), "[cluster] prefix \"" + *v + "\" must start with '/' and not end with one, e.g. \"/covey\"");
    else
      c.prefix = *v;
  }
  if (!server.address)
    d.error(r.where(), "[cluster] needs [server] address: the address members and the other key servers know this "
                       "one by, which rekeys leave from and which breaks priority ties");
  r.finish();
}

void read_transform(TableReader& r, gdoi::TekTransform& tek) {
  auto text = r.string("transform", "transform = \"esp-aes 256 esp-sha256-hmac\"");
  if (!text) return;
  auto parsed = parse_tek_transform(*text);
  if (auto* err = std::get_if<SyntaxError>(&parsed)) {
    r.diagnostics().error(r.where("transform"), r.name() + " transform \"" + *text + "\": " + err->message);
    return;
  }
  tek = std::get<gdoi::TekTransform>(parsed);
  using Cipher = gdoi::TekTransform::Cipher;
  if (tek.cipher == Cipher::AesGcm128 || tek.cipher == Cipher::AesGcm256) {
    // DESIGN.md, fact 3: RFC 6407 needs the sender ID in a GCM IV; the kernel's seqiv cannot carry it.
    r.diagnostics().warning(
        r.where("transform"),
        r.name() + " transform \"" + *text +
            "\": covey-gm refuses GCM TEKs, since Linux's GCM IV cannot carry the RFC 6054 "
            "sender ID that makes IVs unique among many senders on one key; write "
            "\"esp-aes 256 esp-sha256-hmac\"");
  } else if (tek.cipher == Cipher::TripleDesCbc) {
    r.diagnostics().warning(
        r.where("transform"),
        r.name() + " transform \"" + *text + "\": 3DES (64-bit blocks) is weak; move members to esp-aes 256");
  }
}

// Replay protection: TBAR window in seconds (Cisco: replay time window-size 5), or "off".
void read_tbar(TableReader& r, std::optional<std::uint32_t>& window_ms) {
  const toml::node* n = r.node("tbar_window");
  if (!n) return;
  if (auto s = n->as_string(); s && s->get() == "off") {
    window_ms = std::nullopt;
    return;
  }
  if (n->is_integer() && n->as_integer()->get() >= 1 && n->as_integer()->get() <= 100) {
    window_ms = static_cast<std::uint32_t>(n->as_integer()->get() * 1000);
    return;
  }
  r.diagnostics().error(n->source(), r.name() +
                                         " tbar_window must be a number of seconds 1..100 (e.g. "
                                         "tbar_window = 5) or \"off\" to turn replay checks off");
}

void read_signing_key(TableReader& r, const std::string& folder, KsGroupConfig& g) {
  Diagnostics& d = r.diagnostics();
  gdoi::KekPolicy& kek = g.policy.kek;
  auto sig = r.string("signature", "signature = \"rsa\"");
  auto path = r.string("signing_key", "signing_key = \"/etc/covey/ks-rekey.pem\"");
  if (sig) {
    if (*sig == "rsa")
      kek.signature = gdoi::KekPolicy::Signature::Rsa;
    else if (*sig == "ecdsa-p256")
      kek.signature = gdoi::KekPolicy::Signature::EcdsaP256;
    else if (*sig == "ecdsa-p384")
      kek.signature = gdoi::KekPolicy::Signature::EcdsaP384;
    else {
      d.error(r.where("signature"), r.name() + " signature \"" + *sig + "\" is not supported" +
                                        detail::did_you_mean(*sig, {"rsa", "ecdsa-p256", "ecdsa-p384"}) +
                                        "; write rsa, ecdsa-p256 or ecdsa-p384");
      return;
    }
  }
  kek.signature_hash = kek.signature == gdoi::KekPolicy::Signature::EcdsaP384 ? crypto::HashAlgorithm::Sha384
                                                                              : crypto::HashAlgorithm::Sha256;

  if (!path) {
    if (!r.node("signing_key")) r.missing("signing_key", "signing_key = \"/etc/covey/ks-rekey.pem\"");
    return;
  }
  g.signing_key = detail::resolve_path(folder, *path);
  const std::string generate =
      kek.signature == gdoi::KekPolicy::Signature::Rsa
          ? "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + g.signing_key
          : "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-" +
                std::string(kek.signature == gdoi::KekPolicy::Signature::EcdsaP256 ? "256" : "384") +
                " -out " + g.signing_key;
  auto read = detail::read_private_key(g.signing_key);
  const std::string field = r.name() + " signing_key \"" + *path + "\"";
  if (auto* why = std::get_if<std::string>(&read)) {
    d.error(r.where("signing_key"), field + ": " + *why + "; create one with: " + generate);
    return;
  }
  const auto& key = std::get<detail::KeyInfo>(read);
  const std::string declared = sig ? "signature = \"" + *sig + "\"" : "the default signature = \"rsa\"";
  const std::string have = key.type == "EC" ? "an EC " + key.curve + " key"
                                            : "a " + std::to_string(key.bits) + "-bit " + key.type + " key";
  switch (kek.signature) {
    case gdoi::KekPolicy::Signature::Rsa:
      if (key.type != "RSA") {
        d.error(r.where("signing_key"),
                field + " holds " + have + " but " + declared +
                    "; write signature = \"ecdsa-p256\" or \"ecdsa-p384\" to match, or "
                    "create an RSA key: " +
                    generate);
        return;
      }
      if (key.bits < 2048) {
        d.error(r.where("signing_key"),
                field + " is a " + std::to_string(key.bits) +
                    "-bit RSA key; rekey signatures need 2048 bits or more: " + generate);
        return;
      }
      break;
    case gdoi::KekPolicy::Signature::EcdsaP256:
    case gdoi::KekPolicy::Signature::EcdsaP384: {
      const char* curve = kek.signature == gdoi::KekPolicy::Signature::EcdsaP256 ? "prime256v1" : "secp384r1";
      if (key.type != "EC" || key.curve != curve) {
        d.error(r.where("signing_key"), field + " holds " + have + " but " + declared +
                                            "; make them match, e.g. create the key with: " + generate);
        return;
      }
      break;
    }
  }
  kek.signature_key_bits = static_cast<std::uint16_t>(key.bits);
  if (key.others_can_read)
    d.warning(r.where("signing_key"), field + " is readable by every user; chmod 600 it");
}

// When rekeys are pushed: this long before the TEK (KEK) expires. Whether
// the group's schedule can work is ks/schedule.h's to say, as the key
// server schedules by it.
void read_margins(TableReader& r, KsGroupConfig& g) {
  Diagnostics& d = r.diagnostics();
  ks::RekeyMargins m;
  if (auto v = r.integer("tek_margin", 1, 0xffffffff, "tek_margin = 90")) m.tek_s = static_cast<std::uint32_t>(*v);
  if (auto v = r.integer("kek_margin", 1, 0xffffffff, "kek_margin = 300")) m.kek_s = static_cast<std::uint32_t>(*v);
  const auto problems = ks::check_schedule(g.policy, m);
  for (const auto& problem : problems) d.error(r.where(problem.key), r.name() + " " + problem.message);
  if (!problems.empty()) return;
  g.tek_margin_s = m.tek_s;
  g.kek_margin_s = m.kek_s;
}

// [group.rekey]: the KEK and how GROUPKEY-PUSH messages travel.
void read_rekey(const toml::table& t, const std::string& group, const std::string& folder, Diagnostics& d,
                KsGroupConfig& g) {
  TableReader r(t, "group " + group + " rekey", d);
  gdoi::KekPolicy& kek = g.policy.kek;
  gdoi::RekeyTransport& rekey = g.policy.rekey;

  if (auto v = r.string("algorithm", "algorithm = \"aes-256\"")) {
    std::string a = *v;
    std::replace(a.begin(), a.end(), ' ', '-');  // IOS writes "rekey algorithm aes 256"
    if (a == "aes-256")
      kek.cipher = crypto::CipherAlgorithm::Aes256Cbc;
    else if (a == "aes-128")
      kek.cipher = crypto::CipherAlgorithm::Aes128Cbc;
    else if (a == "3des") {
      kek.cipher = crypto::CipherAlgorithm::TripleDesCbc;
      d.warning(r.where("algorithm"), r.name() + " algorithm \"3des\" is weak; write \"aes-256\"");
    } else {
      d.error(r.where("algorithm"), r.name() + " algorithm \"" + *v + "\" is not supported" +
                                        detail::did_you_mean(a, {"aes-256", "aes-128", "3des"}) +
                                        "; write aes-256 or aes-128");
    }
  }
  if (auto v = detail::read_lifetime(r, "lifetime", "lifetime = 86400")) kek.lifetime_s = *v;
  read_signing_key(r, folder, g);

  if (auto v = r.string("transport", "transport = \"unicast\"")) {
    if (*v == "unicast")
      rekey.mode = gdoi::RekeyTransport::Mode::Unicast;
    else if (*v == "multicast")
      rekey.mode = gdoi::RekeyTransport::Mode::Multicast;
    else
      d.error(r.where("transport"),
              r.name() + " transport \"" + *v + "\" must be \"unicast\" or \"multicast\"");
  }
  const bool multicast = rekey.mode == gdoi::RekeyTransport::Mode::Multicast;
  auto address = detail::read_address(r, "address", "address = \"239.192.1.1\"");
  auto port = r.integer("port", 1, 65535, "port = 848");
  auto ttl = r.integer("ttl", 1, 255, "ttl = 16");
  if (multicast) {
    if (address) {
      const bool is_multicast =
          address->family == 4 ? (address->bytes[0] & 0xf0) == 0xe0 : address->bytes[0] == 0xff;
      // An IPv6 group's scope is in its address (RFC 4291 2.7): link-local
      // (ff02::) never crosses a router, global (ff0e::) leaves the
      // enterprise. A GET VPN WAN is a site's or an organization's.
      const bool wan_scope = address->family == 4 || (address->bytes[1] == 0x05 || address->bytes[1] == 0x08);
      if (!is_multicast) {
        d.error(r.where("address"), r.name() + " address " + address->str() +
                                        " is not a multicast group; write one in 239.0.0.0/8 (or ff05::/16)");
      } else if (!wan_scope) {
        d.error(r.where("address"),
                r.name() + " address " + address->str() +
                    " is not a site-local (ff05::/16) or organization-local (ff08::/16) IPv6 "
                    "multicast group, the scopes a GET VPN WAN spans; write e.g. ff05::1:3");
      }
      rekey.multicast_address = gdoi::Prefix::host(*address);
    } else if (!r.node("address")) {
      r.missing("address", "address = \"239.192.1.1\" (the multicast group rekeys go to)");
    }
    if (port) rekey.port = static_cast<std::uint16_t>(*port);
    if (ttl) rekey.ttl = static_cast<std::uint8_t>(*ttl);
  } else {
    for (std::string_view key : {"address", "port", "ttl"}) {
      if (r.node(key)) {
        d.error(r.where(key),
                r.name() + " " + std::string(key) +
                    " applies to multicast rekeys; unicast rekeys go to each member's own address. "
                    "Remove it or write transport = \"multicast\"");
      }
    }
  }
  if (auto v = r.integer("retransmit_period", 1, 3600, "retransmit_period = 10"))
    rekey.retransmit_period_s = static_cast<std::uint32_t>(*v);
  if (auto v = r.integer("retransmit_count", 0, 10, "retransmit_count = 2"))
    rekey.retransmit_count = static_cast<std::uint32_t>(*v);
  read_margins(r, g);
  r.finish();
}

void read_authorization(TableReader& r, const Phase1Config& isakmp, KsGroupConfig& g) {
  Diagnostics& d = r.diagnostics();
  g.authorization = {*gdoi::Prefix::parse("0.0.0.0/0"), *gdoi::Prefix::parse("::/0")};
  if (auto list = r.strings("authorization", "authorization = [\"10.1.0.0/16\"]")) {
    g.authorization.clear();
    for (const auto& item : *list) {
      std::string why;
      auto p = gdoi::Prefix::parse(item.value, &why);
      if (!p) {
        d.error(item.at, r.name() + " authorization \"" + item.value + "\": " + why +
                             "; write an address, a prefix such as 10.1.0.0/16, or any");
      } else if (p->is_any()) {  // "any" admits both families, as the default does
        g.authorization.push_back(*gdoi::Prefix::parse("0.0.0.0/0"));
        g.authorization.push_back(*gdoi::Prefix::parse("::/0"));
      } else {
        g.authorization.push_back(*p);
      }
    }
  }
  if (auto list = r.strings("authorization_subjects", "authorization_subjects = [\"CN=gm*\"]")) {
    if (!isakmp.rsa_sig() && !list->empty()) {
      d.error(r.where("authorization_subjects"),
              r.name() +
                  " authorization_subjects match certificate subjects, but [isakmp] has no certificate; "
                  "add certificate, private_key and ca to [isakmp], or remove authorization_subjects");
    }
    for (const auto& item : *list) {
      auto star = item.value.find('*');
      if (item.value.empty() || (star != std::string::npos && star + 1 != item.value.size())) {
        d.error(item.at, r.name() + " authorization_subjects \"" + item.value +
                             "\": write an exact subject, or a prefix ending in '*' (\"CN=gm*\")");
        continue;
      }
      g.authorization_subjects.push_back(item.value);
    }
  }
}

bool valid_group_name(const std::string& name) {
  // The name becomes a folder under /sys/fs/bpf/covey/ and the state directory.
  return !name.empty() && name.size() <= 64 && name != "." && name != ".." &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
         });
}

KsGroupConfig read_group(const toml::table& t, std::size_t index, const std::string& folder,
                         const Phase1Config& isakmp, Diagnostics& d) {
  TableReader r(t, "[[group]] #" + std::to_string(index + 1), d);
  KsGroupConfig g;
  gdoi::GroupPolicy& policy = g.policy;

  auto name = r.string("name", "name = \"GET_VPN\"");
  if (name) {
    if (!valid_group_name(*name)) {
      d.error(r.where("name"),
              r.name() + " name \"" + *name +
                  "\" must be 1-64 letters, digits, '_', '-' or '.', e.g. name = \"GET_VPN\"");
    } else {
      policy.name = *name;
      r.rename("group " + *name);
    }
  } else if (!r.node("name")) {
    r.missing("name", "name = \"GET_VPN\"");
  }

  if (auto v = r.integer("identity", 1, 0xffffffff, "identity = 134"))
    policy.identity = static_cast<std::uint32_t>(*v);
  else if (!r.node("identity"))
    r.missing("identity", "identity = 134 (the GDOI group number members ask for)");

  if (auto acl = detail::read_acl(r, "acl", kAclExample)) {
    policy.acl = std::move(*acl);
    const std::size_t written = r.node("acl")->as_array()->size();
    if (written == 0) {
      d.error(r.where("acl"),
              r.name() + " acl is empty; list the traffic to encrypt, e.g. " + std::string(kAclExample));
    } else if (policy.acl.size() == written &&
               std::none_of(policy.acl.begin(), policy.acl.end(),
                            [](const auto& e) { return e.action == gdoi::AclEntry::Action::Permit; })) {
      d.warning(r.where("acl"), r.name() +
                                    " acl has no permit entry, so members encrypt nothing; add e.g. "
                                    "\"permit ip 192.168.0.0/16 192.168.0.0/16\"");
    }
  } else if (!r.node("acl")) {
    r.missing("acl", std::string(kAclExample));
  }

  read_transform(r, policy.tek);
  // 20 s: the shortest TEK whose scheduled rekey (a quarter of the lifetime
  // before its end, by default) still leaves members 5 s to take the push;
  // ks::check_schedule refuses more when retransmissions and
  // activation_delay need it.
  if (auto v = detail::read_lifetime(r, "lifetime", "lifetime = 3600", 20)) policy.tek_lifetime_s = *v;
  read_tbar(r, policy.tbar_window_ms);
  if (auto acl = detail::read_acl(r, "fail_close", kAclExample)) policy.fail_close_acl = std::move(*acl);

  for (auto [key, field] : {std::pair{"activation_delay", &policy.activation_delay_s},
                            std::pair{"deactivation_delay", &policy.deactivation_delay_s}}) {
    auto v = r.integer(key, 0, 86400, std::string(key) + " = 30");
    if (!v) continue;
    if (*v >= policy.tek_lifetime_s) {
      d.error(r.where(key), r.name() + " " + key + " = " + std::to_string(*v) +
                                " s must be shorter than the TEK "
                                "lifetime (" +
                                std::to_string(policy.tek_lifetime_s) + " s)");
      continue;
    }
    *field = static_cast<std::uint32_t>(*v);
  }

  read_authorization(r, isakmp, g);
  if (const toml::table* rekey = r.table("rekey", "[group.rekey] after the group's keys"))
    read_rekey(*rekey, policy.name.empty() ? std::string("#").append(std::to_string(index + 1)) : policy.name,
               folder, d, g);
  else if (!r.node("rekey"))
    r.missing("rekey", "[group.rekey] with signing_key = \"/etc/covey/ks-rekey.pem\"");
  r.finish();
  return g;
}

void read_groups(TableReader& root, const std::string& folder, const Phase1Config& isakmp, Diagnostics& d,
                 KsConfig& c) {
  const toml::node* n = root.node("group");
  if (!n) {
    d.error_at(1, 1,
               "no [[group]]: add one, e.g. [[group]] name = \"GET_VPN\" identity = 134 " +
                   std::string(kAclExample));
    return;
  }
  const toml::array* groups = n->as_array();
  if (!groups || !groups->is_array_of_tables()) {
    d.error(n->source(), "write groups as [[group]] (double brackets): a key server can serve several");
    return;
  }
  std::map<std::string, std::uint32_t> names;         // name -> line first seen
  std::map<std::uint32_t, std::uint32_t> identities;  // identity -> line first seen
  for (std::size_t i = 0; i < groups->size(); ++i) {
    const toml::table& t = *groups->get(i)->as_table();
    KsGroupConfig g = read_group(t, i, folder, isakmp, d);
    const std::uint32_t line = t.source().begin.line;
    const gdoi::GroupPolicy& p = g.policy;
    if (!p.name.empty()) {
      if (auto [it, fresh] = names.emplace(p.name, line); !fresh) {
        d.error(t.get("name")->source(), "group name \"" + p.name +
                                             "\" is already used by the [[group]] at line " +
                                             std::to_string(it->second) + "; group names must be unique");
      }
    }
    if (p.identity != 0) {
      if (auto [it, fresh] = identities.emplace(p.identity, line); !fresh) {
        d.error(t.get("identity")->source(), "group " + p.name + " identity " + std::to_string(p.identity) +
                                                 " is already used by the [[group]] at line " +
                                                 std::to_string(it->second) + "; identities must be unique");
      }
    }
    c.groups.push_back(std::move(g));
  }
}

}  // namespace

Parsed<KsConfig> parse_ks_config(std::string_view text, std::string_view source_name) {
  Diagnostics d{std::string(source_name)};
  Parsed<KsConfig> out;
  if (auto doc = detail::parse_toml(text, d)) {
    const std::string folder = detail::folder_of(source_name);
    KsConfig c;
    TableReader root(*doc, "the top level", d);
    read_server(detail::table_or_empty(root, "server", "[server]"), folder, d, c.server);
    c.isakmp = detail::read_isakmp(detail::table_or_empty(root, "isakmp", "[isakmp]"), folder, d);
    c.metrics = detail::read_metrics(detail::table_or_empty(root, "metrics", "[metrics]"), config::kKsMetricsPort, d);
    if (const toml::table* cluster = root.table("cluster", "[cluster] endpoints = [...]")) {
      c.cluster.emplace();
      read_cluster(*cluster, folder, c.server, d, *c.cluster);
    }
    read_groups(root, folder, c.isakmp, d, c);
    root.finish();
    if (!d.has_errors()) out.config = std::move(c);
  }
  out.problems = d.take();
  return out;
}

Parsed<KsConfig> load_ks_config(const std::string& path) {
  return detail::load_file<KsConfig>(path, parse_ks_config);
}

}  // namespace covey::config
