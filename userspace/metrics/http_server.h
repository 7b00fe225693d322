// GET /metrics over HTTP/1.1 on the daemon's own io_context: the text is
// rendered on the thread that owns the counters, so nothing is locked or
// copied across threads. Bounded so that whoever can reach the address
// cannot make the daemon spend its loop, memory or descriptors on it: a few
// connections, a small request, a deadline on each request and answer, and
// at most one rendering per `min_render_interval` (a faster scraper gets
// the last text again).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>

#include "common/address.h"

namespace covey::metrics {

struct HttpLimits {
  // Beyond this a new connection is answered 503 and closed.
  std::size_t max_connections = 4;
  // Request line and headers; a GET has no body.
  std::size_t max_request_bytes = 4096;
  // For a request to arrive and its answer to leave; a keep-alive
  // connection idle this long is closed.
  std::chrono::milliseconds timeout{5000};
  std::chrono::milliseconds min_render_interval{100};
};

// The exposition text; runs on the io_context's thread.
using Render = std::function<std::string()>;

namespace detail {
struct HttpState;
}

class HttpServer {
 public:
  // Binds and listens on `listen`; throws std::runtime_error naming the
  // address when it cannot (in use, not local).
  HttpServer(boost::asio::io_context& io, const Endpoint& listen, Render render, HttpLimits limits = {});
  // Closes the listener and every connection. Destroy on the io_context's
  // thread, or while it is not running, and before the io_context.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  Endpoint local_endpoint() const;  // the port the kernel chose for port 0
  std::size_t connections() const;

 private:
  std::shared_ptr<detail::HttpState> state_;
};

}  // namespace covey::metrics
