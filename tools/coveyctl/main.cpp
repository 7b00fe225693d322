// coveyctl: the operator's tool. Each subcommand lives in its own file;
// this one only wires them to the command line.
#include <CLI/CLI.hpp>

#include "coveyctl/decode_command.h"

int main(int argc, char** argv) {
  CLI::App app{"coveyctl: inspect and control covey GDOI key servers and group members"};
  app.require_subcommand(1);
  covey::coveyctl::DecodeOptions decode;
  covey::coveyctl::add_decode_command(app, decode);
  CLI11_PARSE(app, argc, argv);
  return covey::coveyctl::exit_code();
}
