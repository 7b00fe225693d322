// coveyctl's side of the control socket: send one request, wait for the
// one reply line, or read a streamed reply line by line.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace covey::control {

// The daemon's reply, or why there is none. A reply {"ok":false,...} is
// still a reply: the daemon answered, and said no.
struct Result {
  std::optional<nlohmann::json> reply;
  std::string error;  // set when reply is empty; says what to do
};

// Connects to `path`, writes `request` as one line and reads one line
// back, all within `timeout`.
Result request(const std::string& path, const nlohmann::json& request,
               std::chrono::milliseconds timeout = std::chrono::seconds(10));

// For a streamed reply (PROTOCOL.md, "Streamed replies"): writes `request`
// and hands each reply line to `on_line`, as it arrives, until `on_line`
// returns false. `timeout` bounds the wait for each line, not the whole
// reply. The error, or "" when `on_line` ended it.
std::string stream(const std::string& path, const nlohmann::json& request,
                   const std::function<bool(const nlohmann::json& line)>& on_line,
                   std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace covey::control
