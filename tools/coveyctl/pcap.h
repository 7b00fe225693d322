// Reading ISAKMP datagrams out of a capture: libpcap for the file (pcap and
// pcapng), then our own walk over link, IP and UDP headers so every frame
// that is not a whole ISAKMP datagram says why.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/bytes.h"

namespace covey::coveyctl {

// UDP ports ISAKMP runs on: IKE (RFC 2408), GDOI (RFC 6407 2.2), NAT-T (RFC 3948).
inline constexpr std::uint16_t kPortIke = 500, kPortGdoi = 848, kPortNatT = 4500;

struct Datagram {
  std::size_t frame = 0;  // 1-based, as Wireshark numbers frames
  double time = 0;        // seconds since the epoch
  std::string src, dst;   // addresses as text ("10.1.23.3", "fe80::1")
  std::uint16_t src_port = 0, dst_port = 0;
  Bytes payload;          // the ISAKMP message (non-ESP marker already removed)
  std::string problem;    // non-empty: this frame is ISAKMP traffic that cannot be decoded
};

// What one frame holds: an ISAKMP datagram (possibly with a problem), or
// nothing to decode (not UDP, other ports, ESP-in-UDP, NAT-T keepalive).
std::optional<Datagram> parse_frame(int linktype, ByteView frame, std::size_t wire_length);

struct Capture {
  std::vector<Datagram> datagrams;
  std::size_t frames = 0;
  std::string error;  // why reading stopped early (or could not start); empty when read to the end
};

Capture read_capture(const std::string& path);

}  // namespace covey::coveyctl
