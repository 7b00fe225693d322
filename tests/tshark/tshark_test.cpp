// Every GDOI message kind covey encodes, written to a pcap on UDP 848 and
// read back by Debian's tshark and by coveyctl: no field malformed except
// the one known tshark exception, and every value as encoded.
#include <gtest/gtest.h>

#include <filesystem>

#include "corpus.h"
#include "json_check.h"
#include "pcap_writer.h"
#include "pdml.h"
#include "run.h"
#include "tshark_fields.h"

namespace covey::test {
namespace {

constexpr const char* kDissectAs = "-d udp.port==848,isakmp";

std::string corpus_pcap() {
  const std::string path = temp_path("gdoi_corpus.pcap");
  std::vector<PcapRecord> records;
  for (const auto& m : corpus()) records.push_back({m.source(), m.destination(), m.bytes()});
  write_pcap(path, records);
  return path;
}

// tshark's PI_ERROR severity, as PDML shows it.
constexpr const char* kExpertError = "8388608";

bool malformed(const PdmlPacket& p) {
  for (const auto& f : p.fields)
    if (f.name == "_ws.malformed" || (f.name == "_ws.expert.severity" && f.show == kExpertError)) return true;
  return false;
}

TEST(Tshark, EveryGdoiMessageDissectsAsEncoded) {
  if (!have_tshark()) GTEST_SKIP() << "tshark is not installed (apt-get install tshark; `make test` installs it)";
  const std::string pcap = corpus_pcap();
  const auto messages = corpus();

  auto pdml = run("tshark -r " + pcap + " " + kDissectAs + " -T pdml 2>/dev/null");
  ASSERT_EQ(pdml.status, 0) << "tshark failed on " << pcap;
  const auto packets = parse_pdml(pdml.out);
  ASSERT_EQ(packets.size(), messages.size());

  std::size_t checked = 0;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const CorpusMessage& m = messages[i];
    const PdmlPacket& p = packets[i];
    SCOPED_TRACE("frame " + std::to_string(i + 1) + ": " + m.label);
    const ExpectedDissection want = expected_dissection(m);
    for (auto d : want.disagreements) std::cout << "[ tshark  ] frame " << i + 1 << " " << m.label << ": " << describe(d) << "\n";

    // Walk tshark's fields in order; each expected one must come, with our value.
    std::size_t at = 0;
    for (const auto& f : want.fields) {
      while (at < p.fields.size() && p.fields[at].name != f.name) ++at;
      ASSERT_LT(at, p.fields.size()) << "tshark shows no " << f.name << " (expected " << f.want << ") where covey encoded it";
      const std::string& got = f.by_value ? p.fields[at].value : p.fields[at].show;
      EXPECT_EQ(got, f.want) << f.name;
      ++at;
      ++checked;
    }
    for (const auto& name : want.absent)
      EXPECT_FALSE(p.has(name)) << name << " now shows: tshark has changed, revisit the disagreement it pinned";
    EXPECT_EQ(malformed(p), want.malformed) << (want.malformed ? "expected tshark's SA TEK exception" : "tshark reports Malformed");
    if (want.malformed) {
      // Malformed exactly where the 2-octet read of the 1-octet field took tshark, nowhere earlier.
      ASSERT_FALSE(want.fields.empty());
      EXPECT_EQ(want.fields.back().name, "isakmp.sat.src_id_length");
      for (const auto& f : p.fields) {
        if (f.name == "isakmp.sat.src_id_length") {
          EXPECT_EQ(f.size, 2u) << "tshark now reads the RFC's 1 octet";
        }
      }
    }
  }
  std::cout << "[ tshark  ] " << checked << " field values compared over " << messages.size() << " messages\n";

  // The -V text, the form people read: "Malformed" only on the SA TEK frames.
  auto text = run("tshark -r " + pcap + " " + kDissectAs + " 2>/dev/null");
  ASSERT_EQ(text.status, 0);
  std::size_t lines_malformed = 0;
  for (std::size_t pos = 0; (pos = text.out.find("Malformed", pos)) != std::string::npos; ++pos) ++lines_malformed;
  std::size_t want_malformed = 0;
  for (const auto& m : messages) want_malformed += expected_dissection(m).malformed ? 1 : 0;
  EXPECT_EQ(lines_malformed, want_malformed) << text.out;
}

TEST(Coveyctl, SamePcapSameValues) {
  const std::string pcap = corpus_pcap();
  const auto messages = corpus();
  auto r = run(std::string(COVEYCTL) + " decode --json --pcap " + pcap);
  ASSERT_EQ(r.status, 0) << r.out;
  const auto doc = nlohmann::ordered_json::parse(r.out);
  ASSERT_EQ(doc["schema"], "coveyctl-decode/1");
  ASSERT_EQ(doc["messages"].size(), messages.size());
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const auto& j = doc["messages"][i];
    EXPECT_EQ(j["frame"], i + 1);
    EXPECT_EQ(j["src"], messages[i].source_text());
    EXPECT_EQ(j["dst_port"], 848);
    for (const auto& d : compare_decoded(j, messages[i])) ADD_FAILURE() << d;
  }

  // And the text form names things the way the issue shows them.
  auto text = run(std::string(COVEYCTL) + " decode --pcap " + pcap);
  ASSERT_EQ(text.status, 0);
  EXPECT_NE(text.out.find("#7 10.1.23.3:848 -> 10.1.12.1:848 GROUPKEY-PULL msg-id 0x1a2b3c4d"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("SA TEK: ESP (1), SPI 0x6263F2E0, transform AES-CBC (12), SRC 192.168.0.0/16 DST "
                          "192.168.0.0/16, Life 3600 s, Key Length 256, Authentication HMAC-SHA2-256, Encapsulation "
                          "Tunnel, Address Preservation Source-and-Destination, SA Direction Symmetric"),
            std::string::npos)
      << text.out;
  // Registration and rekey over IPv6: addresses with a port in brackets,
  // as an IPv6 endpoint is written, so the port is not read as a group.
  for (const char* line :
       {"#14 [2001:db8:23::3]:848 -> [2001:db8:12::1]:848 Identity Protection (Main Mode)",
        "ID: ID_IPV6_ADDR (5) 2001:db8:23::3, protocol UDP (17), port 848",
        "SA KEK: SPI c0c1c2c3c4c5c6c7d0d1d2d3d4d5d6d7, UDP (17) SRC [2001:db8:12::1]:848 DST "
        "[ff05::1:3]:848, ",
        "SA TEK: ESP (1), SPI 0x6263F2E0, transform AES-CBC (12), SRC 2001:db8:3::/64 DST 2001:db8:4::/64, "
        "Life 3600 s",
        "SA TEK: ESP (1), SPI 0x7A7B7C7D, transform AES-CBC (12), TCP (6) SRC 2001:db8:3::10 DST "
        "[2001:db8:4::10]:443, ",
        "SA KEK: SPI c0c1c2c3c4c5c6c7d0d1d2d3d4d5d6d7, UDP (17) SRC [2001:db8:12::1]:848 DST [::]:848, "})
    EXPECT_NE(text.out.find(line), std::string::npos) << line << "\n" << text.out;
}

}  // namespace
}  // namespace covey::test
