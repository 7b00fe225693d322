#include "common/udp.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
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

void parse_pktinfo(msghdr& msg, Address& local) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo pi;
      std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
      std::memcpy(local.bytes.data(), &pi.ipi_addr, 4);
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo pi;
      std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
      std::memcpy(local.bytes.data(), &pi.ipi6_addr, 16);
    }
  }
}

// Fills msg_control (at least CMSG_SPACE(sizeof(in6_pktinfo)) bytes, zeroed)
// with the source address to send from.
void set_pktinfo(msghdr& msg, char* control, std::uint8_t family, const Address& local) {
  msg.msg_control = control;
  if (family == 4) {
    msg.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
    in_pktinfo pi{};
    std::memcpy(&pi.ipi_spec_dst, local.bytes.data(), 4);
    std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
  } else {
    msg.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
    in6_pktinfo pi{};
    std::memcpy(&pi.ipi6_addr, local.bytes.data(), 16);
    std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
  }
}

constexpr std::size_t kControl = 64;  // >= CMSG_SPACE(sizeof(in6_pktinfo))
constexpr std::size_t kBatch = 64;    // datagrams per recvmmsg/sendmmsg call at most

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

std::optional<UdpSocket> UdpSocket::connect(const Endpoint& local, const Endpoint& remote, std::string* error) {
  int family = local.address.family == 4 ? AF_INET : AF_INET6;
  int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  auto fail = [&](const char* what, const Endpoint& e) {
    if (error) *error = std::string(what) + " UDP " + e.str() + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return std::nullopt;
  };
  if (fd < 0) return fail("cannot open a socket for", local);
  if (family == AF_INET6) {
    int on = 1;
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
  }
  sockaddr_storage ss;
  socklen_t len = to_sockaddr(local, ss);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) return fail("cannot bind", local);
  len = to_sockaddr(remote, ss);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) return fail("cannot connect to", remote);
  return UdpSocket(fd, local.address.family);
}

namespace {

// The index of the interface that holds `a`, or 0 when none does.
unsigned interface_index_of(const Address& a) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return 0;
  unsigned index = 0;
  for (ifaddrs* i = list; i && index == 0; i = i->ifa_next) {
    if (!i->ifa_addr || !i->ifa_name) continue;
    const bool match =
        (a.family == 4 && i->ifa_addr->sa_family == AF_INET &&
         std::memcmp(&reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, a.bytes.data(), 4) == 0) ||
        (a.family == 6 && i->ifa_addr->sa_family == AF_INET6 &&
         std::memcmp(&reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr, a.bytes.data(), 16) == 0);
    if (match) index = ::if_nametoindex(i->ifa_name);
  }
  ::freeifaddrs(list);
  return index;
}

}  // namespace

int UdpSocket::set_receive_buffer(int bytes) {
  if (::setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0)
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  int granted = 0;
  socklen_t len = sizeof granted;
  ::getsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &granted, &len);
  return granted / 2;  // the kernel doubles the request for its bookkeeping and reports that
}

std::optional<UdpSocket> UdpSocket::join_multicast(const Endpoint& group, const Address& interface_address,
                                                   std::string* error) {
  const std::string what = "multicast group " + group.str() + " on the interface of " + interface_address.str();
  // The group may be of the other family (a dual-stack key server's IPv6
  // group, a member registered over IPv4): the join is by interface index.
  const bool v4 = group.address.family == 4;
  if (v4 ? (group.address.bytes[0] & 0xf0) != 0xe0 : group.address.bytes[0] != 0xff) {
    if (error) *error = "cannot join " + what + ": not a multicast address";
    return std::nullopt;
  }
  int fd = ::socket(v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  auto fail = [&](const char* step) {
    if (error) *error = std::string("cannot ") + step + " " + what + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return std::nullopt;
  };
  if (fd < 0) return fail("open a socket for");
  // IPv6 needs the interface by index; IPv4 takes either, and the index
  // holds when the address moves. An address on no interface is an error
  // worth naming rather than a join on whichever interface the route picks.
  const unsigned ifindex = interface_index_of(interface_address);
  if (ifindex == 0) {
    errno = EADDRNOTAVAIL;
    return fail("join");
  }
  int on = 1, off = 0;
  // Another socket (this member's registration socket, another daemon)
  // may hold the same port on another address.
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (v4) {
    // Linux otherwise delivers every group any socket on the host joined
    // to a socket bound to this port.
    ::setsockopt(fd, IPPROTO_IP, IP_MULTICAST_ALL, &off, sizeof off);
    ::setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
  } else {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
#ifdef IPV6_MULTICAST_ALL
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_ALL, &off, sizeof off);
#endif
  }
  sockaddr_storage ss;
  socklen_t len = to_sockaddr(group, ss);
  if (!v4) reinterpret_cast<sockaddr_in6*>(&ss)->sin6_scope_id = ifindex;  // link-local groups need it
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) return fail("bind");
  if (v4) {
    ip_mreqn m{};
    std::memcpy(&m.imr_multiaddr, group.address.bytes.data(), 4);
    if (interface_address.family == 4) std::memcpy(&m.imr_address, interface_address.bytes.data(), 4);
    m.imr_ifindex = static_cast<int>(ifindex);
    if (::setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m) != 0) return fail("join");
  } else {
    ipv6_mreq m{};
    std::memcpy(&m.ipv6mr_multiaddr, group.address.bytes.data(), 16);
    m.ipv6mr_interface = ifindex;
    if (::setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &m, sizeof m) != 0) return fail("join");
  }
  return UdpSocket(fd, group.address.family);
}

