#include "coveyctl/control_commands.h"

#include <chrono>
#include <iostream>

#include <nlohmann/json.hpp>

#include "control/client.h"
#include "control/protocol.h"
#include "coveyctl/render.h"

namespace covey::coveyctl {
namespace {

using Json = nlohmann::json;
using Renderer = std::string (*)(const Json&, const RenderContext&);

// Long enough for a daemon busy with a rekey, short enough that a hung one
// does not hang a script.
constexpr std::chrono::seconds kTimeout{10};

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Sends `request`, prints the reply (as JSON, or through `render`), and
// returns the exit status. An ok:false reply is printed with --json too:
// it is the daemon's answer, and scripts may want its fields.
int ask(const std::string& command, const ControlOptions& o, const Json& request, Renderer render) {
  control::Result result = control::request(o.socket, request, kTimeout);
  if (!result.reply) {
    std::cerr << "coveyctl " << command << ": " << result.error << "\n";
    return 1;
  }
  const Json& reply = *result.reply;
  if (o.json) std::cout << reply.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";

  bool ok = reply.is_object() && reply.contains("ok") && reply["ok"] == true;
  if (!ok) {
    bool has_error = reply.is_object() && reply.contains("error") && reply["error"].is_string();
    std::cerr << "coveyctl " << command << ": "
              << (has_error ? reply["error"].get<std::string>()
                            : "the daemon's reply has neither \"ok\":true nor an \"error\": " +
                                  reply.dump(-1, ' ', false, Json::error_handler_t::replace))
              << "\n";
    return 1;
  }
  if (!o.json) std::cout << render(reply, RenderContext{unix_now(), false});
  return 0;
}

// `ks members` as the key server streams it: printed line by line as it
// arrives, so 100,000 members never sit in one string on either side. A
// key server from before streaming answers in one line; that is printed
// as before.
int stream_members(const ControlOptions& o, const Json& request) {
  const std::string command = "coveyctl ks members: ";
  MembersPrinter printer(RenderContext{unix_now(), false}, o.json);
  bool first = true, refused = false;
  std::string error = control::stream(
      o.socket, request,
      [&](const Json& line) {
        const Json* ok = line.is_object() && line.contains("ok") ? &line["ok"] : nullptr;
        if (first || ok != nullptr) {
          first = false;
          if (ok == nullptr || *ok != true) {
            refused = true;
            if (o.json) std::cout << line.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
            std::cerr << command
                      << (line.contains("error") && line["error"].is_string()
                              ? line["error"].get<std::string>()
                              : "the daemon's reply has neither \"ok\":true nor an \"error\": " +
                                    line.dump(-1, ' ', false, Json::error_handler_t::replace))
                      << "\n";
            return false;
          }
          if (!line.contains("stream")) {  // one line: an older covey-ks
            if (o.json)
              std::cout << line.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
            else
              std::cout << render_ks_members(line, RenderContext{unix_now(), false});
            return false;
          }
          std::cout << printer.start();
          return true;
        }
        std::cout << printer.line(line);
        return !printer.done();
      },
      kTimeout);
  std::cout.flush();
  if (!error.empty()) {
    std::cerr << command << error << "\n";
    return 1;
  }
  return refused ? 1 : 0;
}

void add_socket_option(CLI::App* cmd, ControlOptions& o) {
  cmd->add_option("--socket", o.socket, "the daemon's control socket")->capture_default_str();
}

void add_json_flag(CLI::App* cmd, ControlOptions& o) {
  cmd->add_flag("--json", o.json, "print the daemon's JSON reply as is (userspace/control/PROTOCOL.md)");
}

void add_show_keys_flag(CLI::App* cmd, ControlOptions& o) {
  cmd->add_flag("--show-keys", o.show_keys, "include key material (TEK and KEK keys) in the output");
}

}  // namespace

void add_ks_command(CLI::App& app, ControlOptions& o, int& exit_code) {
  o.socket = control::kKsSocket;
  CLI::App* ks = app.add_subcommand("ks", "Ask a running covey-ks (key server) over its control socket");
  ks->require_subcommand(1);

  CLI::App* group = ks->add_subcommand("group", "Show groups: rekey transport, ACL, KEK and TEK policies");
  group->add_option("NAME", o.group, "only this group");
  add_json_flag(group, o);
  add_show_keys_flag(group, o);
  add_socket_option(group, o);
  group->callback([&o, &exit_code] {
    Json request{{"cmd", "ks.group"}, {"show_keys", o.show_keys}};
    if (!o.group.empty()) request["group"] = o.group;
    exit_code = ask("ks group", o, request, render_ks_groups);
  });

  CLI::App* members = ks->add_subcommand("members", "Show the group members registered with this key server");
  CLI::Option* name = members->add_option("NAME", o.group, "only this group");
  members->add_option("--group", o.group, "only this group (as NAME)")->excludes(name);
  members->add_option("--prefix", o.prefix,
                      "only members whose address is in this prefix, e.g. 10.1.0.0/16 or 2001:db8::/32");
  members->add_option(
      "--since", o.since,
      "only members registered at or after this time: RFC 3339 UTC (2026-12-05T16:00:00Z) or a time ago "
      "(90s, 10m, 2h, 7d)");
  members->add_flag("--count", o.count, "print how many members each group has (that match), not who");
  add_json_flag(members, o);
  add_socket_option(members, o);
  members->callback([&o, &exit_code] {
    Json request{{"cmd", "ks.members"}};
    if (!o.group.empty()) request["group"] = o.group;
    if (!o.prefix.empty()) request["prefix"] = o.prefix;
    if (!o.since.empty()) {
      std::string why;
      auto since = parse_since(o.since, unix_now(), &why);
      if (!since) {
        std::cerr << "coveyctl ks members: --since: " << why << "\n";
        exit_code = 1;
        return;
      }
      request["since"] = *since;
    }
    if (o.count) {
      request["count"] = true;
      exit_code = ask("ks members", o, request, render_ks_member_count);
      return;
    }
    request["stream"] = true;
    exit_code = stream_members(o, request);
  });

  CLI::App* reload = ks->add_subcommand("reload", "Re-read the configuration file");
  add_json_flag(reload, o);
  add_socket_option(reload, o);
  reload->callback([&o, &exit_code] { exit_code = ask("ks reload", o, {{"cmd", "ks.reload"}}, render_message); });

  CLI::App* cluster = ks->add_subcommand(
      "cluster", "Show the cooperative key servers sharing this one's groups through etcd, and etcd's health");
  add_json_flag(cluster, o);
  add_socket_option(cluster, o);
  cluster->callback([&o, &exit_code] { exit_code = ask("ks cluster", o, {{"cmd", "ks.cluster"}}, render_ks_cluster); });

  CLI::App* rekey = ks->add_subcommand("rekey", "Make a new TEK for a group now and push it to its members");
  rekey->add_option("GROUP", o.group, "the group to rekey (name or identity)")->required();
  add_json_flag(rekey, o);
  add_socket_option(rekey, o);
  rekey->callback([&o, &exit_code] {
    exit_code = ask("ks rekey", o, {{"cmd", "ks.rekey"}, {"group", o.group}}, render_message);
  });

  CLI::App* remove = ks->add_subcommand(
      "remove-member", "Remove a group member and rekey KEK and TEK by unicast to the others, so it cannot follow");
  remove->add_option("ADDRESS", o.address, "the member's address, as `coveyctl ks members` shows it")->required();
  remove->add_option("--group", o.group, "the member's group (needed when it is in more than one)");
  add_json_flag(remove, o);
  add_socket_option(remove, o);
  remove->callback([&o, &exit_code] {
    Json request{{"cmd", "ks.remove-member"}, {"address", o.address}};
    if (!o.group.empty()) request["group"] = o.group;
    exit_code = ask("ks remove-member", o, request, render_message);
  });
}

void add_gm_command(CLI::App& app, ControlOptions& o, int& exit_code) {
  o.socket = control::kGmSocket;
  CLI::App* gm = app.add_subcommand("gm", "Ask a running covey-gm (group member) over its control socket");
  gm->require_subcommand(1);

  CLI::App* status = gm->add_subcommand("status", "Show registration state, key servers, ACL, KEK and TEKs");
  add_json_flag(status, o);
  add_show_keys_flag(status, o);
  add_socket_option(status, o);
  status->callback([&o, &exit_code] {
    exit_code = ask("gm status", o, {{"cmd", "gm.status"}, {"show_keys", o.show_keys}}, render_gm_status);
  });
}

}  // namespace covey::coveyctl
