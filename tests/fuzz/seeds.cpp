// Writes the seed corpus: every sample message, and each one's body with
// the first-payload/exchange prefix the fuzz target reads.
#include <cstdio>
#include <fstream>
#include <string>

#include "samples.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  int n = 0;
  auto write = [&](const covey::Bytes& b) {
    std::ofstream(std::string(argv[1]) + "/seed-" + std::to_string(n++), std::ios::binary)
        .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  };
  for (const covey::Bytes& d : covey::samples::all_datagrams()) {
    write(d);
    covey::Bytes body{d[16], d[18]};
    body.insert(body.end(), d.begin() + 28, d.end());
    write(body);
  }
  return 0;
}
