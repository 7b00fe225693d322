// The key server's protocol core: every datagram on UDP 848 goes in, the
// datagrams to send and the events to log come out. No sockets, no clock
// of its own; the event loop (server.cpp) owns those.
//
// Flood resistance (issue: registration): message 1 of Main Mode costs a
// proposal check and a cookie, no Diffie-Hellman; half-open exchanges are
// capped, the oldest dropped first, and expire after `half_open_timeout_s`.
//
// Threads (docs/ARCHITECTURE.md, "Threading model"): the expensive steps of
// Main Mode (messages 3 and 5: Diffie-Hellman, keys, authentication) can be
// handed out as MainModeJobs to run on any thread; commit() takes them back
// in the order they were handed out, so what the dispatcher decides never
// depends on which thread finished first. Everything else, and every
// commit, happens on the caller's one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ike/main_mode.h"
#include "ks/event.h"
#include "ks/group.h"

namespace covey::ks {

struct DispatcherOptions {
  std::vector<ike::Phase1Transform> phase1;  // transforms accepted, lifetimes as maxima
  std::shared_ptr<const ike::Credentials> credentials;
  std::size_t half_open_cap = 1024;
  std::int64_t half_open_timeout_s = 30;
  std::int64_t exchange_timeout_s = 30;  // GROUPKEY-PULL exchanges
  // How long a phase-1 SA outlives its last GROUPKEY-PULL: long enough to
  // answer a retransmitted message 3 (covey-gm retransmits every 2 s, four
  // times), not until the SA's lifetime. Nothing else uses the SA: rekeys
  // travel under the KEK, and a member registers again with a new Main Mode.
  std::int64_t exchange_linger_s = 10;
  bool keylog = false;  // collect phase-1 keys for the keylog (off: no key is copied)
};

struct Outgoing {
  Endpoint to;
  Bytes datagram;
};

struct Counters {
  std::uint64_t datagrams = 0, malformed = 0, dropped = 0;
  std::uint64_t phase1_started = 0, phase1_completed = 0, half_open_evicted = 0;
  // Failed Main Mode exchanges by the notification the key server sent
  // ("NO-PROPOSAL-CHOSEN", "AUTHENTICATION-FAILED"...): the reason an
  // operator can act on, named as in the log and in a capture.
  std::map<std::string, std::uint64_t> phase1_failed;
  std::uint64_t registrations = 0, registrations_refused = 0;
  std::uint64_t push_acks = 0;  // exchange 35 datagrams handed to the rekeyer
  // Main Mode datagrams dropped because their exchange's expensive step was
  // still being computed (a retransmission: the next one is answered), and
  // results whose exchange had ended meanwhile (evicted or expired).
  std::uint64_t busy_dropped = 0, results_discarded = 0;
};

// A phase-1 SA's key material, for the keylog (Wireshark's IKEv1 table).
struct KeylogEntry {
  wire::Cookie initiator_cookie;
  Bytes encryption_key;
};

// One expensive Main Mode step, self-contained: the half-open exchange moved
// out of the dispatcher, the datagram and the time. run() is the pure
// crypto and touches nothing else, so any thread may call it; the
// dispatcher's commit() applies its outcome.
struct MainModeJob {
  ike::MainMode exchange;
  Endpoint from;
  Address local;
  Bytes datagram;
  std::int64_t now = 0;
  int received = 0;        // which message of six this is, for the log
  std::uint64_t seq = 0;   // submission order: commits follow it
  ike::Step step;          // run()'s result
  void run() { step = exchange.receive(datagram, now); }
};

// The replies a commit produced, with the address the exchange's datagram
// arrived on: they leave from it.
struct Committed {
  Address local;
  std::vector<Outgoing> replies;
};

class Rekeyer;

class Dispatcher {
 public:
  Dispatcher(DispatcherOptions options, Groups& groups, Address local);

  // GROUPKEY-PUSH acknowledgements (exchange 35, RFC 8263) go to `rekeyer`;
  // without one they are dropped.
  void set_rekeyer(Rekeyer* rekeyer) { rekeyer_ = rekeyer; }
  // A reload: new phase-1 transforms and credentials for exchanges that
  // begin from now on (those in progress finish with what they began with).
  void set_phase1(std::vector<ike::Phase1Transform> phase1, std::shared_ptr<const ike::Credentials> credentials);

