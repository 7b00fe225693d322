// Decoding captured ISAKMP/GDOI datagrams into reports a network engineer
// reads (text) or a program reads (JSON, schema in README.md). Pure: it
// takes datagrams and keys, keeps the state decryption needs (phase-1 IVs,
// KEKs learned from decrypted registrations), and touches no file.
#pragma once

#include <array>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/bytes.h"
#include "coveyctl/pcap.h"
#include "wire/message.h"

namespace covey::coveyctl {

using Json = nlohmann::ordered_json;

// Wireshark's ikev1_decryption_table as text: one phase-1 SA a line,
// "initiator-cookie-hex,encryption-key-hex"; blank lines and '#' comments allowed.
struct Keylog {
  std::map<wire::Cookie, Bytes> keys;
};
// Empty string on success, else what is wrong and on which line.
std::string parse_keylog(std::string_view text, Keylog& out);

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
  struct State;
  std::unique_ptr<State> state_;
};

// Decodes in order, so keys learned from earlier messages serve later ones.
Json decode_all(const std::vector<Datagram>& datagrams, const Keylog& keylog);

// The text form: a headline per message, then its payloads indented.
std::string render_text(const Json& message);

}  // namespace covey::coveyctl
