// The member's keys and rekey counters as `gm.status` reports them
// (userspace/control/PROTOCOL.md): pure, so the reply's shape is tested
// without a daemon.
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

#include "gm/rekey_state.h"

namespace covey::gm {

// The fields of the gm.status reply that come from the keys: "acl",
// "fail_close_acl", "tbar_window_ms", "sids", "tek", "kek", "rekey",
// "seq", "last_seq", "rekeys_received", "rekeys_since_registration",
// "acks_sent", "next_rekey_expected_by", "pushes_refused",
// "push_retransmissions". Keys only with `show_keys`. `now` is the
// member's clock (common/clock.h); the times shown ("activates_at",
// "deactivates_at", "next_rekey_expected_by") are moved by `wall_offset_s`
// onto the host's wall clock.
nlohmann::json key_status(const RekeyState& keys, std::int64_t now, bool show_keys, bool multicast_joined,
                          std::int64_t wall_offset_s = 0);

}  // namespace covey::gm
