// Parsing the keylog (keylog.h): Wireshark's table, with errors naming the line.
#include "coveyctl/keylog.h"

#include <algorithm>

namespace covey::coveyctl {

using wire::Cookie;

std::string parse_keylog(std::string_view text, Keylog& out) {
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    const std::size_t comma = line.find(',');
    Bytes cookie, key;
    if (comma == std::string_view::npos || !from_hex(line.substr(0, comma), cookie) ||
        !from_hex(line.substr(comma + 1), key))
      return "keylog line " + std::to_string(line_no) + ": expected initiator-cookie-hex,encryption-key-hex";
    if (cookie.size() != 8)
      return "keylog line " + std::to_string(line_no) + ": initiator cookie has " + std::to_string(cookie.size()) +
             " octets, needs 8";
    if (key.empty()) return "keylog line " + std::to_string(line_no) + ": empty encryption key";
    Cookie c{};
    std::copy(cookie.begin(), cookie.end(), c.begin());
    out.keys[c] = std::move(key);
  }
  return {};
}

}  // namespace covey::coveyctl
