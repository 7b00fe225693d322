// Known answers computed independently by a Python 3 script that uses only
// the standard library (hashlib, hmac): the script prints "name hex" lines,
// the test compares covey's bytes with them. Nothing here is covey's own
// output, so a shared misreading of an RFC shows up as a mismatch.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <sstream>
#include <string>

#include "common/bytes.h"

namespace covey::fixtures {

class PythonKat {
 public:
  explicit PythonKat(std::string script) : script_(std::move(script)) {
    const std::string cmd = "python3 " + script_;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) {
      error_ = "cannot run " + cmd;
      return;
    }
    std::string out;
    char buf[4096];
    std::size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    if (int status = pclose(p); status != 0) {
      error_ = cmd + " exited with status " + std::to_string(status);
      return;
    }
    std::istringstream lines(out);
    std::string name, hex;
    while (lines >> name >> hex) {
      Bytes b;
      if (!from_hex(hex, b)) {
        error_ = script_ + ": bad hex for " + name;
        return;
      }
      values_[name] = std::move(b);
    }
    if (values_.empty()) error_ = cmd + " printed nothing";
  }

  const std::string& error() const { return error_; }
  Bytes operator[](const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) {
      ADD_FAILURE() << script_ << " printed no value named " << name;
      return {};
    }
    return it->second;
  }

 private:
  std::string script_;
  std::map<std::string, Bytes> values_;
  std::string error_;
};

}  // namespace covey::fixtures
