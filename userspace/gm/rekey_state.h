// A group member's keys between registrations: the rekey SA (KEK, its
// policy, the last SEQ) and the TEKs with their lifecycle, moved by
// GROUPKEY-PUSH messages (RFC 6407 4.4) and by time. Pure: datagrams and
// the time come in; acknowledgements (RFC 8263), log lines and the decision
// to register again go out. The agent owns the sockets and the clock.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/log.h"
#include "crypto/result.h"
#include "gdoi/pull.h"
#include "gdoi/push.h"

namespace covey::gm {

// A TEK's life at a member (RFC 5374 4.2.1, with RFC 6407 5.4.1's delays):
//   pending       received and installed for receiving (other members may
//                 already send on it); not sent on before its activation.
//   active        sent and received on: the newest TEK that has activated.
//   receive-only  a newer TEK activated; kept for receiving until its
//                 deactivation time, so traffic a slower member still sends
//                 on it arrives.
//   expired       past its deactivation time or its lifetime; dropped at
//                 the next tick.
enum class TekState : std::uint8_t { Pending, Active, ReceiveOnly, Expired };
const char* name(TekState s);  // "pending", "active", "receive-only", "expired"

// The group and port multicast rekeys come to, when the policy says multicast.
std::optional<Endpoint> multicast_group(const gdoi::GroupPolicy& p);

struct RekeyOptions {
  std::string group_name;  // "GET_VPN", for log lines
  Address member;          // the member's own address: the ID in its acks (RFC 8263 3.4)
  // Pushes under cookies of no KEK this member ever held, more than
  // `unknown_kek_limit` within `unknown_kek_window_s`, mean it missed a KEK
  // rekey. The window is the key server's retransmission span: GET VPN's
  // default "rekey retransmit 10 number 2" sends a push three times in 30 s.
  std::int64_t unknown_kek_window_s = 30;
  std::size_t unknown_kek_limit = 2;
  // At most one re-registration per this many seconds for unknown-KEK
  // pushes: they are unauthenticated (nobody can check a push without its
  // KEK), so anyone who can reach the multicast group could otherwise make
  // every member register at once, over and over, against the key server.
  std::int64_t unknown_kek_reregister_interval_s = 120;
  // A retransmitted push is acknowledged again at most this often; the key
  // server retransmits every few seconds, a replaying attacker faster.
  std::int64_t reack_interval_s = 1;
};

// Counters shown by `coveyctl gm status`. Cumulative over the agent's life
// except rekeys_since_registration.
struct RekeyCounters {
  std::uint64_t rekeys_received = 0;
  std::uint64_t rekeys_since_registration = 0;
  std::uint64_t acks_sent = 0;
  std::uint64_t retransmissions = 0;  // copies of the last accepted push, acknowledged again
  // Refused pushes, by PushRefused::counter().
  std::uint64_t unknown_kek = 0, undecryptable = 0, malformed = 0, replay = 0, bad_signature = 0, retired_signing_key = 0;
  std::uint64_t& refused(gdoi::PushRefused::Reason r);
  std::uint64_t refused(gdoi::PushRefused::Reason r) const { return const_cast<RekeyCounters&>(*this).refused(r); }
};

struct LogEvent {
  LogLevel level = LogLevel::Info;
  std::string text;
  LogFields fields = {};  // the journal's (common/log.h)
};

enum class PushVia : std::uint8_t { Unicast, Multicast };

struct PushOutcome {
  enum class Kind : std::uint8_t { Applied, Retransmission, Refused };
  Kind kind = Kind::Refused;
  std::optional<std::string> refused;  // PushRefused::counter() when Refused
  // The RFC 8263 acknowledgement to send from the registration socket to
  // the endpoint the push came from. Call ack_sent() once it is sent.
  std::optional<Bytes> ack;
  // Why the member must register now (a KEK it cannot decrypt with, a
  // deleted KEK); the caller starts a registration unless one is running.
  std::optional<std::string> reregister;
  bool transport_changed = false;  // the rekey transport (multicast group, port) changed: join again
  std::vector<LogEvent> log;
};

// The key server's pseudotime (GAP COVEY_PSEUDOTIME_MS) as this member
// last received it: from the last completed registration or the last
// applied push. `serial` grows with each new sample, so the agent can tell
// a new one and pair it with its own monotonic clock then. A push's value
// is from when the key server built it; a retransmission that is the
// first copy to arrive is older by the retransmissions before it.
struct PseudotimeSample {
  std::uint32_t ms = 0;
  std::uint64_t serial = 0;
};

// One TEK as the status shows it.
struct TekView {
  const gdoi::Tek* tek = nullptr;
  TekState state = TekState::Pending;
  std::int64_t activates_at = 0;
  std::int64_t deactivates_at = 0;  // when it stops being received on, as known now
  std::int64_t lifetime_s = 0;      // as received
  std::int64_t remaining_s = 0;     // of its lifetime
};

class RekeyState {
 public:
  explicit RekeyState(RekeyOptions options) : options_(std::move(options)) {}

