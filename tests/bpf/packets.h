// Exact frames for the data path's BPF tests: Ethernet (+ VLAN tags),
// IPv4 with options, IPv6, UDP, TCP with options, ESP, and the TBAR stamp,
// every length and checksum computed from scratch, so an expected frame is
// built independently of the program that must produce it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace covey::testing {

using Bytes = std::vector<std::uint8_t>;
using Mac = std::array<std::uint8_t, 6>;

inline constexpr Mac kMacA{0x02, 0, 0, 0, 0, 0x0a};
inline constexpr Mac kMacB{0x02, 0, 0, 0, 0, 0x0b};

std::array<std::uint8_t, 4> ip4(const std::string& text);
std::array<std::uint8_t, 16> ip6(const std::string& text);

struct Ipv4Frame {
  std::array<std::uint8_t, 4> src{}, dst{};
  std::uint8_t protocol = 17;
  std::uint16_t id = 0x1234;
  std::uint16_t frag = 0x4000;  // flags and offset: DF
  std::uint8_t ttl = 64;
  Bytes options;  // a multiple of 4 bytes
  Bytes payload;  // the upper layer, as built below
  unsigned vlan_tags = 0;
  Mac dmac = kMacB, smac = kMacA;
};
// The frame; a TCP payload gets its checksum computed over the addresses.
Bytes frame(const Ipv4Frame& f);

struct Ipv6Frame {
  std::array<std::uint8_t, 16> src{}, dst{};
  std::uint8_t next = 50;
  std::uint8_t hop_limit = 64;
  Bytes payload;  // extension headers (below), then the upper layer
  Mac dmac = kMacB, smac = kMacA;
};
// The frame; a TCP or ICMPv6 upper layer found after the extension headers
// (not in a fragment) gets its checksum computed over the pseudo-header.
Bytes frame(const Ipv6Frame& f);

// IPv6 extension headers (RFC 8200), 8 bytes each unless said: Hop-by-Hop
// with a Router Alert (`bytes` > 8: PadN to that length), Destination
// Options of PadN, a Routing header of the experimental type 253 with no
// segments left, a Fragment header (offset in bytes, a multiple of 8).
Bytes hop_by_hop(std::uint8_t next, std::size_t bytes = 8);
Bytes dest_options(std::uint8_t next);
Bytes routing(std::uint8_t next);
Bytes fragment6(std::uint8_t next, std::uint16_t offset, bool more, std::uint32_t id = 0x5555);
// The TBAR IPv6 stamp (bpf/covey_maps.h: covey_tbar_dstopt_v6).
Bytes stamp6(std::uint8_t next, std::uint16_t sid, std::uint32_t pseudotime, std::uint32_t counter,
             std::uint16_t segment = 0);
// Where the upper layer starts in an IPv6 frame (Ethernet at 0), walking
// Hop-by-Hop, Routing, Destination Options and Fragment headers; its
// protocol in `protocol`, and whether a fragment header with an offset
// was on the way.
std::size_t ipv6_upper(const Bytes& frame, std::uint8_t* protocol, bool* later_fragment = nullptr);
bool tcp6_checksum_ok(const Bytes& frame);
// The ICMPv6 message after the IPv6 header (no extension headers) sums
// to zero with its pseudo-header.
bool icmp6_checksum_ok(const Bytes& frame);

Bytes udp(std::uint16_t sport, std::uint16_t dport, std::size_t data_len);
// TCP header (flags: 0x02 SYN, 0x10 ACK, ...), options padded to 4 bytes,
// checksum left 0 (frame() computes it).
Bytes tcp(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags, const Bytes& options = {},
          std::size_t data_len = 0);
Bytes mss_option(std::uint16_t mss);
Bytes esp(std::uint32_t spi, std::uint32_t seq, std::size_t data_len = 32);
// The TBAR IPv4 option (bpf/covey_maps.h: covey_tbar_opt_v4).
Bytes stamp(std::uint16_t sid, std::uint32_t pseudotime, std::uint32_t counter);

// Checks over a frame with its IPv4 header at `l3`.
bool ipv4_checksum_ok(const Bytes& frame, std::size_t l3 = 14);
bool tcp_checksum_ok(const Bytes& frame, std::size_t l3 = 14);
// The ICMP message after the IPv4 header sums to zero.
bool icmp_checksum_ok(const Bytes& frame, std::size_t l3 = 14);

// What a device (or skb_checksum_help) does to a packet whose checksum is
// left to it (CHECKSUM_PARTIAL): the one's complement sum from `start` to
// the end, its complement written at start + offset (0 as 0xffff).
void fill_pending_checksum(Bytes& frame, std::size_t start, std::size_t offset);

// ICMP destination unreachable, fragmentation needed (RFC 792, RFC 1191)
// with next-hop MTU `mtu` about `original` (Ethernet + IPv4, not a later
// fragment), as covey's stamping program answers it: from the original's
// destination to its source, TOS 0xc0, ID 0, DF, TTL 64; quoting the
// original IP header with its options and the first 8 bytes after it
// (TCP: 20). The quoted TCP or UDP checksum field holds the value a
// device filling in a pending checksum over the quoted transport bytes
// would leave as it is (found here by trying every value).
Bytes frag_needed(const Bytes& original, std::uint16_t mtu, const Mac& dmac, const Mac& smac);

// ICMPv6 Packet Too Big (RFC 4443 3.2) for `mtu` about `original`
// (Ethernet + IPv6), as covey's stamping program answers it: from the
// original's destination to its source, traffic class 0, hop limit 64;
// quoting the IPv6 header, its extension headers and the 8 bytes after
// them (TCP: 20), the quoted TCP or UDP checksum field set as
// frag_needed() sets it.
Bytes packet_too_big(const Bytes& original, std::uint32_t mtu, const Mac& dmac, const Mac& smac);

std::string hex(const Bytes& b);

}  // namespace covey::testing
