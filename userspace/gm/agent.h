// covey-gm's event loop: registers with the first key server that answers,
// moving down the list with exponential backoff and jitter; follows
// GROUPKEY-PUSH rekeys on its registration socket (unicast, acknowledged)
// and on the rekey multicast group; registers again when no rekey came
// before its newest TEK ends, or when pushes come under a KEK it missed.
// The keys and their lifecycle are gm/rekey_state.h's (the data-path issue
// hands them to the kernel).
#pragma once

#include <utility>  // before Asio: Boost 1.74 uses std::exchange without it under C++20

#include <boost/asio.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/keylog.h"
#include "common/udp.h"
#include "gm/dataplane.h"
#include "gm/registrar.h"
#include "gm/rekey_state.h"

namespace covey::gm {

struct AgentOptions {
  std::string group_name;
  RegistrarOptions registrar;
  std::vector<Endpoint> key_servers;  // in preference order
  Endpoint local;                     // address and port to send from (port 848 by default)
  std::optional<std::string> keylog_path;
  std::int64_t backoff_min_s = 1;
  std::int64_t backoff_max_s = 60;
  // nullopt: keys only, the kernel is left alone.
  std::optional<DataplaneOptions> dataplane;
  // Told what the member is doing (systemd's STATUS=); SERVING once it
  // protects what it should: registered, or the fail-close ACL in place.
  std::function<void(bool serving, const std::string& status)> on_state;
};

class Agent {
 public:
  Agent(boost::asio::io_context& io, AgentOptions options);
  bool start(std::string* error);
  // A clean stop: the data path is taken out of the kernel.
  void stop();
  nlohmann::json status(bool show_keys) const;
  // GET /metrics (gm/metrics.h).
  std::string metrics() const;

 private:
  enum class State { Registering, Waiting, Registered };
  void begin_registration();
  void on_readable();
  void wait_readable();
  void on_push(ByteView datagram, const Endpoint& from, PushVia via);
  void update_multicast();
  void wait_multicast();
  void on_multicast_readable();
  void tick();
  void finish_attempt();
  void send(const std::vector<Bytes>& datagrams);
  void flush_events();
  void keylog_phase1();
  // The kernel follows the keys: after a registration, an applied push, each tick.
  void sync_dataplane(bool registration);
  // The data path follows the kernel's address changes (its own-LAN bypass).
  void wait_addresses();
  void tell(const std::string& status);

  boost::asio::io_context& io_;
  AgentOptions options_;
  std::optional<UdpSocket> socket_;
  std::optional<boost::asio::posix::stream_descriptor> watch_;
  boost::asio::steady_timer clock_;
  Keylog keylog_;
  wire::Cookie keylogged_{};  // initiator cookie of the last phase-1 SA written to the keylog
  Bytes buffer_;
  std::mt19937_64 rng_;

  State state_ = State::Waiting;
  std::size_t ks_index_ = 0;
  int failed_rounds_ = 0;
  std::optional<Registrar> attempt_;
  std::int64_t retry_at_ = 0;
  Endpoint registered_with_;
  std::optional<std::string> last_error_;
  RekeyState keys_;
  std::unique_ptr<Dataplane> dataplane_;
  std::optional<boost::asio::posix::stream_descriptor> address_watch_;
  std::uint64_t pseudotime_serial_ = 0;  // of the last sample handed to the data path
  bool serving_ = false;                 // on_state said so

  // The rekey multicast group, joined while the policy says multicast.
  std::optional<UdpSocket> multicast_;
  std::optional<boost::asio::posix::stream_descriptor> multicast_watch_;
  std::optional<Endpoint> multicast_group_;
  std::uint64_t multicast_generation_ = 0;  // a wait of a replaced socket must not rearm
};

}  // namespace covey::gm
