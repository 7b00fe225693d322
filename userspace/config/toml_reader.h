// Internal to covey_config: reading a parsed TOML table field by field,
// with every complaint carrying the file, line and column of the value.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/problem.h"

namespace covey::config::detail {

// The problems found so far in one file.
class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}

  void error(const toml::source_region& at, std::string message);
  void warning(const toml::source_region& at, std::string message);
  void error_at(std::uint32_t line, std::uint32_t column, std::string message);
  bool has_errors() const;
  const std::string& file() const { return file_; }
  // In file order, so the first error a reader meets is the first listed.
  std::vector<Problem> take();

 private:
  void add(const toml::source_region& at, std::string message, Problem::Severity s);
  std::string file_;
  std::vector<Problem> problems_;
};

// "\"text\"". (Also sidesteps GCC 12's false -Wrestrict on "\"" + std::string, bug 105651.)
std::string quote(std::string_view text);

// The closest of `candidates` to `word` if it is near enough to be a typo.
std::optional<std::string> closest(std::string_view word, const std::vector<std::string>& candidates);
// " (did you mean \"x\"?)" or "".
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

// One table's fields. Each accessor marks its key as known; finish() then
// reports every key nobody asked for, since a typo silently ignored (a
// misspelt "lifetime" leaving the default) is worse than a refusal.
class TableReader {
 public:
  // `name` is how messages name the table: "[server]", "group GET_VPN".
  TableReader(const toml::table& table, std::string name, Diagnostics& d)
      : table_(table), name_(std::move(name)), d_(d) {}

  // Absent keys are nullopt without complaint; a present key of the wrong
  // type or range is an error showing `example`, and also nullopt.
  std::optional<std::string> string(std::string_view key, std::string_view example);
  std::optional<std::int64_t> integer(std::string_view key, std::int64_t min, std::int64_t max,
                                      std::string_view example);
  std::optional<bool> boolean(std::string_view key, std::string_view example);
  // An array whose every element is a string, with each string's position.
  struct Item {
    std::string value;
    toml::source_region at;
  };
  std::optional<std::vector<Item>> strings(std::string_view key, std::string_view example);
  struct IntItem {
    std::int64_t value;
    toml::source_region at;
  };
  std::optional<std::vector<IntItem>> integers(std::string_view key, std::string_view example);
  const toml::table* table(std::string_view key, std::string_view example);
  // The raw node, for a key that takes more than one type; nullptr if absent.
  const toml::node* node(std::string_view key) { return get(key); }
  void rename(std::string name) { name_ = std::move(name); }

  // Reports `key` missing, at the table's header.
  void missing(std::string_view key, std::string_view example);
  // Position of a key's value, or of the table when the key is absent.
  toml::source_region where(std::string_view key) const;
  const toml::source_region& where() const { return table_.source(); }
  const std::string& name() const { return name_; }
  Diagnostics& diagnostics() { return d_; }

  void finish();

 private:
  const toml::node* get(std::string_view key);
  void wrong_type(std::string_view key, std::string_view what, std::string_view example);

  const toml::table& table_;
  std::string name_;
  Diagnostics& d_;
  std::set<std::string, std::less<>> known_;
};

}  // namespace covey::config::detail
