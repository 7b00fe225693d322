#include "acl_samples.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <variant>

#include "config/policy_syntax.h"

namespace covey::testing {

using datapath::PacketFields;
using gdoi::AclEntry;
using gdoi::PortRange;
using gdoi::Prefix;

namespace {

std::uint64_t pick(Rng& rng, std::uint64_t n) { return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng); }
bool chance(Rng& rng, double p) { return std::bernoulli_distribution(p)(rng); }

unsigned width(std::uint8_t family) { return family == 6 ? 128 : 32; }

Prefix masked(std::uint8_t family, std::array<std::uint8_t, 16> a, unsigned length) {
  Prefix p;
  p.family = family;
  p.length = static_cast<std::uint8_t>(length);
  for (unsigned i = 0; i < 16; ++i) {
    const unsigned bits = length > i * 8 ? std::min(8u, length - i * 8) : 0;
    a[i] &= static_cast<std::uint8_t>(0xff00u >> bits);
  }
  if (family == 4) std::fill(a.begin() + 4, a.end(), 0);
  p.address = a;
  return p;
}

std::array<std::uint8_t, 16> random_address(Rng& rng, std::uint8_t family) {
  std::array<std::uint8_t, 16> a{};
  for (unsigned i = 0; i < width(family) / 8; ++i) a[i] = static_cast<std::uint8_t>(pick(rng, 256));
  return a;
}

// Prefixes that nest: a few roots, each refined step by step, so that a
// random entry's prefix often contains another's, as in real address plans.
std::vector<Prefix> prefix_pool(Rng& rng, std::uint8_t family, std::size_t n) {
  static const unsigned v4[] = {8, 12, 16, 20, 24, 27, 30, 32};
  static const unsigned v6[] = {16, 29, 32, 48, 56, 64, 97, 120, 127, 128};
  std::vector<Prefix> pool{masked(family, {}, 0)};
  while (pool.size() < n) {
    auto base = random_address(rng, family);
    if (family == 4) base[0] = static_cast<std::uint8_t>(chance(rng, 0.7) ? 10 : base[0]);
    const std::size_t steps = family == 6 ? std::size(v6) : std::size(v4);
    for (std::size_t s = 0; s < steps && pool.size() < n; ++s) {
      if (!chance(rng, 0.7)) continue;
      const unsigned len = family == 6 ? v6[s] : v4[s];
      // Siblings too: flip a bit just inside the prefix.
      auto a = base;
      if (chance(rng, 0.3)) a[(len - 1) / 8] ^= static_cast<std::uint8_t>(0x80u >> ((len - 1) % 8));
      pool.push_back(masked(family, a, len));
    }
  }
  return pool;
}

PortRange random_ports(Rng& rng, const std::vector<std::uint16_t>& edges) {
  const auto e = [&] { return edges[pick(rng, edges.size())]; };
  switch (pick(rng, 6)) {
    case 0:
    case 1: return {};
    case 2: {
      const std::uint16_t p = e();
      return {p, p};
    }
    case 3: return {0, static_cast<std::uint16_t>(std::max<int>(e(), 1) - 1)};                   // lt
    case 4: return {static_cast<std::uint16_t>(std::min<int>(e(), 65534) + 1), 65535};          // gt
    default: {
      std::uint16_t a = e(), b = e();
      if (a > b) std::swap(a, b);
      return {a, b};
    }
  }
}

std::uint8_t random_protocol(Rng& rng, std::uint8_t family) {
  static const std::uint8_t common[] = {0, 0, 0, 6, 6, 6, 17, 17, 17, 1, 50, 47, 89};
  std::uint8_t p = common[pick(rng, std::size(common))];
  if (chance(rng, 0.05)) p = static_cast<std::uint8_t>(pick(rng, 256));
  if (family == 6 && p == 1) p = 58;
  return p;
}

AclEntry random_entry(Rng& rng, std::uint8_t family, const std::vector<Prefix>& pool,
                      const std::vector<std::uint16_t>& edges) {
  AclEntry e;
  e.action = chance(rng, 0.6) ? AclEntry::Action::Permit : AclEntry::Action::Deny;
  e.protocol = random_protocol(rng, family);
  auto prefix = [&] {
    if (!pool.empty()) return pool[pick(rng, pool.size())];
    if (chance(rng, 0.15)) return masked(family, {}, 0);
    return masked(family, random_address(rng, family), static_cast<unsigned>(pick(rng, width(family) + 1)));
  };
  e.source = prefix();
  e.destination = prefix();
  if (e.protocol == 6 || e.protocol == 17) {
    e.source_port = random_ports(rng, edges);
    e.destination_port = random_ports(rng, edges);
  }
  return e;
}

std::uint16_t checksum(const std::uint8_t* p, std::size_t n) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i + 1 < n; i += 2) sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

