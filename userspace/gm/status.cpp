#include "gm/status.h"

#include <algorithm>

namespace covey::gm {

using nlohmann::json;

json key_status(const RekeyState& keys, std::int64_t t, bool show_keys, bool multicast_joined,
                std::int64_t wall_offset_s) {
  const bool registered = keys.is_registered();
  const auto expected_by = keys.next_rekey_expected_by();
  json j;
  json acl = json::array(), fc = json::array(), teks = json::array();
  json kek = nullptr, rekey = nullptr;
  const gdoi::GroupPolicy& p = keys.policy();
  if (registered) {
    for (const auto& e : p.acl) acl.push_back(e.str());
    for (const auto& e : p.fail_close_acl) fc.push_back(e.str());
    for (const TekView& v : keys.teks(t)) {
      json tj = {{"spi", spi_hex(v.tek->spi)},         {"transform", p.tek.str()},
                 {"lifetime_s", v.lifetime_s},         {"remaining_s", v.remaining_s},
                 {"state", name(v.state)},             {"activates_at", v.activates_at + wall_offset_s},
                 {"deactivates_at", v.deactivates_at + wall_offset_s}};
      if (show_keys) tj["keys"] = {{"encryption", to_hex(v.tek->encryption_key)}, {"integrity", to_hex(v.tek->integrity_key)}};
      teks.push_back(tj);
    }
    if (const auto& rx = keys.receiver()) {
      kek = {{"spi", to_hex(rx->kek().spi)},
             {"cipher", std::string(crypto::name(rx->kek_policy().cipher))},
             {"signature", rx->kek_policy().signature_str()},
             {"signing_key", gdoi::signing_key_id(rx->kek().signature_public_key)},
             {"lifetime_s", keys.kek_lifetime_s()},
             {"remaining_s", std::max<std::int64_t>(0, keys.kek_expires_at().value_or(t) - t)}};
      if (show_keys) kek["keys"] = {{"algorithm_key", to_hex(rx->kek().algorithm_key)}};
      const auto group = multicast_group(p);
      rekey = {{"mode", group ? "multicast" : "unicast"}, {"port", p.rekey.port}};
      if (group) {
        rekey["address"] = group->address.str();
        rekey["joined"] = multicast_joined;
      } else {
        rekey["acknowledged"] = rx->ack_requested();
      }
    }
    j["tbar_window_ms"] = p.tbar_window_ms ? json(*p.tbar_window_ms) : json(nullptr);
    j["sids"] = keys.sids();
  } else {
    j["tbar_window_ms"] = nullptr;
    j["sids"] = json::array();
  }
  j["acl"] = acl;
  j["fail_close_acl"] = fc;
  j["tek"] = teks;
  j["kek"] = kek;
  j["rekey"] = rekey;
  const auto last_seq = keys.last_seq();
  j["seq"] = last_seq ? json(*last_seq) : json(nullptr);  // kept for older readers: the same as last_seq
  const RekeyCounters& c = keys.counters();
  j["rekeys_received"] = c.rekeys_received;
  j["rekeys_since_registration"] = c.rekeys_since_registration;
  j["acks_sent"] = c.acks_sent;
  j["last_seq"] = last_seq ? json(*last_seq) : json(nullptr);
  j["next_rekey_expected_by"] = registered && expected_by ? json(*expected_by + wall_offset_s) : json(nullptr);
  json refused = json::object();
  for (auto r : gdoi::kPushRefusedReasons) refused[gdoi::PushRefused{r, {}}.counter()] = c.refused(r);
  j["pushes_refused"] = refused;
  j["push_retransmissions"] = c.retransmissions;
  return j;
}

}  // namespace covey::gm
