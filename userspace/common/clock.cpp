#include "common/clock.h"

#include <time.h>

namespace covey::clock {

namespace {

std::int64_t read_ns(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct Anchor {
  std::int64_t wall_ns = read_ns(CLOCK_REALTIME);
  std::int64_t boot_ns = read_ns(CLOCK_BOOTTIME);
};

std::int64_t now_ns() {
  static const Anchor anchor;
  return anchor.wall_ns + (read_ns(CLOCK_BOOTTIME) - anchor.boot_ns);
}

// Floor division: also right for times before 1970.
std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - (a % b < 0 ? 1 : 0); }

}  // namespace

std::int64_t now_ms() { return floor_div(now_ns(), 1000000); }
std::int64_t now_s() { return floor_div(now_ns(), 1000000000); }

std::int64_t wall_offset_s() {
  const std::int64_t d = read_ns(CLOCK_REALTIME) - now_ns();
  return floor_div(d + 500000000, 1000000000);
}

}  // namespace covey::clock
