#include "config/gm_config.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "config/config_common.h"

namespace covey::config {

using detail::Diagnostics;
using detail::TableReader;

namespace {

// Linux's own rule (dev_valid_name): under IFNAMSIZ, not "." or "..", no '/', ':' or space.
bool valid_interface_name(const std::string& name) {
  return !name.empty() && name.size() < 16 && name != "." && name != ".." &&
         std::none_of(name.begin(), name.end(), [](char c) {
           return c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c));
         });
}

// `anchors` or `anchors_v6`: ANCHOR_LOCAL, ANCHOR_GROUP, ANCHOR_IN, three
// distinct unicast addresses of the key's family that need no scope.
std::optional<std::array<Address, 3>> read_anchors(TableReader& r, std::string_view key, std::uint8_t family,
                                                   std::string_view example, Diagnostics& d) {
  auto list = r.strings(key, example);
  if (!list) return std::nullopt;
  const std::string name = "[member] " + std::string(key);
  if (list->size() != 3) {
    d.error(r.where(key), name + " takes three addresses, ANCHOR_LOCAL, ANCHOR_GROUP and ANCHOR_IN: " +
                              std::string(example));
    return std::nullopt;
  }
  std::array<Address, 3> out;
  bool ok = true;
  for (std::size_t i = 0; i < 3; ++i) {
    const auto& item = (*list)[i];
    auto a = Address::parse(item.value);
    auto problem = [&]() -> std::string {
      if (!a) return "is not an address";
      if (a->family != family) return "is not an IPv" + std::to_string(family) + " address";
      const auto& b = a->bytes;
      const bool zero_then = std::all_of(b.begin() + 1, b.begin() + 15, [](std::uint8_t x) { return x == 0; });
      const bool unusable = family == 4 ? b[0] == 0 || b[0] == 127 || b[0] >= 224
                                        : b[0] == 0xff || (b[0] == 0 && zero_then && b[15] <= 1);  // multicast, ::, ::1
      if (unusable) return "is not a unicast address a host can hold";
      if (family == 6 && b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return "is link-local, which means nothing without an interface; use a unique local address (fd00::/8)";
      if (std::find(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(i), *a) != out.begin() + static_cast<std::ptrdiff_t>(i))
        return "is listed twice: the three anchors are distinct addresses";
      return "";
    }();
    if (!problem.empty()) {
      d.error(item.at, name + " \"" + item.value + "\" " + problem + ", e.g. " + std::string(example));
      ok = false;
    } else {
      out[i] = *a;
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

void read_member(const toml::table& t, const std::string& folder, Diagnostics& d, GmMemberConfig& m) {
  TableReader r(t, "[member]", d);
  m.local_address = detail::read_address(r, "local_address", "local_address = \"10.1.23.3\"");
  if (auto wan = r.string("wan_interface", "wan_interface = \"wan0\"")) {
    if (!valid_interface_name(*wan))
      d.error(r.where("wan_interface"),
              "[member] wan_interface \"" + *wan +
                  "\" is not a Linux interface name (1-15 "
                  "characters, no '/', ':' or spaces), e.g. wan_interface = \"eth0\"");
    else
      m.wan_interface = *wan;
  } else if (!r.node("wan_interface")) {
    r.missing("wan_interface", "wan_interface = \"eth0\" (the interface ESP leaves by) in [member]");
  }
  if (auto list = r.strings("lan_interfaces", "lan_interfaces = [\"lan0\"]")) {
    for (const auto& item : *list) {
      if (!valid_interface_name(item.value)) {
        d.error(item.at, "[member] lan_interfaces \"" + item.value + "\" is not a Linux interface name");
      } else if (item.value == m.wan_interface) {
        d.error(item.at,
                "[member] " + item.value + " is the WAN interface; a LAN interface must be another one");
      } else if (std::find(m.lan_interfaces.begin(), m.lan_interfaces.end(), item.value) !=
                 m.lan_interfaces.end()) {
        d.error(item.at, "[member] lan_interfaces lists " + item.value + " twice");
      } else {
        m.lan_interfaces.push_back(item.value);
      }
    }
  }
  detail::read_daemon_files(r, folder, m.state_dir, m.control_socket, m.keylog, "gm");
  if (auto v = r.boolean("data_path", "data_path = true")) m.data_path = *v;
  if (auto acl = detail::read_acl(r, "fail_close", "fail_close = [\"permit ip 192.168.3.0/24 192.168.0.0/16\"]"))
    m.fail_close = std::move(*acl);
  if (auto mode = r.string("xdp_mode", "xdp_mode = \"auto\"")) {
    if (*mode == "auto") m.xdp_mode = GmMemberConfig::XdpMode::Auto;
    else if (*mode == "native") m.xdp_mode = GmMemberConfig::XdpMode::Native;
    else if (*mode == "generic") m.xdp_mode = GmMemberConfig::XdpMode::Generic;
    else if (*mode == "off") m.xdp_mode = GmMemberConfig::XdpMode::Off;
    else
      d.error(r.where("xdp_mode"), "[member] xdp_mode \"" + *mode +
                                       "\" is not one of \"auto\" (native XDP unless the WAN is a veth), \"native\", "
                                       "\"generic\", \"off\" (inbound decisions at tc ingress)");
  }
  if (auto v = r.boolean("drop_unknown_spi", "drop_unknown_spi = false")) m.drop_unknown_spi = *v;
  m.anchors = read_anchors(r, "anchors", 4, "anchors = [\"169.254.77.1\", \"169.254.77.2\", \"169.254.77.3\"]", d);
  m.anchors_v6 = read_anchors(r, "anchors_v6", 6,
                              "anchors_v6 = [\"fd00:c0e1:77::1\", \"fd00:c0e1:77::2\", \"fd00:c0e1:77::3\"]", d);
  r.finish();
}

void read_group(const toml::node* n, Diagnostics& d, GmGroupConfig& g) {
  if (!n) {
    d.error_at(1, 1, "no [group]: add [group] with identity = 134 and key_servers = [\"10.1.12.1\"]");
    return;
  }
  const toml::table* t = n->as_table();
  if (!t) {
    d.error(n->source(), "write the group as [group] (single brackets): covey-gm joins one group per config");
    return;
  }
  TableReader r(*t, "[group]", d);
  if (auto name = r.string("name", "name = \"GET_VPN\"")) g.name = *name;
  if (auto v = r.integer("identity", 1, 0xffffffff, "identity = 134"))
    g.identity = static_cast<std::uint32_t>(*v);
  else if (!r.node("identity"))
    r.missing("identity", "identity = 134 (the key server's group identity)");

  if (auto list = r.strings("key_servers", "key_servers = [\"10.1.12.1\"]")) {
    for (const auto& item : *list) {
      auto e = detail::parse_endpoint(item.value, 848);
      if (!e) {
        d.error(item.at, "[group] key_servers \"" + item.value +
                             "\" is not an address[:port]; write e.g. "
                             "\"10.1.12.1\", \"10.1.12.1:848\" or \"[2001:db8::1]:848\"");
      } else if (std::find(g.key_servers.begin(), g.key_servers.end(), *e) != g.key_servers.end()) {
        d.error(item.at, "[group] key_servers lists " + e->str() + " twice");
      } else {
        g.key_servers.push_back(*e);
      }
    }
    if (list->empty()) d.error(r.where("key_servers"), "[group] key_servers is empty; write [\"10.1.12.1\"]");
  } else if (!r.node("key_servers")) {
    r.missing("key_servers", "key_servers = [\"10.1.12.1\"] (in order of preference)");
  }
  r.finish();
}

}  // namespace

Parsed<GmConfig> parse_gm_config(std::string_view text, std::string_view source_name) {
  Diagnostics d{std::string(source_name)};
  Parsed<GmConfig> out;
  if (auto doc = detail::parse_toml(text, d)) {
    const std::string folder = detail::folder_of(source_name);
    GmConfig c;
    TableReader root(*doc, "the top level", d);
    const toml::node* member = root.node("member");
    if (!member) {
      d.error_at(1, 1, "no [member]: add [member] with wan_interface = \"eth0\"");
    } else if (!member->is_table()) {
      d.error(member->source(), "write [member] (single brackets)");
    } else {
      read_member(*member->as_table(), folder, d, c.member);
    }
    read_group(root.node("group"), d, c.group);
    c.isakmp = detail::read_isakmp(detail::table_or_empty(root, "isakmp", "[isakmp]"), folder, d);
    c.metrics = detail::read_metrics(detail::table_or_empty(root, "metrics", "[metrics]"), config::kGmMetricsPort, d);
    root.finish();
    if (!d.has_errors()) out.config = std::move(c);
  }
  out.problems = d.take();
  return out;
}

Parsed<GmConfig> load_gm_config(const std::string& path) {
  return detail::load_file<GmConfig>(path, parse_gm_config);
}

}  // namespace covey::config
