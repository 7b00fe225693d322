// The rtnetlink side of the kernel boundary (libmnl): what the data path
// needs besides XFRM. Addresses (the anchors on lo), host routes and
// permanent neighbours (the route XFRM output takes to ANCHOR_GROUP),
// links (the probe's throwaway veth pair), interface facts and sysctls.
// Every refusal quotes the kernel.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/address.h"
#include "crypto/result.h"

struct mnl_socket;
struct nlmsghdr;

namespace covey::kmod {

struct Interface {
  std::string name;
  int ifindex = 0;
  std::array<std::uint8_t, 6> mac{};
  std::uint32_t mtu = 0;
};
// By name, in the calling thread's network namespace.
crypto::Result<Interface> interface_info(const std::string& name);
// The interface's driver as ethtool names it ("veth", "virtio_net"); "" if unknown.
std::string interface_driver(const std::string& name);

// /proc/sys/net/... as `key` with dots ("net.ipv4.conf.wan0.accept_local").
crypto::Result<void> write_sysctl(const std::string& key, const std::string& value);
crypto::Result<std::string> read_sysctl(const std::string& key);

class RouteSocket {
 public:
  static crypto::Result<std::unique_ptr<RouteSocket>> open();
  ~RouteSocket();
  RouteSocket(const RouteSocket&) = delete;
  RouteSocket& operator=(const RouteSocket&) = delete;

  // Adding what is already there, or deleting what is not, succeeds: the
  // caller states what it wants, after a crash as after a clean stop.
  crypto::Result<void> add_address(int ifindex, const Address& a, std::uint8_t prefix);
  crypto::Result<void> delete_address(int ifindex, const Address& a, std::uint8_t prefix);
  // A host route (scope link) to `destination` out of `ifindex`, created or replaced.
  crypto::Result<void> replace_host_route(const Address& destination, int ifindex);
  crypto::Result<void> delete_host_route(const Address& destination, int ifindex);
  // A permanent neighbour entry: the device needs no ARP/ND for `a`.
  crypto::Result<void> replace_neighbor(int ifindex, const Address& a, const std::array<std::uint8_t, 6>& mac);
  crypto::Result<void> delete_neighbor(int ifindex, const Address& a);

  crypto::Result<void> create_veth(const std::string& name, const std::string& peer);
  crypto::Result<void> delete_link(int ifindex);

 private:
  RouteSocket() = default;
  nlmsghdr* start(std::uint8_t* buf, std::uint16_t type, std::uint16_t flags);
  // The kernel's answer: 0 or a negative errno; `words` gets its message.
  int call(const nlmsghdr* request, std::string& words);
  crypto::Result<void> expect(const nlmsghdr* request, const std::string& what, int tolerated = 0);

  mnl_socket* nl_ = nullptr;
  std::uint32_t seq_ = 0;
};

// The kernel's announcements of addresses added to or removed from any
// interface of this network namespace (RTMGRP_IPV4_IFADDR,
// RTMGRP_IPV6_IFADDR). The caller reads the addresses again when one
// arrives, so whether something changed is all it says: a socket that
// overflowed (ENOBUFS, announcements lost) is one more change. Open it
// before the first read of the addresses, and no change falls between.
class AddressChanges {
 public:
  static crypto::Result<std::unique_ptr<AddressChanges>> open();
  ~AddressChanges();
  AddressChanges(const AddressChanges&) = delete;
  AddressChanges& operator=(const AddressChanges&) = delete;

  int fd() const;
  // Drains the socket (non-blocking): whether an address changed since the last call.
  crypto::Result<bool> take();

 private:
  AddressChanges() = default;
  mnl_socket* nl_ = nullptr;
  std::vector<std::uint8_t> rx_;
};

}  // namespace covey::kmod
