#include "gm-swarm/swarm.h"

#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <numeric>
#include <optional>
#include <stdexcept>

#include "common/udp.h"
#include "gm/registrar.h"
#include "gm/rekey_state.h"

namespace covey::swarm {

namespace {

using Clock = std::chrono::steady_clock;

struct CpuTimes {
  double user = 0, system = 0;
  double total() const { return user + system; }
};

CpuTimes cpu_times() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return CpuTimes{s(u.ru_utime), s(u.ru_stime)};
}

double cpu_seconds() { return cpu_times().total(); }

std::size_t max_rss_kb() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<std::size_t>(u.ru_maxrss);
}

// The low 32 bits of an address (IPv4: all of it), for member arithmetic.
std::uint32_t low32(const Address& a) {
  const std::size_t low = a.family == 4 ? 0 : 12;
  return static_cast<std::uint32_t>(a.bytes[low] << 24 | a.bytes[low + 1] << 16 | a.bytes[low + 2] << 8 | a.bytes[low + 3]);
}

// Kernel memory one datagram of a rekey push takes in a receive queue on
// loopback (a ~1 KiB payload in a 2 KiB buffer and its sk_buff).
constexpr int kQueuedPushBytes = 2560;

// Time spent runnable but waiting for a CPU, from /proc/self/schedstat:
// on a shared machine it says how much of the wall clock was other load.
double runqueue_wait_seconds() {
  std::FILE* f = std::fopen("/proc/self/schedstat", "r");
  if (!f) return -1;
  unsigned long long on_cpu = 0, waiting = 0;
  int n = std::fscanf(f, "%llu %llu", &on_cpu, &waiting);
  std::fclose(f);
  return n == 2 ? static_cast<double>(waiting) / 1e9 : -1;
}

// One member in flight: where it sends from and its registration attempt.
struct Slot {
  std::size_t member = 0;
  std::size_t socket = 0;  // index into Swarm::sockets_
  Address local;
  Endpoint ks;
  std::unique_ptr<gm::Registrar> registrar;
  Clock::time_point started;
  // When it was due to start at --start-rate (a storm's arrival), else
  // when it started: a member that waits for a free slot waits in the storm.
  Clock::time_point arrived;
};

// Members share sockets: by default one socket bound to the wildcard
// address sends each member's datagrams from that member's own source
// address (IP_PKTINFO) and tells replies apart by the address they came
// to, so the kernel work is a few batched system calls per loop rather
// than a socket, a bind, a connect and an epoll registration per member.
// With --one-address every slot has its own socket (its own port), reused
// by the members that run in it one after another.
class Swarm {
 public:
  explicit Swarm(const SwarmOptions& o) : o_(o) {
    auto creds = std::make_shared<ike::Credentials>();
    crypto::SecretBytes psk(as_bytes(o.pre_shared_key));
    creds->pre_shared_key = [psk](const Address&) -> std::optional<crypto::SecretBytes> { return psk; };
    ike::Phase1Transform t;  // aes-256 sha256 psk, as covey-gm offers by default
    t.dh_group = o.dh_group;
    registrar_.group_id = o.group_id;
    registrar_.offers = {t};
    registrar_.credentials = std::move(creds);
    registrar_.retransmit_s = o.retransmit_s;
    registrar_.retransmits = o.retransmits;
    slots_.resize(std::max<std::size_t>(1, std::min(o.concurrency, o.members)));
    Address any;
    any.family = o.key_servers.at(0).address.family;
    const std::size_t sockets = o.one_address ? slots_.size() : 1;
    for (std::size_t i = 0; i < sockets; ++i) {
      std::string error;
      auto s = UdpSocket::bind(Endpoint{o.one_address ? o.source_base : any, 0}, &error);
      if (!s) throw std::runtime_error(error);
      // Every member's push arrives at this one socket at once; real
      // members each have their own buffer. Room for every member's (at
      // least 64 MiB, at most 1 GiB: 400,000 members).
      if (!o.one_address) {
        const std::size_t want = std::clamp<std::size_t>(o.members * kQueuedPushBytes, 64u << 20, 1u << 30);
        result_.receive_buffer_bytes = s->set_receive_buffer(static_cast<int>(want));
      }
      pollfds_.push_back(pollfd{s->fd(), POLLIN, 0});
      sockets_.push_back(std::move(*s));
    }
    buffers_.resize(64);
    // Member i is source_base + i: a datagram's local address names its
    // member by arithmetic, and this says what that member is doing.
    if (!o.one_address) where_.assign(o.members, kNowhere);
  }

