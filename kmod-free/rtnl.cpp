#include "rtnl.h"

#include <libmnl/libmnl.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "xfrm_msg.h"

namespace covey::kmod {

using crypto::Error;

namespace {

std::string errno_text(int e) {
  return std::string(strerrordesc_np(e) ? strerrordesc_np(e) : "unknown error") + " (" +
         (strerrorname_np(e) ? strerrorname_np(e) : std::to_string(e)) + ")";
}

int family_of(const Address& a) { return a.family == 4 ? AF_INET : AF_INET6; }
std::uint8_t host_prefix(const Address& a) { return a.family == 4 ? 32 : 128; }

std::string sysctl_path(const std::string& key) {
  std::string path = "/proc/sys/" + key;
  std::replace(path.begin() + 10, path.end(), '.', '/');
  return path;
}

}  // namespace

crypto::Result<Interface> interface_info(const std::string& name) {
  Interface i;
  i.name = name;
  i.ifindex = static_cast<int>(if_nametoindex(name.c_str()));
  if (i.ifindex == 0) return Error{"interface " + name + ": " + errno_text(errno)};
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{"interface " + name + ": socket: " + errno_text(errno)};
  ifreq req{};
  std::strncpy(req.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, SIOCGIFHWADDR, &req) != 0) {
    int e = errno;
    close(fd);
    return Error{"interface " + name + ": reading its MAC address: " + errno_text(e)};
  }
  std::memcpy(i.mac.data(), req.ifr_hwaddr.sa_data, 6);
  if (ioctl(fd, SIOCGIFMTU, &req) != 0) {
    int e = errno;
    close(fd);
    return Error{"interface " + name + ": reading its MTU: " + errno_text(e)};
  }
  i.mtu = static_cast<std::uint32_t>(req.ifr_mtu);
  close(fd);
  return i;
}

std::string interface_driver(const std::string& name) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  ifreq req{};
  std::strncpy(req.ifr_name, name.c_str(), IFNAMSIZ - 1);
  req.ifr_data = reinterpret_cast<char*>(&info);
  const int rc = ioctl(fd, SIOCETHTOOL, &req);
  close(fd);
  return rc == 0 ? std::string(info.driver, strnlen(info.driver, sizeof info.driver)) : "";
}

crypto::Result<void> write_sysctl(const std::string& key, const std::string& value) {
  std::ofstream f(sysctl_path(key));
  if (!f) return Error{"sysctl " + key + ": cannot open " + sysctl_path(key) + ": " + errno_text(errno)};
  f << value << '\n';
  f.flush();
  if (!f) return Error{"sysctl " + key + " = " + value + ": " + errno_text(errno)};
  return {};
}

crypto::Result<std::string> read_sysctl(const std::string& key) {
  std::ifstream f(sysctl_path(key));
  if (!f) return Error{"sysctl " + key + ": cannot open " + sysctl_path(key) + ": " + errno_text(errno)};
  std::string v;
  std::getline(f, v);
  return v;
}

crypto::Result<std::unique_ptr<RouteSocket>> RouteSocket::open() {
  std::unique_ptr<RouteSocket> s(new RouteSocket);
  s->nl_ = mnl_socket_open(NETLINK_ROUTE);
  if (!s->nl_) return Error{"cannot open a NETLINK_ROUTE socket: " + errno_text(errno)};
  if (mnl_socket_bind(s->nl_, 0, MNL_SOCKET_AUTOPID) != 0)
    return Error{"cannot bind the NETLINK_ROUTE socket: " + errno_text(errno)};
  int one = 1;
  mnl_socket_setsockopt(s->nl_, NETLINK_EXT_ACK, &one, sizeof one);
  mnl_socket_setsockopt(s->nl_, NETLINK_CAP_ACK, &one, sizeof one);
  return s;
}

RouteSocket::~RouteSocket() {
  if (nl_) mnl_socket_close(nl_);
}

nlmsghdr* RouteSocket::start(std::uint8_t* buf, std::uint16_t type, std::uint16_t flags) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = static_cast<std::uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
  nlh->nlmsg_seq = ++seq_;
  return nlh;
}

