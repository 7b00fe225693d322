// Writes UDP datagrams into a classic pcap file (Ethernet, IPv4 or IPv6, UDP) with
// correct lengths and checksums, so tshark and coveyctl read what a real
// capture of the lab would hold.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/bytes.h"

namespace covey::test {

struct UdpEndpoint {
  std::uint32_t ip;  // host order, e.g. 0x0a011703 for 10.1.23.3
  std::uint16_t port;
  bool v6 = false;  // then ip6 is the address, ip unused
  std::array<std::uint8_t, 16> ip6{};
};

inline constexpr UdpEndpoint kGm{0x0a011703, 848};  // GM R3 of the reference lab
inline constexpr UdpEndpoint kKs{0x0a010c01, 848};  // the KS
// The same over IPv6, the lab's dual-stack addresses: 2001:db8:23::3, 2001:db8:12::1.
inline constexpr UdpEndpoint kGm6{
    0, 848, true, {0x20, 0x01, 0x0d, 0xb8, 0, 0x23, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3}};
inline constexpr UdpEndpoint kKs6{
    0, 848, true, {0x20, 0x01, 0x0d, 0xb8, 0, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};

struct PcapRecord {
  UdpEndpoint src, dst;
  Bytes payload;
};

// One Ethernet frame holding src -> dst UDP with `payload`.
Bytes ethernet_udp_frame(const UdpEndpoint& src, const UdpEndpoint& dst, ByteView payload);

// Writes the records as frames 1..N, one second apart. Throws on I/O failure.
void write_pcap(const std::string& path, const std::vector<PcapRecord>& records);
// The same, for frames already built (to test link-level damage).
void write_pcap_frames(const std::string& path, const std::vector<Bytes>& frames);

}  // namespace covey::test
