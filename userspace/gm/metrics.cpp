#include "gm/metrics.h"

#include <cctype>

#include "metrics/exposition.h"

namespace covey::gm {

using metrics::Exposition;
using metrics::Labels;
using metrics::Type;

namespace {

// "Path MTU" -> "path_mtu": a COVEY_STATS section as a label value.
std::string stage(std::string_view section) {
  std::string s;
  for (char c : section) s += c == ' ' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void key_metrics(Exposition& x, const MetricsInput& in) {
  const RekeyState& keys = *in.keys;
  const RekeyCounters& c = keys.counters();
  const Labels group{{"group", in.group}};
  x.family("covey_gm_registered", Type::Gauge, "1 while the member holds the group's keys from a registration.");
  x.sample(group, keys.is_registered() ? 1 : 0);
  x.family("covey_gm_rekeys_received_total", Type::Counter, "GROUPKEY-PUSH rekeys accepted and applied.");
  x.sample(group, c.rekeys_received);
  x.family("covey_gm_rekey_acks_sent_total", Type::Counter, "Acknowledgements (RFC 8263) sent to the key server.");
  x.sample(group, c.acks_sent);
  x.family("covey_gm_rekey_retransmissions_total", Type::Counter,
           "Copies of the last accepted push received again (the key server missed the acknowledgement).");
  x.sample(group, c.retransmissions);
  x.family("covey_gm_pushes_refused_total", Type::Counter,
           "GROUPKEY-PUSH datagrams refused, by reason; a refused push changes nothing.");
  for (auto r : gdoi::kPushRefusedReasons)
    x.sample({{"group", in.group}, {"reason", gdoi::PushRefused{r, {}}.counter()}}, c.refused(r));
  x.family("covey_gm_tek_remaining_seconds", Type::Gauge,
           "Seconds of lifetime left to each TEK the member holds, with its state.");
  for (const TekView& v : keys.teks(in.now))
    x.sample({{"group", in.group}, {"spi", spi_hex(v.tek->spi)}, {"state", name(v.state)}}, v.remaining_s);
  x.family("covey_gm_kek_remaining_seconds", Type::Gauge, "Seconds of lifetime left to the KEK the member holds.");
  if (keys.receiver() && keys.kek_expires_at()) {
    const std::int64_t left = *keys.kek_expires_at() - in.now;
    x.sample(group, left > 0 ? left : 0);
  }
}

void datapath_metrics(Exposition& x, const MetricsInput& in) {
  x.family("covey_gm_datapath_state", Type::Gauge,
           "1 for the data path's state: active (a TEK sends), fail-close (no TEK active: the fail-close ACL "
           "drops), error.");
  if (in.datapath_state)
    for (const char* s : {"active", "fail-close", "error"})
      x.sample({{"group", in.group}, {"state", s}}, *in.datapath_state == s ? 1 : 0);
  // Every counter of struct covey_stats, generated from its one list: the
  // drops (each packet counted by one drop counter alone, so their sum is
  // the loss) and the rest (overlapping: "packets" counts every classified
  // packet, "encrypt" some of them), each family by stage.
  const covey_stats* s = in.datapath ? &in.datapath->stats : nullptr;
  x.family("covey_gm_datapath_packets_total", Type::Counter,
           "Packets the BPF programs counted, by stage and event (bpf/covey_maps.h COVEY_STATS); events overlap, "
           "do not sum them.");
#define COVEY_STAT(field, section, drop, text) \
  if (s && !(drop)) x.sample({{"group", in.group}, {"stage", stage(section)}, {"event", #field}}, s->field);
  COVEY_STATS(COVEY_STAT)
#undef COVEY_STAT
  x.family("covey_gm_datapath_drops_total", Type::Counter,
           "Packets the BPF programs dropped, by stage and reason (bpf/covey_maps.h COVEY_STATS); each dropped "
           "packet is counted once.");
#define COVEY_STAT(field, section, drop, text) \
  if (s && (drop)) x.sample({{"group", in.group}, {"stage", stage(section)}, {"reason", #field}}, s->field);
  COVEY_STATS(COVEY_STAT)
#undef COVEY_STAT
  x.family("covey_gm_acl_hits_total", Type::Counter,
           "Packets that matched each ACL entry (`show access-lists` matches): acl main or fail_close, entry "
           "from 1 in the installed order, line as written.");
  if (in.datapath) {
    auto hits = [&](const char* acl, const std::vector<DataplaneCounters::AclHits>& entries) {
      for (std::size_t i = 0; i < entries.size(); ++i)
        x.sample({{"group", in.group}, {"acl", acl}, {"entry", std::to_string(i + 1)}, {"line", entries[i].line}},
                 entries[i].hits);
    };
    hits("main", in.datapath->acl);
    hits("fail_close", in.datapath->fail_close);
  }
}

}  // namespace

std::string metrics_text(const MetricsInput& in) {
  Exposition x;
  metrics::build_info(x, "covey_gm");
  key_metrics(x, in);
  datapath_metrics(x, in);
  return x.text();
}

}  // namespace covey::gm
