// `coveyctl ks ...` and `coveyctl gm ...`: ask a running daemon over its
// control socket (userspace/control/PROTOCOL.md) and print the answer.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace covey::coveyctl {

struct ControlOptions {
  std::string socket;
  std::string group;  // ks group/members/remove-member: optional; ks rekey: required
  std::string address;  // ks remove-member
  std::string prefix;   // ks members: only addresses in it
  std::string since;    // ks members: only registered at or after (parse_since)
  bool count = false;   // ks members: how many, not who
  bool json = false;
  bool show_keys = false;
};

// Both set `exit_code` when their subcommand runs: 0, or 1 when the daemon
// could not be reached or answered ok:false (the reason goes to stderr).
void add_ks_command(CLI::App& app, ControlOptions& options, int& exit_code);
void add_gm_command(CLI::App& app, ControlOptions& options, int& exit_code);

}  // namespace covey::coveyctl
