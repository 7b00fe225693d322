#include "config/problem.h"

namespace covey::config {

std::string Problem::str() const {
  std::string s = file;
  if (line != 0) s.append(1, ':').append(std::to_string(line)).append(1, ':').append(std::to_string(column));
  s += is_error() ? ": error: " : ": warning: ";
  s += message;
  return s;
}

std::string format_problems(const std::vector<Problem>& problems) {
  std::string out;
  std::size_t errors = 0, warnings = 0;
  for (const auto& p : problems) {
    out += p.str() + "\n";
    (p.is_error() ? errors : warnings)++;
  }
  auto count = [](std::size_t n, const char* what) {
    return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
  };
  out += count(errors, "error") + ", " + count(warnings, "warning") + "\n";
  return out;
}

}  // namespace covey::config
