#include "coveyctl/render.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "covey_maps.h"

namespace covey::coveyctl {
namespace {

using Json = nlohmann::json;

// Every lookup goes through these, never operator[] or get<>(), so a reply
// of an unexpected shape prints "-" instead of throwing.
const Json* field_of(const Json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::optional<std::int64_t> integer(const Json& j, const char* key) {
  const Json* v = field_of(j, key);
  if (v == nullptr || !v->is_number_integer()) return std::nullopt;
  return v->get<std::int64_t>();
}

std::string text(const Json& j, const char* key) {
  const Json* v = field_of(j, key);
  if (v == nullptr) return "-";
  if (v->is_string()) return v->get<std::string>();
  if (v->is_number_integer()) return std::to_string(v->get<std::int64_t>());
  if (v->is_boolean()) return v->get<bool>() ? "yes" : "no";
  return "-";
}

bool is_null(const Json& j, const char* key) {
  const Json* v = field_of(j, key);
  return v != nullptr && v->is_null();
}

const Json& array_of(const Json& j, const char* key) {
  static const Json empty = Json::array();
  const Json* v = field_of(j, key);
  return v != nullptr && v->is_array() ? *v : empty;
}

std::string seconds(std::optional<std::int64_t> s) { return s ? std::to_string(*s) + " s" : "-"; }

// "3412 s of 3600 s": what is left first, as an operator asks "how long until rekey".
std::string lifetime(const Json& sa) {
  auto remaining = integer(sa, "remaining_s");
  auto total = integer(sa, "lifetime_s");
  return (remaining ? std::to_string(*remaining) : std::string("-")) + " s of " +
         (total ? std::to_string(*total) : std::string("-")) + " s";
}

// "2025-11-23 12:13:20 CET (188 s ago)", or "(in 3112 s)" for a time ahead.
std::string when(std::int64_t t, const RenderContext& ctx) {
  auto tt = static_cast<std::time_t>(t);
  std::tm tm{};
  if (ctx.utc ? gmtime_r(&tt, &tm) == nullptr : localtime_r(&tt, &tm) == nullptr) return std::to_string(t);
  char buf[64];
  std::strftime(buf, sizeof buf, ctx.utc ? "%Y-%m-%d %H:%M:%S UTC" : "%Y-%m-%d %H:%M:%S %Z", &tm);
  std::int64_t delta = ctx.now - t;
  std::string rel = delta > 0   ? std::to_string(delta) + " s ago"
                    : delta < 0 ? "in " + std::to_string(-delta) + " s"
                                : "now";
  return std::string(buf) + " (" + rel + ")";
}

std::string joined(const Json& values, std::string_view separator) {
  std::string out;
  for (const Json& v : values) {
    if (!out.empty()) out += separator;
    out += v.is_string() ? v.get<std::string>() : v.dump();
  }
  return out;
}

// "Label : value" lines with every colon in one column, as IOS aligns them.
class Page {
 public:
  void field(int indent, std::string_view label, std::string_view value) {
    out_.append(static_cast<std::size_t>(indent), ' ');
    out_ += label;
    std::size_t used = static_cast<std::size_t>(indent) + label.size();
    out_.append(used <= kColon ? kColon - used : 1, ' ');
    out_ += ": ";
    out_ += value;
    out_ += '\n';
  }
  void line(int indent, std::string_view s) {
    out_.append(static_cast<std::size_t>(indent), ' ');
    out_ += s;
    out_ += '\n';
  }
  void blank() { out_ += '\n'; }
  std::string str() && { return std::move(out_); }

 private:
  static constexpr std::size_t kColon = 29;  // "    Rekey Retransmit Attempts: 2", as IOS prints it
  std::string out_;
};

void acl_section(Page& page, std::string_view heading, const Json& entries) {
  page.line(4, std::string(heading) + ":");
  if (entries.empty()) page.line(6, "none");
  for (const Json& e : entries) page.line(6, e.is_string() ? e.get<std::string>() : e.dump());
}

// Key material: only in the reply when coveyctl asked with --show-keys.
void keys(Page& page, const Json& sa) {
  const Json* k = field_of(sa, "keys");
  if (k == nullptr || !k->is_object()) return;
  for (const auto& [name, value] : k->items()) {
    std::string label = name == "encryption"      ? "Encryption Key"
                        : name == "integrity"     ? "Integrity Key"
                        : name == "algorithm_key" ? "Algorithm Key"
                                                  : name;
    page.field(6, label, value.is_string() ? value.get<std::string>() : value.dump());
  }
}

void kek_section(Page& page, const Json& group) {
  const Json* kek = field_of(group, "kek");
  if (kek == nullptr || kek->is_null()) {
    // No KEK means no GROUPKEY-PUSH: members refresh TEKs by re-registering.
    page.line(4, "KEK POLICY: none (no rekey SA)");
    return;
  }
  page.line(4, "KEK POLICY:");
  page.field(6, "SPI", text(*kek, "spi"));
  page.field(6, "Encrypt Algorithm", text(*kek, "cipher"));
  page.field(6, "Signature", text(*kek, "signature"));
  page.field(6, "Remaining Lifetime", lifetime(*kek));
  keys(page, *kek);
}

// The TEKs, on either side; where each stands in its rollover when the
// reply says (covey-gm sends activates_at/deactivates_at with every TEK).
void tek_section(Page& page, const Json& group, const RenderContext& ctx) {
  const Json& teks = array_of(group, "tek");
  if (teks.empty()) {
    page.line(4, "TEK POLICY: none");
    return;
  }
  page.line(4, "TEK POLICY:");
  bool first = true;
  for (const Json& tek : teks) {
    if (!first) page.blank();
    first = false;
    page.field(6, "SPI", text(tek, "spi"));
    page.field(6, "Transform", text(tek, "transform"));
    page.field(6, "Remaining Lifetime", lifetime(tek));
    if (field_of(tek, "state") != nullptr) page.field(6, "State", text(tek, "state"));
    if (auto at = integer(tek, "activates_at")) page.field(6, "Activates", when(*at, ctx));
    if (auto at = integer(tek, "deactivates_at")) page.field(6, "Deactivates", when(*at, ctx));
    keys(page, tek);
  }
}

std::string anti_replay(const Json& group) {
  if (is_null(group, "tbar_window_ms")) return "off (counter-based replay window only)";
  auto ms = integer(group, "tbar_window_ms");
  return ms ? "time-based, " + std::to_string(*ms) + " ms window" : "-";
}

std::string rekey_transport(const Json& group) {
  const Json* rekey = field_of(group, "rekey");
  if (rekey == nullptr) return "-";
  std::string mode = text(*rekey, "mode");
  if (mode == "multicast") return "Multicast to " + text(*rekey, "address") + ", port " + text(*rekey, "port");
  if (mode == "unicast") return "Unicast, port " + text(*rekey, "port");
  return mode;
}

// The widest cell of each column.
std::vector<std::size_t> widths_of(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& row : rows)
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  return width;
}

// Columns padded to `width`, two spaces apart; a wider cell pushes the rest
// of its row right.
void table(Page& page, int indent, const std::vector<std::vector<std::string>>& rows,
           const std::vector<std::size_t>& width) {
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size())
        line.append((i < width.size() && width[i] > row[i].size() ? width[i] - row[i].size() : 0) + 2, ' ');
    }
    page.line(indent, line);
  }
}

