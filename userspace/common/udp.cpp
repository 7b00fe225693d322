#include "common/udp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace covey {

namespace {

socklen_t to_sockaddr(const Endpoint& e, sockaddr_storage& ss) {
  std::memset(&ss, 0, sizeof ss);
  if (e.address.family == 4) {
    auto* s = reinterpret_cast<sockaddr_in*>(&ss);
    s->sin_family = AF_INET;
    s->sin_port = htons(e.port);
    std::memcpy(&s->sin_addr, e.address.bytes.data(), 4);
    return sizeof(sockaddr_in);
  }
  auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
  s->sin6_family = AF_INET6;
  s->sin6_port = htons(e.port);
  std::memcpy(&s->sin6_addr, e.address.bytes.data(), 16);
  return sizeof(sockaddr_in6);
}

Endpoint from_sockaddr(const sockaddr_storage& ss) {
  Endpoint e;
  if (ss.ss_family == AF_INET) {
    const auto* s = reinterpret_cast<const sockaddr_in*>(&ss);
    e.address.family = 4;
    std::memcpy(e.address.bytes.data(), &s->sin_addr, 4);
    e.port = ntohs(s->sin_port);
  } else {
    const auto* s = reinterpret_cast<const sockaddr_in6*>(&ss);
    e.address.family = 6;
    std::memcpy(e.address.bytes.data(), &s->sin6_addr, 16);
    e.port = ntohs(s->sin6_port);
  }
  return e;
}

}  // namespace

std::optional<UdpSocket> UdpSocket::bind(const Endpoint& local, std::string* error) {
  int family = local.address.family == 4 ? AF_INET : AF_INET6;
  int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  auto fail = [&](const char* what) {
    if (error) *error = std::string(what) + " UDP " + local.str() + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return std::nullopt;
  };
  if (fd < 0) return fail("cannot open a socket for");
  int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (family == AF_INET) {
    ::setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
  } else {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
  }
  sockaddr_storage ss;
  socklen_t len = to_sockaddr(local, ss);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) return fail("cannot bind");
  return UdpSocket(fd, local.address.family);
}

UdpSocket& UdpSocket::operator=(UdpSocket&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    family_ = o.family_;
    o.fd_ = -1;
  }
  return *this;
}

UdpSocket::~UdpSocket() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<UdpSocket::Received> UdpSocket::receive(Bytes& buffer) {
  buffer.resize(65536);
  sockaddr_storage from{};
  iovec iov{buffer.data(), buffer.size()};
  alignas(cmsghdr) char control[256];
  msghdr msg{};
  msg.msg_name = &from;
  msg.msg_namelen = sizeof from;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(fd_, &msg, 0);
  if (n < 0) return std::nullopt;
  Received r;
  r.from = from_sockaddr(from);
  r.size = static_cast<std::size_t>(n);
  r.local.family = family_;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo pi;
      std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
      std::memcpy(r.local.bytes.data(), &pi.ipi_addr, 4);
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo pi;
      std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
      std::memcpy(r.local.bytes.data(), &pi.ipi6_addr, 16);
    }
  }
  return r;
}

bool UdpSocket::send(const Endpoint& to, const std::optional<Address>& local, ByteView datagram) {
  sockaddr_storage ss;
  socklen_t len = to_sockaddr(to, ss);
  iovec iov{const_cast<std::uint8_t*>(datagram.data()), datagram.size()};
  alignas(cmsghdr) char control[64] = {};
  msghdr msg{};
  msg.msg_name = &ss;
  msg.msg_namelen = len;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (local) {
    msg.msg_control = control;
    if (family_ == 4) {
      msg.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = IPPROTO_IP;
      c->cmsg_type = IP_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
      in_pktinfo pi{};
      std::memcpy(&pi.ipi_spec_dst, local->bytes.data(), 4);
      std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
    } else {
      msg.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = IPPROTO_IPV6;
      c->cmsg_type = IPV6_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
      in6_pktinfo pi{};
      std::memcpy(&pi.ipi6_addr, local->bytes.data(), 16);
      std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
    }
  }
  return ::sendmsg(fd_, &msg, 0) == static_cast<ssize_t>(datagram.size());
}

}  // namespace covey
