// What `coveyctl ks group` and `coveyctl ks members` show, as JSON (the
// contract is userspace/control/PROTOCOL.md). Key material only on request.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "ks/group.h"

namespace covey::ks {

nlohmann::json group_status(const Groups& groups, const std::optional<std::string>& name, bool show_keys,
                            std::int64_t now);
nlohmann::json member_status(const Groups& groups, const std::optional<std::string>& name);

}  // namespace covey::ks
