// covey-xfrm-test: drives the XFRM kernel boundary (xfrm.h) from a shell,
// for the VM tier's tests (tests/vm/xfrm_kmod.sh). Not installed; the GM
// uses the library directly.
//
// Keys come from a file (first line the encryption key, second the
// integrity key, hex), never from the command line, where `ps` shows them.
#include <poll.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>

#include "config/policy_syntax.h"
#include "gm/kernel_sa.h"
#include "kmod-free/xfrm.h"

using namespace covey;
using namespace covey::kmod;

namespace {

std::uint32_t number(const std::string& text, const char* what) {
  std::size_t used = 0;
  unsigned long v = 0;
  try {
    v = std::stoul(text, &used, 0);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || v > 0xffffffffUL) throw CLI::ValidationError(what, "\"" + text + "\" is not a 32-bit number");
  return static_cast<std::uint32_t>(v);
}

Mark mark(const std::string& text) {
  auto slash = text.find('/');
  if (slash == std::string::npos) throw CLI::ValidationError("--mark", "write VALUE/MASK, e.g. 0xe00/0xf00");
  return {number(text.substr(0, slash), "--mark"), number(text.substr(slash + 1), "--mark")};
}

Address address(const std::string& text, const char* what) {
  auto a = Address::parse(text);
  if (!a) throw CLI::ValidationError(what, "\"" + text + "\" is not an IP address");
  return *a;
}

// Reads two hex lines into SecretBytes and wipes what it read on the way.
struct Keys {
  crypto::SecretBytes encryption, integrity;
};
Keys read_keys(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw CLI::ValidationError("--keys", "cannot read " + path);
  Keys k;
  std::string line;
  for (crypto::SecretBytes* out : {&k.encryption, &k.integrity}) {
    if (!std::getline(in, line)) throw CLI::ValidationError("--keys", path + " needs two lines: encryption key, integrity key (hex)");
    Bytes raw;
    bool good = from_hex(line, raw);
    explicit_bzero(line.data(), line.size());
    if (!good) throw CLI::ValidationError("--keys", path + ": a line is not hex");
    *out = crypto::SecretBytes(ByteView(raw));
    explicit_bzero(raw.data(), raw.size());
  }
  return k;
}

int fail(const std::string& what) {
  std::cerr << "covey-xfrm-test: " << what << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"covey-xfrm-test: covey's XFRM kernel boundary from a shell (tests only)"};
  app.require_subcommand(1);
  std::string reqids = "0xc0e00000-0xc0e0ffff", mask = "0xf00";
  app.add_option("--reqids", reqids, "covey's reqid range FIRST-LAST")->capture_default_str();
  app.add_option("--mark-mask", mask, "covey's mark mask")->capture_default_str();

  std::string local, group, in, spi, reqid, mark_text = "0xe00/0xf00", transform = "esp-aes 256 esp-sha256-hmac", keys;
  std::uint64_t lifetime = 0;
  bool update = false;
  auto* sa = app.add_subcommand("group-sa", "install a TEK's outbound and inbound states (the design's pair)");
  sa->add_option("--local", local, "ANCHOR_LOCAL")->required();
  sa->add_option("--group", group, "ANCHOR_GROUP")->required();
  sa->add_option("--in", in, "ANCHOR_IN")->required();
  sa->add_option("--spi", spi)->required();
  sa->add_option("--reqid", reqid)->required();
  sa->add_option("--mark", mark_text, "steering mark VALUE/MASK")->capture_default_str();
  sa->add_option("--transform", transform, "GET VPN transform set")->capture_default_str();
  sa->add_option("--keys", keys, "file: encryption key, integrity key (hex lines)")->required();
  sa->add_option("--lifetime", lifetime, "hard lifetime in seconds (0: none)");
  sa->add_flag("--update", update, "XFRM_MSG_UPDSA instead of NEWSA");