  SwarmResult run() {
    const CpuTimes cpu_start = cpu_times();
    const double cpu0 = cpu_start.total(), cpu_user0 = cpu_start.user, cpu_system0 = cpu_start.system;
    const double wait0 = runqueue_wait_seconds();
    const Clock::time_point t0 = Clock::now();
    const Clock::time_point deadline = t0 + o_.timeout;
    first_start_ = t0;
    last_done_ = t0;
    for (std::size_t i = 0; i < slots_.size(); ++i) refill(i);
    flush();
    Clock::time_point last_tick = t0;
    bool announced = false;
    while (in_flight_ > 0 || !idle_.empty() || following()) {
      if (in_flight_ == 0 && idle_.empty() && !announced) {
        announced = true;
        result_.registering_cpu_s = cpu_seconds() - cpu0;
        // The bench waits for this line before it asks the KS to rekey.
        std::printf("gm-swarm: %zu members registered; following %zu rekeys\n", followers_.size(), o_.follow_rekeys);
        std::fflush(stdout);
      }
      Clock::time_point now = Clock::now();
      if (now >= deadline) {
        result_.timed_out = true;
        break;
      }
      start_due();
      auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
      // At a start rate, the next start is at most a few ms away.
      const std::int64_t max_wait = idle_.empty() ? 100 : 5;
      int n = ::poll(pollfds_.data(), pollfds_.size(), static_cast<int>(std::min<std::int64_t>(wait_ms + 1, max_wait)));
      if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
      for (std::size_t k = 0; n > 0 && k < pollfds_.size(); ++k) {
        if (pollfds_[k].revents & POLLIN) drain(k);
      }
      now = Clock::now();
      if (now - last_tick >= std::chrono::milliseconds(200)) {
        last_tick = now;
        for (std::size_t i = 0; i < slots_.size(); ++i) tick(i);
      }
      flush();
    }
    for (const auto& [seq, p] : rekeys_) result_.rekeys.push_back(p.result);
    for (const auto& f : followers_) ++result_.final_keys[held_keys(f->state)];
    result_.unfinished = o_.members - result_.registered - result_.failed;
    result_.elapsed_s = std::chrono::duration<double>(last_done_ - first_start_).count();
    if (result_.elapsed_s > 0) result_.registrations_per_s = static_cast<double>(result_.registered) / result_.elapsed_s;
    result_.latency = latency_of(std::move(latencies_ms_));
    result_.arrival_latency = latency_of(std::move(arrival_latencies_ms_));
    const CpuTimes cpu1 = cpu_times();
    result_.cpu_s = cpu1.total() - cpu0;
    if (!announced) result_.registering_cpu_s = result_.cpu_s;  // nothing followed after registering
    result_.cpu_user_s = cpu1.user - cpu_user0;
    result_.cpu_system_s = cpu1.system - cpu_system0;
    result_.max_rss_kb = max_rss_kb();
    result_.last_start_s = std::chrono::duration<double>(last_start_ - first_start_).count();
    if (double wait1 = runqueue_wait_seconds(); wait0 >= 0 && wait1 >= 0) result_.runqueue_wait_s = wait1 - wait0;
    return result_;
  }

 private:
  std::int64_t seconds(Clock::time_point t) const {
    return std::chrono::duration_cast<std::chrono::seconds>(t - first_start_).count();
  }

  // Queued, and sent in batches by flush(): the Registrar hands out
  // datagrams it keeps, so they are copied here.
  void send(const Slot& s, std::vector<Bytes> datagrams) {
    for (Bytes& d : datagrams) pending_[s.socket].push_back(Pending{s.ks, s.local, std::move(d)});
  }

  void flush() {
    for (auto& [socket, queue] : pending_) {
      if (queue.empty()) continue;
      outbound_.clear();
      for (const Pending& p : queue) outbound_.push_back(UdpSocket::Outbound{p.to, p.from, p.datagram});
      result_.datagrams_sent += sockets_[socket].send_many(outbound_);
      queue.clear();
    }
  }

