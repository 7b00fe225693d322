// covey-gm configuration (/etc/covey/gm.toml): the member, its group and
// key servers, and phase 1. The schema is in config/README.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.h"
#include "config/phase1_config.h"
#include "config/problem.h"

namespace covey::config {

inline constexpr std::string_view kDefaultGmConfigPath = "/etc/covey/gm.toml";

struct GmMemberConfig {
  std::optional<Address> local_address;     // nullopt: the kernel picks the source
  std::string wan_interface;                // where ESP leaves and arrives
  std::vector<std::string> lan_interfaces;  // whose forwarded traffic the ACL classifies; may be empty
  std::string state_dir = "/var/lib/covey";
  std::string control_socket = "/run/covey/gm.sock";
  std::string keylog;  // empty: off
};

struct GmGroupConfig {
  std::string name;  // for logs and the control socket; optional
  std::uint32_t identity = 0;
  std::vector<Endpoint> key_servers;  // preference order; port 848 unless given
};

struct GmConfig {
  GmMemberConfig member;
  GmGroupConfig group;
  Phase1Config isakmp;
};

Parsed<GmConfig> parse_gm_config(std::string_view text, std::string_view source_name);
Parsed<GmConfig> load_gm_config(const std::string& path);

}  // namespace covey::config