  std::uint32_t priority = 0xffff;
  int family = 4;
  auto* pol = app.add_subcommand("group-policies", "install the out, in and fwd policies for a reqid");
  pol->add_option("--local", local)->required();
  pol->add_option("--group", group)->required();
  pol->add_option("--in", in)->required();
  pol->add_option("--reqid", reqid)->required();
  pol->add_option("--mark", mark_text)->capture_default_str();
  pol->add_option("--priority", priority)->capture_default_str();
  pol->add_option("--family", family, "inner family, 4 or 6")->capture_default_str();
  bool delete_policies = false;
  pol->add_flag("--delete", delete_policies, "delete them (XFRM_MSG_DELPOLICY) instead");

  std::string src, dst, enc = "cbc(aes)", auth = "hmac(sha256)";
  std::uint32_t trunc = 128;
  auto* raw = app.add_subcommand("add-sa", "one state with kernel algorithm names and whatever keys the file holds (the kernel checks them)");
  raw->add_option("--src", src)->required();
  raw->add_option("--dst", dst)->required();
  raw->add_option("--spi", spi)->required();
  raw->add_option("--reqid", reqid)->required();
  raw->add_option("--mark", mark_text)->capture_default_str();
  raw->add_option("--enc", enc)->capture_default_str();
  raw->add_option("--auth", auth)->capture_default_str();
  raw->add_option("--trunc", trunc)->capture_default_str();
  raw->add_option("--keys", keys)->required();

  auto* del = app.add_subcommand("del-sa", "delete one state, if covey's");
  del->add_option("--dst", dst)->required();
  del->add_option("--spi", spi)->required();
  del->add_option("--mark", mark_text)->capture_default_str();

  unsigned expect_expiries = 1, timeout_s = 30;
  auto* watch = app.add_subcommand("watch-expire", "print the kernel's XFRM expiries (XFRMNLGRP_EXPIRE) until COUNT of covey's arrived");
  watch->add_option("--count", expect_expiries, "covey's expiries to wait for")->capture_default_str();
  watch->add_option("--timeout", timeout_s, "seconds")->capture_default_str();

  app.add_subcommand("list", "covey's states and policies, and how many foreign ones");
  app.add_subcommand("flush", "delete every state and policy covey owns");

  CLI11_PARSE(app, argc, argv);

