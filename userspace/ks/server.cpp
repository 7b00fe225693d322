#include "ks/server.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iterator>
#include <map>

#include "common/clock.h"
#include "common/log.h"

namespace covey::ks {

namespace {
LogLevel level(Severity s) {
  switch (s) {
    case Severity::Debug: return LogLevel::Debug;
    case Severity::Info: return LogLevel::Info;
    case Severity::Warning: return LogLevel::Warning;
    case Severity::Error: return LogLevel::Error;
  }
  return LogLevel::Info;
}
Severity severity(LogLevel l) {
  switch (l) {
    case LogLevel::Debug: return Severity::Debug;
    case LogLevel::Info: return Severity::Info;
    case LogLevel::Warning: return Severity::Warning;
    case LogLevel::Error: return Severity::Error;
  }
  return Severity::Debug;
}
bool unspecified(const Address& a) {
  return std::all_of(a.bytes.begin(), a.bytes.begin() + static_cast<std::ptrdiff_t>(a.size()),
                     [](std::uint8_t b) { return b == 0; });
}

// The index of the interface that holds `a` (IPV6_MULTICAST_IF takes one), 0 if none does.
unsigned interface_of(const Address& a) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return 0;
  unsigned index = 0;
  for (ifaddrs* i = list; i && !index; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET6 || a.family != 6) continue;
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
    if (std::memcmp(&s6->sin6_addr, a.bytes.data(), 16) == 0) index = ::if_nametoindex(i->ifa_name);
  }
  ::freeifaddrs(list);
  return index;
}

// Multicast rekeys leave by the key server's own address, not wherever the
// routing table would send a multicast group.
void set_multicast_interface(int fd, const Address& a) {
  if (a.family == 4) {
    in_addr addr{};
    std::memcpy(&addr, a.bytes.data(), 4);
    if (::setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &addr, sizeof addr) != 0)
      log(LogLevel::Warning, "IP_MULTICAST_IF " + a.str() + ": " + std::strerror(errno) + "; multicast rekeys leave by the route");
  } else if (unsigned index = interface_of(a)) {
    if (::setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &index, sizeof index) != 0)
      log(LogLevel::Warning, "IPV6_MULTICAST_IF " + a.str() + ": " + std::strerror(errno) + "; multicast rekeys leave by the route");
  }
}

}  // namespace

Server::Server(boost::asio::io_context& io, ServerOptions options, KeyServer& core)
    : io_(io), options_(std::move(options)), core_(core), clock_(io), buffers_(16, Bytes(65536)) {}

Server::~Server() {
  workers_.reset();  // no job comes back after this
  core_.set_wakeup({});
}

bool Server::start(std::string* error) {
  // A cluster's store wakes the loop from its own thread when another key
  // server changed something or the election moved.
  core_.set_wakeup([this] {
    boost::asio::post(io_, [this] {
      core_.poll(clock::now_ms());
      flush();
    });
  });
  // Events the log would discard are not built at all.
  core_.set_min_severity(severity(log_level()));
  if (options_.keylog_path && !keylog_.open(*options_.keylog_path, error)) return false;
  if (options_.workers > 0) {
    workers_ = std::make_unique<Workers>(options_.workers, [this](std::unique_ptr<MainModeJob> job) {
      // From a worker thread: the first job to finish since the loop last
      // looked wakes it; the others join the same wakeup.
      bool wake = false;
      {
        std::lock_guard<std::mutex> lock(finished_mutex_);
        wake = finished_.empty();
        finished_.push_back(std::move(job));
      }
      if (wake) boost::asio::post(io_, [this] { commit_finished(); });
    });
    core_.dispatcher().set_offload(true);
    log(LogLevel::Info, std::to_string(options_.workers) + " worker threads for Main Mode's Diffie-Hellman and authentication");
  }
  for (const Endpoint& e : options_.listen) {
    auto s = UdpSocket::bind(e, error);
    if (!s) return false;
    // Room for the acknowledgements of a rekey to every member at once
    // (~1 KiB of kernel memory each): 16 MiB holds 10,000 and more.
    if (int granted = s->set_receive_buffer(16 << 20); granted < (16 << 20))
      log(LogLevel::Warning, "UDP " + e.str() + ": receive buffer " + std::to_string(granted >> 10) +
                                 " KiB, not 16 MiB (net.core.rmem_max); a rekey's acknowledgements may be dropped "
                                 "and retransmissions cover them");
    int fd = s->fd();
    auto l = std::make_unique<Listener>(
        Listener{std::move(*s), boost::asio::posix::stream_descriptor(io_, ::dup(fd)), e, std::nullopt});
    // The key server's own address of the socket's family, else the
    // socket's own: a dual-stack key server's IPv6 socket sends an IPv6
    // group's rekeys by the interface of its IPv6 address.
    const Address& own =
        options_.address && !unspecified(*options_.address) && options_.address->family == e.address.family
            ? *options_.address
            : e.address;
    if (!unspecified(own)) set_multicast_interface(fd, own);
    log(LogLevel::Info, "listening on UDP " + e.str());
    wait(*l);
    listeners_.push_back(std::move(l));
  }
  tick();
  return true;
}

