#include "coveyctl/pcap.h"

#include <arpa/inet.h>
#include <pcap/pcap.h>

#include <memory>

#include "wire/buffer.h"

namespace covey::coveyctl {
namespace {

// Link types by their LINKTYPE_ numbers (www.tcpdump.org/linktypes.html);
// libpcap hands out DLT_ numbers, which differ only for raw IP.
constexpr int kLinkNull = 0, kLinkEthernet = 1, kLinkRawBsd = 12, kLinkRawBsd2 = 14, kLinkRaw = 101,
              kLinkLoop = 108, kLinkSll = 113, kLinkIpv4 = 228, kLinkIpv6 = 229, kLinkSll2 = 276;

constexpr std::uint16_t kEtherIpv4 = 0x0800, kEtherIpv6 = 0x86dd, kEtherVlan = 0x8100,
                        kEtherQinQ = 0x88a8;

struct Network {
  std::uint16_t ethertype = 0;  // 0: look at the IP version nibble
  ByteView packet;
};

// Strips the link header; nullopt for frames that carry no IP.
std::optional<Network> strip_link(int linktype, ByteView f) {
  wire::Reader r(f, 0);
  switch (linktype) {
    case kLinkEthernet: {
      if (!r.take(12)) return std::nullopt;
      auto type = r.u16();
      // 802.1Q and 802.1ad tags, stacked as deep as the frame goes.
      while (type && (*type == kEtherVlan || *type == kEtherQinQ)) {
        if (!r.u16()) return std::nullopt;
        type = r.u16();
      }
      if (!type) return std::nullopt;
      return Network{*type, r.rest()};
    }
    case kLinkSll: {  // 16 octets, protocol last
      if (!r.take(14)) return std::nullopt;
      auto type = r.u16();
      if (!type) return std::nullopt;
      return Network{*type, r.rest()};
    }
    case kLinkSll2: {  // 20 octets, protocol first
      auto type = r.u16();
      if (!type || !r.take(18)) return std::nullopt;
      return Network{*type, r.rest()};
    }
    case kLinkNull:
    case kLinkLoop: {
      // 4-octet address family: host order for NULL, network order for LOOP.
      // AF_INET is 2 everywhere; AF_INET6 differs by OS, so read the IP version instead.
      if (!r.take(4)) return std::nullopt;
      return Network{0, r.rest()};
    }
    case kLinkRawBsd:
    case kLinkRawBsd2:
    case kLinkRaw:
    case kLinkIpv4:
    case kLinkIpv6:
      return Network{0, r.rest()};
  }
  return std::nullopt;
}

std::string address(int family, ByteView raw) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, raw.data(), text, sizeof text);
  return text;
}

struct Udp {
  std::string src, dst;
  ByteView segment;     // UDP header and payload
  std::string problem;  // fragment, truncated header
};

std::optional<Udp> ipv4(ByteView p) {
  if (p.size() < 20) return std::nullopt;
  const std::size_t ihl = (p[0] & 0x0f) * 4u;
  if (ihl < 20 || p.size() < ihl || p[9] != 17) return std::nullopt;
  Udp u{address(AF_INET, p.subspan(12, 4)), address(AF_INET, p.subspan(16, 4)), {}, {}};
  const std::size_t total = static_cast<std::size_t>(p[2] << 8 | p[3]);
  const bool more_fragments = (p[6] & 0x20) != 0;
  const unsigned frag_offset = static_cast<unsigned>((p[6] & 0x1f) << 8 | p[7]);
  // Trust the IP length over the link's (Ethernet pads short frames).
  ByteView body = p.subspan(ihl, (total >= ihl && total <= p.size() ? total : p.size()) - ihl);
  if (more_fragments || frag_offset != 0) {
    // Only the first fragment has the UDP header that says whether it is ours.
    if (frag_offset != 0) return std::nullopt;
    u.problem = "IPv4 fragment (ID " + std::to_string(p[4] << 8 | p[5]) + "), not reassembled";
  }
  u.segment = body;
  return u;
}

