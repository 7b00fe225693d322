// What the daemons and coveyctl agree on besides the request and reply
// fields themselves, which PROTOCOL.md lists.
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace covey::control {

inline constexpr const char* kKsSocket = "/run/covey/ks.sock";
inline constexpr const char* kGmSocket = "/run/covey-gm/gm.sock";

// One request line, newline excluded. Requests are a few fields; the bound
// keeps a confused client from growing the daemon's memory.
inline constexpr std::size_t kMaxRequestBytes = 64 * 1024;
// One reply line. ks.members' one-line form lists every member selected, so
// this is generous; its streamed form keeps lines to 500 members.
inline constexpr std::size_t kMaxReplyBytes = 16 * 1024 * 1024;

// {"ok":false,"error":message}: the one shape of every refusal.
inline nlohmann::json error_reply(std::string message) {
  return {{"ok", false}, {"error", std::move(message)}};
}

}  // namespace covey::control