// Columns padded to their widest cell.
void table(Page& page, int indent, const std::vector<std::vector<std::string>>& rows) {
  table(page, indent, rows, widths_of(rows));
}

// The key server's rekeys: how many, the last one (as GET VPN's "Last
// rekey ... Acknowledged by" lines), and when the next is due.
void rekey_history(Page& page, const Json& group, const RenderContext& ctx) {
  page.field(4, "Rekeys Sent", text(group, "rekeys_sent"));
  const Json* last = field_of(group, "last_rekey");
  if (last == nullptr || !last->is_object()) {
    page.field(4, "Last Rekey", is_null(group, "last_rekey") ? "none since covey-ks started" : "-");
  } else {
    auto at = integer(*last, "at");
    std::string transport = text(*last, "transport");
    std::string line = "SEQ " + text(*last, "seq") + ", " + text(*last, "reason") + ", " + (at ? when(*at, ctx) : "-");
    page.field(4, "Last Rekey", line);
    std::string sent = text(*last, "members") + " members (" + transport + ")";
    if (transport == "unicast") sent += ", acknowledged by " + text(*last, "acked");
    page.field(4, "Last Rekey Sent To", sent);
  }
  auto next = integer(group, "next_rekey_at");
  page.field(4, "Next Rekey", next ? when(*next, ctx) : "-");
}

}  // namespace

