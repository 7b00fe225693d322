// covey-ks configuration (/etc/covey/ks.toml): the key server itself, phase
// 1, and one [[group]] per GDOI group. The schema is in config/README.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.h"
#include "config/metrics_config.h"
#include "config/phase1_config.h"
#include "config/problem.h"
#include "gdoi/policy.h"

namespace covey::config {

inline constexpr std::string_view kDefaultKsConfigPath = "/etc/covey/ks.toml";

struct KsServerConfig {
  std::vector<Address> listen{*Address::parse("0.0.0.0"), *Address::parse("::")};
  std::uint16_t port = 848;
  // The key server's own address: the source of rekeys and the SA KEK's
  // source ID (Cisco: "address ipv4" under "server local"). nullopt: the
  // daemon uses the local address a member registered to.
  std::optional<Address> address;
  // Main Mode exchanges in progress, past which new ones are refused: the
  // bound on what a flood of spoofed first messages can make the KS hold.
  std::uint32_t max_half_open = 1024;
  // Threads for Main Mode's Diffie-Hellman and authentication (ks/workers.h).
  // nullopt: one per CPU the daemon may run on; 0: the event loop does them.
  std::optional<std::uint32_t> workers;
  std::string state_dir = "/var/lib/covey";
  std::string control_socket = "/run/covey/ks.sock";
  std::string keylog;  // empty: off
  // Started as root, the key server becomes this user (and its group)
  // once its sockets are bound. Empty: it stays who it was started as.
  std::string user;
};

struct KsGroupConfig {
  gdoi::GroupPolicy policy;
  std::string signing_key;  // PEM private key that signs GROUPKEY-PUSH (checked against policy.kek)
  // Who may register: ks::Authorization's two lists. Default: any address.
  std::vector<gdoi::Prefix> authorization;
  std::vector<std::string> authorization_subjects;  // exact, or ending in '*'
  // [group.rekey] tek_margin, kek_margin: seconds before a TEK (KEK)
  // expires that its successor is pushed. nullopt: the defaults of
  // ks/schedule.h, which also refuses margins that cannot work.
  std::optional<std::uint32_t> tek_margin_s, kek_margin_s;
};

// [cluster]: cooperative key servers sharing their groups through etcd
// (ks/coop.h). Absent: the key server keeps its state in its own file.
struct KsClusterConfig {
  std::vector<std::string> endpoints;  // etcd client URLs
  // TLS to etcd: the CA of its server certificates, and this key server's
  // client certificate and key (when etcd checks clients). Required for
  // https:// endpoints; plain http:// is allowed only to loopback.
  std::string ca, cert, key;
  std::string name;             // this key server in the cluster (IOS: server local)
  std::uint32_t priority = 1;   // highest is primary; ties by the higher address
  std::uint32_t lease_ttl_s = 5;
  std::string sealing_key;      // 64 hex digits, the same file on every key server
  std::string prefix = "/covey";  // etcd key prefix: several clusters may share an etcd
  bool operator==(const KsClusterConfig&) const = default;
};

struct KsConfig {
  MetricsConfig metrics;  // [metrics]
  KsServerConfig server;
  std::optional<KsClusterConfig> cluster;
  Phase1Config isakmp;
  std::vector<KsGroupConfig> groups;  // at least one; names and identities unique
};

// `source_name` names the text in problems; relative paths in the text are
// resolved against its folder. Key and certificate files are read and checked.
Parsed<KsConfig> parse_ks_config(std::string_view text, std::string_view source_name);
Parsed<KsConfig> load_ks_config(const std::string& path);

}  // namespace covey::config
