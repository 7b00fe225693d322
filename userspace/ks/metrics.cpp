#include "ks/metrics.h"

#include <cstdio>

#include "common/bytes.h"
#include "metrics/exposition.h"

namespace covey::ks {

using metrics::Exposition;
using metrics::Labels;
using metrics::Type;

namespace {

std::int64_t remaining(std::int64_t until, std::int64_t now) { return until > now ? until - now : 0; }

void counter(Exposition& x, const char* name, const char* help, std::uint64_t value) {
  x.family(name, Type::Counter, help);
  x.sample({}, value);
}

// One counter family with one label: a row per label value.
template <class Counters>
struct Row {
  const char* label_value;
  std::uint64_t Counters::*field;
};

template <class Counters, std::size_t N>
void counter(Exposition& x, const char* name, const char* help, const Counters& c, const char* label,
             const Row<Counters> (&rows)[N]) {
  x.family(name, Type::Counter, help);
  for (const auto& r : rows) x.sample({{label, r.label_value}}, c.*r.field);
}

void dispatcher_metrics(Exposition& x, const Dispatcher& d) {
  using C = Counters;
  const C& c = d.counters();
  counter(x, "covey_ks_datagrams_received_total", "UDP datagrams received on the GDOI port.", c.datagrams);
  counter<C>(x, "covey_ks_datagrams_dropped_total",
             "Datagrams dropped unanswered: malformed (no ISAKMP header), unexpected (no exchange or SA for its "
             "cookies, another peer's, unencrypted phase 2, an exchange type covey-ks does not serve), busy (a Main "
             "Mode retransmission while a worker computes its exchange; the next one is answered).",
             c, "reason", {{"malformed", &C::malformed}, {"unexpected", &C::dropped}, {"busy", &C::busy_dropped}});
  counter(x, "covey_ks_phase1_started_total", "Main Mode exchanges begun (message 1 accepted).", c.phase1_started);
  counter(x, "covey_ks_phase1_established_total", "Main Mode exchanges that established a phase-1 SA.", c.phase1_completed);
  x.family("covey_ks_phase1_failures_total", Type::Counter,
           "Main Mode exchanges refused or failed, by the notification the key server sent.");
  for (const auto& [notify, n] : c.phase1_failed) x.sample({{"reason", notify}}, n);
  counter(x, "covey_ks_phase1_half_open_evicted_total", "Half-open Main Mode exchanges dropped to make room (max_half_open reached: a flood).", c.half_open_evicted);
  x.family("covey_ks_phase1_half_open", Type::Gauge, "Main Mode exchanges in progress.");
  x.sample({}, d.half_open());
  x.family("covey_ks_phase1_sas", Type::Gauge, "Phase-1 SAs held with members.");
  x.sample({}, d.established());
  counter<C>(x, "covey_ks_registrations_total",
             "GROUPKEY-PULL registrations: admitted (HASH(3) proved the member live) or refused (unknown group, "
             "not authorized).",
             c, "result", {{"admitted", &C::registrations}, {"refused", &C::registrations_refused}});
}

void rekeyer_metrics(Exposition& x, const Rekeyer& r) {
  using C = Rekeyer::Counters;
  const C& c = r.counters();
  counter<C>(x, "covey_ks_rekey_acks_total",
             "GROUPKEY-PUSH acknowledgements (RFC 8263): accepted, refused (bad hash or unknown push), late (after "
             "the member was counted as missing it, or for an older push).",
             c, "result", {{"accepted", &C::acks}, {"refused", &C::acks_refused}, {"late", &C::acks_late}});
  counter(x, "covey_ks_rekey_retransmissions_total", "Unicast pushes sent again for want of an acknowledgement.", c.retransmissions);
  counter(x, "covey_ks_rekey_misses_total", "Unicast pushes a member never acknowledged, after every retransmission.", c.misses);
  counter(x, "covey_ks_members_dropped_total", "Members removed from their group after consecutive rekeys they did not acknowledge.", c.dropped_members);
}

void group_metrics(Exposition& x, const KeyServer& ks, std::int64_t now) {
  const auto& groups = ks.groups().all();
  auto each = [&](auto&& sample) {
    for (const auto& [id, g] : groups) sample(*g, g->policy().name);
  };
  x.family("covey_ks_members", Type::Gauge, "Members registered in the group.");
  each([&](const Group& g, const std::string& name) { x.sample({{"group", name}}, g.members().size()); });
  x.family("covey_ks_rekeys_sent_total", Type::Counter, "GROUPKEY-PUSH rekeys sent for the group.");
  each([&](const Group& g, const std::string& name) { x.sample({{"group", name}}, ks.rekeyer().rekeys_sent(g)); });
  x.family("covey_ks_rekey_pending_members", Type::Gauge,
           "Members whose latest unicast push is sent but neither acknowledged nor missed yet.");
  each([&](const Group& g, const std::string& name) { x.sample({{"group", name}}, ks.rekeyer().pending(g)); });
  x.family("covey_ks_next_rekey_seconds", Type::Gauge, "Seconds until the group's next scheduled rekey (0: due).");
  each([&](const Group& g, const std::string& name) {
    x.sample({{"group", name}}, remaining(ks.rekeyer().next_rekey_at(g), now));
  });
  x.family("covey_ks_tek_remaining_seconds", Type::Gauge,
           "Seconds of lifetime left to each TEK the key server hands out.");
  each([&](const Group& g, const std::string& name) {
    for (const auto& t : g.teks()) x.sample({{"group", name}, {"spi", spi_hex(t.tek.spi)}}, remaining(t.expires_at, now));
  });
  x.family("covey_ks_kek_remaining_seconds", Type::Gauge, "Seconds of lifetime left to the group's KEK.");
  each([&](const Group& g, const std::string& name) { x.sample({{"group", name}}, remaining(g.kek_expires_at(), now)); });
}

}  // namespace

std::string metrics_text(const KeyServer& ks, std::int64_t now_ms) {
  Exposition x;
  metrics::build_info(x, "covey_ks");
  dispatcher_metrics(x, ks.dispatcher());
  rekeyer_metrics(x, ks.rekeyer());
  group_metrics(x, ks, seconds_of(now_ms));
  return x.text();
}

}  // namespace covey::ks
