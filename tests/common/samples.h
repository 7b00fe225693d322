// Typical GDOI and IKEv1 messages, built through the codec, shared by the
// unit tests, the fuzzer's seed corpus and the benchmarks. Values are the
// reference lab's (group 134, LANs 192.168.0.0/16).
#pragma once

#include <vector>

#include "wire/message.h"

namespace covey::samples {

wire::Header header(wire::ExchangeType exchange, std::uint32_t message_id);

wire::GroupSaPayload group_sa();        // SA KEK, GAP and one SA TEK (ESP AES-256-CBC, HMAC-SHA-256)
wire::KeyDownloadPayload key_download();  // TEK, KEK and SID key packets
wire::SaPayload phase1_sa();            // AES-256/SHA-256/PSK/group 14 and AES-128/SHA-1/group 19

// GROUPKEY-PULL messages 1 to 4 and a GROUPKEY-PUSH, in the clear, with
// placeholder HASH/SIG bytes (the codec does not check them).
std::vector<wire::Payload> pull1();
std::vector<wire::Payload> pull2();
std::vector<wire::Payload> pull3();
std::vector<wire::Payload> pull4();
std::vector<wire::Payload> push();
std::vector<wire::Payload> main_mode1();

// Whole datagrams of every kind above.
std::vector<Bytes> all_datagrams();

}  // namespace covey::samples