std::string render_ks_groups(const Json& reply, const RenderContext& ctx) {
  const Json& groups = array_of(reply, "groups");
  if (groups.empty()) return "No GDOI groups configured.\n";
  Page page;
  page.line(0, "GROUP INFORMATION");
  for (const Json& g : groups) {
    page.blank();
    page.field(4, "Group Name", text(g, "name"));
    page.field(4, "Group Identity", text(g, "identity"));
    page.field(4, "Group Members", text(g, "members"));
    page.field(4, "Rekey Transport", rekey_transport(g));
    if (const Json* rekey = field_of(g, "rekey")) {
      page.field(4, "Rekey Retransmit Period", seconds(integer(*rekey, "retransmit_period_s")));
      page.field(4, "Rekey Retransmit Attempts", text(*rekey, "retransmit_count"));
    }
    page.field(4, "Rekey Sequence Number", text(g, "seq"));
    if (field_of(g, "rekeys_sent") != nullptr) rekey_history(page, g, ctx);
    page.field(4, "Anti-Replay", anti_replay(g));
    // The clock members check TBAR stamps against, told them only with a window.
    if (auto pt = integer(g, "pseudotime_ms"); pt && !is_null(g, "tbar_window_ms"))
      page.field(4, "Pseudotime", std::to_string(*pt) + " ms");
    page.blank();
    acl_section(page, "ACL Configured", array_of(g, "acl"));
    acl_section(page, "Fail-Close ACL", array_of(g, "fail_close_acl"));
    page.blank();
    kek_section(page, g);
    page.blank();
    tek_section(page, g, ctx);
  }
  return std::move(page).str();
}

std::string render_ks_members(const Json& reply, const RenderContext& ctx) {
  const Json& groups = array_of(reply, "groups");
  if (groups.empty()) return "No GDOI groups configured.\n";
  // The one-line reply printed as a stream of it would be.
  MembersPrinter printer(ctx, false);
  std::string out = printer.start();
  for (const Json& g : groups) {
    const Json& members = array_of(g, "members");
    Json group = {
        {"name", text(g, "name")}, {"identity", text(g, "identity")}, {"registered", members.size()}};
    out += printer.line({{"group", group}});
    out += printer.line({{"members", members}});
  }
  return out + printer.line({{"end", true}});
}

std::string render_ks_member_count(const Json& reply, const RenderContext&) {
  const Json& groups = array_of(reply, "groups");
  if (groups.empty()) return "No GDOI groups configured.\n";
  Page page;
  for (const Json& g : groups) {
    auto n = integer(g, "count");
    auto of = integer(g, "registered");
    std::string count =
        n && of && *n != *of ? text(g, "count") + " of " + text(g, "registered") : text(g, "count");
    page.line(0, "Group " + text(g, "name") + " (identity " + text(g, "identity") + "): " + count +
                     (n == 1 && !(of && *of != 1) ? " member" : " members"));
  }
  return std::move(page).str();
}

std::string MembersPrinter::start() {
  return json_ ? "{\"ok\":true,\"groups\":[" : "";
}

std::string MembersPrinter::end_group() {
  if (!in_group_) return "";
  in_group_ = false;
  if (json_) return "\n],\"listed\":" + std::to_string(listed_) + "}";
  if (registered_ >= 0 && listed_ == static_cast<std::size_t>(registered_)) return "";
  return "  " + std::to_string(listed_) + " of them listed\n";
}

