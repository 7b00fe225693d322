// Prometheus's text exposition format (version 0.0.4), as both daemons
// serve it on GET /metrics (metrics/http_server.h). Pure: the daemons'
// metrics builders (ks/metrics.h, gm/metrics.h) fill one Exposition from
// their counters and hand its text to the server.
#pragma once

#include <concepts>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace covey::metrics {

enum class Type : std::uint8_t { Counter, Gauge };

// Label name and value; the value is escaped when written.
using Labels = std::vector<std::pair<std::string_view, std::string>>;

// `\` `"` and newline escaped, as a label value must be.
std::string escape_label_value(std::string_view value);
// `\` and newline escaped, as HELP text must be.
std::string escape_help(std::string_view help);

class Exposition {
 public:
  // Starts a family: its HELP and TYPE lines. Each family is written once
  // with all its samples after it, as the format requires; starting one a
  // second time, or a name Prometheus would refuse, throws
  // std::logic_error (a builder's mistake, caught by its tests).
  void family(std::string_view name, Type type, std::string_view help);
  // A sample of the family started last.
  template <std::integral T>
  void sample(const Labels& labels, T value) {
    write_sample(labels, std::to_string(value));
  }
  const std::string& text() const { return text_; }

 private:
  void write_sample(const Labels& labels, const std::string& value);

  std::string text_;
  std::string current_;
  std::set<std::string, std::less<>> families_;
  std::set<std::string, std::less<>> series_;  // of the current family: a label set once
};

// `<prefix>_build_info{version="0.1.0"} 1`: which covey a scrape came
// from, to join on or alert on after an upgrade.
void build_info(Exposition& x, std::string_view prefix);

}  // namespace covey::metrics