void put16(std::vector<std::uint8_t>& b, std::size_t at, unsigned v) {
  b[at] = static_cast<std::uint8_t>(v >> 8);
  b[at + 1] = static_cast<std::uint8_t>(v);
}

}  // namespace

std::vector<AclEntry> acl_from(const std::vector<std::string>& lines) {
  std::vector<AclEntry> acl;
  for (std::string line : lines) {
    // "v6: permit ip any any": Cisco's parser takes "any any" as IPv4.
    const bool v6 = line.rfind("v6:", 0) == 0;
    if (v6) line.erase(0, 3);
    auto parsed = config::parse_acl_entry(line);
    if (auto* err = std::get_if<config::SyntaxError>(&parsed))
      throw std::invalid_argument("test ACL line \"" + line + "\": " + err->message);
    AclEntry e = std::get<AclEntry>(parsed);
    if (v6) {
      if (e.source.is_any()) e.source.family = 6;
      if (e.destination.is_any()) e.destination.family = 6;
      if (e.protocol == 1) e.protocol = 58;
    }
    acl.push_back(e);
  }
  return acl;
}

std::vector<AclEntry> random_acl(Rng& rng, std::size_t n, std::uint8_t family, std::size_t pool) {
  std::vector<Prefix> pool4, pool6;
  if (pool) {
    pool4 = prefix_pool(rng, 4, pool);
    pool6 = prefix_pool(rng, 6, pool);
  }
  std::vector<std::uint16_t> edges = {0, 1, 22, 53, 80, 443, 848, 1023, 1024, 4500, 65534, 65535};
  for (int i = 0; i < 12; ++i) edges.push_back(static_cast<std::uint16_t>(pick(rng, 65536)));
  std::vector<AclEntry> acl;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t f = family ? family : (chance(rng, 0.5) ? 4 : 6);
    acl.push_back(random_entry(rng, f, f == 6 ? pool6 : pool4, edges));
  }
  return acl;
}

std::string site_host(std::size_t site, std::uint8_t family, unsigned host) {
  if (family == 6) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "2001:db8:%zx::%x", site, host);
    return buf;
  }
  return "10." + std::to_string(site % 250) + "." + std::to_string(site / 250) + "." + std::to_string(host);
}

std::vector<AclEntry> site_acl(std::size_t n, std::uint8_t family) {
  const std::string v6 = family == 6 ? "v6: " : "";
  std::vector<std::string> lines = {
      v6 + "deny udp any eq 848 any eq 848",  // GDOI itself
      v6 + "deny tcp any any eq 179",         // BGP with the provider
      v6 + "deny tcp any eq 179 any",
      v6 + "deny tcp any any eq 22",          // management in clear to the routers
      v6 + "deny 89 any any",                 // OSPF
      v6 + "deny icmp any any",
  };
  lines.resize(std::min(n, lines.size()));
  // Sites in a square grid, enough pairs for the rest.
  const std::size_t rest = n - lines.size();
  std::size_t sites = 1;
  while (sites * sites < rest) ++sites;
  const std::string net = family == 6 ? "/48" : "/16", subnet = family == 6 ? "/64" : "/24";
  std::size_t i = 0;
  for (std::size_t s = 0; s < sites && i < rest; ++s) {
    for (std::size_t d = 0; d < sites && i < rest; ++d, ++i) {
      const std::string src = site_host(s, family, 0), dst = site_host(d, family, 0);
      if (i % 10 == 3) {
        lines.push_back("deny udp " + src + subnet + " " + dst + subnet + " eq snmp");
      } else if (i % 10 == 7) {
        lines.push_back("permit udp host " + site_host(s, family, 1) + " " + dst + net + " range 16384 32767");
      } else {
        lines.push_back("permit ip " + src + net + " " + dst + net);
      }
    }
  }
  return acl_from(lines);
}

std::array<std::uint8_t, 16> addr(const std::string& text) {
  std::array<std::uint8_t, 16> a{};
  if (inet_pton(AF_INET, text.c_str(), a.data()) == 1) return a;
  if (inet_pton(AF_INET6, text.c_str(), a.data()) == 1) return a;
  std::fprintf(stderr, "bad address literal in a test: %s\n", text.c_str());
  std::abort();
}

PacketFields packet(const std::string& src, const std::string& dst, std::uint32_t protocol, std::uint32_t sport,
                    std::uint32_t dport) {
  PacketFields p;
  p.family = src.find(':') == std::string::npos ? 4 : 6;
  p.source = addr(src);
  p.destination = addr(dst);
  p.protocol = protocol;
  p.source_port = sport;
  p.destination_port = dport;
  return p;
}

