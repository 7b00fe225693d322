#include "config/config_common.h"

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "config/key_files.h"
#include "config/metrics_config.h"
#include "config/policy_syntax.h"

namespace covey::config::detail {

std::optional<toml::table> parse_toml(std::string_view text, Diagnostics& d) {
  try {
    return toml::parse(text, d.file());
  } catch (const toml::parse_error& e) {
    d.error(e.source(), "TOML syntax: " + std::string(e.description()));
    return std::nullopt;
  }
}

std::string folder_of(std::string_view source_name) {
  return std::filesystem::path(source_name).parent_path().string();
}

std::string resolve_path(const std::string& folder, const std::string& path) {
  if (path.empty() || path.front() == '/' || folder.empty()) return path;
  return (std::filesystem::path(folder) / path).lexically_normal().string();
}

const toml::table& table_or_empty(TableReader& parent, std::string_view key, std::string_view example) {
  static const toml::table empty;
  const toml::table* t = parent.table(key, example);
  return t ? *t : empty;
}

std::optional<std::uint32_t> read_lifetime(TableReader& r, std::string_view key, std::string_view example,
                                           std::int64_t minimum) {
  auto v = r.integer(key, minimum, 0xffffffff, example);
  if (!v) return std::nullopt;
  if (*v < 300) {
    r.diagnostics().warning(r.where(key),
                            r.name() + " " + std::string(key) + " = " + std::to_string(*v) +
                                " s is very short: every lifetime costs a new exchange with every "
                                "member; use 300 s or more outside a lab");
  }
  return static_cast<std::uint32_t>(*v);
}

std::optional<Address> read_address(TableReader& r, std::string_view key, std::string_view example) {
  auto text = r.string(key, example);
  if (!text) return std::nullopt;
  auto a = Address::parse(*text);
  if (!a) {
    r.diagnostics().error(r.where(key), r.name() + " " + std::string(key) + ": \"" + *text +
                                            "\" is not an IPv4 or IPv6 address, e.g. " +
                                            std::string(example));
  }
  return a;
}

std::optional<std::vector<gdoi::AclEntry>> read_acl(TableReader& r, std::string_view key, std::string_view example) {
  auto lines = r.strings(key, example);
  if (!lines) return std::nullopt;
  std::vector<gdoi::AclEntry> acl;
  for (std::size_t i = 0; i < lines->size(); ++i) {
    const auto& [text, at] = (*lines)[i];
    auto parsed = parse_acl_entry(text);
    if (auto* err = std::get_if<SyntaxError>(&parsed)) {
      // The column of the word inside the quoted string (exact unless the string has escapes).
      auto column = static_cast<std::uint32_t>(at.begin.column + 1 + err->offset);
      r.diagnostics().error_at(at.begin.line, column,
                               r.name() + " " + std::string(key) + "[" + std::to_string(i) + "] \"" + text +
                                   "\": " + err->message);
    } else {
      acl.push_back(std::get<gdoi::AclEntry>(parsed));
    }
  }
  return acl;
}

void read_daemon_files(TableReader& r, const std::string& folder, std::string& state_dir,
                       std::string& control_socket, std::string& keylog, std::string_view daemon) {
  if (auto v = r.string("state_dir", "state_dir = \"/var/lib/covey\"")) state_dir = resolve_path(folder, *v);
  if (auto v = r.string("control_socket", std::string("control_socket = \"") +
                                              (daemon == "ks" ? "/run/covey/ks.sock" : "/run/covey-gm/gm.sock") + "\""))
    control_socket = resolve_path(folder, *v);
  if (auto v = r.string("keylog", "keylog = \"/tmp/covey.keylog\"")) {
    keylog = resolve_path(folder, *v);
    if (!keylog.empty()) {
      r.diagnostics().warning(
          r.where("keylog"),
          r.name() + " keylog = \"" + *v +
              "\" writes phase-1 and group keys to a file: anyone who reads it can decrypt "
              "the group's traffic; remove it outside a lab");
    }
  }
}

std::optional<std::string> read_config_file(const std::string& path, std::string& text) {
  if (auto why = unreadable(path)) return why;
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  text = out.str();
  return std::nullopt;
}

namespace {

// Cisco writes "aes 256" where covey's lists say "aes-256"; take both.
std::string normalized(std::string s) {
  std::replace(s.begin(), s.end(), ' ', '-');
  return s;
}

void read_authentication(TableReader& r, const std::string& folder, Phase1Config& p) {
  Diagnostics& d = r.diagnostics();
  auto psk = r.string("pre_shared_key", "pre_shared_key = \"a long random secret\"");
  if (psk) {
    if (psk->empty()) {
      d.error(r.where("pre_shared_key"), "[isakmp] pre_shared_key is empty; write a long random secret");
    } else {
      p.default_key =
          crypto::SecretBytes(ByteView(reinterpret_cast<const std::uint8_t*>(psk->data()), psk->size()));
    }
  }

  const toml::table* peers = r.table("peer_keys", "[isakmp.peer_keys] then \"10.1.23.3\" = \"secret\"");
  if (peers) {
    for (auto&& [key, value] : *peers) {
      std::string why;
      auto prefix = gdoi::Prefix::parse(key.str(), &why);
      if (!prefix) {
        d.error(key.source(),
                "[isakmp.peer_keys] \"" + std::string(key.str()) + "\": " + why +
                    "; the key is a peer address or prefix, e.g. \"10.1.23.0/24\" = \"secret\"");
        continue;
      }
      if (prefix->is_any()) {
        d.error(key.source(),
                "[isakmp.peer_keys] \"any\": write the default as [isakmp] pre_shared_key instead");
        continue;
      }
      const toml::value<std::string>* secret = value.as_string();
      if (!secret || secret->get().empty()) {
        d.error(value.source(), "[isakmp.peer_keys] \"" + std::string(key.str()) +
                                    "\" must be a non-empty string, e.g. \"" + std::string(key.str()) +
                                    "\" = \"a long random secret\"");
        continue;
      }
      auto same = std::find_if(p.peer_keys.begin(), p.peer_keys.end(),
                               [&](const Phase1Config::PeerKey& k) { return k.peer == *prefix; });
      if (same != p.peer_keys.end()) {
        d.error(key.source(), "[isakmp.peer_keys] \"" + std::string(key.str()) + "\" is " + prefix->str() +
                                  " again; keep one key per peer");
        continue;
      }
      const std::string& s = secret->get();
      p.peer_keys.push_back({*prefix, crypto::SecretBytes(ByteView(
                                          reinterpret_cast<const std::uint8_t*>(s.data()), s.size()))});
    }
    std::stable_sort(p.peer_keys.begin(), p.peer_keys.end(),
                     [](const auto& a, const auto& b) { return a.peer.length > b.peer.length; });
  }

  auto cert = r.string("certificate", "certificate = \"/etc/covey/ks.crt\"");
  auto key = r.string("private_key", "private_key = \"/etc/covey/ks.key\"");
  auto ca = r.string("ca", "ca = \"/etc/covey/ca.crt\"");
  if (cert || key || ca) {
    if (!cert || !key || !ca) {
      std::string missing;
      for (auto [name, given] : {std::pair{"certificate", cert.has_value()},
                                 std::pair{"private_key", key.has_value()}, std::pair{"ca", ca.has_value()}})
        if (!given) missing += (missing.empty() ? "" : " and ") + std::string(name);
      d.error(r.where(cert  ? "certificate"
                      : key ? "private_key"
                            : "ca"),
              "[isakmp] RSA signatures need certificate, private_key and ca together; add " + missing);
    } else {
      p.certificate = resolve_path(folder, *cert);
      p.private_key = resolve_path(folder, *key);
      p.ca = resolve_path(folder, *ca);
      KeyInfo cert_key;
      if (auto why = check_certificate(p.certificate, p.private_key, cert_key)) {
        d.error(r.where("certificate"), "[isakmp] " + *why);
      } else if (cert_key.type != "RSA") {
        d.error(r.where("certificate"),
                "[isakmp] certificate " + *cert + " has an " + cert_key.type +
                    " key; phase 1 signs with RSA (rsa-sig): issue an RSA certificate");
      } else if (cert_key.bits < 2048) {
        d.error(r.where("certificate"), "[isakmp] certificate " + *cert + " has a " +
                                            std::to_string(cert_key.bits) +
                                            "-bit RSA key; use 2048 bits or more");
      }
      auto info = read_private_key(p.private_key);
      if (auto* k = std::get_if<KeyInfo>(&info); k && k->others_can_read) {
        d.warning(r.where("private_key"),
                  "[isakmp] private_key " + *key + " is readable by every user; chmod 600 it");
      }
      if (auto why = check_ca_file(p.ca)) d.error(r.where("ca"), "[isakmp] " + *why);
    }
  }

  // Only when nothing was attempted: a half-written method has its own error.
  if (!psk && !peers && !cert && !key && !ca) {
    d.error(r.where(),
            "[isakmp] has no authentication: add pre_shared_key = \"...\" (or [isakmp.peer_keys]) "
            "for pre-shared keys, or certificate, private_key and ca for RSA signatures");
  }
}

void read_proposals(TableReader& r, Phase1Config& p) {
  Diagnostics& d = r.diagnostics();
  p.allow_legacy = r.boolean("allow_legacy", "allow_legacy = true").value_or(false);
  const std::string legacy_fix = "set allow_legacy = true in [isakmp] if an old peer needs it, or remove it";

  if (auto list = r.strings("encryption", "encryption = [\"aes-256\", \"aes-128\"]")) {
    p.encryption.clear();
    for (const auto& item : *list) {
      std::string v = normalized(item.value);
      crypto::CipherAlgorithm c;
      if (v == "aes-256") {
        c = crypto::CipherAlgorithm::Aes256Cbc;
      } else if (v == "aes-128" || v == "aes") {  // IOS: "encryption aes" is AES-128
        c = crypto::CipherAlgorithm::Aes128Cbc;
      } else if (v == "3des") {
        c = crypto::CipherAlgorithm::TripleDesCbc;
        if (!p.allow_legacy) {
          d.error(item.at, "[isakmp] encryption \"3des\" is legacy; " + legacy_fix);
          continue;
        }
        d.warning(item.at,
                  "[isakmp] encryption \"3des\" (64-bit blocks) is weak; remove it once old peers are gone");
      } else {
        d.error(item.at, "[isakmp] encryption \"" + item.value + "\" is not supported" +
                             did_you_mean(v, {"aes-256", "aes-128", "3des"}) + "; write aes-256 or aes-128");
        continue;
      }
      if (std::find(p.encryption.begin(), p.encryption.end(), c) != p.encryption.end()) {
        d.error(item.at, "[isakmp] encryption lists \"" + item.value + "\" twice");
        continue;
      }
      p.encryption.push_back(c);
    }
    if (list->empty()) d.error(r.where("encryption"), "[isakmp] encryption is empty; write [\"aes-256\"]");
  }

  if (auto list = r.strings("hash", "hash = [\"sha256\", \"sha384\", \"sha1\"]")) {
    p.hash.clear();
    for (const auto& item : *list) {
      crypto::HashAlgorithm h;
      if (item.value == "sha256")
        h = crypto::HashAlgorithm::Sha256;
      else if (item.value == "sha384")
        h = crypto::HashAlgorithm::Sha384;
      else if (item.value == "sha1" || item.value == "sha")
        h = crypto::HashAlgorithm::Sha1;  // IOS: "hash sha"
      else {
        d.error(item.at, "[isakmp] hash \"" + item.value + "\" is not supported" +
                             did_you_mean(item.value, {"sha256", "sha384", "sha1"}) +
                             "; write sha256, sha384 or sha1");
        continue;
      }
      if (std::find(p.hash.begin(), p.hash.end(), h) != p.hash.end()) {
        d.error(item.at, "[isakmp] hash lists \"" + item.value + "\" twice");
        continue;
      }
      p.hash.push_back(h);
    }
    if (list->empty()) d.error(r.where("hash"), "[isakmp] hash is empty; write [\"sha256\"]");
  }

  if (auto list = r.integers("dh_group", "dh_group = [19, 20, 14]")) {
    p.dh_group.clear();
    for (const auto& [g, at] : *list) {
      if (g == 2 || g == 5) {
        if (!p.allow_legacy) {
          d.error(at, "[isakmp] dh_group " + std::to_string(g) + " (MODP " + (g == 2 ? "1024" : "1536") +
                          ") is legacy; " + legacy_fix);
          continue;
        }
        d.warning(at,
                  "[isakmp] dh_group " + std::to_string(g) +
                      " is too small to resist a well-funded attacker; remove it once old peers are gone");
      } else if (g != 14 && g != 19 && g != 20) {
        d.error(at, "[isakmp] dh_group " + std::to_string(g) + " is not supported; write 14, 19 or 20");
        continue;
      }
      auto id = static_cast<std::uint16_t>(g);
      if (std::find(p.dh_group.begin(), p.dh_group.end(), id) != p.dh_group.end()) {
        d.error(at, "[isakmp] dh_group lists " + std::to_string(g) + " twice");
        continue;
      }
      p.dh_group.push_back(id);
    }
    if (list->empty()) d.error(r.where("dh_group"), "[isakmp] dh_group is empty; write [19, 20, 14]");
  }

  if (auto v = read_lifetime(r, "lifetime", "lifetime = 86400")) p.lifetime_s = *v;
}

}  // namespace

Phase1Config read_isakmp(const toml::table& isakmp, const std::string& folder, Diagnostics& d) {
  TableReader r(isakmp, "[isakmp]", d);
  Phase1Config p;
  read_proposals(r, p);
  read_authentication(r, folder, p);
  r.finish();
  return p;
}

// "10.1.12.1", "10.1.12.1:848", "2001:db8::1", "[2001:db8::1]:848".
std::optional<Endpoint> parse_endpoint(std::string_view text, std::uint16_t default_port) {
  Endpoint e;
  e.port = default_port;
  std::string_view host = text, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
      if (port.empty()) return std::nullopt;
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {  // more than one: a bare IPv6 address
    host = text.substr(0, text.find(':'));
    port = text.substr(text.find(':') + 1);
    if (port.empty()) return std::nullopt;
  }
  auto a = Address::parse(host);
  if (!a) return std::nullopt;
  e.address = *a;
  if (!port.empty()) {
    unsigned p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535) return std::nullopt;
    e.port = static_cast<std::uint16_t>(p);
  }
  return e;
}

MetricsConfig read_metrics(const toml::table& t, std::uint16_t default_port, Diagnostics& d) {
  MetricsConfig m;
  TableReader r(t, "[metrics]", d);
  const std::string example = "listen = \"127.0.0.1:" + std::to_string(default_port) + "\"";
  if (auto listen = r.string("listen", example)) {
    auto e = parse_endpoint(*listen, default_port);
    if (!e)
      d.error(r.where("listen"), "[metrics] listen \"" + *listen + "\" is not an address[:port]; write e.g. \"127.0.0.1:" +
                                     std::to_string(default_port) + "\" or \"[::1]:" + std::to_string(default_port) + "\"");
    else
      m.listen = *e;
  }
  r.finish();
  return m;
}

}  // namespace covey::config::detail
