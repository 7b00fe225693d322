// The key server's side of GROUPKEY-PUSH (RFC 6407 4.3) and of its
// acknowledgement (RFC 8263): when each group is rekeyed, what a rekey
// changes, and how the push reaches the members. Pure: the caller passes
// the time (in ms to the calls that may build a push: it carries the
// group's pseudotime), sends the datagrams handed out (take_outgoing) and
// feeds back the acknowledgements that arrive on UDP 848.
//
// A rekey, whatever its reason:
//   1. a new TEK (an SPI the group never used) and, when due or when the
//      membership shrank, a new KEK (new cookie pair and key; the signature
//      key stays, since members verify with the one they hold);
//   2. SEQ + 1 (never reset, also not when the KEK changes);
//   3. the push, SEQ, SA (SA KEK, GAP, SA TEK), KD (the TEK, and the KEK
//      the next pushes come under), built and signed ONCE under the current
//      KEK for each encoding its members need: with covey's private
//      attributes for members that sent covey's Vendor ID, RFC 6407 alone
//      for the others (docs/ARCHITECTURE.md, "covey's Vendor ID"); the
//      same SEQ, keys and pseudotime in each, so that an acknowledgement
//      names the push by SEQ and ack key whichever a member got; with a
//      TBAR window, the GAP carries the group's pseudotime as of that
//      moment, so a retransmission carries it as of the first copy;
//   4. the group takes the new keys and the state file is written; only
//      then is the datagram handed out. A failed write undoes 1-4 and
//      sends nothing.
//
// Signing-key rollover (a reload with another signing key file): one such
// rekey, with a new KEK whose KD SIG_ALGORITHM_KEY is the new public key
// and whose SA KEK names the new key's algorithm and length, signed with
// the OLD key under the old KEK policy, so that members verify it with the
// key they hold (RFC 6407 5.6.2.2). Every later push is signed with the new
// key. The KEK is renewed with it so that a member that missed this push
// sees later ones under a KEK it never held and registers again (gm/
// rekey_state.h), rather than pushes it cannot verify.
//
// Delivery. Unicast: each member gets its encoding's datagram at the
// address and port it registered from, is retransmitted the same bytes every
// retransmit_period_s up to retransmit_count times, and acknowledges it
// (RFC 8263: ID = its registered address, SEQ = a push sent to it, HASH
// under the ack key of the KEK that encrypted the push). A push never
// acknowledged is a miss; a member that misses three in a row is dropped,
// as GET VPN does. A rekey while an older one is unacknowledged replaces it
// and counts the older as missed. Multicast: one datagram to the group's
// address and port, no acknowledgement; it carries what every current
// member understands (covey's extensions only when all sent the Vendor
// ID), and the key server says once what a mixed group loses.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "crypto/result.h"
#include "gdoi/push.h"
#include "ks/event.h"
#include "ks/group.h"
#include "ks/schedule.h"

namespace covey::ks {

enum class RekeyReason : std::uint8_t { TekLifetime, KekLifetime, PolicyChange, Operator, MemberRemoved, SigningKey };
// "tek-lifetime", "kek-lifetime", "policy-change", "operator", "member-removed", "signing-key"
const char* reason_name(RekeyReason r);

// Whether two policies differ in what members hold (ACL, transform,
// lifetimes, KEK policy, rekey transport, TBAR window, fail-close ACL,
// activation and deactivation delays), so that a reload must rekey.
bool member_visible_change(const gdoi::GroupPolicy& a, const gdoi::GroupPolicy& b);

// One datagram to send. All datagrams of one rekey to members of one kind
// (PeerTraits) share the same bytes.
struct PushDatagram {
  Endpoint to;
  std::optional<Address> from;  // the key server address to send from
  std::shared_ptr<const Bytes> datagram;
  std::optional<std::uint8_t> multicast_ttl;  // set: `to` is a multicast group
};

// What `coveyctl ks group` shows of a group's last rekey.
struct RekeyRecord {
  std::uint32_t group = 0;
  std::uint32_t seq = 0;
  std::int64_t at = 0;
  RekeyReason reason = RekeyReason::Operator;
  bool unicast = true;
  std::size_t members = 0;  // sent to
  std::size_t acked = 0;
};

class Rekeyer {
 public:
  explicit Rekeyer(Groups& groups) : groups_(groups) {}

  void set_margins(std::uint32_t group_identity, RekeyMargins m) { state(group_identity).margins = m; }
  RekeyMargins margins(const Group& g) const;

  // When the next scheduled rekey of `g` is due: the newest TEK's expiry
  // minus the TEK margin, or the KEK's minus the KEK margin, the earlier.
  std::int64_t tek_rekey_at(const Group& g) const;
  std::int64_t kek_rekey_at(const Group& g) const;
  std::int64_t next_rekey_at(const Group& g) const;

  // The clock: expired TEKs forgotten, scheduled rekeys that are due,
  // retransmissions, and the misses of pushes never acknowledged.
  void tick(std::int64_t now_ms);

