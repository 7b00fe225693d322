#include "gm-swarm/swarm.h"

#include <sys/epoll.h>
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

namespace covey::swarm {

namespace {

using Clock = std::chrono::steady_clock;

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

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

// One member in flight: its socket and its registration attempt.
struct Slot {
  std::size_t member = 0;
  std::optional<UdpSocket> socket;
  std::unique_ptr<gm::Registrar> registrar;
  Clock::time_point started;
};

class Swarm {
 public:
  explicit Swarm(const SwarmOptions& o) : o_(o), epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (epoll_ < 0) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
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
  }
  ~Swarm() { ::close(epoll_); }
  Swarm(const Swarm&) = delete;
  Swarm& operator=(const Swarm&) = delete;

  SwarmResult run() {
    const double cpu0 = cpu_seconds();
    const double wait0 = runqueue_wait_seconds();
    const Clock::time_point t0 = Clock::now();
    const Clock::time_point deadline = t0 + o_.timeout;
    first_start_ = t0;
    last_done_ = t0;
    for (std::size_t i = 0; i < slots_.size(); ++i) refill(i);
    Clock::time_point last_tick = t0;
    std::vector<epoll_event> events(slots_.size());
    while (in_flight_ > 0) {
      Clock::time_point now = Clock::now();
      if (now >= deadline) {
        result_.timed_out = true;
        break;
      }
      auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
      int n = ::epoll_wait(epoll_, events.data(), static_cast<int>(events.size()),
                           static_cast<int>(std::min<std::int64_t>(wait_ms + 1, 100)));
      if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("epoll_wait: ") + std::strerror(errno));
      for (int e = 0; e < n; ++e) readable(static_cast<std::size_t>(events[static_cast<std::size_t>(e)].data.u64));
      now = Clock::now();
      if (now - last_tick >= std::chrono::milliseconds(200)) {
        last_tick = now;
        for (std::size_t i = 0; i < slots_.size(); ++i) tick(i);
      }
    }
    result_.unfinished = o_.members - result_.registered - result_.failed;
    result_.elapsed_s = std::chrono::duration<double>(last_done_ - first_start_).count();
    if (result_.elapsed_s > 0) result_.registrations_per_s = static_cast<double>(result_.registered) / result_.elapsed_s;
    result_.latency = latency_of(std::move(latencies_ms_));
    result_.cpu_s = cpu_seconds() - cpu0;
    if (double wait1 = runqueue_wait_seconds(); wait0 >= 0 && wait1 >= 0) result_.runqueue_wait_s = wait1 - wait0;
    return result_;
  }

 private:
  std::int64_t seconds(Clock::time_point t) const {
    return std::chrono::duration_cast<std::chrono::seconds>(t - first_start_).count();
  }

  void send(Slot& s, const std::vector<Bytes>& datagrams) {
    for (const Bytes& d : datagrams) {
      if (s.socket->send(d)) ++result_.datagrams_sent;
    }
  }

  void log_events(Slot& s) {
    auto events = s.registrar->take_events();
    if (!o_.verbose) return;
    for (const auto& e : events) std::cerr << "member " << s.member << ": " << e << '\n';
  }

  // Starts the next member in slot i, if any are left.
  void refill(std::size_t i) {
    while (next_member_ < o_.members) {
      Slot& s = slots_[i];
      s.member = next_member_++;
      Address local = o_.one_address ? o_.source_base : nth_address(o_.source_base, static_cast<std::uint32_t>(s.member));
      std::string error;
      // Connected, without IP_PKTINFO: the kernel keeps the route, and
      // only the KS's datagrams reach the member.
      s.socket = UdpSocket::connect(Endpoint{local, 0}, o_.ks, &error);
      if (!s.socket) {
        record_failure(error);
        continue;
      }
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, s.socket->fd(), &ev) != 0) {
        record_failure(std::string("epoll_ctl: ") + std::strerror(errno));
        s.socket.reset();
        continue;
      }
      s.started = Clock::now();
      s.registrar = std::make_unique<gm::Registrar>(registrar_, o_.ks, local);
      ++in_flight_;
      auto out = s.registrar->start(seconds(s.started));
      send(s, out);
      log_events(s);
      if (s.registrar->done()) finish(i);  // could not even start
      return;
    }
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
      latencies_ms_.push_back(std::chrono::duration<double, std::milli>(now - s.started).count());
      last_done_ = now;
    } else {
      record_failure(s.registrar->failure().value_or("ended without keys or a reason"));
    }
    s.registrar.reset();
    s.socket.reset();  // close() takes it out of the epoll set
    --in_flight_;
    refill(i);
  }

  void readable(std::size_t i) {
    Slot& s = slots_[i];
    if (!s.registrar) return;
    // One datagram per readiness event: a member has one message in
    // flight, and the epoll set is level-triggered, so anything else
    // waiting reports itself on the next epoll_wait (no recvmsg that ends
    // in EAGAIN per datagram).
    auto r = s.socket->receive(buffer_);
    if (!r) return;
    ++result_.datagrams_received;
    if (!(r->from == o_.ks)) return;
    send(s, s.registrar->receive(ByteView(buffer_).first(r->size), seconds(Clock::now())));
    log_events(s);
    if (s.registrar->done()) finish(i);
  }

  void tick(std::size_t i) {
    Slot& s = slots_[i];
    if (!s.registrar) return;
    auto out = s.registrar->tick(seconds(Clock::now()));
    result_.retransmissions += out.size();
    send(s, out);
    if (s.registrar->done()) finish(i);
  }

  const SwarmOptions& o_;
  int epoll_;
  gm::RegistrarOptions registrar_;
  std::vector<Slot> slots_;
  std::size_t next_member_ = 0, in_flight_ = 0;
  Bytes buffer_;
  std::vector<double> latencies_ms_;
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
