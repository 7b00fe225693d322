// Text for the replies of the control socket (userspace/control/PROTOCOL.md),
// laid out like IOS's `show crypto gdoi`: a header block of "Label : value"
// lines, the ACL, then the KEK and TEK policies. Pure: reply and clock in,
// text out. A field the daemon left out or sent with the wrong type prints
// as "-", so an older or newer daemon still gets a readable page.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace covey::coveyctl {

struct RenderContext {
  std::int64_t now = 0;  // unix seconds: "(188 s ago)" counts from here
  bool utc = false;      // print times in UTC instead of local time (tests)
};

// {"cmd":"ks.group"} reply: every group, keys only if the reply has them.
std::string render_ks_groups(const nlohmann::json& reply, const RenderContext& ctx);
// {"cmd":"ks.members"} reply: one table of members per group.
std::string render_ks_members(const nlohmann::json& reply, const RenderContext& ctx);
// {"cmd":"ks.members","count":true} reply: how many per group.
std::string render_ks_member_count(const nlohmann::json& reply, const RenderContext& ctx);

// `coveyctl ks members` printed while its streamed reply arrives
// (PROTOCOL.md, "Streamed replies"): each line of the stream in, the text to
// print now out, so nothing holds the whole listing. The table takes its
// columns and their widths from a group's first line of members (up to
// 500); a wider cell further on pushes the rest of its row right instead.
// As JSON, the output is one document shaped as the one-line reply,
// {"ok":true,"groups":[{"name":..,"identity":..,"registered":..,
// "members":[...],"listed":..}],"listed":..}, one member a line.
class MembersPrinter {
 public:
  MembersPrinter(RenderContext ctx, bool json) : ctx_(ctx), json_(json) {}
  // One line of the stream, after the first ({"ok":true,...}) one.
  std::string line(const nlohmann::json& line);
  // The header line's text ({"ok":true,"stream":"ks.members"}).
  std::string start();
  bool done() const { return done_; }

 private:
  std::string end_group();

  RenderContext ctx_;
  bool json_;
  bool done_ = false;
  bool in_group_ = false, first_group_ = true;
  std::int64_t registered_ = 0;
  std::size_t listed_ = 0;
  // The table's columns, fixed by the group's first members line.
  bool columns_set_ = false, via_ = false, rekeys_ = false, vendor_ = false;
  std::vector<std::size_t> widths_;
};

// --since: "2026-12-05T16:00:00Z" (RFC 3339, UTC; a space for the T too),
// or a time ago: "90s", "10m", "2h", "7d". Unix seconds, or nullopt and
// `why` says what it accepts.
std::optional<std::int64_t> parse_since(std::string_view text, std::int64_t now, std::string* why);
// {"cmd":"ks.cluster"} reply: the cooperative key servers and etcd.
std::string render_ks_cluster(const nlohmann::json& reply, const RenderContext& ctx);
// {"cmd":"gm.status"} reply.
std::string render_gm_status(const nlohmann::json& reply, const RenderContext& ctx);
// {"cmd":"ks.reload"} and {"cmd":"ks.rekey"} replies: the daemon's message.
std::string render_message(const nlohmann::json& reply, const RenderContext& ctx);

}  // namespace covey::coveyctl