  try {
    Ownership own;
    auto dash = reqids.find('-');
    if (dash == std::string::npos) throw CLI::ValidationError("--reqids", "write FIRST-LAST");
    own.reqid_first = number(reqids.substr(0, dash), "--reqids");
    own.reqid_last = number(reqids.substr(dash + 1), "--reqids");
    own.mark_mask = number(mask, "--mark-mask");
    auto opened = XfrmSocket::open(own);
    if (!opened) return fail(opened.error());
    XfrmSocket& x = **opened;
    // What one operation on single entries cost, for the VM test: one
    // lookup and one change per entry, never a dump.
    struct Cost {
      const XfrmSocket& x;
      bool print;
      ~Cost() {
        if (print) std::cout << "netlink: " << x.requests_sent() << " requests, " << x.dumps_sent() << " dumps\n";
      }
    } cost{x, sa->parsed() || pol->parsed() || raw->parsed() || del->parsed()};

    if (sa->parsed()) {
      auto parsed = config::parse_tek_transform(transform);
      if (auto* err = std::get_if<config::SyntaxError>(&parsed)) return fail("--transform: " + err->message);
      Keys k = read_keys(keys);
      gdoi::Tek tek;
      tek.spi = number(spi, "--spi");
      tek.encryption_key = std::move(k.encryption);
      tek.integrity_key = std::move(k.integrity);
      GroupAnchors anchors{address(local, "--local"), address(group, "--group"), address(in, "--in")};
      auto pair = gm::group_sa_pair(tek, std::get<gdoi::TekTransform>(parsed), anchors, number(reqid, "--reqid"), mark(mark_text));
      if (!pair) return fail(pair.error());
      pair->outbound.hard_lifetime_s = pair->inbound.hard_lifetime_s = lifetime;
      for (const EspState* s : {&pair->outbound, &pair->inbound}) {
        auto r = update ? x.update_sa(*s) : x.add_sa(*s);
        if (!r) return fail(r.error());
        std::cout << (update ? "updated " : "added ") << s->describe() << "\n";
      }
    } else if (pol->parsed()) {
      if (family != 4 && family != 6) return fail("--family must be 4 or 6");
      GroupAnchors anchors{address(local, "--local"), address(group, "--group"), address(in, "--in")};
      GroupPolicies p = group_policies(anchors, static_cast<std::uint8_t>(family), number(reqid, "--reqid"), mark(mark_text), priority);
      for (const Policy* one : {&p.out, &p.in, &p.fwd}) {
        auto r = delete_policies ? x.delete_policy(*one) : x.add_policy(*one);
        if (!r) return fail(r.error());
        std::cout << (delete_policies ? "deleted " : "added ") << one->describe() << "\n";
      }
    } else if (raw->parsed()) {
      Keys k = read_keys(keys);
      EspState s;
      s.source = address(src, "--src");
      s.destination = address(dst, "--dst");
      s.spi = number(spi, "--spi");
      s.reqid = number(reqid, "--reqid");
      s.mark = mark(mark_text);
      s.encryption = enc;
      s.encryption_key = k.encryption.view();
      s.integrity = auth;
      s.integrity_key = k.integrity.view();
      s.truncation_bits = trunc;
      if (auto r = x.add_sa(s); !r) return fail(r.error());
      std::cout << "added " << s.describe() << "\n";
    } else if (del->parsed()) {
      StateId id{address(dst, "--dst"), number(spi, "--spi"), 50, mark(mark_text)};
      if (auto r = x.delete_sa(id); !r) return fail(r.error());
      std::cout << "deleted " << id.describe() << "\n";
    } else if (watch->parsed()) {
      auto expiries = XfrmExpiries::open();
      if (!expiries) return fail(expiries.error());
      std::cout << "watching XFRMNLGRP_EXPIRE" << std::endl;
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
      unsigned seen = 0;
      while (seen < expect_expiries) {
        if (std::chrono::steady_clock::now() >= until)
          return fail("no more expiries after " + std::to_string(timeout_s) + " s: " + std::to_string(seen) + " of " +
                      std::to_string(expect_expiries) + " of covey's states");
        pollfd p{(*expiries)->fd(), POLLIN, 0};
        poll(&p, 1, 200);
        auto batch = (*expiries)->take();
        if (!batch) return fail(batch.error());
        if (batch->overrun) std::cout << "overrun: the kernel dropped expiries" << std::endl;
        for (const StateExpiry& e : batch->expiries) {
          if (owns(own, e.state)) {
            ++seen;
            std::cout << e.str() << std::endl;
          } else {
            std::cout << "not covey's: " << e.str() << std::endl;
          }
        }
      }
    } else if (app.got_subcommand("list")) {
      auto states = x.states();
      if (!states) return fail(states.error());
      auto policies = x.policies();
      if (!policies) return fail(policies.error());
      std::size_t foreign_states = 0, foreign_policies = 0;
      for (const auto& s : *states) {
        if (owns(own, s))
          std::cout << "covey " << s.describe() << " " << s.encryption << "/" << s.integrity << " trunc "
                    << s.truncation_bits << " replay-window " << int(s.replay_window) << "\n";
        else
          ++foreign_states;
      }
      for (const auto& p : *policies) {
        if (owns(own, p))
          std::cout << "covey " << p.describe() << " priority " << p.priority << "\n";
        else
          ++foreign_policies;
      }
      std::cout << "foreign: " << foreign_states << " states, " << foreign_policies << " policies\n";
    } else if (app.got_subcommand("flush")) {
      auto report = x.flush_owned();
      if (!report) return fail(report.error());
      for (const auto& d : report->policies_deleted) std::cout << "deleted " << d << "\n";
      for (const auto& d : report->states_deleted) std::cout << "deleted " << d << "\n";
      for (const auto& r : report->refused) std::cout << "refused " << r << "\n";
      std::cout << report->str() << "\n";
      return report->refused.empty() ? 0 : 1;
    }
  } catch (const CLI::ValidationError& e) {
    return fail(e.what());
  }
  return 0;
}
