// covey-ks's Prometheus metrics: the one place that turns the key server's
// counters (the dispatcher's, the rekeyer's) and its groups' state into
// the exposition text (metrics/exposition.h) served on GET /metrics.
// Families and labels are listed in userspace/config/README.md ([metrics]).
#pragma once

#include <cstdint>
#include <string>

#include "ks/key_server.h"

namespace covey::ks {

// `now_ms`: the key server's clock (common/clock.h), for the remaining
// lifetimes.
std::string metrics_text(const KeyServer& ks, std::int64_t now_ms);

}  // namespace covey::ks
