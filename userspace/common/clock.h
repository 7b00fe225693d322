// The time covey's lifetimes, rekey schedules, retransmissions, backoffs
// and state-file times run on: Unix time read from the wall clock once, at
// the first call, moved on from then by CLOCK_BOOTTIME. An NTP step, or
// date(1), after that changes nothing: a router without a battery clock
// that registers at boot and is then stepped by hours neither expires
// every key at once nor keeps one hours too long. BOOTTIME, not
// MONOTONIC, so that time spent suspended counts against key lifetimes.
//
// The values stay Unix times, comparable with those the key server's
// state file holds from an earlier run. The one case this cannot cover is
// a wall step between two runs (there is no clock common to them): a
// forward step makes the restored keys older than they are (the key
// server rekeys at once), a backward one keeps them longer by the step.
//
// The wall clock itself is for display only (wall_offset_s) and for
// certificate validity, which OpenSSL reads. The data path's lease and
// TBAR clock are CLOCK_MONOTONIC, which the BPF programs read
// (gm/dataplane.h monotonic_ns).
#pragma once

#include <cstdint>

namespace covey::clock {

// Milliseconds and (floored) seconds.
std::int64_t now_ms();
std::int64_t now_s();

// The wall clock now minus now_s(), to the nearest second: add it to a
// time of this clock to show it as the host's clock reads it now. 0 until
// the wall clock is stepped.
std::int64_t wall_offset_s();

}  // namespace covey::clock