void Server::wait(Listener& l) {
  l.watch.async_wait(boost::asio::posix::stream_descriptor::wait_read, [this, &l](const boost::system::error_code& ec) {
    if (ec) return;
    drain(l);
    wait(l);
  });
}

void Server::drain(Listener& l) {
  // Bounded per wakeup so one busy socket cannot starve the clock: 256
  // datagrams, taken a batch per recvmmsg, the replies to a batch sent
  // (in order, from the address each datagram arrived on) per sendmmsg.
  for (std::size_t taken = 0; taken < 256;) {
    const std::size_t n = l.socket.receive_many(buffers_, received_);
    if (n == 0) break;
    taken += n;
    replies_.clear();
    reply_from_.clear();
    for (std::size_t k = 0; k < n; ++k) {
      const UdpSocket::Received& r = received_[k];
      for (Outgoing& o : core_.receive(r.from, r.local, ByteView(buffers_[k]).first(r.size), clock::now_ms())) {
        replies_.push_back(std::move(o));
        reply_from_.push_back(r.local);
      }
    }
    outbound_.clear();
    for (std::size_t k = 0; k < replies_.size(); ++k)
      outbound_.push_back(UdpSocket::Outbound{replies_[k].to, reply_from_[k], replies_[k].datagram});
    failed_.clear();
    l.socket.send_many(outbound_, &failed_);
    for (std::size_t k : failed_) log(LogLevel::Warning, "could not send to " + replies_[k].to.str());
    submit_jobs();
    if (n < buffers_.size()) break;  // the socket is empty
  }
  flush();
}

void Server::submit_jobs() {
  if (!workers_) return;
  for (auto& job : core_.dispatcher().take_jobs()) workers_->submit(std::move(job));
}

Server::Listener* Server::listener_for(const Address& local) {
  Listener* wildcard = nullptr;
  for (auto& l : listeners_) {
    if (l->bound.address.family != local.family) continue;
    if (l->bound.address == local) return l.get();
    if (!wildcard && unspecified(l->bound.address)) wildcard = l.get();
  }
  return wildcard;
}

void Server::commit_finished() {
  {
    std::lock_guard<std::mutex> lock(finished_mutex_);
    std::swap(committing_, finished_);
  }
  // Per listener, in commit order, from the address each exchange's
  // datagram arrived on (as drain() replies).
  std::map<Listener*, std::vector<UdpSocket::Outbound>> batches;
  std::vector<Committed> committed;
  for (auto& job : committing_)
    for (Committed& c : core_.dispatcher().commit(std::move(job))) committed.push_back(std::move(c));
  committing_.clear();
  for (const Committed& c : committed)
    if (Listener* l = listener_for(c.local))
      for (const Outgoing& o : c.replies) batches[l].push_back(UdpSocket::Outbound{o.to, c.local, o.datagram});
  for (auto& [l, outbound] : batches) {
    failed_.clear();
    l->socket.send_many(outbound, &failed_);
    for (std::size_t k : failed_) log(LogLevel::Warning, "could not send to " + outbound[k].to.str());
  }
  flush();
}

void Server::flush() {
  send_pushes();
  flush_events();
}

Server::Listener* Server::listener_for(const PushDatagram& d) {
  // The socket bound to the address the push must come from, else a
  // wildcard one of the family (IP_PKTINFO picks the source), else any of it.
  Listener* wildcard = nullptr;
  Listener* any = nullptr;
  for (auto& l : listeners_) {
    if (l->bound.address.family != d.to.address.family) continue;
    if (d.from && l->bound.address == *d.from) return l.get();
    if (!wildcard && unspecified(l->bound.address)) wildcard = l.get();
    if (!any) any = l.get();
  }
  return wildcard ? wildcard : any;
}

