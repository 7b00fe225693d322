// What tshark 4.0 (`-d udp.port==848,isakmp -T pdml`) should show for a
// message covey encoded: its fields in order, with the values we encoded.
// Where tshark and the RFC part ways, the expectation follows the RFC-encoded
// bytes as far as tshark reads them and records the disagreement by name.
#pragma once

#include <string>
#include <vector>

#include "corpus.h"

namespace covey::test {

struct ExpectedField {
  std::string name;  // tshark field, "isakmp.sat.spi"
  std::string want;  // compared with `show`, or with `value` (hex) if by_value
  bool by_value = false;
};

// A place where tshark 4.0 reads the wire differently from RFC 6407/2408.
enum class TsharkDisagreement {
  // RFC 6407 Figure 8: SA TEK SRC/DST ID Data Len is 1 octet; tshark reads 2
  // and throws (Malformed). Fields before it are checked; nothing after.
  SaTekIdDataLenWidth,
  // RFC 6407 5.2.1 allows GAP in the SA after the SA KEK; tshark 4.0 stops
  // dissecting the SA there (silently): the GAP and SA TEKs are not shown.
  GapInsideSaNotDissected,
  // RFC 6407 2.1: the phase-1 SA carries DOI 2 (GDOI); tshark dissects every
  // DOI-2 SA in the group form (RFC 6407 5.2), so proposals/transforms are
  // not shown (the proposal header reads as SA Attribute Next Payload/RESERVED2).
  Phase1SaWithGdoiDoiReadAsGroupSa,
};

struct ExpectedDissection {
  std::vector<ExpectedField> fields;
  std::vector<TsharkDisagreement> disagreements;
  bool malformed = false;               // tshark must report Malformed (and only then)
  std::vector<std::string> absent;      // fields tshark must NOT show (pins a disagreement)
};

ExpectedDissection expected_dissection(const CorpusMessage& m);
std::string describe(TsharkDisagreement d);

}  // namespace covey::test
