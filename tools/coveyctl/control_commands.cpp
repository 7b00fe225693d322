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
  if (!o.json) {
    auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
    std::cout << render(reply, RenderContext{now.count(), false});
  }
  return 0;
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
  members->add_option("NAME", o.group, "only this group");
  add_json_flag(members, o);
  add_socket_option(members, o);
  members->callback([&o, &exit_code] {
    Json request{{"cmd", "ks.members"}};
    if (!o.group.empty()) request["group"] = o.group;
    exit_code = ask("ks members", o, request, render_ks_members);
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
