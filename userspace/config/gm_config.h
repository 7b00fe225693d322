// covey-gm configuration (/etc/covey/gm.toml): the member, its group and
// key servers, and phase 1. The schema is in config/README.md.
#pragma once

#include <array>
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

inline constexpr std::string_view kDefaultGmConfigPath = "/etc/covey/gm.toml";

struct GmMemberConfig {
  std::optional<Address> local_address;     // nullopt: the kernel picks the source
  std::string wan_interface;                // where ESP leaves and arrives
  std::vector<std::string> lan_interfaces;  // whose forwarded traffic the ACL classifies; may be empty
  std::string state_dir = "/var/lib/covey";
  std::string control_socket = "/run/covey-gm/gm.sock";
  std::string keylog;  // empty: off

  // The data path (docs/ARCHITECTURE.md): TEKs into XFRM, the BPF programs
  // on wan_interface and lan_interfaces. false: keys only, the kernel is
  // left alone (a key-distribution member, or a kernel without ESP).
  bool data_path = true;
  // Dropped while no TEK is active, from start-up on (before the first
  // registration too): permit = drop. The key server's fail-close ACL is
  // added after these lines once registered.
  std::vector<gdoi::AclEntry> fail_close;
  enum class XdpMode : std::uint8_t { Auto, Native, Generic, Off };
  XdpMode xdp_mode = XdpMode::Auto;
  // ESP with an SPI that is not the group's is dropped on the WAN (off:
  // the host may run other IPsec).
  bool drop_unknown_spi = false;
  // The group SAs' anchors (docs/ARCHITECTURE.md), ANCHOR_LOCAL,
  // ANCHOR_GROUP, ANCHOR_IN of each family; nullopt: the data path's
  // defaults (169.254.77.1-3, fd00:c0e1:77::1-3). Set them where those
  // addresses mean something else on the host.
  std::optional<std::array<Address, 3>> anchors, anchors_v6;
};

struct GmGroupConfig {
  std::string name;  // for logs and the control socket; optional
  std::uint32_t identity = 0;
  std::vector<Endpoint> key_servers;  // preference order; port 848 unless given
};

struct GmConfig {
  MetricsConfig metrics;  // [metrics]
  GmMemberConfig member;
  GmGroupConfig group;
  Phase1Config isakmp;
};

Parsed<GmConfig> parse_gm_config(std::string_view text, std::string_view source_name);
Parsed<GmConfig> load_gm_config(const std::string& path);

}  // namespace covey::config