  // A completed GROUPKEY-PULL: the policy, KEK and TEKs are the
  // registration's. TEKs this member held under the same SPI keep their
  // history; TEKs the key server no longer hands out are dropped (it may
  // have cut them short to exclude a member). Counters since registration
  // restart; cumulative ones go on. An error (a KEK or signature key the
  // member cannot use) leaves the state as it was.
  crypto::Result<void> registered(const gdoi::Registration& r, std::int64_t now);

  // A datagram of exchange GROUPKEY-PUSH (33) from `from`.
  PushOutcome receive_push(ByteView datagram, const Endpoint& from, PushVia via, std::int64_t now);
  void ack_sent() { ++counters_.acks_sent; }

  // Moves TEKs through their states and drops the expired ones; the log
  // says each transition.
  std::vector<LogEvent> tick(std::int64_t now);

  bool is_registered() const { return registered_at_.has_value(); }
  std::optional<std::int64_t> registered_at() const { return registered_at_; }
  // When the member registers again if no rekey comes: the newest TEK's
  // lifetime less a tenth of it (at most a minute), or the KEK's end if that
  // is sooner (a KEK rekey it missed cannot be detected otherwise on a
  // multicast group).
  std::optional<std::int64_t> next_rekey_expected_by() const;

  const gdoi::GroupPolicy& policy() const { return policy_; }
  const std::vector<std::uint32_t>& sids() const { return sids_; }
  const std::optional<gdoi::PushReceiver>& receiver() const { return receiver_; }
  std::optional<std::int64_t> kek_expires_at() const { return kek_expires_at_; }
  std::int64_t kek_lifetime_s() const { return kek_lifetime_s_; }
  std::optional<std::uint32_t> last_seq() const { return last_seq_; }
  // nullopt: the last registration brought none (the policy has no TBAR
  // window, or the key server is not covey) and no push has since.
  std::optional<PseudotimeSample> pseudotime() const { return pseudotime_; }
  const RekeyCounters& counters() const { return counters_; }
  std::vector<TekView> teks(std::int64_t now) const;

 private:
  struct HeldTek {
    gdoi::Tek tek;
    std::uint64_t generation = 0;  // a higher one replaces a lower one
    std::int64_t received_at = 0;
    std::int64_t activates_at = 0;
    std::int64_t lifetime_from = 0;  // when lifetime_s was received (a push may refresh it)
    std::int64_t expires_at = 0;
    // The deactivation time this TEK gives the TEKs it replaces: received
    // plus DEACTIVATION_TIME_DELAY; nullopt when that delay is 0.
    std::optional<std::int64_t> replaces_older_at;
    std::optional<std::int64_t> deleted_at;  // a DELETE named it: deactivates then
    TekState logged = TekState::Pending;     // the state last logged
  };

  TekState state_of(const HeldTek& t, std::int64_t now) const;
  std::int64_t deactivates_at(const HeldTek& t) const;
  void take_teks(const std::vector<gdoi::Tek>& teks, std::int64_t now, bool registration);
  void apply(const gdoi::PushAccepted& a, const std::string& ks, std::int64_t now, PushOutcome& out);
  void count(const gdoi::PushRefused& r);
  std::optional<std::string> unknown_kek(ByteView datagram, PushVia via, std::int64_t now, std::string& detail);
  std::string tek_name(std::uint32_t spi) const;
  void sample_pseudotime(std::uint32_t ms) { pseudotime_ = PseudotimeSample{ms, ++pseudotime_samples_}; }

  RekeyOptions options_;
  std::optional<std::int64_t> registered_at_;
  gdoi::GroupPolicy policy_;
  std::vector<std::uint32_t> sids_;
  std::optional<gdoi::PushReceiver> receiver_;
  std::optional<std::int64_t> kek_expires_at_;
  std::int64_t kek_lifetime_s_ = 0;
  std::vector<gdoi::KekSpi> former_keks_;  // KEKs this member held and replaced, newest last
  std::vector<HeldTek> teks_;
  std::uint64_t next_generation_ = 1;
  std::optional<std::uint32_t> last_seq_;
  std::optional<PseudotimeSample> pseudotime_;
  std::uint64_t pseudotime_samples_ = 0;
  RekeyCounters counters_;

  // The last accepted push, to recognize the key server's retransmission
  // of it (it retransmits when our ack was lost).
  Bytes last_digest_;
  std::optional<Bytes> last_ack_;
  std::uint32_t last_accepted_seq_ = 0;
  std::int64_t last_reack_at_ = 0;
  bool reacked_once_ = false;

  std::deque<std::int64_t> unknown_kek_at_;  // arrivals under never-held cookies, in the window
  std::optional<std::int64_t> unknown_kek_reregistered_at_;
};

}  // namespace covey::gm
