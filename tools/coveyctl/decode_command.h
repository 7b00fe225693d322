// `coveyctl decode --pcap FILE [--keylog FILE] [--json]`.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace covey::coveyctl {

struct DecodeOptions {
  std::string pcap, keylog;
  bool json = false;
};

void add_decode_command(CLI::App& app, DecodeOptions& options);

// The exit status the subcommand that ran chose (0 when none ran).
int exit_code();

}  // namespace covey::coveyctl
