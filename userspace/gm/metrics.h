// covey-gm's Prometheus metrics: the one place that turns the member's
// rekey counters, its keys' lifetimes and the BPF programs' counters
// (bpf/covey_maps.h COVEY_STATS, generated from that list) into the
// exposition text (metrics/exposition.h) served on GET /metrics.
// Families and labels are listed in userspace/config/README.md ([metrics]).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "gm/dataplane.h"
#include "gm/rekey_state.h"

namespace covey::gm {

struct MetricsInput {
  std::string group;  // the group's name, the `group` label
  const RekeyState* keys = nullptr;
  std::int64_t now = 0;  // the member's clock (common/clock.h)
  // Without a data path (data_path = false) both are nullopt.
  std::optional<std::string> datapath_state;  // Dataplane::state()
  std::optional<DataplaneCounters> datapath;  // nullopt also while the programs are not loaded
};

std::string metrics_text(const MetricsInput& in);

}  // namespace covey::gm
