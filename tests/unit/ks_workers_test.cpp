// Main Mode's expensive steps as jobs (ks/dispatcher.h, ks/workers.h): the
// same registrations with the dispatcher doing them itself and with them
// on worker threads give the same messages and outcomes; results are
// committed in the order they were handed out; a datagram for an exchange
// being computed is dropped and the next retransmission answered; an
// exchange being computed counts against the half-open cap.
//
// DH keys, nonces and cookies are random on both sides, so two runs'
// octets differ: the runs are compared by what the messages are (exchange,
// flags, length, payload types of clear ones, recipient) and by what the
// key server decided (its log, counters and tables), not byte for byte.
#include <gtest/gtest.h>

#include "fixtures.h"

#include <condition_variable>
#include <deque>
#include <mutex>

#include "gm/registrar.h"
#include "ks/dispatcher.h"
#include "ks/workers.h"

using namespace covey;
using covey::fixtures::prefix;
using covey::fixtures::psk;

namespace {

// What a message is, without its random octets.
std::string summary(const Endpoint& to, const Bytes& d) {
  auto m = wire::decode_message(d);
  if (!m) return to.str() + " undecodable";
  std::string s = to.str() + " " + wire::exchange_name(m->header.exchange) + " flags " +
                  std::to_string(m->header.flags) + " length " + std::to_string(d.size());
  for (const auto& p : m->payloads) s += std::string(" ") + wire::payload_name(static_cast<std::uint8_t>(wire::type_of(p)));
  return s;
}

// Finished jobs as a worker thread hands them back: the test's thread plays
// the event loop and takes them in the order they finished.
class Returned {
 public:
  void put(std::unique_ptr<ks::MainModeJob> job) {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back(std::move(job));
    ready_.notify_one();
  }
  std::unique_ptr<ks::MainModeJob> take() {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [this] { return !jobs_.empty(); });
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    return job;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::unique_ptr<ks::MainModeJob>> jobs_;
};

struct KeyServer {
  ks::Groups groups;
  std::unique_ptr<ks::Dispatcher> dispatcher;
  Endpoint ep{*Address::parse("10.1.12.1"), 848};
  Returned returned;
  std::unique_ptr<ks::Workers> workers;

  // `threads`: 0, the dispatcher does everything itself.
  explicit KeyServer(std::size_t threads, std::size_t half_open_cap = 1024) {
    auto key = crypto::PrivateKey::generate_ec(crypto::EcCurve::P256);
    auto g = ks::Group::create(fixtures::group_policy(), ks::Authorization{{prefix("10.1.0.0", 16)}, {}},
                               std::move(*key), ep.address, 0);
    groups.add(std::move(*g));
    ks::DispatcherOptions o;
    o.phase1 = {ike::Phase1Transform{}};
    o.credentials = psk("lab");
    o.half_open_cap = half_open_cap;
    dispatcher = std::make_unique<ks::Dispatcher>(o, groups, ep.address);
    if (threads) {
      dispatcher->set_offload(true);
      workers = std::make_unique<ks::Workers>(threads, [this](std::unique_ptr<ks::MainModeJob> j) { returned.put(std::move(j)); });
    }
  }

  // Every datagram of a round in order, then (with workers) every job's
  // result, committed as the workers finish them: the replies as sent.
  std::vector<ks::Outgoing> round(const std::vector<std::pair<Endpoint, Bytes>>& in, std::int64_t now) {
    std::vector<ks::Outgoing> out;
    for (const auto& [from, d] : in)
      for (ks::Outgoing& o : dispatcher->receive(from, ep.address, d, now * 1000)) out.push_back(std::move(o));
    std::size_t out_jobs = 0;
    for (auto& job : dispatcher->take_jobs()) {
      workers->submit(std::move(job));
      ++out_jobs;
    }
    for (std::size_t k = 0; k < out_jobs; ++k)
      for (ks::Committed& c : dispatcher->commit(returned.take())) {
        EXPECT_EQ(c.local, ep.address);
        for (ks::Outgoing& o : c.replies) out.push_back(std::move(o));
      }
    EXPECT_EQ(dispatcher->jobs_out(), 0u);
    return out;
  }

