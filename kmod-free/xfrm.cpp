#include "xfrm.h"

#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace covey::kmod {

namespace {

std::string errno_words(int e) {
  const char* name = strerrorname_np(e);
  return std::string(name ? name : "errno " + std::to_string(e)) + ": " + std::strerror(e);
}

// A dump of a few thousand states fits; the kernel never sends one message
// larger than its dump skb (at most 32 KiB by default).
constexpr std::size_t kReceiveBuffer = 64 * 1024;
constexpr int kDumpAttempts = 4;

}  // namespace

std::string FlushReport::str() const {
  std::string s = "deleted " + std::to_string(policies_deleted.size()) + " policies and " +
                  std::to_string(states_deleted.size()) +
                  " states; left " + std::to_string(foreign_states) + " foreign states and " +
                  std::to_string(foreign_policies) + " foreign policies alone";
  if (!refused.empty()) s += "; refused " + std::to_string(refused.size());
  return s;
}

crypto::Result<std::unique_ptr<XfrmSocket>> XfrmSocket::open(const Ownership& ownership) {
  if (ownership.mark_mask == 0 || ownership.reqid_first > ownership.reqid_last)
    return crypto::Error{"XFRM ownership " + ownership.str() + " is empty: covey could not recognise its own SAs"};
  std::unique_ptr<XfrmSocket> s(new XfrmSocket(ownership));
  s->nl_ = mnl_socket_open(NETLINK_XFRM);
  if (!s->nl_) {
    int e = errno;
    return crypto::Error{"cannot open an XFRM netlink socket (" + errno_words(e) + ")" +
                         (e == EPROTONOSUPPORT ? "; the kernel lacks xfrm_user: modprobe xfrm_user" : "")};
  }
  if (mnl_socket_bind(s->nl_, 0, MNL_SOCKET_AUTOPID) < 0)
    return crypto::Error{"cannot bind the XFRM netlink socket (" + errno_words(errno) + ")"};
  s->portid_ = mnl_socket_get_portid(s->nl_);
  int one = 1;
  // Extended acks carry the kernel's own words; capped acks keep the kernel
  // from echoing our request, keys included, back in an error. Kernels
  // without them (before 4.12 / 4.2) still answer with the errno.
  mnl_socket_setsockopt(s->nl_, NETLINK_EXT_ACK, &one, sizeof one);
  mnl_socket_setsockopt(s->nl_, NETLINK_CAP_ACK, &one, sizeof one);
  // The kernel answers XFRM requests synchronously; a wait this long means
  // something is badly wrong, and the GM should say so rather than hang.
  timeval tv{5, 0};
  setsockopt(mnl_socket_get_fd(s->nl_), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  s->seq_ = static_cast<std::uint32_t>(time(nullptr));
  s->rx_.resize(kReceiveBuffer);
  return s;
}

XfrmSocket::~XfrmSocket() {
  wipe_rx();
  if (nl_) mnl_socket_close(nl_);
}

void XfrmSocket::wipe_rx() {
  if (!rx_.empty()) explicit_bzero(rx_.data(), rx_.size());
}

crypto::Result<void> XfrmSocket::send(ByteView request) {
  ++requests_sent_;
  if (mnl_socket_sendto(nl_, request.data(), request.size()) < 0)
    return crypto::Error{"sending to the kernel failed (" + errno_words(errno) + ")"};
  return {};
}

// The kernel's reply to `request` (its sequence number, from the kernel or
// this socket's port): the first message of type `answer` (0: none
// expected) or its NLMSG_ERROR, handed to `on` as (message, is_ack). The
// receive buffer is wiped after, since the answer to a GETSA carries keys.
template <class On>
auto XfrmSocket::reply(ByteView request, std::uint16_t answer, On&& on) -> decltype(on(ByteView{}, true)) {
  const auto* req = reinterpret_cast<const nlmsghdr*>(request.data());
  if (auto sent = send(request); !sent) return crypto::Error{sent.error()};
  struct Wipe {
    XfrmSocket* s;
    ~Wipe() { s->wipe_rx(); }
  } wipe{this};
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl_, rx_.data(), rx_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return crypto::Error{"no answer from the kernel (" + errno_words(errno) + ")"};
    }
    auto* nlh = reinterpret_cast<const nlmsghdr*>(rx_.data());
    int len = static_cast<int>(n);
    for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_seq != req->nlmsg_seq || (nlh->nlmsg_pid != 0 && nlh->nlmsg_pid != portid_)) continue;
      const bool is_ack = nlh->nlmsg_type == NLMSG_ERROR;
      if (!is_ack && (answer == 0 || nlh->nlmsg_type != answer)) continue;
      return on(ByteView(reinterpret_cast<const std::uint8_t*>(nlh), nlh->nlmsg_len), is_ack);
    }
    wipe_rx();
  }
}