std::optional<Udp> ipv6(ByteView p) {
  if (p.size() < 40) return std::nullopt;
  Udp u{address(AF_INET6, p.subspan(8, 16)), address(AF_INET6, p.subspan(24, 16)), {}, {}};
  const std::size_t payload_len = static_cast<std::size_t>(p[4] << 8 | p[5]);
  ByteView rest = p.subspan(40, std::min(payload_len, p.size() - 40));
  std::uint8_t next = p[6];
  // Walk the extension headers a UDP datagram may sit behind (RFC 8200 4).
  for (int hops = 0; hops < 16; ++hops) {
    if (next == 17) {
      u.segment = rest;
      return u;
    }
    if (next == 44) {  // Fragment
      if (rest.size() < 8) return std::nullopt;
      const unsigned offset = static_cast<unsigned>(rest[2] << 8 | rest[3]) >> 3;
      if (offset != 0) return std::nullopt;
      u.problem = "IPv6 fragment, not reassembled";
      next = rest[0];
      rest = rest.subspan(8);
      continue;
    }
    if (next != 0 && next != 43 && next != 60) return std::nullopt;  // hop-by-hop, routing, destination
    if (rest.size() < 8) return std::nullopt;
    const std::size_t len = (rest[1] + 1u) * 8u;
    if (rest.size() < len) return std::nullopt;
    next = rest[0];
    rest = rest.subspan(len);
  }
  return std::nullopt;
}

bool isakmp_port(std::uint16_t port) { return port == kPortIke || port == kPortGdoi || port == kPortNatT; }

}  // namespace

std::optional<Datagram> parse_frame(int linktype, ByteView frame, std::size_t wire_length) {
  auto net = strip_link(linktype, frame);
  if (!net) return std::nullopt;
  std::optional<Udp> udp;
  const std::uint8_t version = net->packet.empty() ? 0 : net->packet[0] >> 4;
  if (net->ethertype == kEtherIpv4 || (net->ethertype == 0 && version == 4))
    udp = ipv4(net->packet);
  else if (net->ethertype == kEtherIpv6 || (net->ethertype == 0 && version == 6))
    udp = ipv6(net->packet);
  if (!udp || udp->segment.size() < 8) return std::nullopt;

  ByteView s = udp->segment;
  Datagram d;
  d.src = std::move(udp->src);
  d.dst = std::move(udp->dst);
  d.src_port = static_cast<std::uint16_t>(s[0] << 8 | s[1]);
  d.dst_port = static_cast<std::uint16_t>(s[2] << 8 | s[3]);
  if (!isakmp_port(d.src_port) && !isakmp_port(d.dst_port)) return std::nullopt;
  d.problem = std::move(udp->problem);
  const std::size_t udp_len = static_cast<std::size_t>(s[4] << 8 | s[5]);
  ByteView payload = s.subspan(8);
  if (d.problem.empty() && udp_len >= 8 && udp_len - 8 < payload.size()) payload = payload.first(udp_len - 8);
  if (d.problem.empty() && udp_len >= 8 && udp_len - 8 > payload.size())
    d.problem = frame.size() < wire_length
                    ? "frame captured with " + std::to_string(frame.size()) + " of " + std::to_string(wire_length) +
                          " octets (snap length), datagram incomplete"
                    : "UDP Length " + std::to_string(udp_len) + " runs past the IP packet";

  if (d.src_port == kPortNatT || d.dst_port == kPortNatT) {
    // RFC 3948 2.2-2.3: a single 0xff octet is a keepalive; ESP starts with
    // a non-zero SPI; ISAKMP is behind four zero octets (non-ESP marker).
    if (payload.size() == 1 && payload[0] == 0xff) return std::nullopt;
    if (payload.size() >= 4 && (payload[0] | payload[1] | payload[2] | payload[3]) != 0) return std::nullopt;
    if (payload.size() < 4) {
      if (d.problem.empty()) d.problem = "UDP 4500 datagram of " + std::to_string(payload.size()) + " octets: neither ESP nor non-ESP marker";
    } else {
      payload = payload.subspan(4);
    }
  }
  d.payload.assign(payload.begin(), payload.end());
  return d;
}

Capture read_capture(const std::string& path) {
  Capture c;
  char err[PCAP_ERRBUF_SIZE] = {};
  std::unique_ptr<pcap_t, decltype(&pcap_close)> p(pcap_open_offline(path.c_str(), err), &pcap_close);
  if (!p) {
    c.error = err;
    return c;
  }
  const int dlt = pcap_datalink(p.get());
  pcap_pkthdr* h = nullptr;
  const u_char* data = nullptr;
  int rc;
  while ((rc = pcap_next_ex(p.get(), &h, &data)) == 1) {
    ++c.frames;
    auto d = parse_frame(dlt, ByteView(data, h->caplen), h->len);
    if (!d) continue;
    d->frame = c.frames;
    d->time = static_cast<double>(h->ts.tv_sec) + static_cast<double>(h->ts.tv_usec) / 1e6;
    c.datagrams.push_back(std::move(*d));
  }
  if (rc == PCAP_ERROR) c.error = std::string("after frame ") + std::to_string(c.frames) + ": " + pcap_geterr(p.get());
  return c;
}

}  // namespace covey::coveyctl
