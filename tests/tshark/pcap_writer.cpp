#include "pcap_writer.h"

#include <fstream>
#include <stdexcept>

namespace covey::test {
namespace {

void put16(Bytes& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}
void put32(Bytes& b, std::uint32_t v) {
  put16(b, static_cast<std::uint16_t>(v >> 16));
  put16(b, static_cast<std::uint16_t>(v));
}
// pcap's own headers are in the writer's byte order; we write little-endian.
void put32le(Bytes& b, std::uint32_t v) {
  for (int s = 0; s < 32; s += 8) b.push_back(static_cast<std::uint8_t>(v >> s));
}
void put16le(Bytes& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v));
  b.push_back(static_cast<std::uint8_t>(v >> 8));
}

// RFC 1071 one's-complement sum, seeded with `sum` (for the UDP pseudo-header).
std::uint16_t inet_checksum(ByteView data, std::uint32_t sum) {
  for (std::size_t i = 0; i + 1 < data.size(); i += 2) sum += std::uint32_t{data[i]} << 8 | data[i + 1];
  if (data.size() % 2) sum += std::uint32_t{data.back()} << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

}  // namespace

Bytes ethernet_udp_frame(const UdpEndpoint& src, const UdpEndpoint& dst, ByteView payload) {
  Bytes f = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};  // dst MAC, src MAC (locally administered)
  if (src.v6) {
    put16(f, 0x86dd);
    const auto udp_len = static_cast<std::uint16_t>(8 + payload.size());
    put32(f, 0x60000000);  // version 6, no traffic class or flow label
    put16(f, udp_len);
    put16(f, 0x1140);  // UDP, hop limit 64
    append(f, src.ip6);
    append(f, dst.ip6);
    const std::size_t udp_at = f.size();
    put16(f, src.port);
    put16(f, dst.port);
    put16(f, udp_len);
    put16(f, 0);
    append(f, payload);
    // RFC 8200 8.1: the pseudo-header's addresses, length and next header.
    std::uint32_t pseudo = 17u + udp_len;
    for (std::size_t i = 0; i < 16; i += 2)
      pseudo += (std::uint32_t{src.ip6[i]} << 8 | src.ip6[i + 1]) +
                (std::uint32_t{dst.ip6[i]} << 8 | dst.ip6[i + 1]);
    std::uint16_t udp_sum = inet_checksum(ByteView(f).subspan(udp_at), pseudo);
    if (udp_sum == 0) udp_sum = 0xffff;
    f[udp_at + 6] = static_cast<std::uint8_t>(udp_sum >> 8);
    f[udp_at + 7] = static_cast<std::uint8_t>(udp_sum);
    return f;
  }
  put16(f, 0x0800);
  const std::size_t ip_at = f.size();
  const auto udp_len = static_cast<std::uint16_t>(8 + payload.size());
  put16(f, 0x4500);
  put16(f, static_cast<std::uint16_t>(20 + udp_len));
  put32(f, 0x00004000);  // ID 0, DF
  put16(f, 0x4011);      // TTL 64, UDP
  put16(f, 0);           // checksum, below
  put32(f, src.ip);
  put32(f, dst.ip);
  const std::uint16_t ip_sum = inet_checksum(ByteView(f).subspan(ip_at, 20), 0);
  f[ip_at + 10] = static_cast<std::uint8_t>(ip_sum >> 8);
  f[ip_at + 11] = static_cast<std::uint8_t>(ip_sum);

  const std::size_t udp_at = f.size();
  put16(f, src.port);
  put16(f, dst.port);
  put16(f, udp_len);
  put16(f, 0);
  append(f, payload);
  std::uint32_t pseudo = (src.ip >> 16) + (src.ip & 0xffff) + (dst.ip >> 16) + (dst.ip & 0xffff) + 17 + udp_len;
  std::uint16_t udp_sum = inet_checksum(ByteView(f).subspan(udp_at), pseudo);
  if (udp_sum == 0) udp_sum = 0xffff;  // RFC 768: zero means "no checksum"
  f[udp_at + 6] = static_cast<std::uint8_t>(udp_sum >> 8);
  f[udp_at + 7] = static_cast<std::uint8_t>(udp_sum);
  return f;
}

void write_pcap_frames(const std::string& path, const std::vector<Bytes>& frames) {
  Bytes out;
  put32le(out, 0xa1b2c3d4);  // microsecond pcap
  put16le(out, 2);
  put16le(out, 4);
  put32le(out, 0);
  put32le(out, 0);
  put32le(out, 65535);  // snaplen
  put32le(out, 1);      // LINKTYPE_ETHERNET
  std::uint32_t t = 1700000000;
  for (const auto& f : frames) {
    put32le(out, t++);
    put32le(out, 0);
    put32le(out, static_cast<std::uint32_t>(f.size()));
    put32le(out, static_cast<std::uint32_t>(f.size()));
    append(out, f);
  }
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size()));
  if (!file) throw std::runtime_error("cannot write " + path);
}

void write_pcap(const std::string& path, const std::vector<PcapRecord>& records) {
  std::vector<Bytes> frames;
  for (const auto& r : records) frames.push_back(ethernet_udp_frame(r.src, r.dst, r.payload));
  write_pcap_frames(path, frames);
}

}  // namespace covey::test
