// systemd's service notification protocol (sd_notify(3)), the part the
// daemons use: READY=1, RELOADING=1, STOPPING=1, STATUS=..., WATCHDOG=1.
// Our own few lines rather than libsystemd: the protocol is one datagram
// to $NOTIFY_SOCKET, documented as stable, and the daemons then need no
// library (nor libsystemd's dependencies) outside systemd.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace covey::sd {

// Sends STATE ("READY=1\nSTATUS=serving") to the service manager; nothing
// when $NOTIFY_SOCKET is unset (not run by systemd as Type=notify).
void notify(std::string_view state);

// How often to send WATCHDOG=1: half of $WATCHDOG_USEC, as sd_watchdog_enabled(3)
// advises; nullopt when the watchdog is off or meant for another process
// ($WATCHDOG_PID).
std::optional<std::chrono::microseconds> watchdog_interval();

}  // namespace covey::sd
