#include "gm/registrar.h"

#include <algorithm>

#include "gdoi/vendor_id.h"

namespace covey::gm {

Registrar::Registrar(RegistrarOptions options, Endpoint ks, Address local)
    : options_(std::move(options)),
      ks_(ks),
      local_(local),
      // covey's Vendor ID: a covey key server then sends covey's extensions.
      main_mode_(ike::MainMode::initiator(options_.offers, options_.credentials, ks, local, {gdoi::covey_vendor_id()})) {}

std::vector<Bytes> Registrar::sent(std::optional<Bytes> d, std::int64_t now) {
  if (!d) return {};
  last_sent_ = *d;
  last_sent_at_ = now;
  retransmitted_ = 0;
  return {std::move(*d)};
}

void Registrar::fail(std::string why) {
  if (!failure_) failure_ = std::move(why);
}

std::vector<Bytes> Registrar::start(std::int64_t now) {
  auto m1 = main_mode_.start();
  if (!m1) {
    fail("Main Mode with KS " + ks_.address.str() + " could not start: " + m1.error());
    return {};
  }
  events_.push_back("Registering to group " + std::to_string(options_.group_id) + " with KS " + ks_.str());
  return sent(std::move(*m1), now);
}

namespace {

// RFC 6407 3.1: the member checks that the phase-1 peer is its GCKS.
std::optional<std::string> unauthorized_ks(const ike::Phase1Sa& sa, const Endpoint& ks,
                                           const std::vector<std::string>& subjects) {
  if (!sa.peer_subject.empty()) {
    if (subjects.empty()) return std::nullopt;
    for (const auto& s : subjects)
      if (s == sa.peer_subject || (!s.empty() && s.back() == '*' && sa.peer_subject.compare(0, s.size() - 1, s, 0, s.size() - 1) == 0))
        return std::nullopt;
    return "KS " + ks.address.str() + " presented certificate " + sa.peer_subject + ", which is not an authorized key server";
  }
  const auto& id = sa.peer_id;
  auto type = static_cast<wire::IdType>(id.type);
  if ((type == wire::IdType::Ipv4Addr || type == wire::IdType::Ipv6Addr) &&
      std::equal(id.data.begin(), id.data.end(), ks.address.bytes.begin(), ks.address.bytes.begin() + static_cast<std::ptrdiff_t>(ks.address.size())) &&
      id.data.size() == ks.address.size())
    return std::nullopt;
  return "KS " + ks.address.str() + " identified itself with an ID that is not its address";
}

}  // namespace

std::vector<Bytes> Registrar::receive(ByteView datagram, std::int64_t now) {
  if (done()) return {};
  auto h = wire::decode_header(datagram);
  if (!h) {
    events_.push_back("dropped datagram from KS " + ks_.str() + ": " + h.error().message());
    return {};
  }
  if (!sa_) {
    ike::Step s = main_mode_.receive(datagram, now);
    if (s.notice) {
      notice_ = "KS " + ks_.address.str() + " " + *s.notice;
      events_.push_back(*notice_);
    }
    if (s.failure) {
      fail("Main Mode with KS " + ks_.address.str() + " failed: " + s.failure->reason);
      return s.send ? std::vector<Bytes>{*s.send} : std::vector<Bytes>{};
    }
    if (s.established) {
      if (auto why = unauthorized_ks(*s.established, ks_, options_.ks_subjects)) {
        fail(*why);
        return {};
      }
      sa_ = std::move(s.established);
      events_.push_back("Phase 1 SA with KS " + ks_.address.str() + " established: " + sa_->transform.str());
      // Any GDOI key server will do; one that is not covey sends RFC 6407
      // policy alone, which the operator should know before wondering where
      // the deny entries went.
      if (!gdoi::peer_traits(sa_->peer_vendor_ids).covey)
        events_.push_back("KS " + ks_.address.str() +
                          " sent no covey Vendor ID: expecting RFC 6407 policy alone (no deny entries, port ranges, TBAR "
                          "or fail-close ACL)");
      pull_.emplace(options_.group_id, options_.sid_request);
      auto m1 = pull_->start(*sa_);
      if (!m1) {
        fail("GROUPKEY-PULL could not start: " + m1.error());
        return {};
      }
      return sent(std::move(*m1), now);
    }
    return sent(std::move(s.send), now);
  }
  if (h->exchange == static_cast<std::uint8_t>(wire::ExchangeType::Informational) && h->encrypted()) {
    // The KS refused us inside the SA (unknown group, not authorized).
    auto clear = sa_->unprotect(*h, datagram);
    if (!clear) return {};
    auto chain = ike::decode_body(*h, *clear);
    if (!chain) return {};
    for (const auto& p : chain->payloads)
      if (const auto* n = std::get_if<wire::NotificationPayload>(&p))
        fail("KS " + ks_.address.str() + " refused the registration with notification " + std::to_string(n->type) +
             (n->type == static_cast<std::uint16_t>(wire::NotifyType::InvalidIdInformation) ? " (INVALID-ID-INFORMATION: unknown group?)"
              : n->type == static_cast<std::uint16_t>(wire::NotifyType::AuthenticationFailed) ? " (AUTHENTICATION-FAILED: not authorized?)"
                                                                                              : ""));
    return {};
  }
  gdoi::PullStep s = pull_->receive(*sa_, *h, datagram);
  if (s.dropped) events_.push_back("dropped from KS " + ks_.address.str() + ": " + *s.dropped);
  if (s.failure) {
    fail("GROUPKEY-PULL with KS " + ks_.address.str() + " failed: " + s.failure->reason);
    return s.send ? std::vector<Bytes>{*s.send} : std::vector<Bytes>{};
  }
  if (s.registered) {
    registration_ = std::move(s.registered);
    return {};
  }
  return sent(std::move(s.send), now);
}

std::vector<Bytes> Registrar::tick(std::int64_t now) {
  if (done() || last_sent_.empty() || now - last_sent_at_ < options_.retransmit_s) return {};
  if (retransmitted_ >= options_.retransmits) {
    fail("KS " + ks_.str() + " did not answer (" + std::to_string(retransmitted_) + " retransmissions)" +
         (notice_ ? "; " + *notice_ : ""));
    return {};
  }
  ++retransmitted_;
  last_sent_at_ = now;
  return {last_sent_};
}

}  // namespace covey::gm
