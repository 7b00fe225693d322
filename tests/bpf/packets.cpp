#include "packets.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstdlib>

namespace covey::testing {

namespace {

void put16(Bytes& b, std::size_t at, unsigned v) {
  b[at] = static_cast<std::uint8_t>(v >> 8);
  b[at + 1] = static_cast<std::uint8_t>(v);
}

void push16(Bytes& b, unsigned v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}

void push32(Bytes& b, std::uint32_t v) {
  push16(b, v >> 16);
  push16(b, v & 0xffff);
}

std::uint32_t sum16(const std::uint8_t* p, std::size_t n, std::uint32_t sum = 0) {
  for (std::size_t i = 0; i + 1 < n; i += 2) sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2) sum += static_cast<std::uint32_t>(p[n - 1] << 8);
  return sum;
}

std::uint16_t fold(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

Bytes ethernet(const Mac& dmac, const Mac& smac, unsigned vlan_tags, std::uint16_t type) {
  Bytes b(dmac.begin(), dmac.end());
  b.insert(b.end(), smac.begin(), smac.end());
  for (unsigned i = 0; i < vlan_tags; ++i) {
    push16(b, 0x8100);
    push16(b, 100 + i);
  }
  push16(b, type);
  return b;
}

std::uint32_t tcp_sum(const Bytes& f, std::size_t l3) {
  const std::size_t ihl = (f[l3] & 0xf) * 4u;
  const std::size_t total = static_cast<std::size_t>(f[l3 + 2] << 8 | f[l3 + 3]);
  const std::size_t len = total - ihl;
  std::uint32_t sum = sum16(&f[l3 + 12], 8);
  sum += 6 + static_cast<std::uint32_t>(len);
  return sum16(&f[l3 + ihl], len, sum);
}

// The one's complement sum of an IPv6 upper-layer message from `l4` to
// the end, with its pseudo-header (RFC 8200 8.1).
std::uint32_t upper6_sum(const Bytes& f, std::size_t l4, std::uint8_t protocol) {
  const std::size_t len = f.size() - l4;
  std::uint32_t sum = sum16(&f[14 + 8], 32);
  sum += static_cast<std::uint32_t>(len >> 16) + static_cast<std::uint32_t>(len & 0xffff) + protocol;
  return sum16(&f[l4], len, sum);
}

}  // namespace

std::array<std::uint8_t, 4> ip4(const std::string& text) {
  std::array<std::uint8_t, 4> a{};
  if (inet_pton(AF_INET, text.c_str(), a.data()) != 1) std::abort();
  return a;
}

std::array<std::uint8_t, 16> ip6(const std::string& text) {
  std::array<std::uint8_t, 16> a{};
  if (inet_pton(AF_INET6, text.c_str(), a.data()) != 1) std::abort();
  return a;
}

Bytes frame(const Ipv4Frame& f) {
  Bytes b = ethernet(f.dmac, f.smac, f.vlan_tags, 0x0800);
  const std::size_t l3 = b.size();
  const std::size_t hlen = 20 + f.options.size();
  b.resize(l3 + 20, 0);
  b[l3] = static_cast<std::uint8_t>(0x40 | (hlen / 4));
  put16(b, l3 + 2, static_cast<unsigned>(hlen + f.payload.size()));
  put16(b, l3 + 4, f.id);
  put16(b, l3 + 6, f.frag);
  b[l3 + 8] = f.ttl;
  b[l3 + 9] = f.protocol;
  for (int i = 0; i < 4; ++i) {
    b[l3 + 12 + i] = f.src[i];
    b[l3 + 16 + i] = f.dst[i];
  }
  b.insert(b.end(), f.options.begin(), f.options.end());
  put16(b, l3 + 10, fold(sum16(&b[l3], hlen)));
  b.insert(b.end(), f.payload.begin(), f.payload.end());
  if (f.protocol == 6 && (f.frag & 0x1fff) == 0 && f.payload.size() >= 20) {
    const std::size_t at = l3 + hlen + 16;
    put16(b, at, 0);
    put16(b, at, fold(tcp_sum(b, l3)));
  }
  return b;
}

Bytes frame(const Ipv6Frame& f) {
  Bytes b = ethernet(f.dmac, f.smac, 0, 0x86dd);
  const std::size_t l3 = b.size();
  b.resize(l3 + 40, 0);
  b[l3] = 0x60;
  put16(b, l3 + 4, static_cast<unsigned>(f.payload.size()));
  b[l3 + 6] = f.next;
  b[l3 + 7] = f.hop_limit;
  for (int i = 0; i < 16; ++i) {
    b[l3 + 8 + i] = f.src[i];
    b[l3 + 24 + i] = f.dst[i];
  }
  b.insert(b.end(), f.payload.begin(), f.payload.end());
  std::uint8_t protocol = 0;
  bool later = false;
  const std::size_t l4 = ipv6_upper(b, &protocol, &later);
  const std::size_t field = protocol == 6 ? 16 : protocol == 58 ? 2 : 0;
  if (!later && field && b.size() >= l4 + field + 2) {
    put16(b, l4 + field, 0);
    put16(b, l4 + field, fold(upper6_sum(b, l4, protocol)));
  }
  return b;
}

Bytes hop_by_hop(std::uint8_t next, std::size_t bytes) {
  Bytes b{next, static_cast<std::uint8_t>(bytes / 8 - 1), 5, 2, 0, 0};  // Router Alert: MLD
  b.push_back(1);                                                       // PadN
  b.push_back(static_cast<std::uint8_t>(bytes - 8));
  b.resize(bytes, 0);
  return b;
}

Bytes dest_options(std::uint8_t next) {
  return {next, 0, 1, 4, 0, 0, 0, 0};
}

Bytes routing(std::uint8_t next) {
  return {next, 0, 253, 0, 0, 0, 0, 0};
}

Bytes fragment6(std::uint8_t next, std::uint16_t offset, bool more, std::uint32_t id) {
  Bytes b{next, 0};
  push16(b, static_cast<unsigned>(offset | (more ? 1 : 0)));
  push32(b, id);
  return b;
}

Bytes stamp6(std::uint8_t next, std::uint16_t sid, std::uint32_t pseudotime, std::uint32_t counter,
             std::uint16_t segment) {
  Bytes b{next, 1, 0x1e, 12};
  push16(b, sid);
  push32(b, pseudotime);
  push32(b, counter);
  push16(b, segment);
  return b;
}

std::size_t ipv6_upper(const Bytes& f, std::uint8_t* protocol, bool* later_fragment) {
  constexpr std::size_t l3 = 14;
  std::size_t at = l3 + 40;
  std::uint8_t next = f[l3 + 6];
  bool later = false;
  while ((next == 0 || next == 43 || next == 60 || next == 44) && at + 8 <= f.size()) {
    const std::uint8_t following = f[at];
    if (next == 44) {
      later |= (f[at + 2] << 8 | f[at + 3]) & 0xfff8;
      at += 8;
    } else {
      at += (f[at + 1] + 1u) * 8;
    }
    next = following;
  }
  *protocol = next;
  if (later_fragment) *later_fragment = later;
  return at;
}

bool tcp6_checksum_ok(const Bytes& f) {
  std::uint8_t protocol = 0;
  const std::size_t l4 = ipv6_upper(f, &protocol);
  return protocol == 6 && fold(upper6_sum(f, l4, 6)) == 0;
}

bool icmp6_checksum_ok(const Bytes& f) {
  return f.size() >= 14 + 40 + 8 && f[14 + 6] == 58 && fold(upper6_sum(f, 14 + 40, 58)) == 0;
}

Bytes udp(std::uint16_t sport, std::uint16_t dport, std::size_t data_len) {
  Bytes b;
  push16(b, sport);
  push16(b, dport);
  push16(b, static_cast<unsigned>(8 + data_len));
  push16(b, 0);  // no checksum (IPv4)
  for (std::size_t i = 0; i < data_len; ++i) b.push_back(static_cast<std::uint8_t>(0x30 + i % 64));
  return b;
}

Bytes tcp(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags, const Bytes& options,
          std::size_t data_len) {
  Bytes opts = options;
  while (opts.size() % 4) opts.push_back(1);  // NOP
  Bytes b;
  push16(b, sport);
  push16(b, dport);
  push32(b, 1000);
  push32(b, (flags & 0x10) ? 2000 : 0);
  b.push_back(static_cast<std::uint8_t>((5 + opts.size() / 4) << 4));
  b.push_back(flags);
  push16(b, 64240);
  push16(b, 0);  // checksum: frame() fills it
  push16(b, 0);
  b.insert(b.end(), opts.begin(), opts.end());
  for (std::size_t i = 0; i < data_len; ++i) b.push_back(static_cast<std::uint8_t>(0x41 + i % 26));
  return b;
}

Bytes mss_option(std::uint16_t mss) {
  return {2, 4, static_cast<std::uint8_t>(mss >> 8), static_cast<std::uint8_t>(mss)};
}

Bytes esp(std::uint32_t spi, std::uint32_t seq, std::size_t data_len) {
  Bytes b;
  push32(b, spi);
  push32(b, seq);
  for (std::size_t i = 0; i < data_len; ++i) b.push_back(static_cast<std::uint8_t>(0xc0 ^ i));
  return b;
}

Bytes stamp(std::uint16_t sid, std::uint32_t pseudotime, std::uint32_t counter) {
  Bytes b{0x1e, 12};
  push16(b, sid);
  push32(b, pseudotime);
  push32(b, counter);
  return b;
}

bool ipv4_checksum_ok(const Bytes& f, std::size_t l3) {
  if (f.size() < l3 + 20) return false;
  const std::size_t hlen = (f[l3] & 0xf) * 4u;
  return f.size() >= l3 + hlen && fold(sum16(&f[l3], hlen)) == 0;
}

bool tcp_checksum_ok(const Bytes& f, std::size_t l3) {
  return fold(tcp_sum(f, l3)) == 0;
}

bool icmp_checksum_ok(const Bytes& f, std::size_t l3) {
  if (f.size() < l3 + 20) return false;
  const std::size_t ihl = (f[l3] & 0xf) * 4u;
  const std::size_t total = static_cast<std::size_t>(f[l3 + 2] << 8 | f[l3 + 3]);
  return f.size() >= l3 + total && total >= ihl + 8 && fold(sum16(&f[l3 + ihl], total - ihl)) == 0;
}

void fill_pending_checksum(Bytes& f, std::size_t start, std::size_t offset) {
  const std::uint16_t c = fold(sum16(&f[start], f.size() - start));
  put16(f, start + offset, c == 0 ? 0xffff : c);
}

// The quote with its transport checksum field (at `field`, the transport
// header at `start`) set to the one value a device filling in a pending
// checksum leaves as it is, found by trying all 65,536: the reference the
// programs' closed form (bpf/pmtu.h, covey_quote_fix) is held to.
Bytes neutral_quote(Bytes quoted, std::size_t start, std::size_t field) {
  int found = 0;
  Bytes fixed;
  for (unsigned v = 0; v <= 0xffff; ++v) {
    Bytes q = quoted;
    put16(q, field, v);
    Bytes filled = q;
    fill_pending_checksum(filled, start, field - start);
    if (filled == q) {
      fixed = q;
      ++found;
    }
  }
  if (found != 1) std::abort();
  return fixed;
}

Bytes frag_needed(const Bytes& original, std::uint16_t mtu, const Mac& dmac, const Mac& smac) {
  constexpr std::size_t l3 = 14;
  const std::size_t ihl = (original[l3] & 0xf) * 4u;
  const std::uint8_t protocol = original[l3 + 9];
  const std::size_t quote = protocol == 6 ? 20 : 8;
  Bytes quoted(original.begin() + l3, original.begin() + static_cast<std::ptrdiff_t>(l3 + ihl + quote));
  if (protocol == 6 || protocol == 17) {
    quoted = neutral_quote(std::move(quoted), ihl, ihl + (protocol == 6 ? 16 : 6));
  }
  Bytes b = ethernet(dmac, smac, 0, 0x0800);
  b.resize(l3 + 28, 0);
  b[l3] = 0x45;
  b[l3 + 1] = 0xc0;
  put16(b, l3 + 2, static_cast<unsigned>(28 + quoted.size()));
  put16(b, l3 + 6, 0x4000);
  b[l3 + 8] = 64;
  b[l3 + 9] = 1;
  for (int i = 0; i < 4; ++i) {
    b[l3 + 12 + i] = original[l3 + 16 + i];
    b[l3 + 16 + i] = original[l3 + 12 + i];
  }
  put16(b, l3 + 10, fold(sum16(&b[l3], 20)));
  b[l3 + 20] = 3;
  b[l3 + 21] = 4;
  put16(b, l3 + 26, mtu);
  b.insert(b.end(), quoted.begin(), quoted.end());
  put16(b, l3 + 22, fold(sum16(&b[l3 + 20], b.size() - l3 - 20)));
  return b;
}

Bytes packet_too_big(const Bytes& original, std::uint32_t mtu, const Mac& dmac, const Mac& smac) {
  constexpr std::size_t l3 = 14;
  std::uint8_t protocol = 0;
  bool later = false;
  const std::size_t upper = ipv6_upper(original, &protocol, &later);
  const std::size_t chain = upper - l3;
  const std::size_t quote = !later && protocol == 6 ? 20 : 8;
  Bytes quoted(original.begin() + l3, original.begin() + static_cast<std::ptrdiff_t>(upper + quote));
  if (!later && (protocol == 6 || protocol == 17)) {
    quoted = neutral_quote(std::move(quoted), chain, chain + (protocol == 6 ? 16 : 6));
  }
  Bytes b = ethernet(dmac, smac, 0, 0x86dd);
  b.resize(l3 + 48, 0);
  b[l3] = 0x60;
  put16(b, l3 + 4, static_cast<unsigned>(8 + quoted.size()));
  b[l3 + 6] = 58;
  b[l3 + 7] = 64;
  for (int i = 0; i < 16; ++i) {
    b[l3 + 8 + i] = original[l3 + 24 + i];
    b[l3 + 24 + i] = original[l3 + 8 + i];
  }
  b[l3 + 40] = 2;
  b[l3 + 41] = 0;
  put16(b, l3 + 44, mtu >> 16);
  put16(b, l3 + 46, mtu & 0xffff);
  b.insert(b.end(), quoted.begin(), quoted.end());
  put16(b, l3 + 42, fold(upper6_sum(b, l3 + 40, 58)));
  return b;
}

std::string hex(const Bytes& b) {
  std::string s;
  char buf[4];
  for (std::size_t i = 0; i < b.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%02x", b[i]);
    s += buf;
    if (i % 2 == 1) s += ' ';
  }
  return s;
}

}  // namespace covey::testing
