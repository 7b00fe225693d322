#include "ks/server.h"

#include <sys/stat.h>

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
}  // namespace

Server::Server(boost::asio::io_context& io, ServerOptions options, Groups& groups)
    : io_(io),
      options_(std::move(options)),
      dispatcher_(options_.dispatcher, groups, Address{}),
      clock_(io) {}

std::int64_t Server::now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool Server::start(std::string* error) {
  if (options_.keylog_path) {
    // Key material on disk: owner-only, and said out loud.
    ::umask(077);
    keylog_.open(*options_.keylog_path, std::ios::app);
    if (!keylog_) {
      if (error) *error = "cannot open keylog " + *options_.keylog_path;
      return false;
    }
    log(LogLevel::Warning, "keylog is ON: phase-1 encryption keys are written to " + *options_.keylog_path +
                               " so captures can be decrypted; turn it off outside a lab");
  }
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
  // Bounded per wakeup so one busy socket cannot starve the clock.
  for (int i = 0; i < 256; ++i) {
    auto r = l.socket.receive(buffer_);
    if (!r) break;
    for (const Outgoing& o : dispatcher_.receive(r->from, r->local, ByteView(buffer_).first(r->size), now()))
      if (!l.socket.send(o.to, r->local, o.datagram))
        log(LogLevel::Warning, "could not send to " + o.to.str());
  }
  flush_events();
}

void Server::flush_events() {
  for (const Event& e : dispatcher_.take_events()) log(level(e.severity), e.text);
  for (const KeylogEntry& k : dispatcher_.take_keylog()) {
    if (keylog_.is_open()) keylog_ << to_hex(k.initiator_cookie) << ',' << to_hex(k.encryption_key) << std::endl;
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
