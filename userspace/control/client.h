// coveyctl's side of the control socket: send one request, wait for the
// one reply line.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

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

}  // namespace covey::control