std::vector<std::uint8_t> frame(const FrameSpec& s) {
  std::vector<std::uint8_t> b(12, 0);
  b[0] = 0x02;  // locally administered MACs
  b[6] = 0x02;
  b[11] = 1;
  auto push16 = [&](unsigned v) {
    b.push_back(static_cast<std::uint8_t>(v >> 8));
    b.push_back(static_cast<std::uint8_t>(v));
  };
  for (unsigned i = 0; i < s.vlan_tags; ++i) {
    push16(i == 0 && s.vlan_tags == 2 ? 0x88a8 : 0x8100);
    push16(100 + i);
  }
  push16(s.family == 6 ? 0x86dd : 0x0800);

  const bool l4 = s.protocol == 6 || s.protocol == 17;
  std::vector<std::uint8_t> upper;
  if (!s.later_fragment) {
    if (l4) {
      upper.assign(s.protocol == 6 ? 20 : 8, 0);
      put16(upper, 0, s.source_port);
      put16(upper, 2, s.destination_port);
      if (s.protocol == 6) upper[12] = 0x50;
      else put16(upper, 4, static_cast<unsigned>(upper.size()) + 4);
      if (s.truncated_l4) upper.resize(2);
    }
  }
  if (!s.truncated_l4) upper.insert(upper.end(), 4, 0xab);  // payload; a cut header ends the packet

  const std::size_t l3 = b.size();
  if (s.family == 4) {
    const std::size_t hlen = 20 + 4 * s.ipv4_option_words;
    b.resize(l3 + hlen, 0);
    b[l3] = static_cast<std::uint8_t>(0x40 | (hlen / 4));
    put16(b, l3 + 2, static_cast<unsigned>(hlen + upper.size()));
    put16(b, l3 + 4, 0x1234);
    unsigned frag = 0;
    if (s.later_fragment) frag = 185;      // offset 1480 bytes
    if (s.first_fragment) frag |= 0x2000;  // more fragments
    put16(b, l3 + 6, frag);
    b[l3 + 8] = 64;
    b[l3 + 9] = s.protocol;
    std::copy_n(s.source.begin(), 4, b.begin() + static_cast<std::ptrdiff_t>(l3 + 12));
    std::copy_n(s.destination.begin(), 4, b.begin() + static_cast<std::ptrdiff_t>(l3 + 16));
    std::fill(b.begin() + static_cast<std::ptrdiff_t>(l3 + 20), b.end(), 1);  // NOP options
    put16(b, l3 + 10, checksum(b.data() + l3, hlen));
  } else {
    // Extension headers: destination options (8 bytes of PadN), then the
    // fragment header if fragmented.
    std::vector<std::uint8_t> ext;
    std::uint8_t first_next = s.protocol;
    const unsigned headers = s.ipv6_extensions + (s.later_fragment || s.first_fragment ? 1 : 0);
    std::vector<std::uint8_t> kinds;
    for (unsigned i = 0; i < s.ipv6_extensions; ++i) kinds.push_back(60);
    if (s.later_fragment || s.first_fragment) kinds.push_back(44);
    if (headers) first_next = kinds[0];
    for (unsigned i = 0; i < headers; ++i) {
      const std::uint8_t next = i + 1 < headers ? kinds[i + 1] : s.protocol;
      if (kinds[i] == 44) {
        const unsigned off = (s.later_fragment ? 1480u : 0u) | (s.first_fragment ? 1u : 0u);
        ext.insert(ext.end(), {next, 0, static_cast<std::uint8_t>(off >> 8), static_cast<std::uint8_t>(off), 0, 0, 0,
                               1});
      } else {
        ext.insert(ext.end(), {next, 0, 1, 4, 0, 0, 0, 0});  // PadN of 4
      }
    }
    b.resize(l3 + 40, 0);
    b[l3] = 0x60;
    put16(b, l3 + 4, static_cast<unsigned>(ext.size() + upper.size()));
    b[l3 + 6] = first_next;
    b[l3 + 7] = 64;
    std::copy_n(s.source.begin(), 16, b.begin() + static_cast<std::ptrdiff_t>(l3 + 8));
    std::copy_n(s.destination.begin(), 16, b.begin() + static_cast<std::ptrdiff_t>(l3 + 24));
    b.insert(b.end(), ext.begin(), ext.end());
  }
  b.insert(b.end(), upper.begin(), upper.end());
  return b;
}

PacketFields fields(const FrameSpec& s) {
  PacketFields p;
  p.family = s.family;
  p.source = s.source;
  p.destination = s.destination;
  if (s.family == 4) std::fill(p.source.begin() + 4, p.source.end(), 0);
  if (s.family == 4) std::fill(p.destination.begin() + 4, p.destination.end(), 0);
  const unsigned headers = s.ipv6_extensions + (s.later_fragment || s.first_fragment ? 1 : 0);
  p.protocol = (s.family == 6 && headers > 6) ? COVEY_PROTO_UNSEEN : s.protocol;
  const bool ports = (s.protocol == 6 || s.protocol == 17) && p.protocol != COVEY_PROTO_UNSEEN &&
                     !s.later_fragment && !s.truncated_l4;
  p.source_port = ports ? s.source_port : COVEY_PORT_UNSEEN;
  p.destination_port = ports ? s.destination_port : COVEY_PORT_UNSEEN;
  return p;
}

