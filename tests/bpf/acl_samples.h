// ACLs, packets and frames for the classifier's tests and benchmark:
// random ACLs whose prefixes and ports overlap the way real ones do, a
// site-to-site ACL of any length shaped like a GET VPN deployment's, random
// packets aimed at an ACL's edges, and Ethernet frames built from a packet
// description together with what the BPF parser must read from them.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "datapath/acl_compile.h"
#include "gdoi/policy.h"

namespace covey::testing {

using Rng = std::mt19937_64;

// Cisco syntax, one line an entry ("permit tcp any any eq 22"); a line
// that does not parse fails the calling test.
std::vector<gdoi::AclEntry> acl_from(const std::vector<std::string>& lines);

// `n` random entries of one family (4 or 6), or both (0). Prefixes come
// from a pool of nested prefixes (any, /8 ... /32, /128 and odd lengths),
// ports from a pool with eq, lt, gt and range, so entries overlap and
// shadow each other as in real ACLs. `pool` = 0: every prefix drawn
// afresh (many distinct prefixes; keep n small).
std::vector<gdoi::AclEntry> random_acl(Rng& rng, std::size_t n, std::uint8_t family, std::size_t pool = 40);

// A GET VPN style ACL of exactly n entries: infrastructure denies (GDOI,
// BGP, SSH, OSPF, ICMP), then site-to-site permits between site networks
// (IPv4 10.S.0.0/16, IPv6 2001:db8:S::/48), every tenth pair an SNMP
// exemption between the sites' first /24 (/64) and every tenth a voice
// permit from one host. site_host(S, family, h) is host h of site S
// (h = 0: the site's network address).
std::vector<gdoi::AclEntry> site_acl(std::size_t n, std::uint8_t family = 4);
std::string site_host(std::size_t site, std::uint8_t family, unsigned host);

// What a test frame carries; frame() builds it, fields() says what the
// classifier must see in it.
struct FrameSpec {
  std::uint8_t family = 4;
  std::array<std::uint8_t, 16> source{}, destination{};
  std::uint8_t protocol = 6;
  std::uint16_t source_port = 0, destination_port = 0;
  bool later_fragment = false;   // a non-initial fragment: no ports on the wire
  bool first_fragment = false;   // a first fragment: ports there, more fragments follow
  bool truncated_l4 = false;     // the TCP/UDP header cut after 2 bytes
  unsigned vlan_tags = 0;        // 0..2 802.1Q tags
  unsigned ipv4_option_words = 0;  // 4-byte IPv4 options (NOPs)
  unsigned ipv6_extensions = 0;  // IPv6 destination-options headers before the upper layer
};

std::vector<std::uint8_t> frame(const FrameSpec& spec);
datapath::PacketFields fields(const FrameSpec& spec);

// A frame for `p` (protocol and ports as given; an unseen protocol is
// produced with more IPv6 extension headers than the parser follows, or
// not at all for IPv4, where it is replaced by a seen one).
FrameSpec spec_for(const datapath::PacketFields& p, Rng& rng);

// A packet near the entries of `acl`: addresses inside or just outside
// their prefixes, ports at range edges, now and then unseen fields.
datapath::PacketFields random_packet(Rng& rng, const std::vector<gdoi::AclEntry>& acl, std::uint8_t family);

// "10.1.2.3" / "2001:db8::1" as classifier bytes; aborts on a bad literal.
std::array<std::uint8_t, 16> addr(const std::string& text);
datapath::PacketFields packet(const std::string& src, const std::string& dst, std::uint32_t protocol,
                              std::uint32_t sport = COVEY_PORT_UNSEEN, std::uint32_t dport = COVEY_PORT_UNSEEN);

}  // namespace covey::testing
