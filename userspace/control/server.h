// The daemon's side of the control socket: a Unix stream socket, one JSON
// request object per line in, one JSON reply object per line out, or a
// streamed reply of several lines (PROTOCOL.md). Everything runs on the
// caller's io_context: no threads.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>

#include "control/protocol.h"

namespace covey::control {

// A reply written in pieces (a listing too long for one line): each call
// returns the next lines, each ending in '\n', or nullopt once the reply is
// complete. The server calls it again only when the previous piece has
// been written, so a piece should be bounded (a few thousand members): the
// io_context serves everything else between pieces, and a slow reader
// holds up one piece, not the daemon. A piece may be empty (work done,
// nothing to say yet): the next call then comes after the loop's other
// ready work. An exception it throws ends the reply with an
// {"ok":false,"error":...} line and the connection.
using Producer = std::function<std::optional<std::string>()>;

// What a Handler answers: one JSON object (most commands), or a Producer.
struct Reply {
  Reply(nlohmann::json j)
      : json(std::move(j)) {}  // NOLINT(google-explicit-constructor): most answers are one object
  static Reply stream(Producer p) {
    Reply r(nullptr);
    r.producer = std::move(p);
    return r;
  }
  nlohmann::json json;
  Producer producer;  // set: a streamed reply, and `json` is unused
};

// Answers one request (a JSON object with a string "cmd"; the server has
// checked that much). Runs on the io_context's thread and holds up every
// other client while it runs, so it should only read state, or start work
// and return. An exception it throws becomes {"ok":false,"error":...}.
using Handler = std::function<Reply(const nlohmann::json& request)>;

struct ServerLimits {
  std::size_t max_request_bytes = kMaxRequestBytes;
  // Beyond this a new client gets one ok:false line and is closed.
  std::size_t max_clients = 16;
  // A client that neither sends a line nor takes its reply for this long
  // is dropped, so a stuck coveyctl cannot hold a slot forever.
  std::chrono::milliseconds idle_timeout{30'000};
};

namespace detail {
struct ServerState;
}

class Server {
 public:
  // Creates the parent directory (0755) if missing, replaces a stale socket
  // file left by a crash, binds `path` with mode 0660 and starts accepting.
  // Throws std::runtime_error, saying what to do, when another daemon
  // already answers on `path` or the socket cannot be made.
  Server(boost::asio::io_context& io, std::string path, Handler handler, ServerLimits limits = {});
  // Closes every client and removes the socket file (if it is still ours).
  // Destroy the Server on the io_context's thread, or while it is not
  // running, and before the io_context itself.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  const std::string& path() const;
  std::size_t clients() const;

 private:
  std::shared_ptr<detail::ServerState> state_;
};

}  // namespace covey::control
