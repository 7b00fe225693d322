// covey-ks: the GDOI key server. main() wires the key server's core
// (ks/key_server.h) to Asio, the control socket and signals; everything it
// decides is decided there.
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <functional>
#include <iostream>
#include <utility>  // before Asio (Boost 1.74 and C++20)

#include "apps/daemon_cli.h"
#include "apps/privileges.h"
#include "apps/service.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/sd_notify.h"
#include "config/ks_config.h"
#include "control/server.h"
#include "ks/coop.h"
#include "ks/key_server.h"
#include "ks/metrics.h"
#include "ks/server.h"
#include "ks/state_store.h"
#include "ks/status.h"
#include "metrics/http_server.h"

using namespace covey;

namespace {

// systemd's STATUS= line (systemctl status shows it).
std::string ks_status(const ks::KeyServer& core) {
  std::size_t members = 0;
  for (const auto& [id, g] : core.groups().all()) members += g->members().size();
  return "serving " + std::to_string(core.groups().all().size()) + " group(s), " + std::to_string(members) +
         " member(s) registered";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"covey-ks: GDOI key server (RFC 6407) on UDP 848"};
  apps::DaemonArgs args;
  args.config_path = std::string(config::kDefaultKsConfigPath);
  apps::add_daemon_options(app, args);
  app.set_version_flag("--version", "covey-ks " COVEY_VERSION, "print the version (the Debian package's) and exit");
  CLI11_PARSE(app, argc, argv);
  apps::apply_log_options("covey-ks", args);

  auto parsed = config::load_ks_config(args.config_path);
  // In a cluster, --check also compares the groups with the running
  // cluster's, so that a key server configured unlike it is caught before
  // it is started and refused.
  if (args.check && parsed.ok() && parsed.config->cluster) {
    std::cout << config::format_problems(parsed.problems);
    auto problems = ks::Coop::check(*parsed.config);
    if (!problems) {
      std::cout << args.config_path << ": cannot check against the cluster: " << problems.error() << "\n";
      return 1;
    }
    for (const auto& p : *problems) std::cout << args.config_path << ": error: " << p << "\n";
    if (problems->empty()) std::cout << args.config_path << ": OK (and as the cluster's)\n";
    return problems->empty() ? 0 : 1;
  }
  if (auto done = apps::report_config(parsed, args, "covey-ks")) return *done;
  // The command line's keylog wins over the file's.
  const std::string keylog = args.keylog.empty() ? parsed.config->server.keylog : args.keylog;
  // Started as root with [server] user: the state folder is that user's
  // from the start, so that what is written before and after the drop
  // below is in one owner's hands.
  std::optional<apps::Account> account;
  if (const std::string& user = parsed.config->server.user; !user.empty() && ::geteuid() == 0) {
    std::string error;
    account.emplace();
    bool ok = apps::find_account(user, &*account, &error);
    if (ok && !parsed.config->cluster) {
      const std::string& dir = parsed.config->server.state_dir;
      ::mkdir(dir.c_str(), 0700);  // StateFile makes it so too; an error shows in give_to's
      ok = apps::give_to(*account, dir, &error);
    }
    if (!ok) {
      log(LogLevel::Error, "not starting: " + error);
      return 1;
    }
  }
  // Alone, the state lives in a file; in a cluster, in etcd (ks/coop.h).
  std::unique_ptr<ks::Store> store;
  if (parsed.config->cluster) {
    auto coop = ks::Coop::open(*parsed.config);
    if (!coop) {
      log(LogLevel::Error, "not starting: " + coop.error());
      return 1;
    }
    store = std::move(*coop);
  } else {
    store = std::make_unique<ks::StateFile>(parsed.config->server.state_dir);
  }
  auto opened = ks::KeyServer::open(std::move(*parsed.config), args.config_path, std::move(store), !keylog.empty(),
                                    clock::now_ms());
  if (!opened) {
    log(LogLevel::Error, "not starting: " + opened.error());
    return 1;
  }
  ks::KeyServer& core = **opened;

