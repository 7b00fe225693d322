// libFuzzer target over the ISAKMP/GDOI message decoder. Properties checked:
// no crash or sanitizer report on any input, every error names a payload,
// and whatever decodes re-encodes to bytes that decode to the same value.
#include <cstdint>
#include <cstdlib>

#include "wire/message.h"

using namespace covey;
using namespace covey::wire;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void roundtrip(const Header& h, const std::vector<Payload>& payloads) {
  Bytes again = encode_message(h, payloads);
  auto m2 = decode_message(again);
  check(m2.ok());
  check(m2->payloads == payloads);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ByteView in(data, size);

  // As a datagram off the wire.
  auto m = decode_message(in);
  if (m.ok()) {
    if (!m->header.encrypted()) roundtrip(m->header, m->payloads);
  } else {
    check(!m.error().payload.empty() && !m.error().reason.empty());
  }

  // As a decrypted body (padding allowed), with the first payload type and
  // the exchange taken from the input so every payload decoder is reached.
  if (size >= 2) {
    auto chain = decode_payloads(in.subspan(2), data[0], data[1], 0, true);
    if (chain.ok()) {
      check(chain->consumed <= size - 2);
      Header h;
      h.exchange = data[1];
      // A payload that decoded from < 64 KiB cannot exceed it re-encoded; if
      // it did, encode's length_error would end the run as a crash.
      roundtrip(h, chain->payloads);
    }
  }

  // LKH key arrays, with a key size taken from the input.
  if (size >= 1) {
    (void)decode_lkh_download_array(in.subspan(1), data[0] % 64);
    (void)decode_lkh_update_array(in.subspan(1), data[0] % 64);
  }
  return 0;
}