  void log_events(Slot& s) {
    auto events = s.registrar->take_events();
    if (!o_.verbose) return;
    for (const auto& e : events) std::cerr << "member " << s.member << ": " << e << '\n';
  }

  // Starts the next member in slot i, if any are left; at a start rate,
  // only when one is due, else the slot waits in idle_ for start_due.
  void refill(std::size_t i) {
    if (next_member_ >= o_.members) return;
    if (o_.start_rate > 0) {
      const double due_s = static_cast<double>(next_member_) / o_.start_rate;
      if (std::chrono::duration<double>(Clock::now() - first_start_).count() < due_s) {
        idle_.push_back(i);
        return;
      }
    }
    Slot& s = slots_[i];
    s.member = next_member_++;
    s.socket = o_.one_address ? i : 0;
    s.local = o_.one_address ? o_.source_base : nth_address(o_.source_base, static_cast<std::uint32_t>(s.member));
    if (!o_.one_address) where_[s.member] = static_cast<std::uint32_t>(i);
    s.started = Clock::now();
    s.arrived = s.started;
    if (o_.start_rate > 0)
      s.arrived = std::min(s.started, first_start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                                          static_cast<double>(s.member) / o_.start_rate)));
    last_start_ = s.started;
    s.ks = o_.key_servers[s.member % o_.key_servers.size()];
    s.registrar = std::make_unique<gm::Registrar>(registrar_, s.ks, s.local);
    ++in_flight_;
    send(s, s.registrar->start(seconds(s.started)));
    log_events(s);
    if (s.registrar->done()) finish(i);  // could not even start
  }

  void record_failure(const std::string& why) {
    ++result_.failed;
    ++result_.failures[why];
    last_done_ = Clock::now();
  }

  void finish(std::size_t i) {
    Slot& s = slots_[i];
    Clock::time_point now = Clock::now();
    if (s.registrar->registration()) {
      ++result_.registered;
      follow(s, *s.registrar->registration());
      latencies_ms_.push_back(std::chrono::duration<double, std::milli>(now - s.started).count());
      arrival_latencies_ms_.push_back(std::chrono::duration<double, std::milli>(now - s.arrived).count());
      last_done_ = now;
    } else {
      record_failure(s.registrar->failure().value_or("ended without keys or a reason"));
    }
    s.registrar.reset();
    if (!o_.one_address && where_[s.member] == i) where_[s.member] = kNowhere;
    --in_flight_;
    refill(i);
  }

  // At a start rate: the members due by now, into the slots waiting.
  void start_due() {
    while (!idle_.empty() && next_member_ < o_.members) {
      const std::size_t i = idle_.back();
      idle_.pop_back();
      const std::size_t before = next_member_;
      refill(i);
      if (next_member_ == before) return;  // not due yet: refill put it back
    }
    if (next_member_ >= o_.members) idle_.clear();
  }

  // The member a datagram came to by its local address, if one of ours.
  std::optional<std::size_t> member_at(const Address& local) const {
    if (local.family != o_.source_base.family) return std::nullopt;
    if (local.family == 6 && !std::equal(local.bytes.begin(), local.bytes.begin() + 12, o_.source_base.bytes.begin()))
      return std::nullopt;
    const std::uint32_t n = low32(local) - low32(o_.source_base);
    if (n >= o_.members) return std::nullopt;
    return n;
  }

  // Everything waiting on socket k, a batch at a time.
  void drain(std::size_t k) {
    for (;;) {
      std::size_t got = sockets_[k].receive_many(buffers_, received_);
      for (std::size_t j = 0; j < got; ++j) {
        const UdpSocket::Received& r = received_[j];
        ++result_.datagrams_received;
        std::size_t slot = k;
        if (!o_.one_address) {
          auto member = member_at(r.local);
          if (!member) continue;
          const std::uint32_t w = where_[*member];
          if (w == kNowhere) continue;  // a late answer to a member that has finished
          // A push may come from any key server of a cluster, not only
          // the one registered with: the group's signature decides.
          if (w & kFollowing) {
            if (r.size > 18 && buffers_[j][18] == kGroupkeyPush)
              receive_push(*followers_[w & ~kFollowing], r, ByteView(buffers_[j]).first(r.size));
            continue;
          }
          slot = w;
        }
        Slot& s = slots_[slot];
        if (!s.registrar || !(r.from == s.ks)) continue;
        send(s, s.registrar->receive(ByteView(buffers_[j]).first(r.size), seconds(Clock::now())));
        log_events(s);
        if (s.registrar->done()) finish(slot);
      }
      // The answers and acks to this batch leave now, as each member's
      // would: held until the socket is empty, the acks to a 100,000-member
      // rekey left as one burst the key server's receive buffer dropped.
      flush();
      if (got < buffers_.size()) return;
    }
  }

  void tick(std::size_t i) {
    Slot& s = slots_[i];
    if (!s.registrar) return;
    auto out = s.registrar->tick(seconds(Clock::now()));
    result_.retransmissions += out.size();
    send(s, std::move(out));
    if (s.registrar->done()) finish(i);
  }

  struct Pending {
    Endpoint to;
    Address from;
    Bytes datagram;
  };

  // A registered member that stays to follow rekeys.
  struct Follower {
    Address local;
    std::size_t socket = 0;
    gm::RekeyState state;
  };

  SwarmResult::HeldKeys held_keys(const gm::RekeyState& state) const {
    SwarmResult::HeldKeys h;
    auto teks = state.teks(seconds(Clock::now()));
    if (!teks.empty()) {  // by generation: the last is the newest
      const gdoi::Tek& t = *teks.back().tek;
      h.tek_spi = spi_hex(t.spi);
      h.tek_encryption = to_hex(t.encryption_key);
      h.tek_integrity = to_hex(t.integrity_key);
    }
    if (const auto& rx = state.receiver()) {
      h.kek_spi = to_hex(rx->kek().spi);
      h.kek_algorithm_key = to_hex(rx->kek().algorithm_key);
    }
    return h;
  }

  bool following() const { return o_.follow_rekeys > 0 && !followers_.empty() && rekeys_done_ < o_.follow_rekeys; }

  // Counts the keys the member registered with; with follow_rekeys it
  // stays to follow the rekeys.
  void follow(const Slot& s, const gdoi::Registration& r) {
    auto f = std::make_unique<Follower>(Follower{s.local, s.socket, gm::RekeyState(gm::RekeyOptions{"swarm", s.local})});
    if (auto ok = f->state.registered(r, seconds(Clock::now())); !ok) {
      record_failure("cannot take the registration's keys: " + ok.error());
      return;
    }
    ++result_.registered_keys[held_keys(f->state)];
    if (!o_.follow_rekeys) return;
    if (!o_.one_address) where_[s.member] = static_cast<std::uint32_t>(followers_.size()) | kFollowing;
    followers_.push_back(std::move(f));
  }

  void receive_push(Follower& f, const UdpSocket::Received& r, ByteView datagram) {
    const Clock::time_point now = Clock::now();
    PushesFrom& from = result_.pushes_from[r.from];
    const double unix_s = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    if (from.datagrams++ == 0) from.first_unix_s = unix_s;
    from.last_unix_s = unix_s;
    auto out = f.state.receive_push(datagram, r.from, gm::PushVia::Unicast, seconds(now));
    if (out.kind == gm::PushOutcome::Kind::Retransmission) {
      ++result_.retransmissions;
    } else if (auto seq = f.state.last_seq(); out.kind == gm::PushOutcome::Kind::Applied && seq) {
      RekeyProgress& p = progress(*seq, now, datagram.size());
      if (p.result.members_acked == 0 && p.result.members_refused == 0) p.cpu_at_first_push = cpu_seconds();
      ++p.result.members_acked;
      p.last_ack = now;
      done_if_complete(p);
    } else {
      ++result_.failures["rekey refused: " + out.refused.value_or("?")];
      // Counted against the oldest rekey still open: a refused push has no SEQ one can trust.
      for (auto& entry : rekeys_) {
        if (entry.second.complete) continue;
        ++entry.second.result.members_refused;
        done_if_complete(entry.second);
        break;
      }
    }
    if (out.ack) {
      pending_[f.socket].push_back(Pending{r.from, f.local, std::move(*out.ack)});
      f.state.ack_sent();
    }
    for (auto& entry : rekeys_) {
      if (!entry.second.complete) entry.second.result.bytes_received += datagram.size();
    }
  }

  struct RekeyProgress {
    RekeyResult result;
    Clock::time_point first_push, last_ack;
    double cpu_at_first_push = 0;
    bool complete = false;
  };

  RekeyProgress& progress(std::uint32_t seq, Clock::time_point now, std::size_t bytes) {
    auto [it, fresh] = rekeys_.try_emplace(seq);
    if (fresh) {
      it->second.result.seq = seq;
      it->second.result.push_bytes = bytes;
      it->second.first_push = now;
    }
    return it->second;
  }

  void done_if_complete(RekeyProgress& p) {
    if (p.complete || p.result.members_acked + p.result.members_refused < followers_.size()) return;
    p.complete = true;
    p.result.first_push_to_last_ack_s = std::chrono::duration<double>(p.last_ack - p.first_push).count();
    // steady_clock is CLOCK_MONOTONIC on Linux.
    p.result.first_push_monotonic_s = std::chrono::duration<double>(p.first_push.time_since_epoch()).count();
    p.result.last_ack_monotonic_s = std::chrono::duration<double>(p.last_ack.time_since_epoch()).count();
    p.result.gm_cpu_s = cpu_seconds() - p.cpu_at_first_push;
    ++rekeys_done_;
  }

  const SwarmOptions& o_;
  gm::RegistrarOptions registrar_;
  std::vector<UdpSocket> sockets_;
  std::vector<pollfd> pollfds_;
  std::vector<Slot> slots_;
  // Member -> kNowhere, its slot while it registers, or kFollowing | its
  // index in followers_: 4 bytes a member, no hashing on the receive path.
  static constexpr std::uint32_t kNowhere = 0xffffffff, kFollowing = 0x80000000;
  std::vector<std::uint32_t> where_;
  std::vector<std::size_t> idle_;  // slots waiting for the start rate
  Clock::time_point last_start_;
  std::map<std::size_t, std::vector<Pending>> pending_;  // socket -> datagrams to send
  std::vector<UdpSocket::Outbound> outbound_;
  std::vector<Bytes> buffers_;
  std::vector<UdpSocket::Received> received_;
  std::size_t next_member_ = 0, in_flight_ = 0;
  std::vector<std::unique_ptr<Follower>> followers_;
  std::map<std::uint32_t, RekeyProgress> rekeys_;  // by SEQ
  std::size_t rekeys_done_ = 0;
  static constexpr std::uint8_t kGroupkeyPush = 33;  // RFC 6407 4: exchange type, octet 18 of the header
  std::vector<double> latencies_ms_, arrival_latencies_ms_;
  Clock::time_point first_start_, last_done_;
  SwarmResult result_;
};

}  // namespace

