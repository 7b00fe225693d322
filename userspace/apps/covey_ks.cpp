// covey-ks: the GDOI key server.
#include <utility>  // before Asio (Boost 1.74 and C++20)

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <fstream>
#include <iostream>
#include <sstream>

#include "apps/phase1_setup.h"
#include "common/log.h"
#include "config/ks_config.h"
#include "control/server.h"
#include "ks/server.h"
#include "ks/status.h"

using namespace covey;

namespace {

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::int64_t wall_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"covey-ks: GDOI key server (RFC 6407) on UDP 848"};
  std::string config_path(config::kDefaultKsConfigPath);
  bool check = false;
  std::string keylog, level = "info";
  app.add_option("-c,--config", config_path, "configuration file")->capture_default_str();
  app.add_flag("--check", check, "validate the configuration, print every problem with its line, and exit");
  app.add_option("--keylog", keylog, "append initiator-cookie,encryption-key per phase-1 SA (Wireshark's IKEv1 table)");
  app.add_option("--log-level", level, "debug, info, warning or error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  set_log_program("covey-ks");
  set_log_level(level == "debug" ? LogLevel::Debug : level == "warning" ? LogLevel::Warning : level == "error" ? LogLevel::Error : LogLevel::Info);

  auto parsed = config::load_ks_config(config_path);
  if (check) {
    std::cout << config::format_problems(parsed.problems);
    if (parsed.ok()) std::cout << config_path << ": OK, " << parsed.config->groups.size() << " group(s)\n";
    return parsed.ok() ? 0 : 1;
  }
  for (const auto& p : parsed.problems) log(p.is_error() ? LogLevel::Error : LogLevel::Warning, p.str());
  if (!parsed.ok()) {
    log(LogLevel::Error, "not starting: " + config_path + " has errors (covey-ks --check --config " + config_path + ")");
    return 1;
  }
  const config::KsConfig& cfg = *parsed.config;
  if (!keylog.empty()) {
    // The command line wins over the file.
  } else {
    keylog = cfg.server.keylog;
  }

  std::string error;
  auto creds = apps::phase1_credentials(cfg.isakmp, &error);
  if (!creds) {
    log(LogLevel::Error, "not starting: " + error);
    return 1;
  }

  Address ks_address = cfg.server.address.value_or(Address{});
  if (!cfg.server.address)
    for (const Address& a : cfg.server.listen)
      if (a != Address{} && !(a.family == 6 && a == *Address::parse("::"))) {
        ks_address = a;
        break;
      }

  ks::Groups groups;
  std::int64_t now = wall_now();
  for (const config::KsGroupConfig& g : cfg.groups) {
    auto pem = read_file(g.signing_key);
    if (!pem) {
      log(LogLevel::Error, "not starting: group " + g.policy.name + ": cannot read rekey signing key " + g.signing_key);
      return 1;
    }
    auto key = crypto::PrivateKey::from_pem(*pem);
    if (!key) {
      log(LogLevel::Error, "not starting: group " + g.policy.name + ": rekey signing key " + g.signing_key + ": " + key.error());
      return 1;
    }
    auto group = ks::Group::create(g.policy, ks::Authorization{g.authorization, g.authorization_subjects}, std::move(*key),
                                   ks_address, now);
    if (!group) {
      log(LogLevel::Error, "not starting: " + group.error());
      return 1;
    }
    log(LogLevel::Info, "group " + g.policy.name + " (" + std::to_string(g.policy.identity) + "): " +
                            std::to_string(g.policy.acl.size()) + " ACL entries, TEK " + g.policy.tek.str() + ", TEK lifetime " +
                            std::to_string(g.policy.tek_lifetime_s) + " s");
    groups.add(std::move(*group));
  }

  ks::ServerOptions options;
  for (const Address& a : cfg.server.listen) options.listen.push_back(Endpoint{a, cfg.server.port});
  options.dispatcher.phase1 = apps::phase1_transforms(cfg.isakmp);
  options.dispatcher.credentials = creds;
  options.dispatcher.half_open_cap = cfg.server.max_half_open;
  if (!keylog.empty()) options.keylog_path = keylog;
  options.dispatcher.keylog = !keylog.empty();

  boost::asio::io_context io;
  ks::Server server(io, options, groups);
  if (!server.start(&error)) {
    log(LogLevel::Error, "not starting: " + error);
    return 1;
  }
  auto handler = [&](const nlohmann::json& req) -> nlohmann::json {
    std::string cmd = req.value("cmd", "");
    std::optional<std::string> group;
    if (req.contains("group") && req["group"].is_string()) group = req["group"].get<std::string>();
    if (cmd == "ks.group") return ks::group_status(groups, group, req.value("show_keys", false), wall_now());
    if (cmd == "ks.members") return ks::member_status(groups, group);
    if (cmd == "ks.reload" || cmd == "ks.rekey")
      return {{"ok", false}, {"error", cmd + " is not available yet: policy changes reach members only by GROUPKEY-PUSH, "
                                            "which arrives with the rekey work; restart covey-ks to change policy"}};
    return {{"ok", false}, {"error", "unknown command \"" + cmd + "\" (covey-ks answers ks.group, ks.members)"}};
  };
  std::unique_ptr<control::Server> control;
  try {
    control = std::make_unique<control::Server>(io, cfg.server.control_socket, handler);
  } catch (const std::exception& e) {
    log(LogLevel::Error, std::string("not starting: ") + e.what());
    return 1;
  }
  log(LogLevel::Info, "control socket " + cfg.server.control_socket);
  boost::asio::signal_set stop(io, SIGINT, SIGTERM);
  stop.async_wait([&](const boost::system::error_code&, int sig) {
    log(LogLevel::Info, std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
    io.stop();
  });
  io.run();
  return 0;
}
