// Hostile captures: truncated and bit-flipped datagrams, garbage, IP
// fragments and damaged frames. coveyctl reports each bad message with its
// frame, payload and offset, goes on with the next, and exits 0 because the
// capture itself was read to its end (README.md, "Exit status").
#include <gtest/gtest.h>

#include "corpus.h"
#include "coveyctl/decode.h"
#include "coveyctl/describe.h"
#include "coveyctl/pcap.h"
#include "pcap_writer.h"
#include "run.h"

namespace covey::test {
namespace {

using Json = nlohmann::ordered_json;
using wire::kFlagEncryption;
using wire::kHeaderSize;

Bytes message(const std::string& label) {
  for (const auto& m : corpus())
    if (m.label == label) return m.bytes();
  throw std::runtime_error(label);
}

TEST(CoveyctlMalformed, EachBadMessageReportedAndDecodingContinues) {
  const Bytes good = message("GROUPKEY-PULL msg 2");
  Bytes truncated(good.begin(), good.begin() + 100);
  truncated[26] = 0;
  truncated[27] = 100;  // header Length agrees, so the damage is found inside the SA payload
  Bytes flipped = good;
  flipped[kHeaderSize + 36 + 20 + 3] ^= 0x40;  // SA payload's Payload Length, low octet
  Bytes bad_tek = good;
  // First SA TEK's SRC ID Data Len (RFC 6407 Figure 8): find it by its known position.
  const std::size_t sa_at = kHeaderSize + 36 + 20;
  const std::size_t kek_len = 69, gap_len = 12;
  const std::size_t tek_at = sa_at + 16 + kek_len + gap_len;
  bad_tek[tek_at + 4 + 2 + 3] = 200;

  Bytes fragment = ethernet_udp_frame(kGm, kKs, good);
  fragment[14 + 6] |= 0x20;  // More Fragments

  std::vector<Bytes> frames = {
      ethernet_udp_frame(kGm, kKs, message("GROUPKEY-PULL msg 1")),
      ethernet_udp_frame(kKs, kGm, truncated),
      ethernet_udp_frame(kKs, kGm, flipped),
      ethernet_udp_frame(kKs, kGm, bad_tek),
      ethernet_udp_frame(kKs, kGm, Bytes{0xde, 0xad}),
      fragment,
      Bytes{0x00, 0x01, 0x02},  // not even Ethernet
      ethernet_udp_frame(kGm, kKs, message("GROUPKEY-PULL msg 3")),
  };
  const std::string pcap = temp_path("malformed.pcap");
  write_pcap_frames(pcap, frames);

  auto r = run(std::string(COVEYCTL) + " decode --json --pcap " + pcap);
  ASSERT_EQ(r.status, 0) << "a capture read to its end exits 0, however broken its messages";
  const auto doc = Json::parse(r.out);
  const auto& msgs = doc["messages"];
  ASSERT_EQ(msgs.size(), 7u) << "the 3-octet frame carries no IP, so it is no message";
  EXPECT_FALSE(msgs[0].contains("error"));
  EXPECT_EQ(msgs[1]["error"], "SA at offset 86: Payload Length 223 runs past the end (16 octets left)");
  EXPECT_NE(msgs[2]["error"].get<std::string>().find("SA"), std::string::npos) << msgs[2].dump();
  EXPECT_EQ(msgs[3]["error"], "SA TEK at offset " + std::to_string(tek_at + 4 + 2 + 3) +
                                  ": SRC ID Data Len 200 runs past the payload end (53 octets left)");
  EXPECT_EQ(msgs[4]["error"], "ISAKMP header at offset 0: datagram of 2 octets is shorter than the 28-octet header");
  EXPECT_EQ(msgs[5]["error"], "IPv4 fragment (ID 0), not reassembled");
  EXPECT_EQ(msgs[5]["frame"], 6);
  EXPECT_FALSE(msgs[6].contains("error")) << "decoding goes on after bad messages";
  EXPECT_EQ(msgs[6]["frame"], 8);

  auto text = run(std::string(COVEYCTL) + " decode --pcap " + pcap);
  EXPECT_EQ(text.status, 0);
  EXPECT_NE(text.out.find("#2 10.1.12.1:848 -> 10.1.23.3:848 GROUPKEY-PULL msg-id 0x1a2b3c4d\n"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("  MALFORMED: SA at offset 86: Payload Length 223"), std::string::npos) << text.out;
}

TEST(CoveyctlMalformed, UnreadableCaptureExits1) {
  const std::string path = temp_path("not_a_pcap");
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    std::fputs("not a capture", f);
    std::fclose(f);
  }
  EXPECT_EQ(run(std::string(COVEYCTL) + " decode --pcap " + path + " 2>/dev/null").status, 1);
}

// Every truncation and every single-bit flip of every corpus message, with
// and without a key for it: the decoder answers each with a report, and
// rendering it never fails. (ASan builds make this a memory-safety check.)
TEST(CoveyctlMalformed, NoInputCrashesTheDecoder) {
  coveyctl::Keylog keylog;
  keylog.keys[initiator_cookie()] = Bytes(32, 0x42);
  std::size_t decoded = 0;
  for (const auto& m : corpus()) {
    const Bytes wire = m.bytes();
    coveyctl::Decoder with_key(keylog), without;
    auto one = [&](Bytes payload, bool encrypted) {
      if (encrypted && payload.size() > 19) payload[19] |= kFlagEncryption;
      coveyctl::Datagram d{++decoded, 0, "10.1.23.3", "10.1.12.1", 848, 848, std::move(payload), {}};
      for (auto* dec : {&with_key, &without}) {
        const Json j = dec->decode(d);
        ASSERT_FALSE(coveyctl::render_text(j).empty());
        ASSERT_NO_THROW(j.dump(-1, ' ', false, Json::error_handler_t::replace));
      }
    };
    for (std::size_t n = 0; n <= wire.size(); ++n) one(Bytes(wire.begin(), wire.begin() + static_cast<std::ptrdiff_t>(n)), false);
    for (std::size_t i = 0; i < wire.size(); ++i)
      for (int bit = 0; bit < 8; ++bit) {
        Bytes f = wire;
        f[i] ^= static_cast<std::uint8_t>(1 << bit);
        one(f, false);
        one(f, true);
      }
  }
  EXPECT_GT(decoded, 10000u);
}

// Link layers the reader knows, around the same datagram.
TEST(CoveyctlPcap, LinkTypesAndNatTraversal) {
  const Bytes isakmp = message("GROUPKEY-PULL msg 1");
  const Bytes eth = ethernet_udp_frame(kGm, kKs, isakmp);
  const ByteView ip = ByteView(eth).subspan(14);

  auto d = coveyctl::parse_frame(1, eth, eth.size());
  ASSERT_TRUE(d);
  EXPECT_EQ(d->src, "10.1.23.3");
  EXPECT_EQ(d->payload, isakmp);

  Bytes raw(ip.begin(), ip.end());
  EXPECT_EQ(coveyctl::parse_frame(101, raw, raw.size())->payload, isakmp);  // LINKTYPE_RAW
  EXPECT_EQ(coveyctl::parse_frame(12, raw, raw.size())->payload, isakmp);   // DLT_RAW

  Bytes sll = {0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00};
  append(sll, ip);
  EXPECT_EQ(coveyctl::parse_frame(113, sll, sll.size())->payload, isakmp);

  Bytes sll2 = {0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0};
  append(sll2, ip);
  EXPECT_EQ(coveyctl::parse_frame(276, sll2, sll2.size())->payload, isakmp);

  Bytes loop = {2, 0, 0, 0};  // DLT_NULL, AF_INET in host order
  append(loop, ip);
  EXPECT_EQ(coveyctl::parse_frame(0, loop, loop.size())->payload, isakmp);

  Bytes vlan(eth.begin(), eth.begin() + 12);
  append(vlan, Bytes{0x81, 0x00, 0x00, 0x64});
  append(vlan, ByteView(eth).subspan(12));
  EXPECT_EQ(coveyctl::parse_frame(1, vlan, vlan.size())->payload, isakmp);

  // UDP 4500: ISAKMP behind the non-ESP marker; ESP and keepalives are not ISAKMP.
  Bytes marked = {0, 0, 0, 0};
  append(marked, isakmp);
  EXPECT_EQ(coveyctl::parse_frame(1, ethernet_udp_frame({kGm.ip, 4500}, {kKs.ip, 4500}, marked), 0)->payload, isakmp);
  EXPECT_FALSE(coveyctl::parse_frame(1, ethernet_udp_frame({kGm.ip, 4500}, {kKs.ip, 4500}, Bytes{0xff}), 0));
  EXPECT_FALSE(coveyctl::parse_frame(1, ethernet_udp_frame({kGm.ip, 4500}, {kKs.ip, 4500}, Bytes{0, 0, 1, 2, 0, 0, 0, 1}), 0));
  // Other ports are not ours.
  EXPECT_FALSE(coveyctl::parse_frame(1, ethernet_udp_frame({kGm.ip, 53}, {kKs.ip, 53}, isakmp), 0));

  // IPv6, over Ethernet.
  Bytes v6 = {0x60, 0, 0, 0, 0, 0, 17, 64};
  v6[4] = static_cast<std::uint8_t>((8 + isakmp.size()) >> 8);
  v6[5] = static_cast<std::uint8_t>(8 + isakmp.size());
  for (int i = 0; i < 15; ++i) v6.push_back(0xfe * (i == 0));
  v6.push_back(1);
  for (int i = 0; i < 15; ++i) v6.push_back(0xfe * (i == 0));
  v6.push_back(2);
  append(v6, Bytes{0x03, 0x50, 0x03, 0x50, static_cast<std::uint8_t>((8 + isakmp.size()) >> 8),
                   static_cast<std::uint8_t>(8 + isakmp.size()), 0, 0});
  append(v6, isakmp);
  Bytes eth6 = {0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x86, 0xdd};
  append(eth6, v6);
  auto d6 = coveyctl::parse_frame(1, eth6, eth6.size());
  ASSERT_TRUE(d6);
  EXPECT_EQ(d6->src, "fe00::1");
  EXPECT_EQ(d6->payload, isakmp);
}

}  // namespace
}  // namespace covey::test
