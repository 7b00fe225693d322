// UDP sockets that report which local address a datagram arrived on and
// send the reply from that address (IP_PKTINFO / IPV6_PKTINFO). A key
// server bound to 0.0.0.0 must answer from the address the member
// contacted, because that address is its phase-1 identity.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/bytes.h"

namespace covey {

class UdpSocket {
 public:
  // Binds `local` (family decides v4/v6; v6 sockets are v6-only). Errors
  // name the address: "cannot bind UDP 10.1.12.1:848: Address already in use".
  static std::optional<UdpSocket> bind(const Endpoint& local, std::string* error);
  // A client socket: bound to `local` (port 0: any), connected to
  // `remote`, without IP_PKTINFO (it only ever talks to `remote`; the
  // kernel drops datagrams from anyone else). Use send(ByteView).
  static std::optional<UdpSocket> connect(const Endpoint& local, const Endpoint& remote, std::string* error);
  // A socket that receives what is sent to the multicast group `group`
  // (address and port): bound to the group address, so that nothing else
  // sent to that port arrives on it, and joined (IP_ADD_MEMBERSHIP /
  // IPV6_JOIN_GROUP, which sends MLD reports) on the interface that holds
  // `interface_address`, of either family, so the membership reports leave
  // where the rekeys come in. Errors name the group and the interface
  // address.
  static std::optional<UdpSocket> join_multicast(const Endpoint& group, const Address& interface_address,
                                                 std::string* error);
  UdpSocket(UdpSocket&& o) noexcept : fd_(o.fd_), family_(o.family_) { o.fd_ = -1; }
  UdpSocket& operator=(UdpSocket&& o) noexcept;
  UdpSocket(const UdpSocket&) = delete;
  ~UdpSocket();

  int fd() const { return fd_; }

  // Raises the receive buffer to `bytes` (SO_RCVBUFFORCE as root, else
  // SO_RCVBUF up to net.core.rmem_max) and returns what the kernel
  // granted. UDP has no flow control: a burst larger than the buffer is
  // dropped, and a rekey to thousands of members comes back as a burst of
  // thousands of acknowledgements.
  int set_receive_buffer(int bytes);

  struct Received {
    Endpoint from;
    Address local;
    std::size_t size = 0;
  };
  // Non-blocking; nullopt when nothing is waiting.
  std::optional<Received> receive(Bytes& buffer);
  // From `local` when given (else the kernel's choice). False on error.
  bool send(const Endpoint& to, const std::optional<Address>& local, ByteView datagram);
  // On a connected socket: to its peer. False on error.
  bool send(ByteView datagram);

  // Batched forms (recvmmsg / sendmmsg), same semantics per datagram.
  // receive_many: up to buffers.size() datagrams, datagram k in buffers[k]
  // (each resized to 64 KiB); fills `out` and returns how many. Fewer than
  // buffers.size() means nothing more was waiting.
  std::size_t receive_many(std::vector<Bytes>& buffers, std::vector<Received>& out);
  struct Outbound {
    Endpoint to;
    std::optional<Address> local;
    ByteView datagram;
  };
  // Sends every datagram in order, as many per system call as the kernel
  // takes; `failed` (if given) gets the index of each one that could not
  // be sent. Returns how many were sent. With `full`, it stops at the first
  // datagram the socket's send buffer has no room for (EAGAIN) and sets
  // *full: that one and those after it are neither sent nor failed, for
  // the caller to send when the socket is writable again.
  std::size_t send_many(std::span<const Outbound> datagrams, std::vector<std::size_t>* failed = nullptr,
                        bool* full = nullptr);

 private:
  UdpSocket(int fd, std::uint8_t family) : fd_(fd), family_(family) {}
  int fd_ = -1;
  std::uint8_t family_ = 4;
};

}  // namespace covey
