// Internal to covey_config: what ks.toml and gm.toml share.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/address.h"
#include "gdoi/policy.h"
#include "config/metrics_config.h"
#include "config/phase1_config.h"
#include "config/problem.h"
#include "config/toml_reader.h"

namespace covey::config::detail {

// The TOML document, or nullopt with the syntax error recorded.
std::optional<toml::table> parse_toml(std::string_view text, Diagnostics& d);

// Paths in a config are relative to the config file's folder, so a lab
// folder works from wherever it is run.
std::string folder_of(std::string_view source_name);
std::string resolve_path(const std::string& folder, const std::string& path);

// A table if present, else an empty one (every key then takes its default).
const toml::table& table_or_empty(TableReader& parent, std::string_view key, std::string_view example);

// A lifetime in seconds: below `minimum` an error (keys would expire before
// members installed them), below 300 s a warning (a rekey to every member
// that often).
std::optional<std::uint32_t> read_lifetime(TableReader& r, std::string_view key, std::string_view example,
                                           std::int64_t minimum = 30);

std::optional<Address> read_address(TableReader& r, std::string_view key, std::string_view example);

// An ACL as a list of Cisco lines (policy_syntax.h); errors point at the
// offending word. nullopt when the key is absent or not a list of strings.
std::optional<std::vector<gdoi::AclEntry>> read_acl(TableReader& r, std::string_view key, std::string_view example);

// state_dir, control_socket and keylog, which both daemons ("ks", "gm") have.
void read_daemon_files(TableReader& r, const std::string& folder, std::string& state_dir,
                       std::string& control_socket, std::string& keylog, std::string_view daemon);

// "10.1.12.1", "10.1.12.1:848", "2001:db8::1", "[2001:db8::1]:848"; the
// port `default_port` unless given.
std::optional<Endpoint> parse_endpoint(std::string_view text, std::uint16_t default_port);

// [metrics]: where to serve GET /metrics, the port `default_port` unless given.
MetricsConfig read_metrics(const toml::table& metrics, std::uint16_t default_port, Diagnostics& d);

// [isakmp]: pre-shared keys or certificate files (checked), and proposals.
Phase1Config read_isakmp(const toml::table& isakmp, const std::string& folder, Diagnostics& d);

// The file's text, or why it cannot be read.
std::optional<std::string> read_config_file(const std::string& path, std::string& text);

// Reads the file at `path`, then parses it with `parse`.
template <class Config>
Parsed<Config> load_file(const std::string& path,
                         const std::function<Parsed<Config>(std::string_view, std::string_view)>& parse) {
  std::string text;
  if (auto why = read_config_file(path, text)) {
    Parsed<Config> failed;
    failed.problems.push_back(
        Problem{path, 0, 0, "cannot read the config file: " + *why, Problem::Severity::Error});
    return failed;
  }
  return parse(text, path);
}

}  // namespace covey::config::detail
