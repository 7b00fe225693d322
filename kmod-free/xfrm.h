// The XFRM netlink socket (libmnl): one method per kernel operation, each
// sending one message from xfrm_msg.h and waiting for the kernel's answer.
// Every refusal names the SA or policy and quotes the kernel (errno and,
// where the kernel gives one, its extended-ack message).
//
// Ownership: the socket installs only states and policies inside its
// Ownership (reqid range and mark mask). It changes or deletes one only
// after the kernel's own lookup for it (GETSA, GETPOLICY: one request,
// whatever else the host holds) answered with covey's entry, and then with
// the same key, so the kernel reaches that same entry; a foreign one, also
// one that shadows covey's in the lookup, is never touched. Only
// flush_owned() dumps the tables: it has to find what covey owns.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "xfrm_msg.h"

struct mnl_socket;

namespace covey::kmod {

struct FlushReport {
  std::vector<std::string> policies_deleted, states_deleted;  // describe() of each
  std::vector<std::string> refused;  // covey's, left in place, with why
  std::size_t foreign_states = 0, foreign_policies = 0;  // seen and left alone
  std::string str() const;  // "deleted 3 policies and 2 states; left 1 foreign state, 0 foreign policies"
};

class XfrmSocket {
 public:
  // Opens NETLINK_XFRM in the calling thread's network namespace.
  static crypto::Result<std::unique_ptr<XfrmSocket>> open(const Ownership& ownership = kDefaultOwnership);
  ~XfrmSocket();
  XfrmSocket(const XfrmSocket&) = delete;
  XfrmSocket& operator=(const XfrmSocket&) = delete;

  // XFRM_MSG_NEWSA. The request (with the keys) is wiped once the kernel answered.
  crypto::Result<void> add_sa(const EspState& state);
  // XFRM_MSG_UPDSA of a state covey owns: a GETSA by (destination, SPI,
  // ESP, mark) must answer with covey's state, then the UPDSA (the kernel
  // finds the state it updates by the same key).
  crypto::Result<void> update_sa(const EspState& state);
  // XFRM_MSG_DELSA of a state covey owns, checked by a GETSA the same way.
  crypto::Result<void> delete_sa(const StateId& id);
  // The state the kernel's lookup for `id` reaches (XFRM_MSG_GETSA, without
  // its keys); nullopt when there is none.
  crypto::Result<std::optional<StateInfo>> find_state(const StateId& id);

  crypto::Result<void> add_policy(const Policy& policy);
  // XFRM_MSG_GETPOLICY by direction, selector and mark must answer with
  // covey's policy with this template, then XFRM_MSG_DELPOLICY by the same key.
  crypto::Result<void> delete_policy(const Policy& policy);

  // Dumps (without keys).
  crypto::Result<std::vector<StateInfo>> states();
  crypto::Result<std::vector<PolicyInfo>> policies();

  // Everything covey owns, policies first; for startup (leftovers of a
  // crashed run) and a clean stop.
  crypto::Result<FlushReport> flush_owned();

  const Ownership& ownership() const { return ownership_; }
  // The kernel's answer to the last request it refused, for callers that
  // act on the errno (the probe tells a missing ESP from a missing cipher).
  const std::optional<KernelAck>& last_refusal() const { return last_refusal_; }
  // Requests sent to the kernel so far, and how many of them were dumps:
  // what an operation costs (covey-xfrm-test prints them).
  std::uint64_t requests_sent() const { return requests_sent_; }
  std::uint64_t dumps_sent() const { return dumps_sent_; }

 private:
  explicit XfrmSocket(const Ownership& ownership) : ownership_(ownership) {}
  template <class On>
  auto reply(ByteView request, std::uint16_t answer, On&& on) -> decltype(on(ByteView{}, true));
  // Sends one request and returns the kernel's NLMSG_ERROR (error 0 = ack).
  crypto::Result<KernelAck> transact(ByteView request);
  crypto::Result<void> expect_ack(ByteView request, const std::string& operation, const std::string& what);
  // Sends a GET (no NLM_F_ACK) and hands its answer of type `answer` to
  // `take`; false when the kernel has no such entry (ESRCH, ENOENT).
  template <class Take>
  crypto::Result<bool> query(ByteView request, std::uint16_t answer, Take&& take);
  crypto::Result<void> send(ByteView request);
  // Runs a dump, handing each entry to `entry`; restarts when the kernel
  // flags it as interrupted by a concurrent change.
  template <class Entry>
  crypto::Result<void> dump(Bytes (*build)(std::uint32_t), const char* what, Entry&& entry);
  crypto::Result<void> check_owned(const EspState& state) const;
  void wipe_rx();

  mnl_socket* nl_ = nullptr;
  std::uint32_t portid_ = 0;
  std::uint32_t seq_ = 0;
  Ownership ownership_;
  // Dumps and acks can carry key material (a state dump includes its keys):
  // the buffer is wiped after every use.
  std::vector<std::uint8_t> rx_;
  std::optional<KernelAck> last_refusal_;
  std::uint64_t requests_sent_ = 0, dumps_sent_ = 0;
};

// A second NETLINK_XFRM socket, subscribed to XFRMNLGRP_EXPIRE: the kernel
// announces there every state whose soft or hard limit ran out (hard: it
// deleted the state), whoever installed it. Non-blocking: take() returns
// what has arrived.
class XfrmExpiries {
 public:
  // In the calling thread's network namespace; needs CAP_NET_ADMIN.
  static crypto::Result<std::unique_ptr<XfrmExpiries>> open();
  ~XfrmExpiries();
  XfrmExpiries(const XfrmExpiries&) = delete;
  XfrmExpiries& operator=(const XfrmExpiries&) = delete;

  int fd() const;
  struct Batch {
    std::vector<StateExpiry> expiries;
    // The socket's buffer overflowed (ENOBUFS) and the kernel dropped
    // announcements: look the states up again.
    bool overrun = false;
  };
  crypto::Result<Batch> take();

 private:
  XfrmExpiries() = default;
  mnl_socket* nl_ = nullptr;
  std::vector<std::uint8_t> rx_;
};

}  // namespace covey::kmod