  ks::ServerOptions options;
  for (const Address& a : core.config().server.listen) options.listen.push_back(Endpoint{a, core.config().server.port});
  if (!keylog.empty()) options.keylog_path = keylog;
  options.address = core.address();
  options.workers = core.config().server.workers.value_or(static_cast<std::uint32_t>(ks::cpus_available()));

  boost::asio::io_context io;
  ks::Server server(io, options, core);
  std::string error;
  // start() logs what opening the core said, then its first tick already
  // rekeys what is due.
  if (!server.start(&error)) {
    log(LogLevel::Error, "not starting: " + error);
    return 1;
  }

  auto handler = [&](const nlohmann::json& req) -> control::Reply {
    // A long listing goes out in pieces between the loop's other work.
    if (ks::streams_members(req))
      return control::Reply::stream(
          [stream = std::make_shared<ks::MemberStream>(core.groups(), req, clock::wall_offset_s())] {
            return stream->next();
          });
    nlohmann::json reply = core.handle(req, clock::now_ms(), clock::wall_offset_s());
    server.flush();
    return reply;
  };
  std::unique_ptr<control::Server> control;
  try {
    control = std::make_unique<control::Server>(io, core.config().server.control_socket, handler);
  } catch (const std::exception& e) {
    log(LogLevel::Error, std::string("not starting: ") + e.what());
    return 1;
  }
  log(LogLevel::Info, "control socket " + core.config().server.control_socket);
  // On the loop that owns the counters: read where they are kept, unlocked.
  std::unique_ptr<metrics::HttpServer> metrics_server;
  if (const auto& listen = core.config().metrics.listen) {
    try {
      metrics_server = std::make_unique<metrics::HttpServer>(
          io, *listen, [&core] { return ks::metrics_text(core, clock::now_ms()); });
    } catch (const std::exception& e) {
      log(LogLevel::Error, std::string("not starting: ") + e.what());
      return 1;
    }
    log(LogLevel::Info, "metrics on http://" + listen->str() + "/metrics");
  }
  // Bound to 848, the state restored and saved, the socket made: nothing
  // left that needs privilege. The socket and the state file go to the
  // user; the socket's group (mode 0660) decides who may use coveyctl.
  {
    bool dropped = true;
    if (account) {
      const std::string& dir = core.config().server.state_dir;
      if (!core.config().cluster) dropped = apps::give_to(*account, ks::state_file_path(dir), &error);
      dropped = dropped && apps::give_to(*account, core.config().server.control_socket, &error) &&
                apps::become(*account, &error);
      if (dropped) log(LogLevel::Info, "running as user " + account->name);
    } else {
      dropped = apps::drop_all_capabilities(&error);
    }
    if (!dropped) {
      log(LogLevel::Error, "not starting: " + error);
      return 1;
    }
  }
  apps::Watchdog watchdog(io);
  sd::notify("READY=1\nSTATUS=" + ks_status(core));

  boost::asio::signal_set hangup(io, SIGHUP);
  std::function<void()> arm_hangup = [&] {
    hangup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      log(LogLevel::Info, "SIGHUP: reloading " + args.config_path);
      sd::notify("RELOADING=1\nSTATUS=reloading " + args.config_path + "\nMONOTONIC_USEC=" + apps::monotonic_usec());
      const nlohmann::json r = core.reload(clock::now_ms());
      server.flush();
      sd::notify("READY=1\nSTATUS=" + ks_status(core) + "; last reload: " +
                 (r.value("ok", false) ? r.value("message", "") : r.value("error", "")));
      arm_hangup();
    });
  };
  arm_hangup();
  boost::asio::signal_set stop(io, SIGINT, SIGTERM);
  stop.async_wait([&](const boost::system::error_code&, int sig) {
    log(LogLevel::Info, std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
    sd::notify("STOPPING=1\nSTATUS=stopping: saving the state");
    io.stop();
  });
  io.run();
  if (auto r = core.save(); !r) {
    log(LogLevel::Error, "state not saved at shutdown: " + r.error());
    return 1;
  }
  return 0;
}
