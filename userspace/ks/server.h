// covey-ks's event loop: UDP sockets, the one-second clock, the keylog and
// the log, around the key server's core (ks/key_server.h). One thread, one
// io_context, for sockets and state; Main Mode's expensive steps run on
// worker threads (ks/workers.h) and come back to it to be committed.
#pragma once

#include <utility>  // before Asio: Boost 1.74 uses std::exchange without it under C++20

#include <boost/asio.hpp>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/keylog.h"
#include "common/udp.h"
#include "ks/key_server.h"
#include "ks/workers.h"

namespace covey::ks {

struct ServerOptions {
  std::vector<Endpoint> listen;  // e.g. 0.0.0.0:848 and [::]:848
  std::optional<std::string> keylog_path;
  // The key server's own address: the interface multicast rekeys leave by
  // (IP_MULTICAST_IF). Unset or unspecified: the kernel's choice.
  std::optional<Address> address;
  // Threads for Main Mode's Diffie-Hellman and authentication ([server]
  // workers); 0: the event loop does them itself.
  std::size_t workers = 0;
};

class Server {
 public:
  Server(boost::asio::io_context& io, ServerOptions options, KeyServer& core);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  // Binds every listen address; false (with `error`) if any fails.
  bool start(std::string* error);
  // Sends the pushes the core handed out and logs what it said; called
  // after every datagram batch, tick and control command.
  void flush();

 private:
  struct Listener {
    UdpSocket socket;
    boost::asio::posix::stream_descriptor watch;
    Endpoint bound;
    std::optional<std::uint8_t> multicast_ttl;  // the socket's IP_MULTICAST_TTL, once set
  };
  void wait(Listener& l);
  void drain(Listener& l);
  void tick();
  void flush_events();
  void send_pushes();
  Listener* listener_for(const PushDatagram& d);
  bool set_multicast_ttl(Listener& l, std::uint8_t ttl);
  // Hands the jobs the core made to the workers; on the loop again, a
  // finished job is committed and its replies (and those it released) sent.
  void submit_jobs();
  void commit_finished();
  Listener* listener_for(const Address& local);

  boost::asio::io_context& io_;
  ServerOptions options_;
  KeyServer& core_;
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
  std::vector<PushDatagram> pushes_;
  // Pushes handed out and not yet sent: send_pushes sends a slice per
  // loop turn, so that a rekey of 100,000 members takes turns with the
  // acknowledgements coming back, and waits for a full socket to drain.
  std::deque<PushDatagram> push_queue_;
  bool push_turn_pending_ = false;
  // Jobs the workers finished, for the loop to commit: one wakeup of the
  // loop takes all that finished meanwhile, their replies sent together.
  std::mutex finished_mutex_;
  std::vector<std::unique_ptr<MainModeJob>> finished_, committing_;
  std::unique_ptr<Workers> workers_;  // last: its threads stop before the rest goes
};

}  // namespace covey::ks