  // Rekeys now (reasons Operator, TekLifetime, KekLifetime); the new SEQ.
  crypto::Result<std::uint32_t> rekey(Group& g, RekeyReason reason, std::int64_t now_ms);
  // Reload: `policy` replaces the group's. When members would see the
  // change, rekeys (new TEK; new KEK when the KEK policy changed) and
  // returns the SEQ; otherwise applies it quietly and returns nullopt.
  // The push goes by the transport members use now, the old one.
  // `signing_key`: a new rekey signing key, rolled over in this rekey
  // (always made then, reason SigningKey); `policy` names its algorithm.
  crypto::Result<std::optional<std::uint32_t>> change_policy(Group& g, gdoi::GroupPolicy policy, std::int64_t now_ms,
                                                             std::optional<crypto::PrivateKey> signing_key = {});
  // Removes the member and rekeys KEK and TEK by unicast to the rest (also
  // in a multicast group, as GET VPN does), the old TEKs shortened. Without
  // `group`, the one group that has the member. Returns the SEQ.
  crypto::Result<std::uint32_t> remove_member(const Address& member, const std::optional<std::string>& group,
                                              std::int64_t now_ms);

  // A new primary of a cluster (ks/coop.h) finishes the delivery of the
  // group's last push, which its predecessor may not have: the same bytes,
  // to every member that neither acknowledged it nor registered since,
  // retransmitted as the push's own settings say.
  void take_over(Group& g, std::int64_t now_ms);
  // A primary deposed (its lease ended, or etcd gave the role to another)
  // sends nothing more: every delivery in progress ends here, unmissed;
  // the new primary finishes them.
  void stand_down();
  // Clustered key servers send every push from their own address: a
  // member may have registered to another key server of the cluster.
  void set_send_from_own_address(bool own) { own_address_ = own; }

  // An RFC 8263 acknowledgement (exchange 35) that arrived from `from`.
  void receive_ack(const Endpoint& from, ByteView datagram, std::int64_t now);

  std::vector<PushDatagram> take_outgoing() { return std::exchange(outgoing_, {}); }
  std::vector<Event> take_events() { return std::exchange(events_, {}); }
  void set_min_severity(Severity min) { min_severity_ = min; }

  std::uint64_t rekeys_sent(const Group& g) const;
  std::optional<RekeyRecord> last_rekey(const Group& g) const;
  struct Counters {
    std::uint64_t acks = 0, acks_refused = 0, acks_late = 0, retransmissions = 0, misses = 0, dropped_members = 0;
  };
  const Counters& counters() const { return counters_; }
  // Members with a push outstanding (sent, neither acknowledged nor missed).
  std::size_t pending(const Group& g) const;

 private:
  struct SentPush {
    RekeyRecord record;
    // One per encoding its members need; multicast: exactly one.
    std::map<gdoi::PeerTraits, std::shared_ptr<const Bytes>> datagrams;
    gdoi::AckKey ack_key;  // of the KEK that encrypted it
    std::uint32_t retransmit_period_s = 0, retransmit_count = 0;
  };
  struct Delivery {
    std::shared_ptr<SentPush> push;  // the latest sent to this member
    std::shared_ptr<const Bytes> datagram;  // the push's encoding for this member
    std::uint32_t sent = 0;          // times sent
    std::int64_t next_at = 0;        // retransmit (or count the miss) then
    bool outstanding = false;        // neither acknowledged nor missed yet
    Endpoint to;
    std::optional<Address> from;
  };
  struct GroupState {
    RekeyMargins margins;
    std::uint64_t rekeys_sent = 0;
    std::int64_t retry_at = 0;  // after a scheduled rekey failed
    // Recent pushes, newest last: an acknowledgement must name one.
    std::deque<std::shared_ptr<SentPush>> recent;
    std::map<Address, Delivery> deliveries;
    // The covey features the last multicast push left out for members
    // without them: said once, when it changes.
    std::uint32_t multicast_lost = 0;
  };
  struct Plan {
    RekeyReason reason = RekeyReason::Operator;
    bool new_kek = false;
    bool shorten_old = false;        // triggered rekeys
    bool force_unicast = false;      // member removal
    std::optional<gdoi::GroupPolicy> policy;
    std::optional<crypto::PrivateKey> signing_key;  // a rollover to this key
  };

  GroupState& state(std::uint32_t identity) { return states_[identity]; }
  const GroupState* find_state(std::uint32_t identity) const;
  crypto::Result<std::uint32_t> run(Group& g, Plan plan, std::int64_t now_ms);
  void deliver(Group& g, GroupState& st, const std::shared_ptr<SentPush>& push, const gdoi::RekeyTransport& transport,
               bool unicast, std::int64_t now);
  void retransmit(Group& g, GroupState& st, std::int64_t now);
  // Logs, when it changes, what the multicast push encoded as `sent` leaves
  // out that the policy needs, and which members it is for.
  void warn_multicast_loss(const Group& g, GroupState& st, const gdoi::PeerTraits& sent);
  // Counts a miss; true when that dropped the member from the group.
  bool miss(Group& g, GroupState& st, const Address& member, std::uint32_t seq);
  bool logs(Severity s) const { return s >= min_severity_; }
  void log(Severity s, std::string text, LogFields fields = {}) {
    if (logs(s)) events_.push_back(Event{s, std::move(text), std::move(fields)});
  }

  Groups& groups_;
  std::map<std::uint32_t, GroupState> states_;
  std::vector<PushDatagram> outgoing_;
  std::vector<Event> events_;
  Counters counters_;
  Severity min_severity_ = Severity::Debug;
  bool own_address_ = false;
};

}  // namespace covey::ks
