// Text for the replies of the control socket (userspace/control/PROTOCOL.md),
// laid out like IOS's `show crypto gdoi`: a header block of "Label : value"
// lines, the ACL, then the KEK and TEK policies. Pure: reply and clock in,
// text out. A field the daemon left out or sent with the wrong type prints
// as "-", so an older or newer daemon still gets a readable page.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace covey::coveyctl {

struct RenderContext {
  std::int64_t now = 0;  // unix seconds: "(188 s ago)" counts from here
  bool utc = false;      // print times in UTC instead of local time (tests)
};

// {"cmd":"ks.group"} reply: every group, keys only if the reply has them.
std::string render_ks_groups(const nlohmann::json& reply, const RenderContext& ctx);
// {"cmd":"ks.members"} reply: one table of members per group.
std::string render_ks_members(const nlohmann::json& reply, const RenderContext& ctx);
// {"cmd":"ks.cluster"} reply: the cooperative key servers and etcd.
std::string render_ks_cluster(const nlohmann::json& reply, const RenderContext& ctx);
// {"cmd":"gm.status"} reply.
std::string render_gm_status(const nlohmann::json& reply, const RenderContext& ctx);
// {"cmd":"ks.reload"} and {"cmd":"ks.rekey"} replies: the daemon's message.
std::string render_message(const nlohmann::json& reply, const RenderContext& ctx);

}  // namespace covey::coveyctl
