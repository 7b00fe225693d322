// Just enough of tshark's PDML (-T pdml) to read back field names and
// values in document order, per packet.
#pragma once

#include <string>
#include <vector>

namespace covey::test {

struct PdmlField {
  std::string name;   // "isakmp.sat.src_id_length"
  std::string show;   // tshark's display value ("848", "0x1a2b3c4d")
  std::string value;  // the raw octets in hex
  std::size_t size = 0;
};

struct PdmlPacket {
  std::vector<PdmlField> fields;  // every <field> and <proto>, in order
  bool has(const std::string& name) const;
};

std::vector<PdmlPacket> parse_pdml(const std::string& xml);

}  // namespace covey::test