bool Server::set_multicast_ttl(Listener& l, std::uint8_t ttl) {
  if (l.multicast_ttl == ttl) return true;
  int v = ttl;
  int rc = l.bound.address.family == 4 ? ::setsockopt(l.socket.fd(), IPPROTO_IP, IP_MULTICAST_TTL, &v, sizeof v)
                                       : ::setsockopt(l.socket.fd(), IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &v, sizeof v);
  if (rc != 0) {
    log(LogLevel::Error, "cannot set the multicast TTL " + std::to_string(ttl) + " on UDP " + l.bound.str() + ": " +
                             std::strerror(errno));
    return false;
  }
  l.multicast_ttl = ttl;
  return true;
}

void Server::send_pushes() {
  for (PushDatagram& d : core_.take_outgoing()) push_queue_.push_back(std::move(d));
  // A turn is already scheduled (or waits for a full socket): it goes on
  // from where the queue is.
  if (push_queue_.empty() || push_turn_pending_) return;
  // One slice per loop turn, then the loop's other work (the acks coming
  // back fill the receive buffer meanwhile) before the next: a rekey of
  // 100,000 members is never one burst. Within a slice, one sendmmsg
  // batch per socket; multicast datagrams are one per rekey and go on
  // their own, after the socket's TTL is set.
  constexpr std::size_t kSlice = 512;
  pushes_.clear();
  while (!push_queue_.empty() && pushes_.size() < kSlice) {
    pushes_.push_back(std::move(push_queue_.front()));
    push_queue_.pop_front();
  }
  std::map<Listener*, std::vector<std::size_t>> batches;
  std::size_t unsendable = 0;
  for (std::size_t k = 0; k < pushes_.size(); ++k) {
    const PushDatagram& d = pushes_[k];
    Listener* l = listener_for(d);
    if (!l) {
      if (++unsendable == 1)
        log(LogLevel::Error, "no IPv" + std::to_string(d.to.address.family) + " socket to send the rekey to " + d.to.str() +
                                 " from; add an address of that family to [server] listen");
      continue;
    }
    if (d.multicast_ttl) {
      if (set_multicast_ttl(*l, *d.multicast_ttl) && !l->socket.send(d.to, d.from, *d.datagram))
        log(LogLevel::Error, "could not send the rekey to multicast group " + d.to.str() + ": " + std::strerror(errno));
      continue;
    }
    batches[l].push_back(k);
  }
  Listener* full_socket = nullptr;
  std::vector<PushDatagram> unsent;  // the socket was full: in order, back to the queue's front
  for (auto& [l, indices] : batches) {
    outbound_.clear();
    for (std::size_t k : indices) outbound_.push_back(UdpSocket::Outbound{pushes_[k].to, pushes_[k].from, *pushes_[k].datagram});
    failed_.clear();
    bool full = false;
    const std::size_t sent = l->socket.send_many(outbound_, &failed_, &full);
    if (full) {
      full_socket = l;
      for (std::size_t i = sent + failed_.size(); i < indices.size(); ++i) unsent.push_back(std::move(pushes_[indices[i]]));
    }
    // Thousands of members behind one broken route would be thousands of
    // lines: the first, then the count. Retransmission covers the rest.
    if (!failed_.empty())
      log(LogLevel::Warning, "could not send the rekey to " + outbound_[failed_.front()].to.str() +
                                 (failed_.size() > 1 ? " and " + std::to_string(failed_.size() - 1) + " other members" : ""));
  }
  pushes_.clear();
  push_queue_.insert(push_queue_.begin(), std::make_move_iterator(unsent.begin()), std::make_move_iterator(unsent.end()));
  if (push_queue_.empty()) return;
  push_turn_pending_ = true;
  auto next_turn = [this] {
    push_turn_pending_ = false;
    flush();
  };
  if (full_socket) {
    // The send buffer is full: the rest when the kernel has room again,
    // rather than datagrams it would refuse.
    full_socket->watch.async_wait(boost::asio::posix::stream_descriptor::wait_write,
                                  [next_turn](const boost::system::error_code& ec) {
                                    if (!ec) next_turn();
                                  });
  } else {
    boost::asio::post(io_, next_turn);
  }
}

void Server::flush_events() {
  for (const Event& e : core_.take_events()) log(level(e.severity), e.text, e.fields);
  for (const KeylogEntry& k : core_.take_keylog()) {
    keylog_.write(k.initiator_cookie, k.encryption_key);
  }
}

void Server::tick() {
  core_.tick(clock::now_ms());
  flush();
  clock_.expires_after(std::chrono::seconds(1));
  clock_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) tick();
  });
}

}  // namespace covey::ks