  // `local`: the address the datagram arrived on (our phase-1 identity).
  // `now_ms`: Unix ms (GROUPKEY-PULL message 2 carries the pseudotime);
  // timeouts count its second.
  std::vector<Outgoing> receive(const Endpoint& from, const Address& local, ByteView datagram, std::int64_t now_ms);
  // Ends exchanges and SAs whose time is up.
  void expire(std::int64_t now);

  // Off (the default): receive() runs Main Mode's expensive steps itself.
  // On: it hands them out instead (take_jobs()), each exchange counting
  // against the half-open cap while its job is out, and the caller gives
  // every job back to commit() once run. At most `half_open_cap` jobs are
  // out at a time; past that, the datagram is dropped as a retransmission.
  void set_offload(bool on) { offload_ = on; }
  std::vector<std::unique_ptr<MainModeJob>> take_jobs() { return std::exchange(jobs_, {}); }
  // A job that has run, in any order: it and every job handed out before
  // it that is back are applied, in the order they were handed out.
  std::vector<Committed> commit(std::unique_ptr<MainModeJob> job);
  std::size_t jobs_out() const { return static_cast<std::size_t>(next_seq_ - next_commit_); }

  std::vector<Event> take_events() { return std::exchange(events_, {}); }
  std::vector<KeylogEntry> take_keylog() { return std::exchange(keylog_, {}); }
  const Counters& counters() const { return counters_; }
  // Events below `min` are not even built (the daemon's log level would
  // discard them); Debug, the default, keeps every event.
  void set_min_severity(Severity min) { min_severity_ = min; }
  std::size_t half_open() const { return half_open_.size(); }
  std::size_t established() const { return sas_.size(); }

 private:
  using CookiePair = std::pair<wire::Cookie, wire::Cookie>;
  struct HalfOpen {
    ike::MainMode exchange;  // moved out into a job while `busy`
    std::int64_t started_at;
    std::list<CookiePair>::iterator age;
    Endpoint peer;
    bool busy = false;  // its job is out: datagrams for it are dropped
  };
  struct Pull {
    gdoi::PullResponder responder;
    std::int64_t at;  // begun, or once done, ended
    bool done = false;  // message 4 sent: only answers its retransmission
  };
  struct Sa {
    ike::Phase1Sa sa;
    Address local;  // the key server address the member contacted
    std::optional<ike::MainMode> finished;  // answers a retransmitted message 5
    std::map<std::uint32_t, Pull> pulls;
    // With no exchange in progress, the SA ends at this second: idle since
    // established, or lingering after its last exchange.
    std::int64_t ends_at = 0;
  };

  std::vector<Outgoing> main_mode(const wire::Header& h, const Endpoint& from, const Address& local,
                                  ByteView datagram, std::int64_t now);
  std::vector<Outgoing> phase2(const wire::Header& h, const Endpoint& from, ByteView datagram, std::int64_t now_ms);
  void informational(Sa& s, const wire::Header& h, ByteView datagram);
  bool logs(Severity s) const { return s >= min_severity_; }
  void log(Severity s, std::string text, LogFields fields = {}) {
    if (logs(s)) events_.push_back(Event{s, std::move(text), std::move(fields)});
  }
  void drop_half_open(std::map<CookiePair, HalfOpen>::iterator it);
  // The rest of main_mode() once the exchange's step has run: counters,
  // log, the half-open table and the SA table.
  std::vector<Outgoing> apply(MainModeJob& job);

  DispatcherOptions options_;
  Groups& groups_;
  Address local_;
  std::map<CookiePair, HalfOpen> half_open_;  // responder cookie is ours, so the pair is unique
  std::list<CookiePair> ages_;                 // oldest first
  std::map<wire::Cookie, CookiePair> by_initiator_cookie_;  // retransmitted message 1
  std::map<CookiePair, Sa> sas_;
  std::map<Endpoint, CookiePair> sa_by_peer_;  // a member has one SA with us at a time
  std::vector<Event> events_;
  std::vector<KeylogEntry> keylog_;
  Counters counters_;
  Severity min_severity_ = Severity::Debug;
  Rekeyer* rekeyer_ = nullptr;
  bool offload_ = false;
  std::vector<std::unique_ptr<MainModeJob>> jobs_;  // handed out, not yet taken
  std::uint64_t next_seq_ = 0, next_commit_ = 0;
  std::map<std::uint64_t, std::unique_ptr<MainModeJob>> returned_;  // back early, waiting for their turn
};

}  // namespace covey::ks
