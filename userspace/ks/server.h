// covey-ks's event loop: UDP sockets, the one-second clock, the keylog and
// the log, around the pure Dispatcher. One thread, one io_context.
#pragma once

#include <utility>  // before Asio: Boost 1.74 uses std::exchange without it under C++20

#include <boost/asio.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/keylog.h"
#include "common/udp.h"
#include "ks/dispatcher.h"

namespace covey::ks {

struct ServerOptions {
  std::vector<Endpoint> listen;  // e.g. 0.0.0.0:848 and [::]:848
  DispatcherOptions dispatcher;
  std::optional<std::string> keylog_path;
};

class Server {
 public:
  Server(boost::asio::io_context& io, ServerOptions options, Groups& groups);
  // Binds every listen address; false (with `error`) if any fails.
  bool start(std::string* error);
  const Dispatcher& dispatcher() const { return dispatcher_; }

 private:
  struct Listener {
    UdpSocket socket;
    boost::asio::posix::stream_descriptor watch;
  };
  void wait(Listener& l);
  void drain(Listener& l);
  void tick();
  void flush_events();
  static std::int64_t now();

  boost::asio::io_context& io_;
  ServerOptions options_;
  Dispatcher dispatcher_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  boost::asio::steady_timer clock_;
  Keylog keylog_;
  // One recvmmsg batch: a 64 KiB buffer per datagram, allocated up front.
  std::vector<Bytes> buffers_;
  std::vector<UdpSocket::Received> received_;
  std::vector<Outgoing> replies_;
  std::vector<std::optional<Address>> reply_from_;
  std::vector<UdpSocket::Outbound> outbound_;
  std::vector<std::size_t> failed_;
};

}  // namespace covey::ks
