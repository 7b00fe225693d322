#include "common/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "common/log.h"

namespace covey::sd {

void notify(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::size_t n = std::strlen(path);
  if (n >= sizeof a.sun_path || (path[0] != '/' && path[0] != '@')) {
    log(LogLevel::Warning, std::string("NOTIFY_SOCKET ") + path + " is not a Unix socket path; systemd is not told our state");
    return;
  }
  std::memcpy(a.sun_path, path, n);
  if (path[0] == '@') a.sun_path[0] = '\0';  // abstract namespace
  static const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n);
  if (fd < 0 || ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&a), len) < 0)
    log(LogLevel::Warning, std::string("cannot notify systemd on ") + path + ": " + std::strerror(errno));
}

std::optional<std::chrono::microseconds> watchdog_interval() {
  const char* usec = std::getenv("WATCHDOG_USEC");
  if (!usec) return std::nullopt;
  if (const char* pid = std::getenv("WATCHDOG_PID"); pid && std::strtoll(pid, nullptr, 10) != ::getpid()) return std::nullopt;
  const long long us = std::strtoll(usec, nullptr, 10);
  if (us <= 0) return std::nullopt;
  return std::chrono::microseconds(us / 2);
}

}  // namespace covey::sd
