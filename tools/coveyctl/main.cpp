// coveyctl: the operator's tool. Each subcommand lives in its own file;
// this one only wires them to the command line.
#include <CLI/CLI.hpp>

#include "coveyctl/control_commands.h"
#include "coveyctl/decode_command.h"

int main(int argc, char** argv) {
  CLI::App app{"coveyctl: inspect and control covey GDOI key servers and group members"};
  app.set_version_flag("--version", "coveyctl " COVEY_VERSION, "print the version (the Debian package's) and exit");
  app.require_subcommand(1);
  covey::coveyctl::DecodeOptions decode;
  covey::coveyctl::add_decode_command(app, decode);
  // One subcommand runs, so one of the two exit codes is set.
  int control_exit = 0;
  covey::coveyctl::ControlOptions ks, gm;
  covey::coveyctl::add_ks_command(app, ks, control_exit);
  covey::coveyctl::add_gm_command(app, gm, control_exit);
  CLI11_PARSE(app, argc, argv);
  return control_exit != 0 ? control_exit : covey::coveyctl::exit_code();
}