  std::string log() {
    std::string s;
    for (auto& e : dispatcher->take_events()) s += e.text + "\n";
    return s;
  }
};

gm::Registrar member(const KeyServer& ks, const Address& a) {
  gm::RegistrarOptions o;
  o.group_id = 134;
  o.offers = {ike::Phase1Transform{}};
  o.credentials = psk("lab");
  return gm::Registrar(o, ks.ep, a);
}

Endpoint member_ep(int i) { return Endpoint{*Address::parse("10.1.30." + std::to_string(i + 1)), 848}; }

struct Transcript {
  std::vector<std::string> messages;  // to the members, round by round
  std::string log;
  std::size_t registered = 0;
};

// `n` members register at once, in lockstep: every member's message k goes
// in before any member's message k+1.
Transcript register_members(KeyServer& ks, int n) {
  std::vector<gm::Registrar> members;
  std::vector<std::pair<Endpoint, Bytes>> to_ks;
  for (int i = 0; i < n; ++i) {
    members.push_back(member(ks, member_ep(i).address));
    for (Bytes& d : members.back().start(10)) to_ks.emplace_back(member_ep(i), std::move(d));
  }
  Transcript t;
  for (int r = 0; r < 10 && !to_ks.empty(); ++r) {
    std::vector<std::pair<Endpoint, Bytes>> next;
    for (const ks::Outgoing& o : ks.round(to_ks, 10)) {
      t.messages.push_back(summary(o.to, o.datagram));
      for (int i = 0; i < n; ++i)
        if (member_ep(i) == o.to)
          for (Bytes& d : members[static_cast<std::size_t>(i)].receive(o.datagram, 10)) next.emplace_back(o.to, std::move(d));
    }
    to_ks = std::move(next);
  }
  for (auto& m : members) t.registered += m.registration() ? 1 : 0;
  t.log = ks.log();
  return t;
}

}  // namespace

TEST(KsWorkers, ZeroAndFourWorkersSendTheSameMessagesAndDecideTheSame) {
  KeyServer alone(0), pooled(4);
  Transcript a = register_members(alone, 24);
  Transcript b = register_members(pooled, 24);
  EXPECT_EQ(a.registered, 24u);
  EXPECT_EQ(b.registered, 24u);
  // Main Mode 2, 4, 6 and GROUPKEY-PULL 2, 4 for each, in the same order.
  ASSERT_EQ(a.messages.size(), 24u * 5);
  EXPECT_EQ(a.messages, b.messages);
  EXPECT_EQ(a.log, b.log);
  for (const ks::Dispatcher* d : {alone.dispatcher.get(), pooled.dispatcher.get()}) {
    EXPECT_EQ(d->counters().phase1_completed, 24u);
    EXPECT_EQ(d->counters().registrations, 24u);
    EXPECT_EQ(d->counters().busy_dropped, 0u);
    EXPECT_EQ(d->half_open(), 0u);
    EXPECT_EQ(d->established(), 24u);
  }
}

