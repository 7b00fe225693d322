// Running a tool under test and taking its standard output.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace covey::test {

struct RunResult {
  int status = -1;  // exit code, or -1 if it did not exit normally
  std::string out;
};

inline RunResult run(const std::string& command) {
  RunResult r;
  FILE* p = popen(command.c_str(), "r");
  if (!p) return r;
  char buf[65536];
  for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// A file of this process's own under the test temp dir, so ctest -j runs do not collide.
inline std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "covey_" + std::to_string(getpid()) + "_" + name;
}

inline bool have_tshark() { return run("command -v tshark >/dev/null 2>&1").status == 0; }

}  // namespace covey::test
