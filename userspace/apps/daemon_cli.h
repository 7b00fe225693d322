// What covey-ks and covey-gm share on their command line: --config,
// --check, --keylog, --log-level, and how a configuration's problems are
// reported before anything starts.
#pragma once

#include <CLI/CLI.hpp>
#include <iostream>
#include <optional>
#include <string>

#include "common/log.h"
#include "config/problem.h"

namespace covey::apps {

struct DaemonArgs {
  std::string config_path;
  bool check = false;
  std::string keylog;
  std::string level = "info";
};

inline void add_daemon_options(CLI::App& app, DaemonArgs& a) {
  app.add_option("-c,--config", a.config_path, "configuration file")->capture_default_str();
  app.add_flag("--check", a.check, "validate the configuration, print every problem with its line, and exit");
  app.add_option("--keylog", a.keylog, "append initiator-cookie,encryption-key per phase-1 SA (Wireshark's IKEv1 table)");
  app.add_option("--log-level", a.level, "debug, info, warning or error")
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}))
      ->capture_default_str();
}

inline void apply_log_options(const char* program, const DaemonArgs& a) {
  set_log_program(program);
  set_log_level(a.level == "debug" ? LogLevel::Debug : a.level == "warning" ? LogLevel::Warning
                : a.level == "error" ? LogLevel::Error : LogLevel::Info);
}

// --check prints every problem and ends; otherwise problems are logged and
// a config with an error ends the program before anything starts. Returns
// the exit code when the program should end here.
template <class Config>
std::optional<int> report_config(const config::Parsed<Config>& parsed, const DaemonArgs& a, const char* program) {
  if (a.check) {
    std::cout << config::format_problems(parsed.problems);
    if (parsed.ok()) std::cout << a.config_path << ": OK\n";
    return parsed.ok() ? 0 : 1;
  }
  for (const auto& p : parsed.problems) log(p.is_error() ? LogLevel::Error : LogLevel::Warning, p.str());
  if (!parsed.ok()) {
    log(LogLevel::Error, "not starting: " + a.config_path + " has errors (" + program + " --check --config " + a.config_path + ")");
    return 1;
  }
  return std::nullopt;
}

}  // namespace covey::apps
