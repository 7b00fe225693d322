// covey-ks: the GDOI key server.
#include <utility>  // before Asio (Boost 1.74 and C++20)

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <iostream>

#include "apps/daemon_cli.h"
#include "apps/ks_reload.h"
#include "apps/phase1_setup.h"
#include "common/clock.h"
#include "common/log.h"
#include "config/ks_config.h"
#include "control/server.h"
#include "ks/server.h"
#include "crypto/x509.h"
#include "ks/state_store.h"
#include "ks/status.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

using namespace covey;

int main(int argc, char** argv) {
  CLI::App app{"covey-ks: GDOI key server (RFC 6407) on UDP 848"};
  apps::DaemonArgs args;
  args.config_path = std::string(config::kDefaultKsConfigPath);
  apps::add_daemon_options(app, args);
  CLI11_PARSE(app, argc, argv);
  apps::apply_log_options("covey-ks", args);

  auto parsed = config::load_ks_config(args.config_path);
  if (auto done = apps::report_config(parsed, args, "covey-ks")) return *done;
  // Replaced by a successful reload; [server] never changes while running.
  config::KsConfig cfg = std::move(*parsed.config);
  // The command line's keylog wins over the file's.
  std::string keylog = args.keylog.empty() ? cfg.server.keylog : args.keylog;

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
  std::int64_t now = clock::now_s();
  for (const config::KsGroupConfig& g : cfg.groups) {
    // A key file is read into memory that wipes itself.
    auto pem = crypto::read_pem_file(g.signing_key);
    if (!pem) {
      log(LogLevel::Error, "not starting: group " + g.policy.name + ": rekey signing key: " + pem.error());
      return 1;
    }
    auto key = crypto::PrivateKey::from_pem(crypto::pem_text(*pem));
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

  // The groups carry on from the state file, or start afresh and write it
  // before any key in it is sent. A file that cannot be read is the
  // operator's to look at: replacing it would strand every member.
  const std::string state_path = ks::state_file_path(cfg.server.state_dir);
  struct stat state_stat {};
  bool have_state = ::lstat(state_path.c_str(), &state_stat) == 0;
  if (!have_state && errno != ENOENT) {
    log(LogLevel::Error, "not starting: state file " + state_path + ": " + std::strerror(errno));
    return 1;
  }
  if (have_state) {
    if (auto restored = ks::restore_state(state_path, groups); !restored) {
      log(LogLevel::Error, "not starting: " + restored.error());
      return 1;
    }
    for (const auto& [id, g] : groups.all())
      log(LogLevel::Info, "group " + g->policy().name + ": state restored from " + state_path + ": " +
                              std::to_string(g->members().size()) + " members, SEQ " + std::to_string(g->seq()) +
                              ", next SID " + std::to_string(g->next_sid()));
  } else {
    log(LogLevel::Info, "no state file " + state_path + ": groups start with new keys");
  }
  // Every save is timed: the lazy member saves below are spaced by what
  // the last one cost.
  using Clock = std::chrono::steady_clock;
  Clock::time_point last_save_end{};
  Clock::duration last_save_took{};
  auto save = [&]() -> crypto::Result<void> {
    Clock::time_point start = Clock::now();
    auto r = ks::save_state(state_path, groups);
    last_save_end = Clock::now();
    last_save_took = last_save_end - start;
    if (r) groups.mark_state_written();
    return r;
  };
  // Written even after a restore: the file then also holds what the
  // running daemon will hand out first.
  if (auto written = save(); !written) {
    log(LogLevel::Error, "not starting: " + written.error());
    return 1;
  }
  // Rekeys and SID reservations save at once, never delayed.
  groups.set_write_now(save);

  ks::ServerOptions options;
  for (const Address& a : cfg.server.listen) options.listen.push_back(Endpoint{a, cfg.server.port});
  options.dispatcher.phase1 = apps::phase1_transforms(cfg.isakmp);
  options.dispatcher.credentials = creds;
  options.dispatcher.half_open_cap = cfg.server.max_half_open;
  if (!keylog.empty()) options.keylog_path = keylog;
  options.dispatcher.keylog = !keylog.empty();
  options.address = ks_address;

  boost::asio::io_context io;
  ks::Server server(io, options, groups);
  // Before start(): its first tick already rekeys what is due.
  for (const config::KsGroupConfig& g : cfg.groups)
    server.rekeyer().set_margins(g.policy.identity, ks::RekeyMargins{g.tek_margin_s, g.kek_margin_s});
  if (!server.start(&error)) {
    log(LogLevel::Error, "not starting: " + error);
    return 1;
  }
  for (const auto& [id, g] : groups.all())
    log(LogLevel::Info, "group " + g->policy().name + ": next rekey in " +
                            std::to_string(std::max<std::int64_t>(server.rekeyer().next_rekey_at(*g) - clock::now_s(), 0)) +
                            " s (TEK margin " + std::to_string(ks::tek_margin(server.rekeyer().margins(*g), g->policy())) +
                            " s, KEK margin " + std::to_string(ks::kek_margin(server.rekeyer().margins(*g), g->policy())) +
                            " s)");

  // SIGHUP and ks.reload: the file again, all of it applied or none.
  auto do_reload = [&]() -> nlohmann::json {
    auto next = config::load_ks_config(args.config_path);
    std::vector<std::string> problems;
    for (const auto& p : next.problems)
      if (p.is_error()) problems.push_back(p.str());
    apps::KsReload r;
    if (next.ok()) r = apps::reload(cfg, std::move(*next.config), groups, server.dispatcher(), server.rekeyer(), clock::now_ms());
    for (auto& p : r.problems) problems.push_back(std::move(p));
    server.flush();
    if (!problems.empty()) {
      std::string text;
      for (const auto& p : problems) text += (text.empty() ? "" : "; ") + p;
      log(LogLevel::Error, "reload of " + args.config_path + " refused, nothing changed: " + text);
      return {{"ok", false}, {"error", "reload refused, nothing changed: " + text}, {"problems", problems}};
    }
    for (const auto& p : next.problems) log(LogLevel::Warning, p.str());
    std::string message = r.rekeyed.empty() ? "configuration reloaded; no group's member-visible policy changed"
                                            : "configuration reloaded; rekeyed for the policy change:";
    for (const auto& g : r.rekeyed) message += " " + g;
    log(LogLevel::Info, message);
    nlohmann::json reply = {{"ok", r.errors.empty()}, {"rekeyed", r.rekeyed}, {"message", message}};
    if (!r.errors.empty()) {
      std::string text;
      for (const auto& e : r.errors) text += (text.empty() ? "" : "; ") + e;
      reply["error"] = "configuration reloaded, but " + text;
      reply["problems"] = r.errors;
    }
    return reply;
  };
  auto find_group = [&](const std::string& name) -> ks::Group* {
    if (ks::Group* g = groups.find(name)) return g;
    for (const auto& [id, g] : groups.all())
      if (std::to_string(id) == name) return g.get();
    return nullptr;
  };
  auto handler = [&](const nlohmann::json& req) -> nlohmann::json {
    std::string cmd = req.value("cmd", "");
    std::optional<std::string> group;
    if (req.contains("group") && req["group"].is_string()) group = req["group"].get<std::string>();
    if (cmd == "ks.group")
      return ks::group_status(groups, &server.rekeyer(), group, req.value("show_keys", false), clock::now_ms(),
                              clock::wall_offset_s());
    if (cmd == "ks.members") return ks::member_status(groups, group, clock::wall_offset_s());
    if (cmd == "ks.reload") return do_reload();
    if (cmd == "ks.rekey") {
      if (!group) return {{"ok", false}, {"error", "ks.rekey needs \"group\", e.g. {\"cmd\":\"ks.rekey\",\"group\":\"GET_VPN\"}"}};
      ks::Group* g = find_group(*group);
      if (!g) return {{"ok", false}, {"error", "no group named " + *group}};
      auto seq = server.rekeyer().rekey(*g, ks::RekeyReason::Operator, clock::now_ms());
      server.flush();
      if (!seq) return {{"ok", false}, {"error", seq.error()}};
      auto last = server.rekeyer().last_rekey(*g);
      return {{"ok", true},
              {"seq", *seq},
              {"message", "group " + g->policy().name + ": rekey SEQ " + std::to_string(*seq) + " sent to " +
                              std::to_string(last ? last->members : 0) + " members"}};
    }
    if (cmd == "ks.remove-member") {
      std::string text = req.contains("address") && req["address"].is_string() ? req["address"].get<std::string>() : "";
      auto address = Address::parse(text);
      if (!address)
        return {{"ok", false},
                {"error", "ks.remove-member needs \"address\", the member's IP address, e.g. "
                          "{\"cmd\":\"ks.remove-member\",\"address\":\"10.1.24.4\"}"}};
      auto seq = server.rekeyer().remove_member(*address, group, clock::now_ms());
      server.flush();
      if (!seq) return {{"ok", false}, {"error", seq.error()}};
      return {{"ok", true},
              {"seq", *seq},
              {"message", "GM " + address->str() + " removed; rekey SEQ " + std::to_string(*seq) +
                              " (new KEK and TEK) sent by unicast to the remaining members. It may register again "
                              "unless the group's authorization excludes it"}};
    }
    return {{"ok", false},
            {"error", "unknown command \"" + cmd +
                          "\" (covey-ks answers ks.group, ks.members, ks.reload, ks.rekey, ks.remove-member)"}};
  };
  std::unique_ptr<control::Server> control;
  try {
    control = std::make_unique<control::Server>(io, cfg.server.control_socket, handler);
  } catch (const std::exception& e) {
    log(LogLevel::Error, std::string("not starting: ") + e.what());
    return 1;
  }
  log(LogLevel::Info, "control socket " + cfg.server.control_socket);
  // Members are written lazily (see ks/state_store.h): a second after the
  // last save of any kind at the earliest, and no sooner than 20 times
  // what that save took. A save writes every member, so at tens of
  // thousands of them a fixed once a second would grow into a large share
  // of the one thread that answers registrations; this way lazy saves take
  // at most a twentieth of it whatever the member count. Waiting longer
  // costs little: a member whose record a crash loses registers again.
  constexpr Clock::duration kMemberSaveInterval = std::chrono::seconds(1);
  constexpr int kMemberSaveCostFactor = 20;
  auto member_save_due = [&] { return last_save_end + std::max(kMemberSaveInterval, kMemberSaveCostFactor * last_save_took); };
  boost::asio::steady_timer state_timer(io);
  std::function<void()> arm_state_timer = [&] {
    state_timer.expires_at(std::max(member_save_due(), Clock::now() + kMemberSaveInterval));
    state_timer.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      if (groups.state_dirty() && Clock::now() >= member_save_due()) {
        if (auto r = save(); !r) log(LogLevel::Error, "members not saved (will retry): " + r.error());
      }
      arm_state_timer();
    });
  };
  arm_state_timer();
  boost::asio::signal_set hangup(io, SIGHUP);
  std::function<void()> arm_hangup = [&] {
    hangup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      log(LogLevel::Info, "SIGHUP: reloading " + args.config_path);
      do_reload();
      arm_hangup();
    });
  };
  arm_hangup();
  boost::asio::signal_set stop(io, SIGINT, SIGTERM);
  stop.async_wait([&](const boost::system::error_code&, int sig) {
    log(LogLevel::Info, std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
    io.stop();
  });
  io.run();
  if (auto r = save(); !r) {
    log(LogLevel::Error, "state not saved at shutdown: " + r.error());
    return 1;
  }
  return 0;
}
