#include "common/address.h"

#include <arpa/inet.h>

namespace covey {

std::string Address::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == 4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

std::optional<Address> Address::parse(std::string_view text) {
  std::string s(text);
  Address a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    a.family = 4;
    return a;
  }
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.family = 6;
    return a;
  }
  return std::nullopt;
}

std::string Endpoint::str() const {
  std::string s;
  if (address.family == 6) s.push_back('[');
  s.append(address.str());
  if (address.family == 6) s.push_back(']');
  s.push_back(':');
  s.append(std::to_string(port));
  return s;
}

}  // namespace covey
