// What is wrong with a configuration file, where, and what to write instead.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace covey::config {

struct Problem {
  enum class Severity : std::uint8_t { Error, Warning };
  std::string file;
  std::uint32_t line = 0, column = 0;  // 1-based; 0 when the file as a whole is meant
  std::string message;                 // names the field and, for errors, the fix
  Severity severity = Severity::Error;

  bool is_error() const { return severity == Severity::Error; }
  // "ks.toml:12:3: error: group GET_VPN: acl[1]: ...", the compiler form
  // editors and CI annotate.
  std::string str() const;
};

// A parsed configuration: `config` is set only when no problem is an error
// (a config with an error is never half-used); warnings come with it.
template <class Config>
struct Parsed {
  std::optional<Config> config;
  std::vector<Problem> problems;

  bool ok() const { return config.has_value(); }
};

// One problem a line, errors and warnings in file order, then a summary
// ("2 errors, 1 warning"): what `covey-ks --check` prints.
std::string format_problems(const std::vector<Problem>& problems);

}  // namespace covey::config
