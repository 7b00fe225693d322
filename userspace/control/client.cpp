#include "control/client.h"

#include <sys/un.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <functional>
#include <string_view>
#include <utility>

#include "control/protocol.h"

namespace covey::control {
namespace {

namespace asio = boost::asio;
using Json = nlohmann::json;
using local = asio::local::stream_protocol;
using boost::system::error_code;

// The daemon a socket belongs to, for "is covey-ks running?": the default
// paths are ks.sock and gm.sock, and a custom path usually keeps the prefix.
std::string daemon_of(const std::string& path) {
  std::string name = std::filesystem::path(path).filename().string();
  if (name.starts_with("ks")) return "covey-ks";
  if (name.starts_with("gm")) return "covey-gm";
  return "the daemon";
}

std::string connect_error(const std::string& path, const error_code& ec) {
  std::string head = "cannot connect to " + path + ": ";
  if (ec == asio::error::access_denied || ec == asio::error::no_permission)
    return head + "permission denied — coveyctl needs root";
  if (ec == asio::error::connection_refused)
    return head + "nobody is listening (a stale socket) — is " + daemon_of(path) + " running?";
  return head + ec.message() + " — is " + daemon_of(path) + " running?";
}

// connect, write the request line, read reply lines until `on_line` has
// had enough: each step starts the next from its completion handler, and a
// timer re-armed for every line bounds the wait for it.
class Exchange {
 public:
  using OnLine = std::function<bool(const Json&)>;

  Exchange(const std::string& path, const Json& request, OnLine on_line)
      : path_(path),
        socket_(io_),
        deadline_(io_),
        out_(request.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n"),
        in_(kMaxReplyBytes + 1),
        on_line_(std::move(on_line)) {}

  // The error, or "" when on_line ended the exchange.
  std::string run(std::chrono::milliseconds timeout) {
    timeout_ = timeout;
    arm_deadline();
    socket_.async_connect(local::endpoint(path_), [this](error_code ec) {
      if (done_) return;
      if (ec) return finish(connect_error(path_, ec));
      send();
    });
    io_.run();
    return std::move(error_);
  }

 private:
  void arm_deadline() {
    deadline_.expires_after(timeout_);
    deadline_.async_wait([this](error_code ec) {
      if (ec || done_) return;
      finish("no reply from " + path_ + " within " + std::to_string(timeout_.count()) + " ms — " +
             daemon_of(path_) + " may be busy or hung; see its log");
    });
  }

  void send() {
    asio::async_write(socket_, asio::buffer(out_), [this](error_code ec, std::size_t) {
      if (done_) return;
      if (ec) return finish("cannot send to " + path_ + ": " + ec.message());
      receive();
    });
  }

  void receive() {
    asio::async_read_until(socket_, in_, '\n', [this](error_code ec, std::size_t n) {
      if (done_) return;
      if (ec == asio::error::not_found)
        return finish("reply from " + path_ + " has a line longer than " + std::to_string(kMaxReplyBytes) +
                      " bytes");
      if (ec == asio::error::eof)
        return finish(path_ +
                      (lines_ ? " closed the connection before the end of its reply"
                              : " closed the connection without replying") +
                      " — see " + daemon_of(path_) + "'s log");
      if (ec) return finish("cannot read the reply from " + path_ + ": " + ec.message());
      Json line;
      try {
        // A streambuf's bytes are contiguous: parse them in place, which is
        // several times faster than through buffer iterators.
        const char* bytes = static_cast<const char*>(in_.data().data());
        line = Json::parse(bytes, bytes + n);
      } catch (const Json::parse_error& e) {
        return finish("reply from " + path_ + " is not JSON: " + e.what());
      }
      in_.consume(n);
      ++lines_;
      if (!on_line_(line)) return finish("");
      arm_deadline();
      receive();
    });
  }

  void finish(std::string error) {
    error_ = std::move(error);
    done_ = true;
    error_code ignored;
    deadline_.cancel();
    socket_.close(ignored);
  }

  std::string path_;
  asio::io_context io_;
  local::socket socket_;
  asio::steady_timer deadline_;
  std::chrono::milliseconds timeout_{};
  std::string out_;
  asio::streambuf in_;
  OnLine on_line_;
  std::size_t lines_ = 0;
  std::string error_;
  bool done_ = false;
};

// asio would throw on an over-long path; say it plainly instead.
std::string bad_path(const std::string& path) {
  if (!path.empty() && path.size() < sizeof(sockaddr_un{}.sun_path)) return "";
  return "control socket path \"" + path + "\" must be 1 to " +
         std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes long";
}

}  // namespace

Result request(const std::string& path, const Json& request, std::chrono::milliseconds timeout) {
  if (std::string why = bad_path(path); !why.empty()) return {std::nullopt, why};
  Result result;
  result.error = Exchange(path, request, [&result](const Json& line) {
                   result.reply = line;
                   return false;
                 }).run(timeout);
  return result;
}

std::string stream(const std::string& path, const Json& request,
                   const std::function<bool(const Json& line)>& on_line, std::chrono::milliseconds timeout) {
  if (std::string why = bad_path(path); !why.empty()) return why;
  return Exchange(path, request, on_line).run(timeout);
}

}  // namespace covey::control
