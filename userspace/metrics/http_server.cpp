#include "metrics/http_server.h"

#include <cstring>
#include <optional>
#include <stdexcept>
#include <unordered_set>
#include <utility>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "common/log.h"

namespace covey::metrics {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace detail {

class Session;

struct HttpState : std::enable_shared_from_this<HttpState> {
  HttpState(asio::io_context& io, Render r, HttpLimits l) : acceptor(io), retry(io), render(std::move(r)), limits(l) {}

  void accept();
  void stop();
  const std::string& text();

  tcp::acceptor acceptor;
  asio::steady_timer retry;
  Render render;
  HttpLimits limits;
  std::string where;
  std::unordered_set<Session*> sessions;
  std::string last_text;
  std::chrono::steady_clock::time_point rendered_at{};
  bool rendered = false;
  bool stopped = false;
  bool accept_failing = false;
};

const std::string& HttpState::text() {
  auto now = std::chrono::steady_clock::now();
  if (!rendered || now - rendered_at >= limits.min_render_interval) {
    last_text = render();
    rendered_at = now;
    rendered = true;
  }
  return last_text;
}

// One connection: read a request, answer it, read the next while the
// client keeps the connection alive. Handlers hold a shared_ptr to the
// session and first check that the server still runs (Render may reference
// objects that are gone by then).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<HttpState> state, tcp::socket socket) : state_(std::move(state)), stream_(std::move(socket)) {
    state_->sessions.insert(this);
  }
  ~Session() { state_->sessions.erase(this); }

  void read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(state_->limits.max_request_bytes));
    parser_->body_limit(0);
    stream_.expires_after(state_->limits.timeout);
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](error_code ec, std::size_t) {
      if (self->state_->stopped) return;
      if (ec == http::error::end_of_stream) return self->close();
      if (ec == http::error::header_limit || ec == http::error::body_limit) {
        return self->answer(http::status::request_header_fields_too_large, "request too large\n", false);
      }
      if (ec) return self->close();  // timeout, reset, malformed: nothing worth an answer
      self->on_request();
    });
  }

  void close() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

 private:
  void on_request() {
    const auto& req = parser_->get();
    const bool keep = req.keep_alive();
    if (req.method() != http::verb::get && req.method() != http::verb::head)
      return answer(http::status::method_not_allowed, "covey serves GET /metrics\n", keep);
    std::string_view target(req.target().data(), req.target().size());
    if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
    if (target != "/metrics") return answer(http::status::not_found, "covey serves GET /metrics\n", keep);
    std::string body = req.method() == http::verb::head ? std::string() : state_->text();
    answer(http::status::ok, std::move(body), keep, "text/plain; version=0.0.4; charset=utf-8");
  }

  void answer(http::status status, std::string body, bool keep_alive, const char* type = "text/plain; charset=utf-8") {
    response_.emplace(status, 11);
    response_->set(http::field::server, "covey");
    response_->set(http::field::content_type, type);
    if (status == http::status::method_not_allowed) response_->set(http::field::allow, "GET, HEAD");
    response_->keep_alive(keep_alive);
    response_->body() = std::move(body);
    response_->prepare_payload();
    stream_.expires_after(state_->limits.timeout);
    http::async_write(stream_, *response_, [self = shared_from_this(), keep_alive](error_code ec, std::size_t) {
      if (self->state_->stopped) return;
      if (ec || !keep_alive) return self->close();
      self->read();
    });
  }

  std::shared_ptr<HttpState> state_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  std::optional<http::response<http::string_body>> response_;
};

void HttpState::accept() {
  acceptor.async_accept([self = shared_from_this()](error_code ec, tcp::socket socket) {
    if (self->stopped || ec == asio::error::operation_aborted) return;
    if (ec) {
      // EMFILE and friends repeat at once: pause rather than spin.
      if (!self->accept_failing) log(LogLevel::Warning, "metrics " + self->where + ": accept failed: " + ec.message());
      self->accept_failing = true;
      self->retry.expires_after(std::chrono::milliseconds(100));
      self->retry.async_wait([self](error_code wait_ec) {
        if (!wait_ec && !self->stopped) self->accept();
      });
      return;
    }
    self->accept_failing = false;
    if (self->sessions.size() >= self->limits.max_connections) {
      // A fresh socket's send buffer is empty: this short write does not wait.
      static constexpr char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      error_code ignored;
      socket.non_blocking(true, ignored);
      asio::write(socket, asio::buffer(busy, sizeof busy - 1), ignored);
      socket.close(ignored);
    } else {
      std::make_shared<Session>(self, std::move(socket))->read();
    }
    self->accept();
  });
}

void HttpState::stop() {
  if (stopped) return;
  stopped = true;
  error_code ignored;
  acceptor.close(ignored);
  retry.cancel();
  for (Session* s : std::vector<Session*>(sessions.begin(), sessions.end())) s->close();
}

}  // namespace detail

HttpServer::HttpServer(asio::io_context& io, const Endpoint& listen, Render render, HttpLimits limits)
    : state_(std::make_shared<detail::HttpState>(io, std::move(render), limits)) {
  state_->where = "http://" + listen.str() + "/metrics";
  asio::ip::address a;
  if (listen.address.family == 4) {
    asio::ip::address_v4::bytes_type b;
    std::memcpy(b.data(), listen.address.bytes.data(), 4);
    a = asio::ip::address_v4(b);
  } else {
    asio::ip::address_v6::bytes_type b;
    std::memcpy(b.data(), listen.address.bytes.data(), 16);
    a = asio::ip::address_v6(b);
  }
  tcp::endpoint ep(a, listen.port);
  error_code ec;
  auto fail = [&](const char* what) {
    return std::runtime_error("cannot " + std::string(what) + " metrics address " + listen.str() + ": " + ec.message());
  };
  if (state_->acceptor.open(ep.protocol(), ec)) throw fail("open");
  state_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (listen.address.family == 6) state_->acceptor.set_option(asio::ip::v6_only(true), ec);
  if (state_->acceptor.bind(ep, ec)) throw fail("bind");
  if (state_->acceptor.listen(static_cast<int>(limits.max_connections) * 2, ec)) throw fail("listen on");
  state_->accept();
}

HttpServer::~HttpServer() { state_->stop(); }

Endpoint HttpServer::local_endpoint() const {
  error_code ec;
  tcp::endpoint ep = state_->acceptor.local_endpoint(ec);
  Endpoint e;
  if (ep.address().is_v4()) {
    auto b = ep.address().to_v4().to_bytes();
    std::memcpy(e.address.bytes.data(), b.data(), 4);
  } else {
    e.address.family = 6;
    auto b = ep.address().to_v6().to_bytes();
    std::memcpy(e.address.bytes.data(), b.data(), 16);
  }
  e.port = ep.port();
  return e;
}

std::size_t HttpServer::connections() const { return state_->sessions.size(); }

}  // namespace covey::metrics
