#include "metrics/exposition.h"

#include <stdexcept>

namespace covey::metrics {

namespace {

bool name_char(char c, bool first, bool colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
         (!first && c >= '0' && c <= '9');
}

// Metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names without ':' and not
// starting "__" (reserved for Prometheus itself).
bool valid_name(std::string_view n, bool metric) {
  if (n.empty() || (!metric && n.starts_with("__"))) return false;
  for (std::size_t i = 0; i < n.size(); ++i)
    if (!name_char(n[i], i == 0, metric)) return false;
  return true;
}

std::string escaped(std::string_view s, bool quote) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (quote && c == '"') out += "\\\"";
    else out += c;
  }
  return out;
}

}  // namespace

std::string escape_label_value(std::string_view value) { return escaped(value, true); }
std::string escape_help(std::string_view help) { return escaped(help, false); }

void Exposition::family(std::string_view name, Type type, std::string_view help) {
  if (!valid_name(name, true)) throw std::logic_error("metric family name \"" + std::string(name) + "\" is not valid");
  if (!families_.insert(std::string(name)).second)
    throw std::logic_error("metric family " + std::string(name) + " written twice");
  current_ = name;
  series_.clear();
  text_ += "# HELP " + current_ + " " + escape_help(help) + "\n";
  text_ += "# TYPE " + current_ + (type == Type::Counter ? " counter\n" : " gauge\n");
}

void Exposition::write_sample(const Labels& labels, const std::string& value) {
  if (current_.empty()) throw std::logic_error("metric sample before its family");
  std::string line = current_;
  if (!labels.empty()) {
    line += '{';
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (!valid_name(labels[i].first, false))
        throw std::logic_error("label name \"" + std::string(labels[i].first) + "\" of " + current_ + " is not valid");
      if (i) line += ',';
      line += labels[i].first;
      line += "=\"" + escape_label_value(labels[i].second) + '"';
    }
    line += '}';
  }
  if (!series_.insert(line).second) throw std::logic_error("metric series " + line + " written twice");
  text_ += line + " " + value + "\n";
}

void build_info(Exposition& x, std::string_view prefix) {
  x.family(std::string(prefix) + "_build_info", Type::Gauge, "Always 1; the version of covey that serves these metrics.");
  x.sample({{"version", COVEY_VERSION}}, 1);
}

}  // namespace covey::metrics
