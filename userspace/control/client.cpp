#include "control/client.h"

#include <sys/un.h>

#include <filesystem>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

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

// connect, write the request line, read the reply line: each step starts
// the next from its completion handler, so one run_for() bounds them all.
class Exchange {
 public:
  Exchange(const std::string& path, const Json& request)
      : path_(path),
        socket_(io_),
        out_(request.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n"),
        in_(kMaxReplyBytes + 1) {}

  Result run(std::chrono::milliseconds timeout) {
    socket_.async_connect(local::endpoint(path_), [this](error_code ec) {
      if (ec) return finish(connect_error(path_, ec));
      send();
    });
    io_.run_for(timeout);
    if (!done_)
      finish("no reply from " + path_ + " within " + std::to_string(timeout.count()) + " ms — " + daemon_of(path_) +
             " may be busy or hung; see its log");
    return std::move(result_);
  }

 private:
  void send() {
    asio::async_write(socket_, asio::buffer(out_), [this](error_code ec, std::size_t) {
      if (ec) return finish("cannot send to " + path_ + ": " + ec.message());
      receive();
    });
  }

  void receive() {
    asio::async_read_until(socket_, in_, '\n', [this](error_code ec, std::size_t n) {
      if (ec == asio::error::not_found)
        return finish("reply from " + path_ + " is longer than " + std::to_string(kMaxReplyBytes) + " bytes");
      if (ec == asio::error::eof)
        return finish(path_ + " closed the connection without replying — see " + daemon_of(path_) + "'s log");
      if (ec) return finish("cannot read the reply from " + path_ + ": " + ec.message());
      std::string line(asio::buffers_begin(in_.data()), asio::buffers_begin(in_.data()) + static_cast<std::ptrdiff_t>(n));
      try {
        result_.reply = Json::parse(line);
      } catch (const Json::parse_error& e) {
        return finish("reply from " + path_ + " is not JSON: " + e.what());
      }
      done_ = true;
    });
  }

  void finish(std::string error) {
    result_.error = std::move(error);
    done_ = true;
  }

  std::string path_;
  asio::io_context io_;
  local::socket socket_;
  std::string out_;
  asio::streambuf in_;
  Result result_;
  bool done_ = false;
};

}  // namespace

Result request(const std::string& path, const Json& request, std::chrono::milliseconds timeout) {
  // asio would throw on an over-long path; say it plainly instead.
  if (path.empty() || path.size() >= sizeof(sockaddr_un{}.sun_path))
    return {std::nullopt, "control socket path \"" + path + "\" must be 1 to " +
                              std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes long"};
  return Exchange(path, request).run(timeout);
}

}  // namespace covey::control
