#include "config/toml_reader.h"

#include <algorithm>

namespace covey::config::detail {

void Diagnostics::add(const toml::source_region& at, std::string message, Problem::Severity s) {
  problems_.push_back(Problem{file_, at.begin.line, at.begin.column, std::move(message), s});
}
void Diagnostics::error(const toml::source_region& at, std::string message) {
  add(at, std::move(message), Problem::Severity::Error);
}
void Diagnostics::warning(const toml::source_region& at, std::string message) {
  add(at, std::move(message), Problem::Severity::Warning);
}
void Diagnostics::error_at(std::uint32_t line, std::uint32_t column, std::string message) {
  problems_.push_back(Problem{file_, line, column, std::move(message), Problem::Severity::Error});
}

bool Diagnostics::has_errors() const {
  return std::any_of(problems_.begin(), problems_.end(), [](const Problem& p) { return p.is_error(); });
}

std::vector<Problem> Diagnostics::take() {
  std::stable_sort(problems_.begin(), problems_.end(), [](const Problem& a, const Problem& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
  return std::move(problems_);
}

std::string quote(std::string_view text) {
  std::string s;
  s.reserve(text.size() + 2);
  s.append(1, '"').append(text).append(1, '"');
  return s;
}

namespace {

// Edits (insert, delete, replace, swap two neighbours) from a to b: a
// swapped pair ("upd") is one typo, not two.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      d[i][j] =
          std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

std::optional<std::string> closest(std::string_view word, const std::vector<std::string>& candidates) {
  std::optional<std::string> best;
  std::size_t best_distance = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates) {
    std::size_t d = edit_distance(word, c);
    if (d < best_distance) best = c, best_distance = d;
  }
  // "ecdsa" for "ecdsa-p256": too many edits away, but plainly a beginning.
  if (!best && !word.empty()) {
    for (const auto& c : candidates)
      if (c.size() > word.size() && c.compare(0, word.size(), word) == 0) return c;
  }
  return best;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  auto c = closest(word, candidates);
  return c ? " (did you mean \"" + *c + "\"?)" : "";
}

const toml::node* TableReader::get(std::string_view key) {
  known_.emplace(key);
  return table_.get(key);
}

toml::source_region TableReader::where(std::string_view key) const {
  const toml::node* n = table_.get(key);
  return n ? n->source() : table_.source();
}

void TableReader::wrong_type(std::string_view key, std::string_view what, std::string_view example) {
  d_.error(where(key), name_ + " " + std::string(key) + " must be " + std::string(what) + ", e.g. " +
                           std::string(example));
}

void TableReader::missing(std::string_view key, std::string_view example) {
  d_.error(table_.source(), name_ + " has no " + std::string(key) + "; add e.g. " + std::string(example));
}

std::optional<std::string> TableReader::string(std::string_view key, std::string_view example) {
  const toml::node* n = get(key);
  if (!n) return std::nullopt;
  if (auto v = n->as_string()) return v->get();
  wrong_type(key, "a string", example);
  return std::nullopt;
}

std::optional<std::int64_t> TableReader::integer(std::string_view key, std::int64_t min, std::int64_t max,
                                                 std::string_view example) {
  const toml::node* n = get(key);
  if (!n) return std::nullopt;
  if (!n->is_integer()) {
    wrong_type(key, "an integer", example);
    return std::nullopt;
  }
  std::int64_t v = n->as_integer()->get();
  if (v < min || v > max) {
    d_.error(n->source(), name_ + " " + std::string(key) + " = " + std::to_string(v) + " is out of range " +
                              std::to_string(min) + ".." + std::to_string(max) + ", e.g. " +
                              std::string(example));
    return std::nullopt;
  }
  return v;
}

std::optional<bool> TableReader::boolean(std::string_view key, std::string_view example) {
  const toml::node* n = get(key);
  if (!n) return std::nullopt;
  if (auto v = n->as_boolean()) return v->get();
  wrong_type(key, "true or false", example);
  return std::nullopt;
}

std::optional<std::vector<TableReader::Item>> TableReader::strings(std::string_view key,
                                                                   std::string_view example) {
  const toml::node* n = get(key);
  if (!n) return std::nullopt;
  const toml::array* a = n->as_array();
  if (!a) {
    wrong_type(key, "a list of strings", example);
    return std::nullopt;
  }
  std::vector<Item> items;
  bool ok = true;
  for (std::size_t i = 0; i < a->size(); ++i) {
    const toml::node& e = *a->get(i);
    if (auto s = e.as_string()) {
      items.push_back({s->get(), e.source()});
    } else {
      d_.error(e.source(), name_ + " " + std::string(key) + "[" + std::to_string(i) +
                               "] must be a string (in double quotes), e.g. " + std::string(example));
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return items;
}

std::optional<std::vector<TableReader::IntItem>> TableReader::integers(std::string_view key,
                                                                       std::string_view example) {
  const toml::node* n = get(key);
  if (!n) return std::nullopt;
  const toml::array* a = n->as_array();
  if (!a) {
    wrong_type(key, "a list of integers", example);
    return std::nullopt;
  }
  std::vector<IntItem> values;
  bool ok = true;
  for (std::size_t i = 0; i < a->size(); ++i) {
    const toml::node& e = *a->get(i);
    if (e.is_integer()) {
      values.push_back({e.as_integer()->get(), e.source()});
    } else {
      d_.error(e.source(), name_ + " " + std::string(key) + "[" + std::to_string(i) +
                               "] must be an integer, e.g. " + std::string(example));
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return values;
}

const toml::table* TableReader::table(std::string_view key, std::string_view example) {
  const toml::node* n = get(key);
  if (!n) return nullptr;
  if (auto t = n->as_table()) return t;
  wrong_type(key, "a table", example);
  return nullptr;
}

void TableReader::finish() {
  std::vector<std::string> known(known_.begin(), known_.end());
  for (auto&& [key, value] : table_) {
    if (known_.count(key.str())) continue;
    std::string message = "unknown key \"" + std::string(key.str()) + "\" in " + name_;
    if (auto c = closest(key.str(), known)) {
      message += " (did you mean \"" + *c + "\"?)";
    } else {
      message += "; known keys are:";
      for (const auto& k : known) message += " " + k;
    }
    d_.error(key.source(), std::move(message));
  }
}

}  // namespace covey::config::detail
