// Log lines for the daemons: one line per event, to stderr, prefixed with
// the time and severity so that a plain terminal, a file and journald all
// read well.
#pragma once

#include <string_view>

namespace covey {

enum class LogLevel { Debug, Info, Warning, Error };

void set_log_level(LogLevel min);
LogLevel log_level();
void set_log_program(std::string_view name);  // "covey-ks"
void log(LogLevel level, std::string_view text);

}  // namespace covey
