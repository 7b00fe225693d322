// The GDOI GROUPKEY-PULL exchange (RFC 6407 3), both roles, as pure state
// machines over an established phase-1 SA.
//
//   Group Member                       GCKS
//   HDR*, HASH(1), Ni, ID       -->
//                               <--    HDR*, HASH(2), Nr, SA
//   HDR*, HASH(3) [,GAP]        -->
//                               <--    HDR*, HASH(4), [SEQ,] KD
#pragma once

#include <optional>
#include <string>
#include <variant>

#include "gdoi/keys.h"
#include "gdoi/policy_codec.h"
#include "ike/main_mode.h"

namespace covey::gdoi {

// A member's result: the group's policy and keys, and the rekey sequence
// number below which no push may be accepted (RFC 6407 3.2).
struct Registration {
  std::uint32_t group_id = 0;
  GroupPolicy policy;
  KeyMaterial keys;
  std::optional<std::uint32_t> seq;
  // The SA KEK carried KEK_ACK_REQUESTED (RFC 8263 4): the member
  // acknowledges the pushes of this rekey SA. Not part of GroupPolicy,
  // which describes what the key server is configured with.
  bool kek_ack_requested = false;
  // The key server's pseudotime when it built message 2's SA (GAP
  // COVEY_PSEUDOTIME_MS): older, by the time message 4 completes the
  // registration, by the member's round trip for messages 3 and 4.
  std::optional<std::uint32_t> pseudotime_ms;
};

struct PullStep {
  std::optional<Bytes> send;
  std::optional<Registration> registered;          // member: message 4 accepted
  std::optional<ike::Failure> failure;             // the exchange is over and failed
  bool admitted = false;                           // key server: message 4 sent
  // A message that failed decryption or its HASH: ignored, the exchange
  // goes on (a forgery must not be able to end a registration).
  std::optional<std::string> dropped;
};

class PullInitiator {
 public:
  // sid_request: SIDs to ask for in message 3 (GAP SENDER_ID_REQUEST);
  // 0 or 1 sends no GAP, since the GCKS allocates one unasked (RFC 6407 3.5).
  PullInitiator(std::uint32_t group_id, std::uint16_t sid_request = 0);

  crypto::Result<Bytes> start(ike::Phase1Sa& sa);  // message 1
  PullStep receive(ike::Phase1Sa& sa, const wire::Header& h, ByteView datagram);  // messages 2 and 4

  std::uint32_t message_id() const { return mid_; }
  const Bytes& last_sent() const { return last_sent_; }

 private:
  PullStep fail(ike::Phase1Sa& sa, wire::NotifyType n, std::string reason, bool tell = true);
  std::uint32_t group_id_;
  std::uint16_t sid_request_;
  std::uint32_t mid_ = 0;
  int state_ = 0;  // 1: sent message 1, 3: sent message 3, 5: done
  Bytes ni_b_, nr_b_;
  std::optional<ReceivedSa> sa_;
  bool kek_ack_requested_ = false;  // message 2's SA KEK asked for acks (RFC 8263)
  Bytes last_sent_;
};

// The key server's groups, as the exchange needs them. The pull decides
// message order and hashes; the directory decides who may join and what
// they get.
class GroupDirectory {
 public:
  virtual ~GroupDirectory() = default;

  struct Offer {
    std::uint32_t group_id = 0;
    wire::GroupSaPayload sa;  // message 2's policy
    KeyMaterial keys;         // the keys for exactly that policy (SIDs added at admission)
    std::string interop_note;  // an interop quirk tolerated to find the group, for the log
    std::string warning;       // what this member will not enforce of the policy, for the log
  };
  // Message 1: the group the member named and whether it may join. Errors
  // carry the notification to send (INVALID-ID-INFORMATION for an unknown
  // group, AUTHENTICATION-FAILED for a member not on the list).
  virtual std::variant<Offer, ike::Failure> offer(const wire::IdentificationPayload& id, const ike::Phase1Sa& member) = 0;

  struct Admission {
    std::vector<std::uint32_t> sids;
    std::optional<std::uint32_t> seq;
  };
  // Message 3 proved the member live (Nr in HASH(3)): only now may the
  // group's state change (RFC 6407 3.2).
  virtual std::variant<Admission, ike::Failure> admit(const Offer& offer, const ike::Phase1Sa& member,
                                                      std::uint16_t sid_request) = 0;
};

class PullResponder {
 public:
  PullStep receive(ike::Phase1Sa& sa, const wire::Header& h, ByteView datagram, GroupDirectory& groups);
  std::uint32_t message_id() const { return mid_; }
  const std::optional<GroupDirectory::Offer>& offer() const { return offer_; }
  // After message 4: keeps only what answers a retransmitted message 3
  // (the messages), not the offer with its key copies or the nonces.
  void keep_only_answer() {
    offer_.reset();
    ni_b_.clear();
    nr_b_.clear();
  }

 private:
  PullStep fail(ike::Phase1Sa& sa, wire::NotifyType n, std::string reason);
  std::uint32_t mid_ = 0;
  int state_ = 0;  // 2: sent message 2, 4: sent message 4
  Bytes ni_b_, nr_b_;
  std::optional<GroupDirectory::Offer> offer_;
  Bytes last_received_, last_sent_;
};

}  // namespace covey::gdoi
