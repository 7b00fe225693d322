#include "ks/status.h"

#include <algorithm>
#include <cstdio>

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

json member_status(const Groups& groups, const std::optional<std::string>& name, std::int64_t wall_offset_s) {
  json out = json::array();
  for (const auto& [id, g] : groups.all()) {
    if (!selected(*g, name)) continue;
    json members = json::array();
    for (const auto& [addr, m] : g->members())
      members.push_back({{"address", addr.str()},
                         {"identity", m.identity},
                         {"registered_at", m.registered_at + wall_offset_s},
                         {"registrations", m.registrations},
                         {"sids", m.sids},
                         {"last_acked_seq", m.last_acked_seq ? json(*m.last_acked_seq) : json(nullptr)},
                         {"missed_rekeys", m.missed_rekeys},
                         {"covey_features", m.traits.covey ? json(m.traits.features) : json(nullptr)},
                         {"registered_to", m.registered_to ? json(m.registered_to->str()) : json(nullptr)}});
    out.push_back({{"name", g->policy().name}, {"identity", g->policy().identity}, {"members", members}});
  }
  if (name && out.empty()) return {{"ok", false}, {"error", "no group named " + *name}};
  return {{"ok", true}, {"groups", out}};
}

}  // namespace covey::ks
