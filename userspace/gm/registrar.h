// One registration attempt of a group member with one key server: IKEv1
// Main Mode, then GROUPKEY-PULL, with retransmission on the caller's
// clock. Pure: datagrams in and out; the agent owns sockets and timers.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gdoi/pull.h"
#include "ike/main_mode.h"

namespace covey::gm {

struct RegistrarOptions {
  std::uint32_t group_id = 0;
  std::vector<ike::Phase1Transform> offers;
  std::shared_ptr<const ike::Credentials> credentials;
  std::uint16_t sid_request = 0;
  // RFC 6407 3.1: the member must check that its peer is an authorized
  // GCKS. With certificates, the subjects allowed (empty: any the CA signed).
  std::vector<std::string> ks_subjects;
  std::int64_t retransmit_s = 2;
  int retransmits = 4;  // then the attempt fails and the agent moves on
};

class Registrar {
 public:
  Registrar(RegistrarOptions options, Endpoint ks, Address local);

  std::vector<Bytes> start(std::int64_t now);
  std::vector<Bytes> receive(ByteView datagram, std::int64_t now);
  std::vector<Bytes> tick(std::int64_t now);  // retransmits, and gives up when it must

  bool done() const { return registration_.has_value() || failure_.has_value(); }
  const std::optional<gdoi::Registration>& registration() const { return registration_; }
  const std::optional<std::string>& failure() const { return failure_; }
  // Steps worth a log line, in GET VPN's words.
  std::vector<std::string> take_events() { return std::exchange(events_, {}); }
  const std::optional<ike::Phase1Sa>& phase1() const { return sa_; }
  const Endpoint& key_server() const { return ks_; }

 private:
  std::vector<Bytes> sent(std::optional<Bytes> d, std::int64_t now);
  void fail(std::string why);

  RegistrarOptions options_;
  Endpoint ks_;
  Address local_;
  ike::MainMode main_mode_;
  std::optional<ike::Phase1Sa> sa_;
  std::optional<gdoi::PullInitiator> pull_;
  std::optional<gdoi::Registration> registration_;
  std::optional<std::string> failure_;
  Bytes last_sent_;
  std::int64_t last_sent_at_ = 0;
  int retransmitted_ = 0;
  std::optional<std::string> notice_;  // the last unauthenticated word from the KS
  std::vector<std::string> events_;
};

}  // namespace covey::gm
