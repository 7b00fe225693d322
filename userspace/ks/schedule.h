// When the key server pushes a group's next keys: pure arithmetic on the
// group's policy, in a library of its own so that the config parser checks
// a group by the same rule the key server schedules it by.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gdoi/policy.h"

namespace covey::ks {

// How long before a TEK (KEK) expires its successor is pushed. nullopt:
// min(90 s, lifetime / 4) for the TEK, min(300 s, lifetime / 4) for the KEK.
struct RekeyMargins {
  std::optional<std::uint32_t> tek_s, kek_s;
};
std::uint32_t tek_margin(const RekeyMargins& m, const gdoi::GroupPolicy& p);
std::uint32_t kek_margin(const RekeyMargins& m, const gdoi::GroupPolicy& p);

// The lifetime left to the TEKs a triggered rekey (operator, policy change,
// member removal) replaces, as GET VPN computes it ("GET VPN GM Removal and
// Policy Trigger": TEK_SLT = MIN(TEK_RLT, MAX(90 s, MIN(5% of TEK_CLT,
// 3600 s)))), but never below the activation delay, so that members keep a
// TEK to send on until the new one activates.
std::uint32_t shortened_lifetime(std::int64_t remaining_s, const gdoi::GroupPolicy& p);

// A group whose schedule cannot work. `key` is the [group.rekey] key the
// config points at; `message` says why, naming the keys involved.
struct ScheduleProblem {
  std::string key;
  std::string message;
};
std::vector<ScheduleProblem> check_schedule(const gdoi::GroupPolicy& p, const RekeyMargins& m);

}  // namespace covey::ks