Address nth_address(const Address& base, std::uint32_t n) {
  Address a = base;
  std::size_t low = a.family == 4 ? 0 : 12;
  std::uint32_t v = static_cast<std::uint32_t>(a.bytes[low] << 24 | a.bytes[low + 1] << 16 | a.bytes[low + 2] << 8 | a.bytes[low + 3]);
  v += n;
  for (std::size_t k = 0; k < 4; ++k) a.bytes[low + k] = static_cast<std::uint8_t>(v >> (24 - 8 * k));
  return a;
}

bool is_loopback(const Address& a) {
  if (a.family == 4) return a.bytes[0] == 127;
  static const Address v6 = *Address::parse("::1");
  return a == v6;
}

Latency latency_of(std::vector<double> ms) {
  Latency l;
  if (ms.empty()) return l;
  std::sort(ms.begin(), ms.end());
  // Nearest rank: the smallest value with at least p% of the samples at or below it.
  auto rank = [&](double p) {
    std::size_t k = static_cast<std::size_t>(std::max(1.0, std::ceil(p / 100.0 * static_cast<double>(ms.size()))));
    return ms[std::min(k, ms.size()) - 1];
  };
  l.p50 = rank(50);
  l.p90 = rank(90);
  l.p99 = rank(99);
  l.max = ms.back();
  l.mean = std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size());
  return l;
}

SwarmResult run_swarm(const SwarmOptions& options) { return Swarm(options).run(); }

}  // namespace covey::swarm
