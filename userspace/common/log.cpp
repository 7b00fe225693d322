#include "common/log.h"

#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>

namespace covey {

namespace {
LogLevel g_min = LogLevel::Info;
std::string g_program = "covey";
std::mutex g_mu;
}  // namespace

void set_log_level(LogLevel min) { g_min = min; }
LogLevel log_level() { return g_min; }
void set_log_program(std::string_view name) { g_program = name; }

void log(LogLevel level, std::string_view text) {
  if (level < g_min) return;
  static constexpr const char* names[] = {"debug", "info", "warning", "error"};
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  localtime_r(&ts.tv_sec, &t);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &t);
  std::lock_guard lock(g_mu);
  std::fprintf(stderr, "%s.%03ld %s %s: %.*s\n", when, ts.tv_nsec / 1000000, g_program.c_str(),
               names[static_cast<int>(level)], static_cast<int>(text.size()), text.data());
  std::fflush(stderr);
}

}  // namespace covey
