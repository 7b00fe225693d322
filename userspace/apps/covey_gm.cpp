// covey-gm: the GDOI group member agent.
#include <utility>  // before Asio (Boost 1.74 and C++20)

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <iostream>

#include "apps/phase1_setup.h"
#include "common/log.h"
#include "config/gm_config.h"
#include "control/server.h"
#include "gm/agent.h"

using namespace covey;

int main(int argc, char** argv) {
  CLI::App app{"covey-gm: GDOI group member agent (RFC 6407)"};
  std::string config_path(config::kDefaultGmConfigPath);
  bool check = false;
  std::string keylog, level = "info";
  app.add_option("-c,--config", config_path, "configuration file")->capture_default_str();
  app.add_flag("--check", check, "validate the configuration, print every problem with its line, and exit");
  app.add_option("--keylog", keylog, "append initiator-cookie,encryption-key per phase-1 SA (Wireshark's IKEv1 table)");
  app.add_option("--log-level", level, "debug, info, warning or error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  set_log_program("covey-gm");
  set_log_level(level == "debug" ? LogLevel::Debug : level == "warning" ? LogLevel::Warning : level == "error" ? LogLevel::Error : LogLevel::Info);

  auto parsed = config::load_gm_config(config_path);
  if (check) {
    std::cout << config::format_problems(parsed.problems);
    if (parsed.ok()) std::cout << config_path << ": OK\n";
    return parsed.ok() ? 0 : 1;
  }
  for (const auto& p : parsed.problems) log(p.is_error() ? LogLevel::Error : LogLevel::Warning, p.str());
  if (!parsed.ok()) {
    log(LogLevel::Error, "not starting: " + config_path + " has errors (covey-gm --check --config " + config_path + ")");
    return 1;
  }
  const config::GmConfig& cfg = *parsed.config;
  std::string error;
  auto creds = apps::phase1_credentials(cfg.isakmp, &error);
  if (!creds) {
    log(LogLevel::Error, "not starting: " + error);
    return 1;
  }
  gm::AgentOptions options;
  options.group_name = cfg.group.name.empty() ? std::to_string(cfg.group.identity) : cfg.group.name;
  options.registrar.group_id = cfg.group.identity;
  options.registrar.offers = apps::phase1_transforms(cfg.isakmp);
  options.registrar.credentials = creds;
  options.key_servers = cfg.group.key_servers;
  std::optional<Address> local = cfg.member.local_address;
  if (!local) local = apps::source_address_for(cfg.group.key_servers.front());
  if (!local) {
    log(LogLevel::Error, "not starting: no route to KS " + cfg.group.key_servers.front().str() + " to pick a local address from; set member.local_address");
    return 1;
  }
  options.local = Endpoint{*local, 848};
  if (keylog.empty()) keylog = cfg.member.keylog;
  if (!keylog.empty()) options.keylog_path = keylog;

  boost::asio::io_context io;
  gm::Agent agent(io, options);
  // The control socket first: a second covey-gm on the same socket must
  // stop before it sends anything to a key server.
  std::unique_ptr<control::Server> control;
  try {
    control = std::make_unique<control::Server>(io, cfg.member.control_socket, [&](const nlohmann::json& req) -> nlohmann::json {
      std::string cmd = req.value("cmd", "");
      if (cmd == "gm.status") return agent.status(req.value("show_keys", false));
      return {{"ok", false}, {"error", "unknown command \"" + cmd + "\" (covey-gm answers gm.status)"}};
    });
  } catch (const std::exception& e) {
    log(LogLevel::Error, std::string("not starting: ") + e.what());
    return 1;
  }
  if (!agent.start(&error)) {
    log(LogLevel::Error, "not starting: " + error);
    return 1;
  }
  boost::asio::signal_set stop(io, SIGINT, SIGTERM);
  stop.async_wait([&](const boost::system::error_code&, int sig) {
    log(LogLevel::Info, std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
    io.stop();
  });
  io.run();
  return 0;
}