crypto::Result<KernelAck> XfrmSocket::transact(ByteView request) {
  return reply(request, 0, [](ByteView msg, bool) { return parse_ack(msg); });
}

crypto::Result<void> XfrmSocket::expect_ack(ByteView request, const std::string& operation, const std::string& what) {
  last_refusal_.reset();
  auto ack = transact(request);
  if (!ack) return crypto::Error{operation + " " + what + ": " + ack.error()};
  if (ack->error != 0) {
    last_refusal_ = *ack;
    return crypto::Error{"kernel refused " + operation + " " + what + ": " + ack->str(request)};
  }
  return {};
}

template <class Entry>
crypto::Result<void> XfrmSocket::dump(Bytes (*build)(std::uint32_t), const char* what, Entry&& entry) {
  struct Wipe {
    XfrmSocket* s;
    ~Wipe() { s->wipe_rx(); }
  } wipe{this};
  for (int attempt = 1; attempt <= kDumpAttempts; ++attempt) {
    const std::uint32_t seq = ++seq_;
    Bytes request = build(seq);
    ++dumps_sent_;
    if (auto sent = send(request); !sent) return crypto::Error{std::string("dumping ") + what + ": " + sent.error()};
    bool interrupted = false, done = false;
    entry.restart();
    while (!done) {
      ssize_t n = mnl_socket_recvfrom(nl_, rx_.data(), rx_.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return crypto::Error{std::string("dumping ") + what + ": no answer from the kernel (" + errno_words(errno) + ")"};
      }
      auto* nlh = reinterpret_cast<const nlmsghdr*>(rx_.data());
      int len = static_cast<int>(n);
      for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
        if (nlh->nlmsg_seq != seq) continue;
        if (nlh->nlmsg_flags & NLM_F_DUMP_INTR) interrupted = true;
        ByteView msg(reinterpret_cast<const std::uint8_t*>(nlh), nlh->nlmsg_len);
        if (nlh->nlmsg_type == NLMSG_DONE || nlh->nlmsg_type == NLMSG_ERROR) {
          auto ack = parse_ack(msg);
          if (!ack) return crypto::Error{std::string("dumping ") + what + ": " + ack.error()};
          if (ack->error != 0) return crypto::Error{std::string("kernel refused to dump ") + what + ": " + ack->str()};
          done = true;
          break;
        }
        if (auto r = entry(msg); !r) return crypto::Error{std::string("dumping ") + what + ": " + r.error()};
      }
      wipe_rx();
    }
    if (!interrupted) return {};
  }
  return crypto::Error{std::string("dumping ") + what + ": the kernel's tables kept changing during " +
                       std::to_string(kDumpAttempts) + " attempts"};
}

crypto::Result<std::vector<StateInfo>> XfrmSocket::states() {
  struct Collect {
    std::vector<StateInfo> out;
    void restart() { out.clear(); }
    crypto::Result<void> operator()(ByteView msg) {
      auto s = parse_state(msg);
      if (!s) return crypto::Error{s.error()};
      out.push_back(std::move(*s));
      return {};
    }
  } collect;
  if (auto r = dump(build_dump_states, "XFRM states", collect); !r) return crypto::Error{r.error()};
  return std::move(collect.out);
}

crypto::Result<std::vector<PolicyInfo>> XfrmSocket::policies() {
  struct Collect {
    std::vector<PolicyInfo> out;
    void restart() { out.clear(); }
    crypto::Result<void> operator()(ByteView msg) {
      auto p = parse_policy(msg);
      if (!p) return crypto::Error{p.error()};
      out.push_back(std::move(*p));
      return {};
    }
  } collect;
  if (auto r = dump(build_dump_policies, "XFRM policies", collect); !r) return crypto::Error{r.error()};
  return std::move(collect.out);
}

crypto::Result<void> XfrmSocket::check_owned(const EspState& state) const {
  if (!ownership_.owns_reqid(state.reqid) || !ownership_.owns_mark(state.mark))
    return crypto::Error{"not installing " + state.describe() + ": outside covey's " + ownership_.str() +
                         ", so covey could not later prove it its own"};
  return {};
}

