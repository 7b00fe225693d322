#include "common/log.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string>

namespace covey {

namespace {
LogLevel g_min = LogLevel::Info;
std::string g_program = "covey";
std::mutex g_mu;

// systemd sets JOURNAL_STREAM=<dev>:<ino> to the stream it connected to
// stderr; if stderr is still that stream (not redirected by a shell), the
// journal is listening and takes native entries (systemd.exec(5)).
bool stderr_is_journal() {
  const char* v = std::getenv("JOURNAL_STREAM");
  if (!v) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(v, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  return ::fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

// journald's native protocol (systemd's "Native Journal Protocol"): one
// datagram per entry, NAME=value lines; a value with a newline is sent as
// NAME\n, its length as 64-bit little endian, the value, \n.
void append_field(std::string& d, std::string_view name, std::string_view value) {
  d += name;
  if (value.find('\n') == std::string_view::npos) {
    d += '=';
    d += value;
  } else {
    d += '\n';
    std::uint64_t n = value.size();
    for (int i = 0; i < 8; ++i) d += static_cast<char>((n >> (8 * i)) & 0xff);
    d += value;
  }
  d += '\n';
}

// False when the journal did not take it (then the line goes to stderr).
bool send_to_journal(LogLevel level, std::string_view text, const LogFields& fields) {
  static const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  // syslog priorities: debug 7, info 6, warning 4, error 3.
  static constexpr const char* priorities[] = {"7", "6", "4", "3"};
  std::string d;
  append_field(d, "MESSAGE", text);
  append_field(d, "PRIORITY", priorities[static_cast<int>(level)]);
  append_field(d, "SYSLOG_IDENTIFIER", g_program);
  for (const LogField& f : fields) append_field(d, f.name, f.value);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  static constexpr char path[] = "/run/systemd/journal/socket";
  std::memcpy(a.sun_path, path, sizeof path);
  // An entry larger than a datagram is rare (a log line); the plain line
  // then carries it rather than a memfd, which this daemon has no need of.
  // Never waits: a journal that is behind (its socket queue full) must not
  // stall the event loop that serves UDP 848 and the watchdog; the plain
  // line on stderr, which journald reads as a stream, carries the entry.
  return ::sendto(fd, d.data(), d.size(), MSG_NOSIGNAL | MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&a),
                  sizeof a) ==
         static_cast<ssize_t>(d.size());
}

}  // namespace

void set_log_level(LogLevel min) { g_min = min; }
LogLevel log_level() { return g_min; }
void set_log_program(std::string_view name) { g_program = name; }

void log(LogLevel level, std::string_view text, const LogFields& fields) {
  if (level < g_min) return;
  static const bool journal = stderr_is_journal();
  std::lock_guard lock(g_mu);
  if (journal && send_to_journal(level, text, fields)) return;
  static constexpr const char* names[] = {"debug", "info", "warning", "error"};
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  localtime_r(&ts.tv_sec, &t);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &t);
  std::fprintf(stderr, "%s.%03ld %s %s: %.*s\n", when, ts.tv_nsec / 1000000, g_program.c_str(),
               names[static_cast<int>(level)], static_cast<int>(text.size()), text.data());
  std::fflush(stderr);
}

}  // namespace covey
