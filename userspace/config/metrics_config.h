// [metrics], which ks.toml and gm.toml share: where the daemon serves
// Prometheus metrics (GET /metrics, metrics/http_server.h). Off by default.
#pragma once

#include <cstdint>
#include <optional>

#include "common/address.h"

namespace covey::config {

// The ports when `listen` names none: covey-ks 9848, covey-gm 9849 (the
// GDOI port 848 behind a 9, so that both daemons can share one host).
inline constexpr std::uint16_t kKsMetricsPort = 9848;
inline constexpr std::uint16_t kGmMetricsPort = 9849;

struct MetricsConfig {
  std::optional<Endpoint> listen;  // nullopt: no metrics endpoint
  bool operator==(const MetricsConfig&) const = default;
};

}  // namespace covey::config
