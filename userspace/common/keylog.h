// The keylog: one "initiator-cookie-hex,encryption-key-hex" line per
// phase-1 SA, the format of Wireshark's IKEv1 decryption table, so that
// `coveyctl decode --keylog` and Wireshark can decrypt a capture. Off by
// default; opening it says so in the log, because it puts keys on disk.
#pragma once

#include <string>

#include "common/bytes.h"

namespace covey {

class Keylog {
 public:
  Keylog() = default;
  Keylog(const Keylog&) = delete;
  Keylog& operator=(const Keylog&) = delete;
  ~Keylog();

  // Appends to `path`, created owner-only (0600) and kept so. False with
  // `error` naming the path and the reason.
  bool open(const std::string& path, std::string* error);
  bool is_open() const { return fd_ >= 0; }
  void write(ByteView initiator_cookie, ByteView encryption_key);

 private:
  int fd_ = -1;
};

}  // namespace covey