bool UdpSocket::send(ByteView datagram) {
  return ::send(fd_, datagram.data(), datagram.size(), 0) == static_cast<ssize_t>(datagram.size());
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
  parse_pktinfo(msg, r.local);
  return r;
}

std::size_t UdpSocket::receive_many(std::vector<Bytes>& buffers, std::vector<Received>& out) {
  out.clear();
  const std::size_t n = std::min(buffers.size(), kBatch);
  if (n == 0) return 0;
  sockaddr_storage from[kBatch];
  iovec iov[kBatch];
  alignas(cmsghdr) char control[kBatch][256];
  mmsghdr msgs[kBatch];
  std::memset(msgs, 0, sizeof(mmsghdr) * n);
  for (std::size_t k = 0; k < n; ++k) {
    buffers[k].resize(65536);
    iov[k] = iovec{buffers[k].data(), buffers[k].size()};
    msghdr& m = msgs[k].msg_hdr;
    m.msg_name = &from[k];
    m.msg_namelen = sizeof from[k];
    m.msg_iov = &iov[k];
    m.msg_iovlen = 1;
    m.msg_control = control[k];
    m.msg_controllen = sizeof control[k];
  }
  int got = ::recvmmsg(fd_, msgs, static_cast<unsigned>(n), MSG_DONTWAIT, nullptr);
  if (got <= 0) return 0;
  out.resize(static_cast<std::size_t>(got));
  for (std::size_t k = 0; k < out.size(); ++k) {
    Received& r = out[k];
    r.from = from_sockaddr(from[k]);
    r.size = msgs[k].msg_len;
    r.local = Address{};
    r.local.family = family_;
    parse_pktinfo(msgs[k].msg_hdr, r.local);
  }
  return out.size();
}

std::size_t UdpSocket::send_many(std::span<const Outbound> datagrams, std::vector<std::size_t>* failed, bool* full) {
  std::size_t sent = 0;
  if (full) *full = false;
  std::size_t next = 0;
  while (next < datagrams.size()) {
    const std::size_t n = std::min(datagrams.size() - next, kBatch);
    sockaddr_storage to[kBatch];
    iovec iov[kBatch];
    alignas(cmsghdr) char control[kBatch][kControl];
    mmsghdr msgs[kBatch];
    std::memset(msgs, 0, sizeof(mmsghdr) * n);
    for (std::size_t k = 0; k < n; ++k) {
      const Outbound& d = datagrams[next + k];
      msghdr& m = msgs[k].msg_hdr;
      m.msg_name = &to[k];
      m.msg_namelen = to_sockaddr(d.to, to[k]);
      iov[k] = iovec{const_cast<std::uint8_t*>(d.datagram.data()), d.datagram.size()};
      m.msg_iov = &iov[k];
      m.msg_iovlen = 1;
      if (d.local) {
        std::memset(control[k], 0, kControl);
        set_pktinfo(m, control[k], family_, *d.local);
      }
    }
    int done = ::sendmmsg(fd_, msgs, static_cast<unsigned>(n), 0);
    if (done <= 0) {
      if (full && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        *full = true;
        return sent;
      }
      // The first one failed: count it and go on with the rest, as send() would.
      if (failed) failed->push_back(next);
      ++next;
      continue;
    }
    for (int k = 0; k < done; ++k) {
      const std::size_t i = next + static_cast<std::size_t>(k);
      if (msgs[k].msg_len == datagrams[i].datagram.size()) {
        ++sent;
      } else if (failed) {
        failed->push_back(i);
      }
    }
    next += static_cast<std::size_t>(done);
  }
  return sent;
}

bool UdpSocket::send(const Endpoint& to, const std::optional<Address>& local, ByteView datagram) {
  sockaddr_storage ss;
  socklen_t len = to_sockaddr(to, ss);
  iovec iov{const_cast<std::uint8_t*>(datagram.data()), datagram.size()};
  alignas(cmsghdr) char control[kControl] = {};
  msghdr msg{};
  msg.msg_name = &ss;
  msg.msg_namelen = len;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (local) set_pktinfo(msg, control, family_, *local);
  return ::sendmsg(fd_, &msg, 0) == static_cast<ssize_t>(datagram.size());
}

}  // namespace covey
