// What the key server's pure cores (the dispatcher, the rekeyer) hand the
// event loop besides datagrams: lines to log, with their severity.
#pragma once

#include <string>

#include "common/log.h"

namespace covey::ks {

enum class Severity { Debug, Info, Warning, Error };

struct Event {
  Severity severity;
  std::string text;  // "Registration of GM 10.1.23.3 complete for group GET_VPN (134)"
  // The journal's fields of the event (common/log.h): COVEY_GROUP,
  // COVEY_PEER, COVEY_SPI, COVEY_SEQ where it has them.
  LogFields fields = {};
};

}  // namespace covey::ks
