#include "ks/dispatcher.h"

#include <algorithm>
#include <cstdio>

#include "gdoi/vendor_id.h"
#include "ks/rekey.h"

namespace covey::ks {

using namespace wire;

namespace {

std::string cookie_hex(const Cookie& c) { return to_hex(c); }

bool is_zero(const Cookie& c) {
  return std::all_of(c.begin(), c.end(), [](std::uint8_t b) { return b == 0; });
}

const char* notify_name(NotifyType n) {
  switch (n) {
    case NotifyType::NoProposalChosen: return "NO-PROPOSAL-CHOSEN";
    case NotifyType::AuthenticationFailed: return "AUTHENTICATION-FAILED";
    case NotifyType::InvalidIdInformation: return "INVALID-ID-INFORMATION";
    case NotifyType::InvalidKeyInformation: return "INVALID-KEY-INFORMATION";
    case NotifyType::InvalidCertificate: return "INVALID-CERTIFICATE";
    case NotifyType::InvalidSignature: return "INVALID-SIGNATURE";
    case NotifyType::PayloadMalformed: return "PAYLOAD-MALFORMED";
    case NotifyType::InvalidHashInformation: return "INVALID-HASH-INFORMATION";
    case NotifyType::AttributesNotSupported: return "ATTRIBUTES-NOT-SUPPORTED";
    default: return "notification";
  }
}

}  // namespace

Dispatcher::Dispatcher(DispatcherOptions options, Groups& groups, Address local)
    : options_(std::move(options)), groups_(groups), local_(local) {}

void Dispatcher::set_phase1(std::vector<ike::Phase1Transform> phase1, std::shared_ptr<const ike::Credentials> credentials) {
  options_.phase1 = std::move(phase1);
  options_.credentials = std::move(credentials);
}

std::vector<Outgoing> Dispatcher::receive(const Endpoint& from, const Address& local, ByteView datagram,
                                          std::int64_t now_ms) {
  const std::int64_t now = seconds_of(now_ms);
  ++counters_.datagrams;
  auto h = decode_header(datagram);
  if (!h) {
    ++counters_.malformed;
    if (logs(Severity::Debug)) log(Severity::Debug, "dropped datagram from " + from.str() + ": " + h.error().message());
    return {};
  }
  switch (static_cast<ExchangeType>(h->exchange)) {
    case ExchangeType::IdentityProtection:
      return main_mode(*h, from, local, datagram, now);
    case ExchangeType::GroupkeyPull:
    case ExchangeType::Informational:
      return phase2(*h, from, datagram, now_ms);
    case ExchangeType::GroupkeyPushAck:
      // Under the KEK's cookies, not a phase-1 SA's: the rekeyer knows them.
      if (rekeyer_) {
        ++counters_.push_acks;
        rekeyer_->receive_ack(from, datagram, now);
        return {};
      }
      [[fallthrough]];
    default:
      ++counters_.dropped;
      if (logs(Severity::Debug)) log(Severity::Debug, "dropped " + std::string(exchange_name(h->exchange)) + " exchange (type " +
                               std::to_string(h->exchange) + ") from " + from.str() + ": covey-ks answers Main Mode, GROUPKEY-PULL and GROUPKEY-PUSH acknowledgements");
      return {};
  }
}

void Dispatcher::drop_half_open(std::map<CookiePair, HalfOpen>::iterator it) {
  by_initiator_cookie_.erase(it->first.first);
  ages_.erase(it->second.age);
  half_open_.erase(it);
}

std::vector<Outgoing> Dispatcher::main_mode(const Header& h, const Endpoint& from, const Address& local,
                                            ByteView datagram, std::int64_t now) {
  std::map<CookiePair, HalfOpen>::iterator it;
  if (is_zero(h.responder_cookie)) {
    auto seen = by_initiator_cookie_.find(h.initiator_cookie);
    if (seen != by_initiator_cookie_.end() && half_open_.count(seen->second) &&
        half_open_.at(seen->second).peer == from) {
      it = half_open_.find(seen->second);  // a retransmitted message 1
    } else {
      // Bounded state: the oldest half-open exchange makes room (one whose
      // job is out too: its result is then discarded).
      while (half_open_.size() >= options_.half_open_cap && !ages_.empty()) {
        ++counters_.half_open_evicted;
        drop_half_open(half_open_.find(ages_.front()));
      }
      // covey's Vendor ID answers a covey member's (and is ignored by others).
      // Message 1 costs no Diffie-Hellman: it stays on this thread.
      auto mm = ike::MainMode::responder(options_.phase1, options_.credentials, from, local, {gdoi::covey_vendor_id()});
      ike::Step s = mm.receive(datagram, now);
      if (s.failure) {
        ++counters_.phase1_failed[notify_name(s.failure->notify)];
        log(Severity::Warning, "Main Mode from " + from.str() + " refused, sending " + notify_name(s.failure->notify) + ": " + s.failure->reason);
        if (s.send) return {Outgoing{from, *s.send}};
        return {};
      }
      ++counters_.phase1_started;
      CookiePair key{mm.initiator_cookie(), mm.responder_cookie()};
      ages_.push_back(key);
      auto age = std::prev(ages_.end());
      half_open_.emplace(key, HalfOpen{std::move(mm), now, age, from, false});
      by_initiator_cookie_[key.first] = key;
      if (s.send) return {Outgoing{from, *s.send}};
      return {};
    }
  } else {
    CookiePair key{h.initiator_cookie, h.responder_cookie};
    it = half_open_.find(key);
    if (it == half_open_.end()) {
      // Message 5 again after we completed: the finished exchange answers.
      auto sa = sas_.find(key);
      if (sa != sas_.end() && sa->second.finished) {
        ike::Step s = sa->second.finished->receive(datagram, now);
        if (s.send) return {Outgoing{from, *s.send}};
      }
      ++counters_.dropped;
      if (logs(Severity::Debug)) log(Severity::Debug, "dropped Main Mode message from " + from.str() + ": no exchange with cookies " +
                               cookie_hex(key.first) + "/" + cookie_hex(key.second));
      return {};
    }
  }
  HalfOpen& ho = it->second;
  if (!(ho.peer == from)) {
    ++counters_.dropped;
    log(Severity::Warning, "dropped Main Mode message for " + ho.peer.str() + " arriving from " + from.str());
    return {};
  }
  // Its job is out: the exchange is not here to answer. The peer
  // retransmits, and the retransmission after the commit is answered from
  // the exchange's last reply, without new work.
  if (ho.busy) {
    ++counters_.busy_dropped;
    if (logs(Severity::Debug)) log(Severity::Debug, "dropped Main Mode message from " + from.str() + ": its exchange is being computed");
    return {};
  }
  // A retransmission costs nothing (the last reply again), so it is
  // answered here; so is everything when no thread waits for jobs.
  const bool here = !offload_ || ho.exchange.repeats_last(datagram);
  if (!here && jobs_out() >= options_.half_open_cap) {
    ++counters_.busy_dropped;
    if (logs(Severity::Debug)) log(Severity::Debug, "dropped Main Mode message from " + from.str() + ": " + std::to_string(jobs_out()) + " exchanges being computed");
    return {};
  }
  // Counted before receive(): a failed exchange no longer knows where it was.
  const int received = ho.exchange.message_number() + 1;
  auto job = std::make_unique<MainModeJob>(
      MainModeJob{std::move(ho.exchange), from, local, Bytes(datagram.begin(), datagram.end()), now, received, 0, {}});
  ho.busy = true;
  if (here) {
    job->run();
    return apply(*job);
  }
  job->seq = next_seq_++;
  jobs_.push_back(std::move(job));
  return {};
}

std::vector<Committed> Dispatcher::commit(std::unique_ptr<MainModeJob> job) {
  returned_.emplace(job->seq, std::move(job));
  std::vector<Committed> out;
  // Submission order, whichever thread finished first.
  while (!returned_.empty() && returned_.begin()->first == next_commit_) {
    std::unique_ptr<MainModeJob> next = std::move(returned_.begin()->second);
    returned_.erase(returned_.begin());
    ++next_commit_;
    std::vector<Outgoing> replies = apply(*next);
    if (!replies.empty()) out.push_back(Committed{next->local, std::move(replies)});
  }
  return out;
}

std::vector<Outgoing> Dispatcher::apply(MainModeJob& job) {
  const CookiePair key{job.exchange.initiator_cookie(), job.exchange.responder_cookie()};
  auto it = half_open_.find(key);
  if (it == half_open_.end() || !it->second.busy) {
    // Evicted by newer exchanges or expired while its job was out.
    ++counters_.results_discarded;
    if (logs(Severity::Debug)) log(Severity::Debug, "discarded Main Mode message " + std::to_string(job.received) + " from " + job.from.str() + ": its exchange ended while being computed");
    return {};
  }
  HalfOpen& ho = it->second;
  ho.exchange = std::move(job.exchange);
  ho.busy = false;
  const Endpoint& from = job.from;
  ike::Step& s = job.step;
  std::vector<Outgoing> out;
  if (s.send) out.push_back(Outgoing{from, *s.send});
  if (s.failure) {
    ++counters_.phase1_failed[notify_name(s.failure->notify)];
    log(Severity::Warning, "Main Mode with " + from.str() + " failed at message " + std::to_string(job.received) +
                               ": " + s.failure->reason + " (sent " + notify_name(s.failure->notify) + ")");
    drop_half_open(it);
    return out;
  }
  if (s.established) {
    ++counters_.phase1_completed;
    ike::Phase1Sa& sa = *s.established;
    if (logs(Severity::Info)) {
      std::string who = sa.peer_subject.empty() ? "" : " (" + sa.peer_subject + ")";
      log(Severity::Info, "Phase 1 SA with GM " + from.str() + who + " established: " + sa.transform.str());
    }
    if (options_.keylog) keylog_.push_back(KeylogEntry{sa.initiator_cookie, Bytes(sa.key.view().begin(), sa.key.view().end())});
    // A member has one phase-1 SA with us at a time: a new one from the
    // same address and port replaces the old (it restarted).
    if (auto old = sa_by_peer_.find(from); old != sa_by_peer_.end()) sas_.erase(old->second);
    sa_by_peer_[from] = key;
    // Idle until its first GROUPKEY-PULL: ends as a stalled exchange would.
    Sa entry{std::move(sa), job.local, std::move(ho.exchange), {}, job.now + options_.exchange_timeout_s};
    drop_half_open(it);
    sas_.insert_or_assign(key, std::move(entry));
  }
  return out;
}

std::vector<Outgoing> Dispatcher::phase2(const Header& h, const Endpoint& from, ByteView datagram, std::int64_t now_ms) {
  const std::int64_t now = seconds_of(now_ms);
  CookiePair key{h.initiator_cookie, h.responder_cookie};
  auto it = sas_.find(key);
  if (it == sas_.end()) {
    ++counters_.dropped;
    if (logs(Severity::Debug)) log(Severity::Debug, "dropped " + std::string(exchange_name(h.exchange)) + " from " + from.str() + ": no ISAKMP SA with cookies " +
                             cookie_hex(key.first) + "/" + cookie_hex(key.second));
    return {};
  }
  Sa& s = it->second;
  if (!(s.sa.peer == from)) {
    ++counters_.dropped;
    log(Severity::Warning, "dropped phase-2 message for the SA of " + s.sa.peer.str() + " arriving from " + from.str());
    return {};
  }
  if (!h.encrypted()) {
    ++counters_.dropped;
    log(Severity::Warning, "dropped unencrypted " + std::string(exchange_name(h.exchange)) + " from " + from.str());
    return {};
  }
  if (h.exchange == static_cast<std::uint8_t>(ExchangeType::Informational)) {
    informational(s, h, datagram);
    return {};
  }
  auto pull = s.pulls.find(h.message_id);
  if (pull == s.pulls.end()) {
    if (s.pulls.size() >= 4) {  // a member runs one registration at a time
      ++counters_.dropped;
      log(Severity::Warning, "dropped GROUPKEY-PULL from " + from.str() + ": too many exchanges in progress on its SA");
      return {};
    }
    pull = s.pulls.emplace(h.message_id, Pull{gdoi::PullResponder{}, now}).first;
  }
  // A phase-2 message proves the member has message 6.
  s.finished.reset();
  groups_.set_clock_ms(now_ms);
  groups_.set_local(s.local);
  gdoi::PullStep step = pull->second.responder.receive(s.sa, h, datagram, groups_);
  std::vector<Outgoing> out;
  if (step.send) out.push_back(Outgoing{from, *step.send});
  if (step.dropped) {
    ++counters_.dropped;
    log(Severity::Warning, "GM " + from.str() + ": dropped " + *step.dropped);
    // An exchange whose first message did not authenticate never began: it
    // must not hold one of the SA's few exchange slots.
    if (!pull->second.responder.offer()) {
      s.pulls.erase(pull);
      return out;
    }
  }
  if (step.failure) {
    ++counters_.registrations_refused;
    log(Severity::Warning,
        "GM " + from.str() + " registration refused: " + step.failure->reason + " (sent " +
            notify_name(step.failure->notify) + ")",
        {{"COVEY_PEER", from.address.str()}, {"COVEY_EVENT", "registration-refused"}});
    s.pulls.erase(pull);
    s.ends_at = now + options_.exchange_linger_s;
  } else if (step.admitted) {
    ++counters_.registrations;
    const auto& offer = pull->second.responder.offer();
    if (logs(Severity::Info)) {
      Group* g = offer ? groups_.find(offer->group_id) : nullptr;
      std::string group = g ? g->policy().name + " (" + std::to_string(g->policy().identity) + ")" : "?";
      LogFields fields{{"COVEY_PEER", from.address.str()}, {"COVEY_EVENT", "registration"}};
      if (g) fields.push_back({"COVEY_GROUP", g->policy().name});
      if (g) fields.push_back({"COVEY_SEQ", std::to_string(g->seq())});
      log(Severity::Info, "Registration of GM " + from.address.str() + " complete for group " + group, std::move(fields));
    }
    if (offer && !offer->interop_note.empty()) log(Severity::Warning, "GM " + from.address.str() + ": " + offer->interop_note);
    if (offer && !offer->warning.empty()) log(Severity::Warning, offer->warning);
    pull->second.responder.keep_only_answer();
    pull->second = Pull{std::move(pull->second.responder), now, true};
    s.ends_at = now + options_.exchange_linger_s;
  }
  return out;
}

void Dispatcher::informational(Sa& s, const Header& h, ByteView datagram) {
  auto clear = s.sa.unprotect(h, datagram);
  if (!clear) return;
  auto chain = ike::decode_body(h, *clear);
  if (!chain) {
    ++counters_.dropped;
    log(Severity::Warning, "GM " + s.sa.peer.str() + ": dropped Informational: " + chain.error().message());
    return;
  }
  for (const auto& p : chain->payloads) {
    if (const auto* n = std::get_if<NotificationPayload>(&p))
      log(Severity::Warning, "GM " + s.sa.peer.str() + " sent " + notify_name(static_cast<NotifyType>(n->type)) + " (" +
                                 std::to_string(n->type) + ")");
  }
  s.sa.forget(h.message_id);
}

void Dispatcher::expire(std::int64_t now) {
  while (!ages_.empty()) {
    auto it = half_open_.find(ages_.front());
    if (it == half_open_.end() || now - it->second.started_at < options_.half_open_timeout_s) break;
    drop_half_open(it);
  }
  // A phase-1 SA lives as long as the group needs it: while a GROUPKEY-PULL
  // is in progress and a few seconds after the last one, to answer its
  // retransmission (exchange_linger_s), never past its lifetime. Kept to
  // its lifetime, as IOS key servers do, each would hold a kilobyte or two
  // for a day after the member is registered (docs/ARCHITECTURE.md).
  for (auto it = sas_.begin(); it != sas_.end();) {
    Sa& s = it->second;
    for (auto p = s.pulls.begin(); p != s.pulls.end();) {
      const std::int64_t limit = p->second.done ? options_.exchange_linger_s : options_.exchange_timeout_s;
      p = now - p->second.at >= limit ? s.pulls.erase(p) : std::next(p);
    }
    if (s.finished && now - s.sa.established_at >= options_.half_open_timeout_s) s.finished.reset();
    const char* why = nullptr;
    if (now - s.sa.established_at >= static_cast<std::int64_t>(s.sa.transform.lifetime_s))
      why = "expired";
    else if (s.pulls.empty() && now >= s.ends_at)
      why = "ended: no GROUPKEY-PULL in progress";
    if (why) {
      const Severity level = s.pulls.empty() ? Severity::Debug : Severity::Info;  // cut short by its lifetime
      if (logs(level)) log(level, "Phase 1 SA with GM " + s.sa.peer.str() + " " + why);
      if (auto p = sa_by_peer_.find(s.sa.peer); p != sa_by_peer_.end() && p->second == it->first) sa_by_peer_.erase(p);
      it = sas_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace covey::ks
