// Log lines for the daemons: one line per event, to stderr, prefixed with
// the time and severity so that a plain terminal and a file read well.
// When stderr is the journal (systemd's JOURNAL_STREAM names stderr's
// device and inode), each event goes to journald's native socket instead,
// as MESSAGE, PRIORITY and SYSLOG_IDENTIFIER with the event's own fields
// (COVEY_GROUP, COVEY_PEER, COVEY_SPI, COVEY_SEQ), so that
// `journalctl COVEY_PEER=10.1.23.3` finds a member's events.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace covey {

enum class LogLevel { Debug, Info, Warning, Error };

// A journal field of an event: NAME is upper case ("COVEY_GROUP"); the
// plain line does not show fields (the text already says them).
struct LogField {
  std::string_view name;
  std::string value;
  bool operator==(const LogField&) const = default;
};
using LogFields = std::vector<LogField>;

void set_log_level(LogLevel min);
LogLevel log_level();
void set_log_program(std::string_view name);  // "covey-ks"
void log(LogLevel level, std::string_view text, const LogFields& fields = {});

}  // namespace covey
