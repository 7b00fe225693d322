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
// `now_ms`: Unix ms, for the pseudotime; lifetimes count its second.
nlohmann::json group_status(const Groups& groups, const Rekeyer* rekeyer, const std::optional<std::string>& name,
                            bool show_keys, std::int64_t now_ms);
nlohmann::json member_status(const Groups& groups, const std::optional<std::string>& name);
// {"rekeys_sent":..,"last_rekey":..,"next_rekey_at":..} of one group.
nlohmann::json rekey_status(const Group& g, const Rekeyer& rekeyer, std::int64_t now);

}  // namespace covey::ks