int RouteSocket::call(const nlmsghdr* req, std::string& words) {
  if (mnl_socket_sendto(nl_, req, req->nlmsg_len) < 0) {
    words = "sending failed: " + errno_text(errno);
    return -errno;
  }
  std::uint8_t buf[8192];
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl_, buf, sizeof buf);
    if (n < 0) {
      words = "no answer: " + errno_text(errno);
      return -errno;
    }
    auto* nlh = reinterpret_cast<const nlmsghdr*>(buf);
    int len = static_cast<int>(n);
    for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_seq != req->nlmsg_seq || nlh->nlmsg_type != NLMSG_ERROR) continue;
      auto ack = parse_ack(ByteView(reinterpret_cast<const std::uint8_t*>(nlh), nlh->nlmsg_len));
      if (!ack) {
        words = ack.error();
        return -EPROTO;
      }
      if (ack->error != 0) words = ack->str();
      return ack->error;
    }
  }
}

crypto::Result<void> RouteSocket::expect(const nlmsghdr* req, const std::string& what, int tolerated) {
  std::string words;
  int err = call(req, words);
  if (err == 0 || (tolerated && err == tolerated)) return {};
  return Error{what + ": the kernel refused: " + words};
}

crypto::Result<void> RouteSocket::add_address(int ifindex, const Address& a, std::uint8_t prefix) {
  std::uint8_t buf[256] = {};
  nlmsghdr* nlh = start(buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = static_cast<std::uint8_t>(family_of(a));
  ifa->ifa_prefixlen = prefix;
  ifa->ifa_scope = RT_SCOPE_HOST;
  ifa->ifa_index = static_cast<std::uint32_t>(ifindex);
  mnl_attr_put(nlh, IFA_LOCAL, a.size(), a.bytes.data());
  mnl_attr_put(nlh, IFA_ADDRESS, a.size(), a.bytes.data());
  return expect(nlh, "adding address " + a.str() + "/" + std::to_string(prefix) + " to ifindex " + std::to_string(ifindex),
                -EEXIST);
}

crypto::Result<void> RouteSocket::delete_address(int ifindex, const Address& a, std::uint8_t prefix) {
  std::uint8_t buf[256] = {};
  nlmsghdr* nlh = start(buf, RTM_DELADDR, 0);
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = static_cast<std::uint8_t>(family_of(a));
  ifa->ifa_prefixlen = prefix;
  ifa->ifa_index = static_cast<std::uint32_t>(ifindex);
  mnl_attr_put(nlh, IFA_LOCAL, a.size(), a.bytes.data());
  return expect(nlh, "deleting address " + a.str() + " from ifindex " + std::to_string(ifindex), -EADDRNOTAVAIL);
}

namespace {
void put_host_route(nlmsghdr* nlh, const Address& d, int ifindex) {
  auto* rt = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  rt->rtm_family = static_cast<std::uint8_t>(family_of(d));
  rt->rtm_dst_len = host_prefix(d);
  rt->rtm_table = RT_TABLE_MAIN;
  rt->rtm_protocol = RTPROT_STATIC;
  rt->rtm_scope = RT_SCOPE_LINK;
  rt->rtm_type = RTN_UNICAST;
  mnl_attr_put(nlh, RTA_DST, d.size(), d.bytes.data());
  mnl_attr_put_u32(nlh, RTA_OIF, static_cast<std::uint32_t>(ifindex));
}
}  // namespace

crypto::Result<void> RouteSocket::replace_host_route(const Address& d, int ifindex) {
  std::uint8_t buf[256] = {};
  nlmsghdr* nlh = start(buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
  put_host_route(nlh, d, ifindex);
  return expect(nlh, "adding the route to " + d.str() + " via ifindex " + std::to_string(ifindex));
}

crypto::Result<void> RouteSocket::delete_host_route(const Address& d, int ifindex) {
  std::uint8_t buf[256] = {};
  nlmsghdr* nlh = start(buf, RTM_DELROUTE, 0);
  put_host_route(nlh, d, ifindex);
  return expect(nlh, "deleting the route to " + d.str(), -ESRCH);
}

crypto::Result<void> RouteSocket::replace_neighbor(int ifindex, const Address& a, const std::array<std::uint8_t, 6>& mac) {
  std::uint8_t buf[256] = {};
  nlmsghdr* nlh = start(buf, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE);
  auto* nd = static_cast<ndmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ndmsg)));
  nd->ndm_family = static_cast<std::uint8_t>(family_of(a));
  nd->ndm_ifindex = ifindex;
  nd->ndm_state = NUD_PERMANENT;
  mnl_attr_put(nlh, NDA_DST, a.size(), a.bytes.data());
  mnl_attr_put(nlh, NDA_LLADDR, mac.size(), mac.data());
  return expect(nlh, "adding the neighbour entry for " + a.str() + " on ifindex " + std::to_string(ifindex));
}

