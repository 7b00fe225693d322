// What `coveyctl ks group` and `coveyctl ks members` show, as JSON (the
// contract is userspace/control/PROTOCOL.md). Key material only on request.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "ks/group.h"
#include "ks/rekey.h"

namespace covey::ks {

// `rekeyer` (may be null) adds rekeys_sent, last_rekey and next_rekey_at.
// `now_ms`: the key server's clock (common/clock.h) in ms, for the
// pseudotime; lifetimes count its second. The times shown (last_rekey.at,
// next_rekey_at, registered_at) are moved by `wall_offset_s` onto the
// host's wall clock.
nlohmann::json group_status(const Groups& groups, const Rekeyer* rekeyer, const std::optional<std::string>& name,
                            bool show_keys, std::int64_t now_ms, std::int64_t wall_offset_s = 0);
nlohmann::json member_status(const Groups& groups, const std::optional<std::string>& name,
                             std::int64_t wall_offset_s = 0);
// {"rekeys_sent":..,"last_rekey":..,"next_rekey_at":..} of one group.
nlohmann::json rekey_status(const Group& g, const Rekeyer& rekeyer, std::int64_t now, std::int64_t wall_offset_s = 0);

}  // namespace covey::ks
