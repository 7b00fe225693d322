#include "coveyctl/decode_command.h"

#include <fstream>
#include <iostream>
#include <sstream>

#include "coveyctl/decode.h"
#include "coveyctl/describe.h"
#include "coveyctl/keylog.h"
#include "coveyctl/pcap.h"

namespace covey::coveyctl {
namespace {

int g_exit = 0;

// Exit status, README.md: 0 the capture was read to its end (malformed
// messages are data, reported per message); 1 the capture or keylog could
// not be read, or reading stopped early.
int run_decode(const DecodeOptions& o) {
  Keylog keylog;
  if (!o.keylog.empty()) {
    std::ifstream in(o.keylog, std::ios::binary);
    if (!in) {
      std::cerr << "coveyctl decode: cannot read keylog " << o.keylog << "\n";
      return 1;
    }
    std::stringstream text;
    text << in.rdbuf();
    if (auto err = parse_keylog(text.str(), keylog); !err.empty()) {
      std::cerr << "coveyctl decode: " << o.keylog << ": " << err << "\n";
      return 1;
    }
  }
  Capture cap = read_capture(o.pcap);
  if (cap.frames == 0 && !cap.error.empty()) {
    std::cerr << "coveyctl decode: cannot read " << o.pcap << ": " << cap.error << "\n";
    return 1;
  }
  Json messages = decode_all(cap.datagrams, keylog);
  if (o.json) {
    Json doc;
    doc["schema"] = "coveyctl-decode/1";
    doc["capture"] = o.pcap;
    doc["frames"] = cap.frames;
    doc["messages"] = std::move(messages);
    if (!cap.error.empty()) doc["capture_error"] = cap.error;
    // Replace, never throw, should a peer's bytes reach a string unescaped.
    std::cout << doc.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
  } else {
    for (const auto& m : messages) std::cout << render_text(m) << "\n";
    std::cout << messages.size() << " ISAKMP message(s) in " << cap.frames << " frame(s)\n";
  }
  if (!cap.error.empty()) {
    std::cerr << "coveyctl decode: " << o.pcap << ": reading stopped " << cap.error << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

void add_decode_command(CLI::App& app, DecodeOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "decode", "Print every ISAKMP/GDOI message in a capture (UDP 500, 848, 4500), decrypting with a keylog");
  cmd->add_option("--pcap", o.pcap, "capture file (pcap or pcapng)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--keylog", o.keylog,
                  "phase-1 keys, one line per SA: initiator-cookie-hex,encryption-key-hex "
                  "(Wireshark's ikev1_decryption_table)")
      ->check(CLI::ExistingFile);
  cmd->add_flag("--json", o.json, "JSON output (schema coveyctl-decode/1, see tools/coveyctl/README.md)");
  cmd->callback([&o] { g_exit = run_decode(o); });
}

int exit_code() { return g_exit; }

}  // namespace covey::coveyctl