std::string MembersPrinter::line(const Json& l) {
  constexpr auto dump = [](const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); };
  if (field_of(l, "end") != nullptr) {
    done_ = true;
    std::string out = end_group();
    if (json_)
      out += "\n],\"listed\":" + text(l, "listed") + "}\n";
    else if (first_group_)
      out += "No GDOI groups configured.\n";
    return out;
  }
  if (const Json* g = field_of(l, "group")) {
    std::string out = end_group();
    in_group_ = true;
    listed_ = 0;
    registered_ = integer(*g, "registered").value_or(-1);
    columns_set_ = false;
    if (json_) {
      std::string head = g->is_object() ? dump(*g) : "{}";
      if (!head.empty() && head.back() == '}') head.pop_back();  // the members follow
      out += std::string(first_group_ ? "\n" : ",\n") + head + (head.size() > 1 ? "," : "") + "\"members\":[";
    } else {
      if (!first_group_) out += "\n";
      out += "Group " + text(*g, "name") + " (identity " + text(*g, "identity") +
             "): " + text(*g, "registered") + (registered_ == 1 ? " member" : " members") + "\n";
    }
    first_group_ = false;
    return out;
  }
  const Json& members = array_of(l, "members");
  if (!in_group_ || members.empty()) return "";
  if (json_) {
    std::string out;
    for (const Json& m : members) {
      out += listed_++ == 0 ? "\n" : ",\n";
      out += dump(m);
    }
    return out;
  }
  Page page;
  std::vector<std::vector<std::string>> rows;
  const bool first = !columns_set_;
  if (first) {
    columns_set_ = true;
    // Rekey delivery columns only from a key server that sends rekeys.
    rekeys_ = std::any_of(members.begin(), members.end(),
                          [](const Json& m) { return field_of(m, "missed_rekeys") != nullptr; });
    // What it announced in Main Mode, from a key server that records it.
    vendor_ = std::any_of(members.begin(), members.end(),
                          [](const Json& m) { return field_of(m, "covey_features") != nullptr; });
    // Which key server address each registered to, when members reached
    // more than one (a dual-stack key server: IPv4 and IPv6 members).
    std::set<std::string> ks_addresses;
    for (const Json& m : members)
      if (const Json* v = field_of(m, "registered_to"); v && v->is_string())
        ks_addresses.insert(v->get<std::string>());
    via_ = ks_addresses.size() > 1;
    rows.push_back({"ADDRESS", "IDENTITY", "REGISTERED", "REGISTRATIONS", "SIDS"});
    if (via_) rows[0].push_back("VIA KS");
    if (rekeys_) {
      rows[0].push_back("LAST ACK");
      rows[0].push_back("MISSED");
    }
    if (vendor_) rows[0].push_back("POLICY");
  }
  for (const Json& m : members) {
    ++listed_;
    auto at = integer(m, "registered_at");
    rows.push_back({text(m, "address"), text(m, "identity"), at ? when(*at, ctx_) : "-",
                    text(m, "registrations"),
                    field_of(m, "sids") != nullptr ? joined(array_of(m, "sids"), ",") : "-"});
    if (via_) rows.back().push_back(text(m, "registered_to"));
    if (rekeys_) {
      rows.back().push_back(is_null(m, "last_acked_seq") ? "none" : text(m, "last_acked_seq"));
      rows.back().push_back(text(m, "missed_rekeys"));
    }
    if (vendor_) {
      auto f = integer(m, "covey_features");
      char hex[16] = "";
      if (f) std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(*f));
      rows.back().push_back(f ? std::string("covey 0x") + hex : "RFC 6407");
    }
  }
  if (first) widths_ = widths_of(rows);
  table(page, 2, rows, widths_);
  return std::move(page).str();
}

