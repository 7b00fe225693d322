// Decoding captured ISAKMP/GDOI datagrams into reports a network engineer
// reads (text) or a program reads (JSON, schema in README.md). Pure: it
// takes datagrams and keys, keeps the state decryption needs (phase-1 IVs,
// KEKs learned from decrypted registrations), and touches no file.
// This is the order of work; the parts are keylog.h (the keys given),
// decrypt.h (what decryption learns and does) and describe.h (JSON and text).
#pragma once

#include <memory>
#include <vector>

#include "common/bytes.h"
#include "coveyctl/describe.h"
#include "coveyctl/keylog.h"
#include "coveyctl/pcap.h"

namespace covey::coveyctl {

class DecryptionState;

class Decoder {
 public:
  explicit Decoder(Keylog keylog = {});
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // One message object (README.md): header, payloads, decryption, and
  // "error" when the datagram is malformed. Never throws on any input.
  // `clear`, when given, receives the body after the header as decrypted
  // (what the payload offsets count in), and stays empty for a message
  // that was not encrypted or could not be decrypted.
  Json decode(const Datagram& d, Bytes* clear = nullptr);

 private:
  std::unique_ptr<DecryptionState> state_;
};

// Decodes in order, so keys learned from earlier messages serve later ones.
Json decode_all(const std::vector<Datagram>& datagrams, const Keylog& keylog);

}  // namespace covey::coveyctl
