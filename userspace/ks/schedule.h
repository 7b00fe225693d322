// When the key server pushes a group's next keys: pure arithmetic on the
// group's policy, in a library of its own so that the config parser checks
// a group by the same rule the key server schedules it by.
//
// The rule: a member sends on the old TEK until the new one activates,
// activation_delay after the push reaches it, and the push may reach it
// only at its last retransmission. So the TEK margin covers the activation
// delay and the push's delivery span, and the time between two rekeys
// exceeds that span, so that no push replaces one still being delivered.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gdoi/policy.h"

namespace covey::ks {

// How long after a push's first transmission its last copy may still
// reach a member: unicast, the retransmissions (retransmit_count every
// retransmit_period); multicast, which covey sends once, none; and in both
// the key server's tick and transit slack.
std::uint32_t delivery_span(const gdoi::GroupPolicy& p, bool unicast);
std::uint32_t delivery_span(const gdoi::GroupPolicy& p);  // by the policy's transport

// The shortest TEK margin that keeps every member that takes the push on a
// TEK to send on: activation_delay plus the delivery span.
std::uint32_t min_tek_margin(const gdoi::GroupPolicy& p);

// How long before a TEK (KEK) expires its successor is pushed. nullopt:
// max(min(90 s, lifetime / 4), min_tek_margin) for the TEK, min(300 s,
// lifetime / 4) for the KEK.
struct RekeyMargins {
  std::optional<std::uint32_t> tek_s, kek_s;
};
std::uint32_t tek_margin(const RekeyMargins& m, const gdoi::GroupPolicy& p);
std::uint32_t kek_margin(const RekeyMargins& m, const gdoi::GroupPolicy& p);

// The lifetime left to the TEKs a triggered rekey (operator, policy change,
// member removal) replaces, as GET VPN computes it ("GET VPN GM Removal and
// Policy Trigger": TEK_SLT = MIN(TEK_RLT, MAX(90 s, MIN(5% of TEK_CLT,
// 3600 s)))), but never below the activation delay plus a unicast push's
// delivery span (a member removal goes by unicast also in a multicast
// group), so that members keep a TEK to send on until the new one activates.
std::uint32_t shortened_lifetime(std::int64_t remaining_s, const gdoi::GroupPolicy& p);

// A group whose schedule cannot work. `key` is the [group.rekey] key the
// config points at; `message` says why, naming the keys involved.
struct ScheduleProblem {
  std::string key;
  std::string message;
};
std::vector<ScheduleProblem> check_schedule(const gdoi::GroupPolicy& p, const RekeyMargins& m);

}  // namespace covey::ks
