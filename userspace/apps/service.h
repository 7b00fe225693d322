// The daemons' side of systemd's watchdog (WatchdogSec=): WATCHDOG=1 from
// the event loop every half of WATCHDOG_USEC, so that a loop that stops
// turning is restarted by systemd. Nothing when the watchdog is off.
#pragma once

#include <utility>  // before Asio (Boost 1.74 and C++20)

#include <time.h>

#include <boost/asio.hpp>
#include <optional>
#include <string>

#include "common/sd_notify.h"

namespace covey::apps {

class Watchdog {
 public:
  explicit Watchdog(boost::asio::io_context& io) : timer_(io), every_(sd::watchdog_interval()) {
    if (every_) ping();
  }

 private:
  void ping() {
    sd::notify("WATCHDOG=1");
    timer_.expires_after(*every_);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) ping();
    });
  }
  boost::asio::steady_timer timer_;
  std::optional<std::chrono::microseconds> every_;
};

// CLOCK_MONOTONIC in microseconds, which RELOADING=1 carries (sd_notify(3)).
inline std::string monotonic_usec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::to_string(static_cast<long long>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000);
}

}  // namespace covey::apps