// Jobs back in reverse order: nothing is applied until the first one is,
// and then all of them, in the order they were handed out.
TEST(KsWorkers, ResultsAreCommittedInTheOrderTheyWereHandedOut) {
  KeyServer ks(0);
  ks.dispatcher->set_offload(true);
  std::vector<gm::Registrar> members;
  std::vector<Bytes> m3;
  for (int i = 0; i < 3; ++i) {
    members.push_back(member(ks, member_ep(i).address));
    auto m1 = members.back().start(10);
    auto m2 = ks.dispatcher->receive(member_ep(i), ks.ep.address, m1[0], 10'000);  // message 1: no job
    ASSERT_EQ(m2.size(), 1u);
    m3.push_back(members.back().receive(m2[0].datagram, 10).at(0));
  }
  ASSERT_TRUE(ks.dispatcher->take_jobs().empty());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(ks.dispatcher->receive(member_ep(i), ks.ep.address, m3[static_cast<std::size_t>(i)], 10'000).empty());
  auto jobs = ks.dispatcher->take_jobs();
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(ks.dispatcher->jobs_out(), 3u);
  EXPECT_EQ(ks.dispatcher->half_open(), 3u);
  for (auto& j : jobs) j->run();
  EXPECT_TRUE(ks.dispatcher->commit(std::move(jobs[2])).empty());
  EXPECT_TRUE(ks.dispatcher->commit(std::move(jobs[1])).empty());
  auto committed = ks.dispatcher->commit(std::move(jobs[0]));
  ASSERT_EQ(committed.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(committed[static_cast<std::size_t>(i)].replies.size(), 1u);
    EXPECT_EQ(committed[static_cast<std::size_t>(i)].replies[0].to, member_ep(i));
    // Message 4, which the member takes: message 5 comes back.
    EXPECT_EQ(members[static_cast<std::size_t>(i)].receive(committed[static_cast<std::size_t>(i)].replies[0].datagram, 10).size(), 1u);
  }
  EXPECT_EQ(ks.dispatcher->jobs_out(), 0u);
}

// The rule for datagrams of an exchange whose job is out: dropped and
// counted (the exchange is not there to answer); once committed, the
// member's next retransmission gets the reply, without a new job.
TEST(KsWorkers, ARetransmissionDuringTheJobIsDroppedAndTheNextOneAnswered) {
  KeyServer ks(0);
  ks.dispatcher->set_offload(true);
  const Endpoint me = member_ep(0);
  auto r = member(ks, me.address);
  auto m2 = ks.dispatcher->receive(me, ks.ep.address, r.start(10)[0], 10'000);
  Bytes m3 = r.receive(m2.at(0).datagram, 10).at(0);
  EXPECT_TRUE(ks.dispatcher->receive(me, ks.ep.address, m3, 10'000).empty());
  EXPECT_TRUE(ks.dispatcher->receive(me, ks.ep.address, m3, 12'000).empty());  // retransmitted meanwhile
  EXPECT_EQ(ks.dispatcher->counters().busy_dropped, 1u);
  auto jobs = ks.dispatcher->take_jobs();
  ASSERT_EQ(jobs.size(), 1u);  // the retransmission made none
  jobs[0]->run();
  auto committed = ks.dispatcher->commit(std::move(jobs[0]));
  ASSERT_EQ(committed.size(), 1u);
  const Bytes m4 = committed[0].replies.at(0).datagram;
  auto again = ks.dispatcher->receive(me, ks.ep.address, m3, 14'000);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].datagram, m4);  // the same reply, no new Diffie-Hellman
  EXPECT_TRUE(ks.dispatcher->take_jobs().empty());
  // And the exchange goes on to a registration.
  std::vector<Bytes> to_ks = r.receive(m4, 10);
  for (int i = 0; i < 6 && !to_ks.empty(); ++i) {
    std::vector<Bytes> next;
    for (const Bytes& d : to_ks) {
      std::vector<ks::Outgoing> out = ks.dispatcher->receive(me, ks.ep.address, d, 14'000);
      for (auto& j : ks.dispatcher->take_jobs()) {
        j->run();
        for (auto& c : ks.dispatcher->commit(std::move(j)))
          for (auto& o : c.replies) out.push_back(std::move(o));
      }
      for (const auto& o : out)
        for (Bytes& b : r.receive(o.datagram, 14)) next.push_back(std::move(b));
    }
    to_ks = std::move(next);
  }
  EXPECT_TRUE(r.registration()) << r.failure().value_or("");
}

// max_half_open bounds exchanges whether or not their job is out: the
// oldest is evicted even while being computed (its result is discarded),
// and no more jobs than the cap are out at once, evicted ones included.
TEST(KsWorkers, AnExchangeBeingComputedCountsAgainstTheHalfOpenCap) {
  KeyServer ks(0, 2);
  ks.dispatcher->set_offload(true);
  std::vector<gm::Registrar> members;
  std::vector<Bytes> m3;
  auto open = [&](int i) {
    members.push_back(member(ks, member_ep(i).address));
    auto m2 = ks.dispatcher->receive(member_ep(i), ks.ep.address, members.back().start(10)[0], 10'000);
    m3.push_back(members.back().receive(m2.at(0).datagram, 10).at(0));
  };
  open(0);
  ks.dispatcher->receive(member_ep(0), ks.ep.address, m3[0], 10'000);  // A's job out
  open(1);
  open(2);  // evicts A, being computed
  EXPECT_EQ(ks.dispatcher->half_open(), 2u);
  EXPECT_EQ(ks.dispatcher->counters().half_open_evicted, 1u);
  ks.dispatcher->receive(member_ep(1), ks.ep.address, m3[1], 10'000);  // B's job: 2 out, A's included
  EXPECT_TRUE(ks.dispatcher->receive(member_ep(2), ks.ep.address, m3[2], 10'000).empty());
  EXPECT_EQ(ks.dispatcher->counters().busy_dropped, 1u);  // C waits for a retransmission
  auto jobs = ks.dispatcher->take_jobs();
  ASSERT_EQ(jobs.size(), 2u);
  for (auto& j : jobs) j->run();
  EXPECT_TRUE(ks.dispatcher->commit(std::move(jobs[0])).empty());  // A's: its exchange is gone
  EXPECT_EQ(ks.dispatcher->counters().results_discarded, 1u);
  EXPECT_EQ(ks.dispatcher->commit(std::move(jobs[1])).size(), 1u);  // B's message 4
  // C's retransmission now finds room.
  EXPECT_TRUE(ks.dispatcher->receive(member_ep(2), ks.ep.address, m3[2], 12'000).empty());
  EXPECT_EQ(ks.dispatcher->take_jobs().size(), 1u);
}