FrameSpec spec_for(const PacketFields& p, Rng& rng) {
  FrameSpec s;
  s.family = p.family;
  s.source = p.source;
  s.destination = p.destination;
  s.vlan_tags = static_cast<unsigned>(pick(rng, 10) == 0 ? 1 + pick(rng, 2) : 0);
  if (p.family == 4) s.ipv4_option_words = static_cast<unsigned>(pick(rng, 8) == 0 ? 1 + pick(rng, 10) : 0);
  if (p.protocol == COVEY_PROTO_UNSEEN) {
    if (p.family == 6) {
      s.protocol = chance(rng, 0.5) ? 6 : 17;
      s.ipv6_extensions = 7;
    } else {
      s.protocol = 6;
    }
  } else {
    s.protocol = static_cast<std::uint8_t>(p.protocol);
    if (p.family == 6) s.ipv6_extensions = static_cast<unsigned>(pick(rng, 6) == 0 ? 1 + pick(rng, 4) : 0);
  }
  const bool l4 = s.protocol == 6 || s.protocol == 17;
  if (l4 && p.source_port != COVEY_PORT_UNSEEN) {
    s.source_port = static_cast<std::uint16_t>(p.source_port);
    s.destination_port = static_cast<std::uint16_t>(p.destination_port);
    s.first_fragment = pick(rng, 20) == 0;
  } else if (l4) {
    if (chance(rng, 0.5)) s.later_fragment = true;
    else s.truncated_l4 = true;
  }
  return s;
}

PacketFields random_packet(Rng& rng, const std::vector<AclEntry>& acl, std::uint8_t family) {
  PacketFields p;
  p.family = family;
  const AclEntry* near = nullptr;
  if (!acl.empty() && chance(rng, 0.8)) {
    for (int tries = 0; tries < 8 && !near; ++tries) {
      const AclEntry& e = acl[pick(rng, acl.size())];
      if (e.source.family == family) near = &e;
    }
  }
  auto inside = [&](const Prefix& pre) {
    auto a = random_address(rng, family);
    for (unsigned i = 0; i < pre.length; ++i) {
      const std::uint8_t bit = static_cast<std::uint8_t>(0x80u >> (i % 8));
      a[i / 8] = static_cast<std::uint8_t>((a[i / 8] & ~bit) | (pre.address[i / 8] & bit));
    }
    // Now and then just outside: the last bit of the prefix flipped.
    if (pre.length && chance(rng, 0.15))
      a[(pre.length - 1) / 8] ^= static_cast<std::uint8_t>(0x80u >> ((pre.length - 1) % 8));
    return a;
  };
  auto port_near = [&](const PortRange& r) -> std::uint32_t {
    const std::uint32_t edges[] = {r.first, r.last, r.first ? r.first - 1u : 0u,
                                   r.last < 65535 ? r.last + 1u : 65535u};
    return chance(rng, 0.6) ? edges[pick(rng, 4)] : static_cast<std::uint32_t>(pick(rng, 65536));
  };
  if (near) {
    p.source = inside(near->source);
    p.destination = inside(near->destination);
    p.protocol = near->protocol && chance(rng, 0.85) ? near->protocol : random_protocol(rng, family);
    if (p.protocol == 0) p.protocol = chance(rng, 0.5) ? 6 : 17;
    p.source_port = port_near(near->source_port);
    p.destination_port = port_near(near->destination_port);
  } else {
    p.source = random_address(rng, family);
    p.destination = random_address(rng, family);
    if (family == 4 && chance(rng, 0.5)) p.source[0] = 10;
    p.protocol = random_protocol(rng, family);
    if (p.protocol == 0) p.protocol = 6;
    p.source_port = static_cast<std::uint32_t>(pick(rng, 65536));
    p.destination_port = static_cast<std::uint32_t>(pick(rng, 65536));
  }
  if (p.protocol != 6 && p.protocol != 17) p.source_port = p.destination_port = COVEY_PORT_UNSEEN;
  if (chance(rng, 0.08)) p.source_port = p.destination_port = COVEY_PORT_UNSEEN;
  if (chance(rng, 0.03)) {
    p.protocol = COVEY_PROTO_UNSEEN;
    p.source_port = p.destination_port = COVEY_PORT_UNSEEN;
  }
  return p;
}

}  // namespace covey::testing
