#include "ks/schedule.h"

#include <algorithm>

namespace covey::ks {

std::uint32_t tek_margin(const RekeyMargins& m, const gdoi::GroupPolicy& p) {
  return m.tek_s ? *m.tek_s : std::min<std::uint32_t>(90, p.tek_lifetime_s / 4);
}

std::uint32_t kek_margin(const RekeyMargins& m, const gdoi::GroupPolicy& p) {
  return m.kek_s ? *m.kek_s : std::min<std::uint32_t>(300, p.kek.lifetime_s / 4);
}

std::uint32_t shortened_lifetime(std::int64_t remaining_s, const gdoi::GroupPolicy& p) {
  if (remaining_s <= 0) return 0;
  std::int64_t slt = std::max<std::int64_t>(90, std::min<std::int64_t>(p.tek_lifetime_s / 20, 3600));
  slt = std::max<std::int64_t>(slt, p.activation_delay_s);
  return static_cast<std::uint32_t>(std::min(remaining_s, slt));
}

std::vector<ScheduleProblem> check_schedule(const gdoi::GroupPolicy& p, const RekeyMargins& m) {
  std::vector<ScheduleProblem> out;
  if (m.tek_s && *m.tek_s >= p.tek_lifetime_s)
    out.push_back({"tek_margin", "tek_margin = " + std::to_string(*m.tek_s) +
                                     " s must be shorter than the TEK lifetime (" + std::to_string(p.tek_lifetime_s) +
                                     " s); the default is min(90, lifetime / 4)"});
  if (m.kek_s && *m.kek_s >= p.kek.lifetime_s)
    out.push_back({"kek_margin", "kek_margin = " + std::to_string(*m.kek_s) +
                                     " s must be shorter than the KEK lifetime (" + std::to_string(p.kek.lifetime_s) +
                                     " s); the default is min(300, lifetime / 4)"});
  return out;
}

}  // namespace covey::ks
