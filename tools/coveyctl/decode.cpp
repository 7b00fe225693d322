// The decoder's order of work (decode.h): header, decryption (decrypt.h),
// payloads, description (describe.h), then what decryption learns from the
// message for the ones after it.
#include "coveyctl/decode.h"

#include <exception>

#include "coveyctl/decrypt.h"

namespace covey::coveyctl {

using namespace covey::wire;

Decoder::Decoder(Keylog keylog) : state_(std::make_unique<DecryptionState>(std::move(keylog))) {}
Decoder::~Decoder() = default;

Json Decoder::decode(const Datagram& d, Bytes* clear) {
  if (clear) clear->clear();
  Json m;
  m["frame"] = d.frame;
  m["time"] = d.time;
  m["src"] = d.src;
  m["src_port"] = d.src_port;
  m["dst"] = d.dst;
  m["dst_port"] = d.dst_port;
  m["length"] = d.payload.size();
  if (!d.problem.empty()) {
    m["error"] = d.problem;
    return m;
  }
  try {
    auto h = decode_header(d.payload);
    if (!h) {
      m["error"] = h.error().message();
      return m;
    }
    m["header"] = header_json(*h);
    m["encrypted"] = h->encrypted();
    ByteView body = ByteView(d.payload).subspan(kHeaderSize);
    Bytes plain;
    if (h->encrypted()) {
      Json how;
      auto p = state_->decrypt(*h, body, how);
      how["status"] = p ? "decrypted" : "not decrypted";
      m["decryption"] = how;
      if (!p) {
        m["payloads"] = Json::array();
        return m;
      }
      plain = std::move(*p);
      body = plain;
      if (clear) *clear = plain;
    }
    // Offsets count from the start of the datagram, as if the body were clear.
    auto chain = decode_payloads(body, h->next_payload, h->exchange, kHeaderSize, h->encrypted());
    if (!chain) {
      std::string e = chain.error().message();
      if (h->encrypted()) e += " (in the decrypted body: wrong key or IV?)";
      m["payloads"] = Json::array();
      m["error"] = e;
      return m;
    }
    Json list = Json::array();
    for (std::size_t i = 0; i < chain->payloads.size(); ++i) {
      Extent e = chain->extents[i];
      e.offset += kHeaderSize;
      list.push_back(payload_json(chain->payloads[i], e));
    }
    m["payloads"] = std::move(list);
    state_->learn(d, *h, chain->payloads);
  } catch (const std::exception& e) {
    // Nothing above should throw on any input; if it does, this message is lost, not the capture.
    m["error"] = std::string("internal error while decoding: ") + e.what();
  }
  return m;
}

Json decode_all(const std::vector<Datagram>& datagrams, const Keylog& keylog) {
  Decoder decoder(keylog);
  Json out = Json::array();
  for (const auto& d : datagrams) out.push_back(decoder.decode(d));
  return out;
}

}  // namespace covey::coveyctl