crypto::Result<void> XfrmSocket::add_sa(const EspState& state) {
  last_refusal_.reset();
  if (auto r = check_owned(state); !r) return r;
  auto request = build_new_sa(state, ++seq_);
  if (!request) return crypto::Error{request.error()};
  return expect_ack(request->view(), "XFRM_MSG_NEWSA", state.describe());
  // request (keys) is wiped by SecretBytes here.
}

template <class Take>
crypto::Result<bool> XfrmSocket::query(ByteView request, std::uint16_t answer, Take&& take) {
  last_refusal_.reset();
  return reply(request, answer, [&](ByteView msg, bool is_ack) -> crypto::Result<bool> {
    if (!is_ack) {
      if (auto r = take(msg); !r) return crypto::Error{r.error()};
      return true;
    }
    auto ack = parse_ack(msg);
    if (!ack) return crypto::Error{ack.error()};
    if (ack->error == -ESRCH || ack->error == -ENOENT) return false;
    if (ack->error == 0) return crypto::Error{"the kernel acknowledged without an answer"};
    last_refusal_ = *ack;
    return crypto::Error{"kernel refused: " + ack->str(request)};
  });
}

crypto::Result<std::optional<StateInfo>> XfrmSocket::find_state(const StateId& id) {
  std::optional<StateInfo> found;
  auto r = query(build_get_sa(id, ++seq_), XFRM_MSG_NEWSA, [&](ByteView msg) -> crypto::Result<void> {
    auto s = parse_state(msg);
    if (!s) return crypto::Error{s.error()};
    found = std::move(*s);
    return {};
  });
  if (!r) return crypto::Error{"XFRM_MSG_GETSA " + id.describe() + ": " + r.error()};
  return found;
}

crypto::Result<void> XfrmSocket::update_sa(const EspState& state) {
  last_refusal_.reset();
  if (auto r = check_owned(state); !r) return r;
  const StateId id{state.destination, state.spi, 50, state.mark};
  auto found = find_state(id);
  if (!found) return crypto::Error{"XFRM_MSG_UPDSA " + state.describe() + ": " + found.error()};
  if (!*found) return crypto::Error{"not updating: no state " + id.describe() + " in the kernel"};
  if (auto r = check_lookup_answer(id, **found, ownership_); !r) return crypto::Error{"not updating: " + r.error()};
  auto request = build_update_sa(state, ++seq_);
  if (!request) return crypto::Error{request.error()};
  return expect_ack(request->view(), "XFRM_MSG_UPDSA", state.describe());
}

crypto::Result<void> XfrmSocket::delete_sa(const StateId& id) {
  last_refusal_.reset();
  auto found = find_state(id);
  if (!found) return crypto::Error{"XFRM_MSG_DELSA " + id.describe() + ": " + found.error()};
  if (!*found) return crypto::Error{"not deleting: no state " + id.describe() + " in the kernel"};
  if (auto r = check_lookup_answer(id, **found, ownership_); !r) return crypto::Error{"not deleting: " + r.error()};
  return expect_ack(build_delete_sa(id, ++seq_), "XFRM_MSG_DELSA", (*found)->describe());
}

crypto::Result<void> XfrmSocket::add_policy(const Policy& policy) {
  last_refusal_.reset();
  if (!ownership_.owns_reqid(policy.tmpl.reqid) || !ownership_.owns_mark(policy.mark))
    return crypto::Error{"not installing " + policy.describe() + ": outside covey's " + ownership_.str() +
                         ", so covey could not later prove it its own"};
  auto request = build_new_policy(policy, ++seq_);
  if (!request) return crypto::Error{request.error()};
  return expect_ack(*request, "XFRM_MSG_NEWPOLICY", policy.describe());
}

crypto::Result<void> XfrmSocket::delete_policy(const Policy& policy) {
  last_refusal_.reset();
  const PolicyId key = policy.id();
  std::optional<PolicyInfo> found;
  auto r = query(build_get_policy(key, ++seq_), XFRM_MSG_NEWPOLICY, [&](ByteView msg) -> crypto::Result<void> {
    auto p = parse_policy(msg);
    if (!p) return crypto::Error{p.error()};
    found = std::move(*p);
    return {};
  });
  if (!r) return crypto::Error{"XFRM_MSG_GETPOLICY " + key.describe() + ": " + r.error()};
  if (!*r) return crypto::Error{"not deleting: no " + policy.describe() + " in the kernel"};
  if (auto c = check_lookup_answer(policy, *found, ownership_); !c) return crypto::Error{"not deleting: " + c.error()};
  return expect_ack(build_delete_policy(key, ++seq_), "XFRM_MSG_DELPOLICY", found->describe());
}