std::optional<std::int64_t> parse_since(std::string_view text, std::int64_t now, std::string* why) {
  auto fail = [&] {
    // Appended, not "\"" + std::string(text): GCC 12 warns (-Wrestrict) wrongly on that.
    why->assign(1, '"').append(text).append(
        "\" is no time: give RFC 3339 UTC, e.g. 2026-12-05T16:00:00Z, or a time ago, e.g. 90s, 10m, 2h, 7d");
    return std::nullopt;
  };
  if (text.empty()) return fail();
  // A time ago: digits and one unit.
  if (std::string_view units = "smhd"; units.find(text.back()) != std::string_view::npos) {
    std::string_view digits = text.substr(0, text.size() - 1);
    std::int64_t n = 0;
    if (digits.empty() || digits.size() > 9 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return fail();
    for (char c : digits) n = n * 10 + (c - '0');
    constexpr std::int64_t kUnit[] = {1, 60, 3600, 86400};
    return now - n * kUnit[units.find(text.back())];
  }
  // RFC 3339 in UTC, whole seconds: YYYY-MM-DDTHH:MM:SSZ.
  std::tm tm{};
  char sep = 0, zone = 0, extra = 0;
  std::string s(text);
  if (std::sscanf(s.c_str(), "%4d-%2d-%2d%c%2d:%2d:%2d%c%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &sep,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &zone, &extra) != 8 ||
      s.size() != 20 || (sep != 'T' && sep != 't' && sep != ' ') || (zone != 'Z' && zone != 'z') ||
      tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 60)
    return fail();
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<std::int64_t>(::timegm(&tm));
}

// As IOS's `show crypto gdoi ks coop`: this key server, then every key
// server of the cluster with the SEQ and SPIs it holds, then etcd.
std::string render_ks_cluster(const Json& reply, const RenderContext& ctx) {
  Page page;
  page.line(0, "COOPERATIVE KEY SERVER INFORMATION (etcd)");
  page.blank();
  page.field(4, "Local Key Server", text(reply, "name") + " (" + text(reply, "address") + ")");
  page.field(4, "Local Priority", text(reply, "priority"));
  page.field(4, "Local Role", text(reply, "role"));
  page.field(4, "Primary", text(reply, "primary").empty() ? "none elected" : text(reply, "primary"));
  page.field(4, "Lease TTL", seconds(integer(reply, "lease_ttl")) +
                                 (field_of(reply, "lease_valid") && reply["lease_valid"].is_boolean() &&
                                          !reply["lease_valid"].get<bool>()
                                      ? " (lapsed: etcd unreachable)"
                                      : ""));
  page.field(4, "etcd Prefix", text(reply, "prefix"));
  page.blank();
  std::vector<std::vector<std::string>> rows{{"NAME", "ADDRESS", "PRIORITY", "ROLE", "LAST SEEN", "GROUP", "SEQ", "KEK SPI", "TEK SPIS"}};
  for (const Json& ks : array_of(reply, "key_servers")) {
    auto seen = integer(ks, "last_seen");
    std::vector<std::string> head{text(ks, "name") + (ks.value("self", false) ? " (this)" : ""), text(ks, "address"),
                                  text(ks, "priority"), text(ks, "role"), seen ? when(*seen, ctx) : "-"};
    const Json* groups = field_of(ks, "groups");
    bool first = true;
    if (groups != nullptr && groups->is_object())
      for (const auto& [name, g] : groups->items()) {
        std::vector<std::string> row = first ? head : std::vector<std::string>(head.size(), "");
        first = false;
        std::string kek = text(g, "kek");
        row.push_back(name);
        row.push_back(text(g, "seq"));
        row.push_back(kek.size() > 16 ? kek.substr(0, 16) + "..." : kek);
        row.push_back(joined(array_of(g, "teks"), " "));
        rows.push_back(std::move(row));
      }
    if (first) rows.push_back(head);
  }
  page.line(4, "Key Servers:");
  table(page, 6, rows);
  page.blank();
  const Json* etcd = field_of(reply, "etcd");
  page.line(4, "etcd:");
  if (etcd == nullptr) return std::move(page).str();
  page.field(6, "Endpoints", joined(array_of(*etcd, "endpoints"), ", "));
  if (!etcd->value("reachable", false)) {
    page.field(6, "Reachable", "no: " + text(*etcd, "error"));
    return std::move(page).str();
  }
  std::vector<std::vector<std::string>> members{{"MEMBER", "CLIENT URLS", "STATE"}};
  for (const Json& m : array_of(*etcd, "members")) {
    std::string state = !m.value("reachable", false) ? "unreachable: " + text(m, "error")
                        : m.value("leader", false)   ? "leader"
                                                     : "follower";
    members.push_back({text(m, "name"), joined(array_of(m, "client_urls"), ","), state});
  }
  table(page, 6, members);
  return std::move(page).str();
}

namespace {

// "3 (1 since registration)", or the bare count from an older covey-gm.
std::string rekeys_received(const Json& reply) {
  std::string all = text(reply, "rekeys_received");
  const Json* since = field_of(reply, "rekeys_since_registration");
  return since == nullptr ? all : all + " (" + text(reply, "rekeys_since_registration") + " since registration)";
}

// "2 (replay 1, bad signature 1)": the total, then every reason that counted.
std::string pushes_refused(const Json& refused) {
  std::int64_t total = 0;
  std::string parts;
  for (const char* reason : {"unknown_kek", "undecryptable", "malformed", "replay", "bad_signature", "retired_signing_key"}) {
    auto n = integer(refused, reason);
    if (!n || *n == 0) continue;
    total += *n;
    std::string label = reason;
    std::replace(label.begin(), label.end(), '_', ' ');
    parts += (parts.empty() ? "" : ", ") + label + " " + std::to_string(*n);
  }
  return parts.empty() ? "0" : std::to_string(total) + " (" + parts + ")";
}

std::string gm_rekey_transport(const Json& rekey) {
  std::string mode = text(rekey, "mode");
  if (mode == "multicast") {
    const Json* joined = field_of(rekey, "joined");
    bool in = joined != nullptr && joined->is_boolean() && joined->get<bool>();
    return "Multicast to " + text(rekey, "address") + ", port " + text(rekey, "port") + (in ? " (joined)" : " (not joined)");
  }
  if (mode == "unicast") {
    const Json* acked = field_of(rekey, "acknowledged");
    bool ack = acked != nullptr && acked->is_boolean() && acked->get<bool>();
    return "Unicast" + std::string(ack ? " with ACK" : "") + ", port " + text(rekey, "port");
  }
  return mode;
}

// A covey_stats counter (bpf/covey_maps.h) and where the page lists it.
struct CounterInfo {
  const char* name;     // the C field name, as gm.status and `bpftool map dump` spell it
  const char* stage;    // group heading for a counter that is not a drop
  bool drop;            // listed under "Dropped" instead, so losses stand out
  const char* meaning;  // one line (COVEY_STATS in covey_maps.h)
};

// Every counter of struct covey_stats, in its order: the packet's path
// through the programs (bpf/covey_maps.h, COVEY_STATS).
#define COVEY_STAT(name, section, drop, text) {#name, section, drop != 0, text},
constexpr CounterInfo kCounters[] = {COVEY_STATS(COVEY_STAT)};
#undef COVEY_STAT

// A counter as JSON sends it (covey_stats fields are u64); nullopt when it is
// not a non-negative integer.
std::optional<std::uint64_t> count(const Json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(v.get<std::int64_t>());
  return std::nullopt;
}

// `show access-lists` style: "permit ip any any (12 matches)".
void acl_hits_section(Page& page, std::string_view heading, const Json* entries) {
  page.line(6, std::string(heading) + ":");
  if (entries == nullptr || !entries->is_array()) {
    page.line(8, "-");
    return;
  }
  if (entries->empty()) page.line(8, "none");
  for (const Json& e : *entries) {
    const Json* hits = field_of(e, "hits");
    auto n = hits != nullptr ? count(*hits) : std::nullopt;
    std::string matches = !n ? "- matches" : std::to_string(*n) + (*n == 1 ? " match" : " matches");
    page.line(8, text(e, "line") + " (" + matches + ")");
  }
}

// The non-zero counters by stage, drops gathered last under "Dropped" with
// their total; a counter this coveyctl does not know yet under "Other".
void counters_section(Page& page, const Json& stats) {
  struct Row {
    std::string heading, name, value, meaning;
  };
  std::vector<Row> rows;
  std::vector<Row> drops;
  std::uint64_t dropped = 0;
  for (const CounterInfo& c : kCounters) {
    const Json* v = field_of(stats, c.name);
    if (v == nullptr) continue;
    auto n = count(*v);
    if (n && *n == 0) continue;
    if (c.drop && n) dropped += *n;
    (c.drop ? drops : rows).push_back({c.stage, c.name, n ? std::to_string(*n) : "-", c.meaning});
  }
  for (const auto& item : stats.items()) {
    // Not a structured binding: clang 14 (the sanitizer build) cannot capture one.
    const std::string& name = item.key();
    bool known = std::any_of(std::begin(kCounters), std::end(kCounters),
                             [&name](const CounterInfo& c) { return name == c.name; });
    auto n = count(item.value());
    if (known || (n && *n == 0)) continue;
    rows.push_back({"Other", name, n ? std::to_string(*n) : "-", ""});
  }
  // Each drop counts packets no other drop counter counts, so the sum is the loss.
  for (Row& d : drops) {
    d.heading = "Dropped (" + std::to_string(dropped) + (dropped == 1 ? " packet)" : " packets)");
    rows.push_back(std::move(d));
  }
  if (rows.empty()) {
    page.field(6, "Counters", stats.empty() ? "none" : "all zero");
    return;
  }
  std::size_t name_width = 0;
  std::size_t value_width = 0;
  for (const Row& r : rows) {
    name_width = std::max(name_width, r.name.size());
    value_width = std::max(value_width, r.value.size());
  }
  std::string heading;
  for (const Row& r : rows) {
    if (r.heading != heading) {
      heading = r.heading;
      page.line(6, heading + ":");
    }
    std::string line = r.name;
    line.append(name_width - r.name.size() + 2 + value_width - r.value.size(), ' ');
    line += r.value;
    if (!r.meaning.empty()) line += "  " + r.meaning;
    page.line(8, line);
  }
}

// What covey-gm installed in the kernel for the group ("data_path"): where
// it sits, which SAs the BPF programs know, and what they did with packets.
void data_path_section(Page& page, const Json& dp) {
  if (!dp.is_object()) {
    page.line(4, "DATA PATH: -");
    return;
  }
  std::string state = text(dp, "state");
  if (state == "off") {
    page.line(4, "DATA PATH: off (keys only: nothing installed in the kernel)");
    return;
  }
  page.line(4, "DATA PATH:");
  page.field(6, "State", state == "active"       ? "Active"
                         : state == "fail-close" ? "Fail-close (no TEK active)"
                         : state == "error"      ? "Error"
                                                 : state);
  if (const Json* err = field_of(dp, "error"); err != nullptr && err->is_string())
    page.field(6, "Error", err->get<std::string>());
  page.field(6, "WAN Interface", text(dp, "wan"));
  if (const Json* lans = field_of(dp, "lans"); lans != nullptr && lans->is_array())
    page.field(6, "LAN Interfaces", lans->empty() ? "none" : joined(*lans, ", "));
  else
    page.field(6, "LAN Interfaces", "-");
  page.field(6, "Sending SPI", is_null(dp, "sending_spi") ? "none" : text(dp, "sending_spi"));
  if (const Json* in = field_of(dp, "inbound_spis"); in != nullptr && in->is_array())
    page.field(6, "Inbound SPIs", in->empty() ? "none" : joined(*in, ", "));
  else
    page.field(6, "Inbound SPIs", "-");
  // Where arriving ESP is judged: "XDP (native)", "XDP (generic)", "tc ingress".
  if (const Json* in = field_of(dp, "inbound"); in != nullptr && in->is_string())
    page.field(6, "Inbound Decisions At", in->get<std::string>());
  // Where `bpftool map dump pinned <dir>/covey_stats` and friends read from.
  page.field(6, "BPF Maps Pinned At", text(dp, "pin_dir"));
  const Json* acl = field_of(dp, "acl_hits");
  const Json* fail_close = field_of(dp, "fail_close_hits");
  const Json* stats = field_of(dp, "stats");
  if (acl == nullptr && fail_close == nullptr && stats == nullptr) {
    // covey-gm sends these only while its BPF programs are loaded.
    page.field(6, "Counters", "none (BPF programs not loaded)");
    return;
  }
  acl_hits_section(page, "ACL Installed", acl);
  acl_hits_section(page, "Fail-Close ACL Installed", fail_close);
  if (stats != nullptr && stats->is_object())
    counters_section(page, *stats);
  else
    page.field(6, "Counters", "-");
}

}  // namespace

std::string render_gm_status(const Json& reply, const RenderContext& ctx) {
  static const Json no_group = Json::object();
  const Json* group = field_of(reply, "group");
  const Json& g = group != nullptr ? *group : no_group;

  std::string state = text(reply, "state");
  std::string status = state == "registered"    ? "Registered"
                       : state == "registering" ? "Registering"
                       : state == "waiting"     ? "Waiting to retry registration"
                                                : state;
  std::string active_ks;
  std::string servers;
  for (const Json& ks : array_of(reply, "key_servers")) {
    std::string address = text(ks, "address");
    const Json* flag = field_of(ks, "active");
    bool active = flag != nullptr && flag->is_boolean() && flag->get<bool>();
    if (active) active_ks = address;
    servers += (servers.empty() ? "" : ", ") + address + (active ? " (active)" : "");
  }
  auto registered = integer(reply, "registered_at");
  auto reregister = integer(reply, "reregister_at");

  Page page;
  page.line(0, "GROUP INFORMATION");
  page.blank();
  page.field(4, "Group Name", text(g, "name"));
  page.field(4, "Group Identity", text(g, "identity"));
  page.field(4, "Group Server List", servers.empty() ? "-" : servers);
  page.field(4, "Registration Status", status);
  page.field(4, "Registered", registered ? when(*registered, ctx) : "never");
  page.field(4, "Re-registers", reregister ? when(*reregister, ctx) : "not scheduled");
  if (const Json* err = field_of(reply, "last_error"); err != nullptr && err->is_string())
    page.field(4, "Last Error", err->get<std::string>());
  if (const Json* rekey = field_of(reply, "rekey"); rekey != nullptr && rekey->is_object())
    page.field(4, "Rekey Transport", gm_rekey_transport(*rekey));
  page.field(4, "Rekeys Received", rekeys_received(reply));
  if (field_of(reply, "acks_sent") != nullptr) page.field(4, "Rekey ACKs Sent", text(reply, "acks_sent"));
  if (const Json* refused = field_of(reply, "pushes_refused"); refused != nullptr && refused->is_object())
    page.field(4, "Rekeys Refused", pushes_refused(*refused));
  page.field(4, "Rekey Sequence Number", text(reply, field_of(reply, "last_seq") != nullptr ? "last_seq" : "seq"));
  if (field_of(reply, "next_rekey_expected_by") != nullptr) {
    auto by = integer(reply, "next_rekey_expected_by");
    page.field(4, "Next Rekey Expected By", by ? when(*by, ctx) : "-");
  }
  page.field(4, "Sender IDs", field_of(reply, "sids") != nullptr ? joined(array_of(reply, "sids"), ", ") : "-");
  page.field(4, "Anti-Replay", anti_replay(reply));
  page.blank();
  acl_section(page, active_ks.empty() ? "ACL Downloaded From KS" : "ACL Downloaded From KS " + active_ks,
              array_of(reply, "acl"));
  acl_section(page, "Fail-Close ACL", array_of(reply, "fail_close_acl"));
  page.blank();
  kek_section(page, reply);
  page.blank();
  tek_section(page, reply, ctx);
  // Absent from a covey-gm older than the data path: no section then.
  if (const Json* dp = field_of(reply, "data_path")) {
    page.blank();
    data_path_section(page, *dp);
  }
  return std::move(page).str();
}

std::string render_message(const Json& reply, const RenderContext&) {
  const Json* message = field_of(reply, "message");
  return (message != nullptr && message->is_string() ? message->get<std::string>() : std::string("done")) + "\n";
}

}  // namespace covey::coveyctl
