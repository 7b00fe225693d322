// The keylog: the phase-1 encryption keys `coveyctl decode --keylog`
// decrypts with, read from Wireshark's own table format so one file serves
// both tools. Kept apart from the decoder because it is the only input
// that comes from outside the capture.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "wire/message.h"

namespace covey::coveyctl {

// Wireshark's ikev1_decryption_table as text: one phase-1 SA a line,
// "initiator-cookie-hex,encryption-key-hex"; blank lines and '#' comments allowed.
struct Keylog {
  std::map<wire::Cookie, Bytes> keys;
};
// Empty string on success, else what is wrong and on which line.
std::string parse_keylog(std::string_view text, Keylog& out);

}  // namespace covey::coveyctl