crypto::Result<FlushReport> XfrmSocket::flush_owned() {
  auto pols = policies();
  if (!pols) return crypto::Error{"flushing covey's XFRM policies and states: " + pols.error()};
  auto sts = states();
  if (!sts) return crypto::Error{"flushing covey's XFRM policies and states: " + sts.error()};
  FlushPlan plan = plan_flush(*sts, *pols, ownership_);
  FlushReport report;
  report.foreign_states = plan.foreign_states;
  report.foreign_policies = plan.foreign_policies;
  report.refused = plan.refused;
  std::vector<std::string> failures;
  // Gone since the dump (a hard lifetime, another covey-gm's flush) is what
  // a flush wants; anything else the kernel says is reported.
  auto remove = [&](const Bytes& request, const char* operation, const std::string& what,
                    std::vector<std::string>& deleted) {
    auto ack = transact(request);
    if (!ack)
      failures.push_back(std::string(operation) + " " + what + ": " + ack.error());
    else if (ack->error == 0 || ack->error == -ENOENT || ack->error == -ESRCH)
      deleted.push_back(what);
    else
      failures.push_back("kernel refused " + std::string(operation) + " " + what + ": " + ack->str(request));
  };
  for (const auto& p : plan.policies)
    remove(build_delete_policy(p, ++seq_), "XFRM_MSG_DELPOLICY", p.describe(), report.policies_deleted);
  for (const auto& s : plan.states)
    remove(build_delete_sa(s.id(), ++seq_), "XFRM_MSG_DELSA", s.describe(), report.states_deleted);
  if (!failures.empty()) {
    std::string all = "flushing covey's XFRM policies and states: " + report.str();
    for (const auto& f : failures) all += "; " + f;
    return crypto::Error{all};
  }
  return report;
}

crypto::Result<std::unique_ptr<XfrmExpiries>> XfrmExpiries::open() {
  std::unique_ptr<XfrmExpiries> s(new XfrmExpiries());
  s->nl_ = mnl_socket_open(NETLINK_XFRM);
  if (!s->nl_) {
    int e = errno;
    return crypto::Error{"cannot open an XFRM netlink socket for the kernel's expiries (" + errno_words(e) + ")"};
  }
  if (mnl_socket_bind(s->nl_, 0, MNL_SOCKET_AUTOPID) < 0)
    return crypto::Error{"cannot bind the XFRM expiry socket (" + errno_words(errno) + ")"};
  int group = XFRMNLGRP_EXPIRE;
  if (mnl_socket_setsockopt(s->nl_, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0)
    return crypto::Error{"cannot subscribe to the kernel's XFRM expiries, XFRMNLGRP_EXPIRE (" + errno_words(errno) + ")"};
  const int fd = mnl_socket_get_fd(s->nl_);
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
    return crypto::Error{"cannot make the XFRM expiry socket non-blocking (" + errno_words(errno) + ")"};
  s->rx_.resize(kReceiveBuffer);
  return s;
}

XfrmExpiries::~XfrmExpiries() {
  if (nl_) mnl_socket_close(nl_);
}

int XfrmExpiries::fd() const { return mnl_socket_get_fd(nl_); }

crypto::Result<XfrmExpiries::Batch> XfrmExpiries::take() {
  Batch batch;
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl_, rx_.data(), rx_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return batch;
      if (errno == ENOBUFS) {
        batch.overrun = true;
        continue;
      }
      return crypto::Error{"reading the kernel's XFRM expiries: " + errno_words(errno)};
    }
    auto* nlh = reinterpret_cast<const nlmsghdr*>(rx_.data());
    int len = static_cast<int>(n);
    for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_type != XFRM_MSG_EXPIRE) continue;
      auto e = parse_expire(ByteView(reinterpret_cast<const std::uint8_t*>(nlh), nlh->nlmsg_len));
      if (!e) return crypto::Error{"an XFRM expiry from the kernel: " + e.error()};
      batch.expiries.push_back(std::move(*e));
    }
    explicit_bzero(rx_.data(), static_cast<std::size_t>(n));
  }
}

}  // namespace covey::kmod
