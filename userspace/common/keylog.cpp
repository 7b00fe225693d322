#include "common/keylog.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace covey {

Keylog::~Keylog() {
  if (fd_ >= 0) ::close(fd_);
}

bool Keylog::open(const std::string& path, std::string* error) {
  // 0600 at creation and again for a file that existed: key material is
  // never readable by others, and no process-wide umask is changed for it.
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0 || ::fchmod(fd, 0600) != 0) {
    if (error) *error = "cannot open keylog " + path + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return false;
  }
  fd_ = fd;
  log(LogLevel::Warning, "keylog is ON: phase-1 encryption keys are written to " + path +
                             " so captures can be decrypted; turn it off outside a lab");
  return true;
}

void Keylog::write(ByteView initiator_cookie, ByteView encryption_key) {
  if (fd_ < 0) return;
  std::string line = to_hex(initiator_cookie);
  line.push_back(',');
  line.append(to_hex(encryption_key));
  line.push_back('\n');
  // One write per line with O_APPEND: lines never interleave.
  if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    log(LogLevel::Warning, std::string("keylog write failed: ") + std::strerror(errno));
}

}  // namespace covey
