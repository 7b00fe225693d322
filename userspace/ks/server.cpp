#include "ks/server.h"

#include <chrono>

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
}  // namespace

Server::Server(boost::asio::io_context& io, ServerOptions options, Groups& groups)
    : io_(io),
      options_(std::move(options)),
      dispatcher_(options_.dispatcher, groups, Address{}),
      clock_(io),
      buffers_(16, Bytes(65536)) {}

std::int64_t Server::now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool Server::start(std::string* error) {
  // Events the log would discard are not built at all.
  dispatcher_.set_min_severity(severity(log_level()));
  if (options_.keylog_path && !keylog_.open(*options_.keylog_path, error)) return false;
  for (const Endpoint& e : options_.listen) {
    auto s = UdpSocket::bind(e, error);
    if (!s) return false;
    int fd = s->fd();
    auto l = std::make_unique<Listener>(Listener{std::move(*s), boost::asio::posix::stream_descriptor(io_, ::dup(fd))});
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
      for (Outgoing& o : dispatcher_.receive(r.from, r.local, ByteView(buffers_[k]).first(r.size), now())) {
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
    if (n < buffers_.size()) break;  // the socket is empty
  }
  flush_events();
}

void Server::flush_events() {
  for (const Event& e : dispatcher_.take_events()) log(level(e.severity), e.text);
  for (const KeylogEntry& k : dispatcher_.take_keylog()) {
    keylog_.write(k.initiator_cookie, k.encryption_key);
  }
}

void Server::tick() {
  dispatcher_.expire(now());
  flush_events();
  clock_.expires_after(std::chrono::seconds(1));
  clock_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) tick();
  });
}

}  // namespace covey::ks
