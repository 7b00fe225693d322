#include "ks/status.h"

#include <algorithm>
#include <cstdio>
#include <string_view>

#include "common/bytes.h"

namespace covey::ks {

using nlohmann::json;

namespace {

json acl_json(const std::vector<gdoi::AclEntry>& acl) {
  json a = json::array();
  for (const auto& e : acl) a.push_back(e.str());
  return a;
}

bool selected(const Group& g, const std::optional<std::string>& name) {
  return !name || g.policy().name == *name || std::to_string(g.policy().identity) == *name;
}

std::int64_t remaining(std::int64_t until, std::int64_t now) { return until > now ? until - now : 0; }

}  // namespace

json rekey_status(const Group& g, const Rekeyer& rekeyer, std::int64_t now, std::int64_t wall_offset_s) {
  json j;
  j["rekeys_sent"] = rekeyer.rekeys_sent(g);
  if (auto last = rekeyer.last_rekey(g))
    j["last_rekey"] = {{"seq", last->seq},
                       {"at", last->at + wall_offset_s},
                       {"reason", reason_name(last->reason)},
                       {"members", last->members},
                       {"acked", last->acked},
                       {"transport", last->unicast ? "unicast" : "multicast"}};
  else
    j["last_rekey"] = nullptr;
  // Due already (a rekey that could not be saved waits for its retry): now.
  j["next_rekey_at"] = std::max(rekeyer.next_rekey_at(g), now) + wall_offset_s;
  return j;
}

json group_status(const Groups& groups, const Rekeyer* rekeyer, const std::optional<std::string>& name, bool show_keys,
                  std::int64_t now_ms, std::int64_t wall_offset_s) {
  const std::int64_t now = seconds_of(now_ms);
  json out = json::array();
  for (const auto& [id, g] : groups.all()) {
    if (!selected(*g, name)) continue;
    const gdoi::GroupPolicy& p = g->policy();
    json j;
    j["name"] = p.name;
    j["identity"] = p.identity;
    j["members"] = g->members().size();
    j["seq"] = g->seq();
    if (rekeyer) j.update(rekey_status(*g, *rekeyer, now, wall_offset_s));
    json rekey;
    rekey["mode"] = p.rekey.mode == gdoi::RekeyTransport::Mode::Unicast ? "unicast" : "multicast";
    if (p.rekey.mode == gdoi::RekeyTransport::Mode::Multicast) {
      Address a;
      a.family = p.rekey.multicast_address.family;
      a.bytes = p.rekey.multicast_address.address;
      rekey["address"] = a.str();
    }
    rekey["port"] = p.rekey.port;
    rekey["retransmit_period_s"] = p.rekey.retransmit_period_s;
    rekey["retransmit_count"] = p.rekey.retransmit_count;
    j["rekey"] = rekey;
    j["acl"] = acl_json(p.acl);
    j["fail_close_acl"] = acl_json(p.fail_close_acl);
    j["tbar_window_ms"] = p.tbar_window_ms ? json(*p.tbar_window_ms) : json(nullptr);
    // The clock members' TBAR stamps are checked against; it runs whether
    // or not the policy has a window (then no member is told it).
    j["pseudotime_ms"] = g->pseudotime_ms(now_ms);
    json teks = json::array();
    for (const auto& t : g->teks()) {
      json tj;
      tj["spi"] = spi_hex(t.tek.spi);
      tj["transform"] = p.tek.str();
      tj["lifetime_s"] = t.expires_at - t.created_at;
      tj["remaining_s"] = remaining(t.expires_at, now);
      if (show_keys) tj["keys"] = {{"encryption", to_hex(t.tek.encryption_key)}, {"integrity", to_hex(t.tek.integrity_key)}};
      teks.push_back(tj);
    }
    j["tek"] = teks;
    json kek;
    kek["spi"] = to_hex(g->kek().spi);
    kek["cipher"] = std::string(crypto::name(p.kek.cipher));
    kek["signature"] = p.kek.signature_str();
    kek["signing_key"] = gdoi::signing_key_id(g->kek().signature_public_key);
    kek["lifetime_s"] = p.kek.lifetime_s;
    kek["remaining_s"] = remaining(g->kek_expires_at(), now);
    if (show_keys) kek["keys"] = {{"algorithm_key", to_hex(g->kek().algorithm_key)}};
    j["kek"] = kek;
    out.push_back(j);
  }
  if (name && out.empty()) return {{"ok", false}, {"error", "no group named " + *name}};
  return {{"ok", true}, {"groups", out}};
}

bool MemberFilter::matches(const Member& m) const {
  if (prefix && !prefix->contains(m.address)) return false;
  if (since && m.registered_at < *since) return false;
  return true;
}

std::optional<MemberFilter> MemberFilter::of(const json& request, std::int64_t wall_offset_s,
                                             std::string* why) {
  MemberFilter f;
  if (auto p = request.find("prefix"); p != request.end()) {
    std::string reason;
    if (p->is_string()) f.prefix = gdoi::Prefix::parse(p->get<std::string>(), &reason);
    if (!f.prefix) {
      *why = "\"prefix\" must be an address prefix such as \"10.1.0.0/16\" or \"2001:db8::/32\"" +
             (reason.empty() ? std::string() : ": " + reason);
      return std::nullopt;
    }
  }
  if (auto s = request.find("since"); s != request.end()) {
    if (!s->is_number_integer()) {
      *why = "\"since\" must be unix seconds (an integer), e.g. 1763900000";
      return std::nullopt;
    }
    f.since = s->get<std::int64_t>() - wall_offset_s;
  }
  return f;
}

namespace {

// Every reading of member records goes through here: the members of `g`
// that `f` selects, in address order, starting after `after` (nullopt: at
// the first), each handed to `visit` until it returns false or `limit`
// records have been examined.
struct ScanEnd {
  std::optional<Address> last;  // the last address examined; nullopt: the group has no more
  std::size_t examined = 0;
};
template <class Visit>
ScanEnd scan(const Group& g, const MemberFilter& f, const std::optional<Address>& after, std::size_t limit,
             Visit visit) {
  const auto& members = g.members();
  auto it = after ? members.upper_bound(*after) : members.begin();
  if (f.prefix) {
    // Addresses order by family, then bytes: a prefix is one run of them,
    // starting at its network address.
    Address first;
    first.family = f.prefix->family;
    first.bytes = f.prefix->address;
    if (it == members.end() || it->first < first) it = members.lower_bound(first);
  }
  ScanEnd end;
  for (; it != members.end(); ++it) {
    const auto& [addr, m] = *it;
    if (f.prefix && !f.prefix->contains(addr)) break;  // past the run
    bool more = f.matches(m) ? visit(m) : true;
    ++end.examined;
    if (!more || end.examined >= limit) {
      end.last = addr;
      break;
    }
  }
  return end;
}

constexpr std::size_t kAll = static_cast<std::size_t>(-1);

// A string as JSON: as is when it needs no escaping (addresses, most
// subjects), else through nlohmann (escapes; invalid UTF-8 becomes U+FFFD).
void append_string(std::string& out, std::string_view s) {
  if (std::all_of(s.begin(), s.end(),
                  [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; })) {
    out += '"';
    out += s;
    out += '"';
  } else {
    out += json(s).dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

// One member as ks.members shows it (PROTOCOL.md). Written straight into
// the reply: at 100,000 members, building a JSON tree per member first cost
// the key server's loop five times as much.
void append_member(std::string& out, const Member& m, std::int64_t wall_offset_s) {
  auto number = [&out](auto v) { out += std::to_string(v); };
  out += "{\"address\":";
  append_string(out, m.address.str());
  out += ",\"identity\":";
  append_string(out, m.identity);
  out += ",\"registered_at\":";
  number(m.registered_at + wall_offset_s);
  out += ",\"registrations\":";
  number(m.registrations);
  out += ",\"sids\":[";
  for (std::size_t i = 0; i < m.sids.size(); ++i) {
    if (i) out += ',';
    number(m.sids[i]);
  }
  out += "],\"last_acked_seq\":";
  if (m.last_acked_seq)
    number(*m.last_acked_seq);
  else
    out += "null";
  out += ",\"missed_rekeys\":";
  number(m.missed_rekeys);
  out += ",\"covey_features\":";
  if (m.traits.covey)
    number(m.traits.features);
  else
    out += "null";
  out += ",\"registered_to\":";
  if (m.registered_to)
    append_string(out, m.registered_to->str());
  else
    out += "null";
  out += '}';
}

std::string line_of(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace

json member_status(const Groups& groups, const std::optional<std::string>& name, std::int64_t wall_offset_s,
                   const MemberFilter& filter) {
  json out = json::array();
  for (const auto& [id, g] : groups.all()) {
    if (!selected(*g, name)) continue;
    json members = json::array();
    std::string text;
    scan(*g, filter, std::nullopt, kAll, [&](const Member& m) {
      text.clear();
      append_member(text, m, wall_offset_s);
      members.push_back(json::parse(text));
      return true;
    });
    out.push_back({{"name", g->policy().name}, {"identity", g->policy().identity}, {"members", members}});
  }
  if (name && out.empty()) return {{"ok", false}, {"error", "no group named " + *name}};
  return {{"ok", true}, {"groups", out}};
}

json member_count(const Groups& groups, const std::optional<std::string>& name, const MemberFilter& filter) {
  json out = json::array();
  std::size_t total = 0;
  for (const auto& [id, g] : groups.all()) {
    if (!selected(*g, name)) continue;
    std::size_t n = 0;
    if (filter.empty())
      n = g->members().size();
    else
      scan(*g, filter, std::nullopt, kAll, [&n](const Member&) {
        ++n;
        return true;
      });
    total += n;
    out.push_back({{"name", g->policy().name},
                   {"identity", g->policy().identity},
                   {"registered", g->members().size()},
                   {"count", n}});
  }
  if (name && out.empty()) return {{"ok", false}, {"error", "no group named " + *name}};
  return {{"ok", true}, {"groups", out}, {"count", total}};
}

bool streams_members(const json& request) {
  return request.value("cmd", "") == "ks.members" && request.value("stream", false) == true &&
         request.value("count", false) != true;
}

MemberStream::MemberStream(const Groups& groups, const json& request, std::int64_t wall_offset_s)
    : groups_(groups), wall_offset_s_(wall_offset_s) {
  std::optional<std::string> name;
  if (auto g = request.find("group"); g != request.end() && g->is_string()) name = g->get<std::string>();
  for (const auto& [id, g] : groups.all())
    if (selected(*g, name)) selected_.push_back(id);
  std::string why;
  if (auto f = MemberFilter::of(request, wall_offset_s, &why))
    filter_ = *f;
  else
    refusal_ = line_of({{"ok", false}, {"error", "ks.members: " + why}});
  if (name && selected_.empty()) refusal_ = line_of({{"ok", false}, {"error", "no group named " + *name}});
}

std::optional<std::string> MemberStream::next() {
  if (done_) return std::nullopt;
  if (!refusal_.empty()) {
    done_ = true;
    return refusal_;
  }
  std::string out;
  out.reserve(kMembersPerPiece * 256);  // a member is about 200 bytes: no regrowth
  if (!header_sent_) {
    header_sent_ = true;
    out = line_of({{"ok", true}, {"stream", "ks.members"}});
  }
  std::size_t listed = 0, examined = 0;
  while (listed < kMembersPerPiece && examined < kExaminedPerPiece) {
    if (group_ == selected_.size()) {
      out += line_of({{"end", true}, {"listed", listed_}});
      done_ = true;
      break;
    }
    auto found = groups_.all().find(selected_[group_]);
    if (found == groups_.all().end()) {  // groups stay for the key server's life; be safe anyway
      ++group_;
      continue;
    }
    const Group& g = *found->second;
    if (!in_group_) {
      in_group_ = true;
      cursor_.reset();
      out += line_of({{"group",
                       {{"name", g.policy().name},
                        {"identity", g.policy().identity},
                        {"registered", g.members().size()}}}});
    }
    const std::size_t want = std::min(kMembersPerLine, kMembersPerPiece - listed);
    const std::size_t line_start = out.size();
    out += "{\"members\":[";
    std::size_t n = 0;
    // The cursor moves to the last record examined, listed or not, so the
    // next piece starts after it.
    ScanEnd end = scan(g, filter_, cursor_, kExaminedPerPiece - examined, [&](const Member& m) {
      if (n++) out += ',';
      append_member(out, m, wall_offset_s_);
      return n < want;
    });
    if (n)
      out += "]}\n";
    else
      out.resize(line_start);
    cursor_ = end.last;
    examined += end.examined;
    listed += n;
    listed_ += n;
    if (!cursor_) {
      in_group_ = false;
      ++group_;
    }
  }
  return out;
}

}  // namespace covey::ks