crypto::Result<void> RouteSocket::delete_neighbor(int ifindex, const Address& a) {
  std::uint8_t buf[256] = {};
  nlmsghdr* nlh = start(buf, RTM_DELNEIGH, 0);
  auto* nd = static_cast<ndmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ndmsg)));
  nd->ndm_family = static_cast<std::uint8_t>(family_of(a));
  nd->ndm_ifindex = ifindex;
  mnl_attr_put(nlh, NDA_DST, a.size(), a.bytes.data());
  return expect(nlh, "deleting the neighbour entry for " + a.str(), -ENOENT);
}

crypto::Result<void> RouteSocket::create_veth(const std::string& name, const std::string& peer) {
  std::uint8_t buf[512] = {};
  nlmsghdr* nlh = start(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg));
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  nlattr* info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
  nlattr* data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
  nlattr* peer_nest = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
  mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg));  // the peer's own ifinfomsg, zeroed
  mnl_attr_put_strz(nlh, IFLA_IFNAME, peer.c_str());
  mnl_attr_nest_end(nlh, peer_nest);
  mnl_attr_nest_end(nlh, data);
  mnl_attr_nest_end(nlh, info);
  return expect(nlh, "creating veth pair " + name + "/" + peer);
}

crypto::Result<void> RouteSocket::delete_link(int ifindex) {
  std::uint8_t buf[128] = {};
  nlmsghdr* nlh = start(buf, RTM_DELLINK, 0);
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifi->ifi_index = ifindex;
  return expect(nlh, "deleting link ifindex " + std::to_string(ifindex));
}

crypto::Result<std::unique_ptr<AddressChanges>> AddressChanges::open() {
  std::unique_ptr<AddressChanges> s(new AddressChanges);
  s->nl_ = mnl_socket_open(NETLINK_ROUTE);
  if (!s->nl_) return Error{"cannot open a NETLINK_ROUTE socket for the kernel's address changes: " + errno_text(errno)};
  if (mnl_socket_bind(s->nl_, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR, MNL_SOCKET_AUTOPID) != 0)
    return Error{"cannot subscribe to the kernel's address changes (RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR): " +
                 errno_text(errno)};
  const int fd = mnl_socket_get_fd(s->nl_);
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
    return Error{"cannot make the address change socket non-blocking: " + errno_text(errno)};
  s->rx_.resize(static_cast<std::size_t>(MNL_SOCKET_BUFFER_SIZE));
  return s;
}

AddressChanges::~AddressChanges() {
  if (nl_) mnl_socket_close(nl_);
}

int AddressChanges::fd() const { return mnl_socket_get_fd(nl_); }

crypto::Result<bool> AddressChanges::take() {
  bool changed = false;
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl_, rx_.data(), rx_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return changed;
      if (errno == ENOBUFS) {
        changed = true;
        continue;
      }
      return Error{"reading the kernel's address changes: " + errno_text(errno)};
    }
    auto* nlh = reinterpret_cast<const nlmsghdr*>(rx_.data());
    int len = static_cast<int>(n);
    for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len))
      if (nlh->nlmsg_type == RTM_NEWADDR || nlh->nlmsg_type == RTM_DELADDR) changed = true;
  }
}

}  // namespace covey::kmod
