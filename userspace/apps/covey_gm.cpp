// covey-gm: the GDOI group member agent.
#include <utility>  // before Asio (Boost 1.74 and C++20)

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <functional>
#include <iostream>
#include <linux/capability.h>

#include "apps/daemon_cli.h"
#include "apps/phase1_setup.h"
#include "apps/privileges.h"
#include "apps/service.h"
#include "common/log.h"
#include "common/sd_notify.h"
#include "config/gm_config.h"
#include "control/server.h"
#include "metrics/http_server.h"
#include "gm/agent.h"
#include "kmod-free/probe.h"

using namespace covey;

int main(int argc, char** argv) {
  CLI::App app{"covey-gm: GDOI group member agent (RFC 6407)"};
  apps::DaemonArgs args;
  args.config_path = std::string(config::kDefaultGmConfigPath);
  apps::add_daemon_options(app, args);
  app.set_version_flag("--version", "covey-gm " COVEY_VERSION, "print the version (the Debian package's) and exit");
  bool probe = false;
  app.add_flag("--probe", probe,
               "report what this kernel has and lacks for covey's data path (XFRM, ESP, tc, XDP, BPF helpers) "
               "and exit: 0 when everything needed is there, 1 otherwise");
  CLI11_PARSE(app, argc, argv);
  apps::apply_log_options("covey-gm", args);
  if (probe) {
    kmod::ProbeReport report = kmod::probe_kernel();
    std::cout << report.text();
    return report.ready() ? 0 : 1;
  }

  auto parsed = config::load_gm_config(args.config_path);
  if (auto done = apps::report_config(parsed, args, "covey-gm")) return *done;
  const config::GmConfig& cfg = *parsed.config;
  std::string error;
  // What this configuration needs and nothing else, before anything is
  // opened (docs/ARCHITECTURE.md, "Running as a service", says how the
  // set was found on Debian 12's kernel).
  std::vector<apps::Capability> needed;
  if (cfg.member.data_path) {
    needed.push_back({CAP_NET_ADMIN, "CAP_NET_ADMIN", "XFRM states and policies, tc filters, XDP, routes, sysctls"});
    needed.push_back({CAP_BPF, "CAP_BPF", "loading the data path's BPF programs and maps"});
    // On Debian 12's 6.1 only CAP_SYS_ADMIN makes the network namespace the
    // kernel probe runs in at start (unshare(CLONE_NEWNET)), and turns a
    // program id into an fd (BPF_PROG_GET_FD_BY_ID), which is how covey
    // tells its own XDP and tc programs from another tool's before it
    // replaces or removes one.
    needed.push_back({CAP_SYS_ADMIN, "CAP_SYS_ADMIN",
                      "the start's kernel probe in a throwaway network namespace; telling covey's XDP and tc "
                      "programs from another tool's"});
  }
  needed.push_back({CAP_NET_BIND_SERVICE, "CAP_NET_BIND_SERVICE", "GDOI's UDP port 848"});
  if (!apps::keep_only(needed, &error)) {
    log(LogLevel::Error, "not starting: " + error);
    return 1;
  }
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
  std::string keylog = args.keylog.empty() ? cfg.member.keylog : args.keylog;
  if (!keylog.empty()) options.keylog_path = keylog;
  if (cfg.member.data_path) {
    gm::DataplaneOptions dp;
    dp.group_name = options.group_name;
    dp.group_id = cfg.group.identity;
    dp.wan = cfg.member.wan_interface;
    dp.lans = cfg.member.lan_interfaces;
    dp.fail_close = cfg.member.fail_close;
    using Mode = config::GmMemberConfig::XdpMode;
    using DpMode = gm::DataplaneOptions::XdpMode;
    dp.xdp_mode = cfg.member.xdp_mode == Mode::Native    ? DpMode::Native
                  : cfg.member.xdp_mode == Mode::Generic ? DpMode::Generic
                  : cfg.member.xdp_mode == Mode::Off     ? DpMode::Off
                                                         : DpMode::Auto;
    dp.drop_unknown_spi = cfg.member.drop_unknown_spi;
    if (const auto& a = cfg.member.anchors) dp.anchors = {(*a)[0], (*a)[1], (*a)[2]};
    if (const auto& a = cfg.member.anchors_v6) dp.anchors_v6 = {(*a)[0], (*a)[1], (*a)[2]};
    options.dataplane = dp;
  }

  // READY=1 once, when the member first serves; STATUS= at every change.
  options.on_state = [ready = false](bool serving, const std::string& status) mutable {
    sd::notify(std::string(serving && !ready ? "READY=1\n" : "") + "STATUS=" + status);
    ready = ready || serving;
  };

  boost::asio::io_context io;
  apps::Watchdog watchdog(io);
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
  // On the loop that owns the counters: read where they are kept, unlocked.
  std::unique_ptr<metrics::HttpServer> metrics_server;
  if (const auto& listen = cfg.metrics.listen) {
    try {
      metrics_server = std::make_unique<metrics::HttpServer>(io, *listen, [&agent] { return agent.metrics(); });
    } catch (const std::exception& e) {
      log(LogLevel::Error, std::string("not starting: ") + e.what());
      return 1;
    }
    log(LogLevel::Info, "metrics on http://" + listen->str() + "/metrics");
  }
  if (!agent.start(&error)) {
    log(LogLevel::Error, "not starting: " + error);
    return 1;
  }
  // The member reloads nothing in place (its group, interfaces and data
  // path are applied by a restart, which keeps traffic under fail-close):
  // a habitual SIGHUP must not take the data path down with it.
  boost::asio::signal_set hangup(io, SIGHUP);
  std::function<void()> arm_hangup = [&] {
    hangup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      log(LogLevel::Warning, "SIGHUP ignored: covey-gm reloads nothing; restart it to apply " + args.config_path);
      arm_hangup();
    });
  };
  arm_hangup();
  boost::asio::signal_set stop(io, SIGINT, SIGTERM);
  stop.async_wait([&](const boost::system::error_code&, int sig) {
    log(LogLevel::Info, std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
    sd::notify("STOPPING=1\nSTATUS=stopping: removing the data path");
    agent.stop();
    io.stop();
  });
  io.run();
  return 0;
}
