// Describing decoded ISAKMP/GDOI messages for a network engineer (text) or a
// program (JSON, schema in README.md): every header field and payload with
// its protocol name, a one-line summary each, and the text report built
// from those summaries. Pure: wire structures in, JSON and text out; it
// knows nothing of keys, so decryption can change without touching it.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "wire/message.h"

namespace covey::coveyctl {

using Json = nlohmann::ordered_json;

// "10.1.12.1:848", "[2001:db8::1]:848".
std::string endpoint(const std::string& addr, std::uint16_t port);

// The fixed ISAKMP header (RFC 2408 3.1), names beside numbers.
Json header_json(const wire::Header& h);
// One payload, with where it sits in the datagram (`e`, from its start).
Json payload_json(const wire::Payload& p, const wire::Extent& e);

// The text form: a headline per message, then its payloads indented.
std::string render_text(const Json& message);

}  // namespace covey::coveyctl
