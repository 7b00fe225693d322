// covey's classifier (covey_lan_ingress, bpf/covey_dp.bpf.c) run by the kernel through
// BPF_PROG_TEST_RUN: tables of {description, ACL state, frame, expected
// verdict, mark and counters}, then random ACLs and frames checked against
// the reference matcher. Needs root (CAP_BPF and CAP_NET_ADMIN); without
// it the binary says so and exits 77, which ctest reports as skipped.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/pkt_cls.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "acl_samples.h"
#include "datapath/acl_compile.h"
#include "kmod-free/datapath.h"
#include "test_run.h"

namespace covey::datapath {
namespace {

using covey::testing::acl_from;
using covey::testing::addr;
using covey::testing::FrameSpec;
using covey::testing::Rng;
using gdoi::AclEntry;

constexpr std::uint32_t kSteerMark = 0xe00;
constexpr std::uint32_t kSteerMask = 0xf00;
// A mark the packet arrives with: a permit replaces it with the steering
// mark and a ticket (bpf/covey_maps.h), anything else leaves it alone.
constexpr std::uint32_t kMarkIn = 0x12345;

// The mark of a steered packet: the steering bits, and a ticket whose
// generation is never 0.
bool steered(std::uint32_t mark) {
  return (mark & COVEY_MARK_STEER_FIELD) == kSteerMark && (mark & COVEY_MARK_GEN_MASK) != 0;
}

enum class Verdict { Encrypt, Clear, Drop };

using covey::testing::TestRun;

struct Hit {
  covey_acl_kind kind;
  std::size_t line;  // 1-based, as `bpftool map dump` shows position
};

std::uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

class Classifier : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Options o;
    o.capacity.entries = 24000;
    o.capacity.trie_cells = 1u << 21;
    o.capacity.port_cells = 1u << 20;
    o.capacity.cross_cells = 1u << 24;  // the 10,000-entry random ACLs with a fail-close ACL
    auto d = Datapath::open(o);
    ASSERT_TRUE(d.ok()) << d.error();
    datapath_ = std::move(*d).release();
    ASSERT_TRUE(datapath_->set_steering_mark(kSteerMark, kSteerMask).ok());
    // Tens of thousands of address pairs in a few seconds: slots are
    // reused after a millisecond (tests/bpf/bpf_steer_test covers steering).
    datapath_->set_steer_stale(std::chrono::milliseconds(1));
  }
  static void TearDownTestSuite() {
    delete datapath_;
    datapath_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(datapath_, nullptr) << "the classifier did not load";
    datapath_->set_no_tek_active(false);
    datapath_->set_tek_expiry(0);
  }

  static void install(const std::vector<AclEntry>& acl, const std::vector<AclEntry>& fail_close) {
    auto a = compile_acl(acl);
    ASSERT_TRUE(a.ok()) << a.error();
    auto f = compile_acl(fail_close);
    ASSERT_TRUE(f.ok()) << f.error();
    auto r = datapath_->install(*a, *f);
    ASSERT_TRUE(r.ok()) << r.error();
  }

  static TestRun run(const std::vector<std::uint8_t>& frame, std::uint32_t mark_in = kMarkIn) {
    __sk_buff ctx{};
    ctx.mark = mark_in;
    return covey::testing::test_run(datapath_->program_fd(), frame, &ctx, 64);
  }

  static Datapath* datapath_;
};

Datapath* Classifier::datapath_ = nullptr;

FrameSpec v4(const char* src, const char* dst, std::uint8_t proto, std::uint16_t sport = 0, std::uint16_t dport = 0) {
  FrameSpec s;
  s.source = addr(src);
  s.destination = addr(dst);
  s.protocol = proto;
  s.source_port = sport;
  s.destination_port = dport;
  return s;
}

FrameSpec v6(const char* src, const char* dst, std::uint8_t proto, std::uint16_t sport = 0, std::uint16_t dport = 0) {
  FrameSpec s = v4("0.0.0.0", "0.0.0.0", proto, sport, dport);
  s.family = 6;
  s.source = addr(src);
  s.destination = addr(dst);
  return s;
}

template <class F>
FrameSpec with(FrameSpec s, F change) {
  change(s);
  return s;
}

// Raw frames for what FrameSpec cannot say.
std::vector<std::uint8_t> ethernet(std::uint16_t type, const std::vector<std::uint8_t>& payload) {
  std::vector<std::uint8_t> b(14 + payload.size(), 0);
  b[0] = b[6] = 0x02;
  b[5] = 1;
  b[11] = 2;
  b[12] = static_cast<std::uint8_t>(type >> 8);
  b[13] = static_cast<std::uint8_t>(type);
  for (std::size_t i = 0; i < payload.size(); ++i) b[14 + i] = payload[i];
  return b;
}

// The same behind one 802.1Q tag.
std::vector<std::uint8_t> tagged(std::uint16_t type, const std::vector<std::uint8_t>& payload) {
  std::vector<std::uint8_t> inner = {0, 100, static_cast<std::uint8_t>(type >> 8), static_cast<std::uint8_t>(type)};
  for (std::uint8_t b : payload) inner.push_back(b);
  return ethernet(0x8100, inner);
}

std::vector<std::uint8_t> ipv4_header(std::uint8_t version_ihl) {
  std::vector<std::uint8_t> h = {version_ihl, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2};
  return h;
}

struct Case {
  std::string description;
  std::vector<std::string> acl;
  std::variant<FrameSpec, std::vector<std::uint8_t>> frame;
  Verdict verdict;
  std::vector<Hit> hits;            // entries counted once; all others stay 0
  __u64 covey_stats::*outcome;  // the outcome counter that goes up by one
  std::vector<std::string> fail_close = {};
  bool no_tek_active = false;
};

Hit main_line(std::size_t line) { return {COVEY_ACL_MAIN, line}; }
Hit fail_close_line(std::size_t line) { return {COVEY_ACL_FAIL_CLOSE, line}; }

std::vector<Case> cases() {
  const auto enc = &covey_stats::encrypt;
  const auto deny = &covey_stats::bypass_deny;
  const auto none = &covey_stats::bypass_implicit;
  const auto bad = &covey_stats::malformed;
  const auto fc = &covey_stats::fail_close_drop;
  const FrameSpec tcp = v4("10.1.1.1", "10.2.2.2", 6, 40000, 443);
  const FrameSpec tcp6 = v6("2001:db8:1::5", "2001:db8:2::9", 6, 40000, 22);
  return {
      // Protocol.
      {"ip matches any protocol (GRE)", {"permit ip 10.0.0.0/8 10.0.0.0/8"}, v4("10.1.1.1", "10.2.2.2", 47),
       Verdict::Encrypt, {main_line(1)}, enc},
      {"a tcp entry does not match UDP", {"permit tcp any any"}, v4("10.1.1.1", "10.2.2.2", 17, 1, 2), Verdict::Clear,
       {}, none},
      {"a protocol number (esp) matches that protocol", {"permit esp any any"}, v4("10.1.1.1", "10.2.2.2", 50),
       Verdict::Encrypt, {main_line(1)}, enc},
      {"icmp", {"deny tcp any any", "permit icmp any any"}, v4("10.1.1.1", "10.2.2.2", 1), Verdict::Encrypt,
       {main_line(2)}, enc},
      // Prefixes.
      {"any any is /0 both ways", {"permit ip any any"}, v4("203.0.113.9", "198.51.100.7", 6, 1, 2), Verdict::Encrypt,
       {main_line(1)}, enc},
      {"host is /32: that address", {"permit ip host 10.0.0.1 any"}, v4("10.0.0.1", "192.0.2.1", 17, 5, 5),
       Verdict::Encrypt, {main_line(1)}, enc},
      {"host is /32: not its neighbour", {"permit ip host 10.0.0.1 any"}, v4("10.0.0.2", "192.0.2.1", 17, 5, 5),
       Verdict::Clear, {}, none},
      {"last address inside a /24", {"permit ip 192.168.1.0/24 any"}, v4("192.168.1.255", "1.1.1.1", 6, 1, 2),
       Verdict::Encrypt, {main_line(1)}, enc},
      {"first address past a /24", {"permit ip 192.168.1.0/24 any"}, v4("192.168.2.0", "1.1.1.1", 6, 1, 2),
       Verdict::Clear, {}, none},
      {"destination /12, inside", {"permit ip any 172.16.0.0/12"}, v4("1.1.1.1", "172.31.255.255", 6, 1, 2),
       Verdict::Encrypt, {main_line(1)}, enc},
      {"destination /12, outside", {"permit ip any 172.16.0.0/12"}, v4("1.1.1.1", "172.32.0.0", 6, 1, 2),
       Verdict::Clear, {}, none},
      {"the more specific entry first wins for its addresses",
       {"permit ip 10.1.0.0/16 any", "deny ip 10.0.0.0/8 any"}, v4("10.1.2.3", "1.1.1.1", 6, 1, 2), Verdict::Encrypt,
       {main_line(1)}, enc},
      {"... and the broader one after it for the rest", {"permit ip 10.1.0.0/16 any", "deny ip 10.0.0.0/8 any"},
       v4("10.2.2.3", "1.1.1.1", 6, 1, 2), Verdict::Clear, {main_line(2)}, deny},
      {"a broader entry first hides a later specific one", {"deny ip 10.0.0.0/8 any", "permit ip 10.1.0.0/16 any"},
       v4("10.1.2.3", "1.1.1.1", 6, 1, 2), Verdict::Clear, {main_line(1)}, deny},
      // Ports.
      {"destination port eq", {"permit tcp any any eq 443"}, tcp, Verdict::Encrypt, {main_line(1)}, enc},
      {"destination port eq, one off", {"permit tcp any any eq 443"},
       with(tcp, [](FrameSpec& s) { s.destination_port = 444; }), Verdict::Clear, {}, none},
      {"source port eq", {"permit udp any eq 848 any"}, v4("10.1.1.1", "10.2.2.2", 17, 848, 9), Verdict::Encrypt,
       {main_line(1)}, enc},
      {"source port eq, one off", {"permit udp any eq 848 any"}, v4("10.1.1.1", "10.2.2.2", 17, 847, 9),
       Verdict::Clear, {}, none},
      {"port range, low edge", {"permit udp any any range 16384 32767"}, v4("10.1.1.1", "10.2.2.2", 17, 9, 16384),
       Verdict::Encrypt, {main_line(1)}, enc},
      {"port range, high edge", {"permit udp any any range 16384 32767"}, v4("10.1.1.1", "10.2.2.2", 17, 9, 32767),
       Verdict::Encrypt, {main_line(1)}, enc},
      {"port range, below", {"permit udp any any range 16384 32767"}, v4("10.1.1.1", "10.2.2.2", 17, 9, 16383),
       Verdict::Clear, {}, none},
      {"port range, above", {"permit udp any any range 16384 32767"}, v4("10.1.1.1", "10.2.2.2", 17, 9, 32768),
       Verdict::Clear, {}, none},
      {"lt: 1023 is below 1024", {"deny tcp any any lt 1024", "permit tcp any any"},
       v4("10.1.1.1", "10.2.2.2", 6, 5000, 1023), Verdict::Clear, {main_line(1)}, deny},
      {"lt: 1024 is not", {"deny tcp any any lt 1024", "permit tcp any any"}, v4("10.1.1.1", "10.2.2.2", 6, 5000, 1024),
       Verdict::Encrypt, {main_line(2)}, enc},
      {"gt on the source port", {"permit tcp any gt 1023 any"}, v4("10.1.1.1", "10.2.2.2", 6, 1024, 80),
       Verdict::Encrypt, {main_line(1)}, enc},
      {"both ports must match", {"permit udp any eq 500 any eq 500"}, v4("10.1.1.1", "10.2.2.2", 17, 500, 4500),
       Verdict::Clear, {}, none},
      // Entry order.
      {"a deny before a permit bypasses", {"deny udp any eq 848 any eq 848", "permit ip any any"},
       v4("10.1.1.1", "10.2.2.2", 17, 848, 848), Verdict::Clear, {main_line(1)}, deny},
      {"a permit before a deny encrypts", {"permit ip any any", "deny udp any eq 848 any eq 848"},
       v4("10.1.1.1", "10.2.2.2", 17, 848, 848), Verdict::Encrypt, {main_line(1)}, enc},
      {"implicit deny: nothing matches, nothing counted", {"permit ip 10.0.0.0/8 10.0.0.0/8"},
       v4("11.0.0.1", "10.0.0.1", 6, 1, 2), Verdict::Clear, {}, none},
      {"an empty ACL sends everything in clear", {}, tcp, Verdict::Clear, {}, none},
      // IPv6.
      {"IPv6 prefixes", {"permit ip 2001:db8:1::/48 2001:db8:2::/48"}, tcp6, Verdict::Encrypt, {main_line(1)}, enc},
      {"IPv6 prefix, outside", {"permit ip 2001:db8:1::/48 2001:db8:2::/48"},
       v6("2001:db8:1::5", "2001:db8:3::9", 6, 1, 22), Verdict::Clear, {}, none},
      {"IPv6 /128 host", {"permit ip host 2001:db8::1 any"}, v6("2001:db8::1", "2001:db8::2", 17, 1, 2),
       Verdict::Encrypt, {main_line(1)}, enc},
      {"IPv6 /128 host, its neighbour", {"permit ip host 2001:db8::1 any"}, v6("2001:db8::2", "2001:db8::2", 17, 1, 2),
       Verdict::Clear, {}, none},
      {"IPv6 ::/0", {"permit ip 10.0.0.0/8 any", "v6: permit ip any any"}, tcp6, Verdict::Encrypt, {main_line(2)}, enc},
      {"IPv4 any any does not cover IPv6", {"permit ip any any"}, tcp6, Verdict::Clear, {}, none},
      {"IPv6 entries do not cover IPv4", {"v6: permit ip any any"}, tcp, Verdict::Clear, {}, none},
      {"IPv6 ports behind extension headers", {"v6: deny tcp any any eq 22", "v6: permit ip any any"},
       with(tcp6, [](FrameSpec& s) { s.ipv6_extensions = 3; }), Verdict::Clear, {main_line(1)}, deny},
      {"ICMPv6", {"v6: permit icmp any any"}, v6("2001:db8::1", "2001:db8::2", 58), Verdict::Encrypt, {main_line(1)},
       enc},
      // Ports not on the wire: permits cover them, denies need them.
      {"IPv4 non-initial fragment: a permit with a port match covers it", {"permit tcp any any eq 80"},
       with(tcp, [](FrameSpec& s) { s.later_fragment = true; }), Verdict::Encrypt, {main_line(1)}, enc},
      {"IPv4 non-initial fragment: a deny with a port match does not exempt it",
       {"deny tcp any any eq 443", "permit ip any any"}, with(tcp, [](FrameSpec& s) { s.later_fragment = true; }),
       Verdict::Encrypt, {main_line(2)}, enc},
      {"IPv4 first fragment: its ports count", {"deny tcp any any eq 443", "permit ip any any"},
       with(tcp, [](FrameSpec& s) { s.first_fragment = true; }), Verdict::Clear, {main_line(1)}, deny},
      {"TCP header cut short: ports unseen", {"deny tcp any any eq 443", "permit ip any any"},
       with(tcp, [](FrameSpec& s) { s.truncated_l4 = true; }), Verdict::Encrypt, {main_line(2)}, enc},
      {"IPv6 non-initial fragment", {"v6: deny tcp any any eq 22", "v6: permit tcp any any eq 22"},
       with(tcp6, [](FrameSpec& s) { s.later_fragment = true; }), Verdict::Encrypt, {main_line(2)}, enc},
      {"IPv6 first fragment: its ports count", {"v6: deny tcp any any eq 22", "v6: permit tcp any any eq 22"},
       with(tcp6, [](FrameSpec& s) { s.first_fragment = true; }), Verdict::Clear, {main_line(1)}, deny},
      {"IPv6 extension chain too long: a permit tcp covers the unseen protocol", {"v6: permit tcp any any eq 443"},
       with(tcp6, [](FrameSpec& s) { s.ipv6_extensions = 7; }), Verdict::Encrypt, {main_line(1)}, enc},
      {"IPv6 extension chain too long: a deny tcp does not exempt it", {"v6: deny tcp any any", "v6: permit ip any any"},
       with(tcp6, [](FrameSpec& s) { s.ipv6_extensions = 7; }), Verdict::Encrypt, {main_line(2)}, enc},
      {"IPv4 options before the ports", {"deny tcp any any eq 443", "permit ip any any"},
       with(tcp, [](FrameSpec& s) { s.ipv4_option_words = 10; }), Verdict::Clear, {main_line(1)}, deny},
      {"one VLAN tag", {"permit ip 10.0.0.0/8 any"}, with(tcp, [](FrameSpec& s) { s.vlan_tags = 1; }),
       Verdict::Encrypt, {main_line(1)}, enc},
      {"two VLAN tags (802.1ad)", {"permit ip 10.0.0.0/8 any"}, with(tcp, [](FrameSpec& s) { s.vlan_tags = 2; }),
       Verdict::Encrypt, {main_line(1)}, enc},
      // Not IP, and IP that cannot be read.
      {"ARP passes untouched", {"permit ip any any"}, ethernet(0x0806, std::vector<std::uint8_t>(28, 0)),
       Verdict::Clear, {}, &covey_stats::not_ip},
      // BPF_PROG_TEST_RUN (6.18) refuses an untagged IPv4 or IPv6 frame
      // shorter than the IP header; behind a VLAN tag it runs them.
      {"an IPv4 header of one byte is dropped", {"permit ip any any"}, tagged(0x0800, {0x45}), Verdict::Drop, {}, bad},
      {"an IPv4 header cut at 10 bytes is dropped", {"permit ip any any"},
       tagged(0x0800, std::vector<std::uint8_t>(10, 0x45)), Verdict::Drop, {}, bad},
      {"IPv4 header length under 20 is dropped", {"permit ip any any"}, ethernet(0x0800, ipv4_header(0x44)),
       Verdict::Drop, {}, bad},
      {"IPv4 options longer than the packet are dropped", {"permit ip any any"}, ethernet(0x0800, ipv4_header(0x4f)),
       Verdict::Drop, {}, bad},
      {"version 6 under the IPv4 ethertype is dropped", {"permit ip any any"}, ethernet(0x0800, ipv4_header(0x65)),
       Verdict::Drop, {}, bad},
      {"an IPv6 header cut at 30 bytes is dropped", {"v6: permit ip any any"},
       tagged(0x86dd, std::vector<std::uint8_t>(30, 0x60)), Verdict::Drop, {}, bad},
      {"a VLAN tag cut short is dropped", {"permit ip any any"}, ethernet(0x8100, {0, 100}), Verdict::Drop, {}, bad},
      // Fail-close.
      {"fail-close on: what its ACL permits is dropped", {"permit ip 10.0.0.0/8 10.0.0.0/8"}, tcp, Verdict::Drop,
       {fail_close_line(1)}, fc, {"permit ip 10.0.0.0/8 10.0.0.0/8"}, true},
      {"fail-close off: its ACL is not consulted", {"permit ip 10.0.0.0/8 10.0.0.0/8"}, tcp, Verdict::Encrypt,
       {main_line(1)}, enc, {"permit ip 10.0.0.0/8 10.0.0.0/8"}, false},
      {"fail-close on: its deny leaves the packet to the group's ACL",
       {"deny udp any any eq 848", "permit ip any any"}, v4("10.1.1.1", "10.2.2.2", 17, 848, 848), Verdict::Clear,
       {fail_close_line(1), main_line(1)}, deny, {"deny udp any any eq 848", "permit ip any any"}, true},
      {"fail-close on: outside its ACL a permit has no SA and goes in clear, as without fail-close",
       {"permit ip any any"}, v4("192.168.0.1", "10.2.2.2", 6, 1, 2), Verdict::Clear, {main_line(1)},
       &covey_stats::bypass_no_tek, {"permit ip 10.0.0.0/8 any"}, true},
      {"fail-close on: outside its ACL a deny still bypasses", {"deny ip any any"},
       v4("192.168.0.1", "10.2.2.2", 6, 1, 2), Verdict::Clear, {main_line(1)}, deny, {"permit ip 10.0.0.0/8 any"},
       true},
      {"fail-close on for IPv6", {"v6: permit ip any any"}, tcp6, Verdict::Drop, {fail_close_line(1)}, fc,
       {"v6: permit ip any any"}, true},
      {"fail-close on does not touch ARP", {"permit ip any any"}, ethernet(0x0806, std::vector<std::uint8_t>(28, 0)),
       Verdict::Clear, {}, &covey_stats::not_ip, {"permit ip any any"}, true},
  };
}

void expect_hits(Datapath& d, covey_acl_kind kind, std::size_t lines, const std::vector<Hit>& hits,
                 const std::string& what) {
  std::vector<std::uint64_t> want(lines, 0);
  for (const Hit& h : hits)
    if (h.kind == kind) want[h.line - 1] = 1;
  EXPECT_EQ(d.hits(kind), want) << what << (kind == COVEY_ACL_MAIN ? ": ACL hits" : ": fail-close ACL hits");
}

TEST_F(Classifier, Table) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.description);
    const auto acl = acl_from(c.acl);
    const auto fail_close = acl_from(c.fail_close);
    install(acl, fail_close);
    datapath_->set_no_tek_active(c.no_tek_active);
    datapath_->reset_stats();

    const std::vector<std::uint8_t> bytes =
        std::holds_alternative<FrameSpec>(c.frame) ? covey::testing::frame(std::get<FrameSpec>(c.frame))
                                                    : std::get<std::vector<std::uint8_t>>(c.frame);
    const TestRun r = run(bytes);
    EXPECT_EQ(r.retval, c.verdict == Verdict::Drop ? TC_ACT_SHOT : TC_ACT_OK) << c.description;
    if (c.verdict == Verdict::Encrypt)
      EXPECT_TRUE(steered(r.mark)) << std::hex << r.mark << " " << c.description;
    else
      EXPECT_EQ(r.mark, kMarkIn) << std::hex << c.description;
    EXPECT_EQ(r.out, bytes) << c.description << ": the packet itself must not change";
    expect_hits(*datapath_, COVEY_ACL_MAIN, acl.size(), c.hits, c.description);
    expect_hits(*datapath_, COVEY_ACL_FAIL_CLOSE, fail_close.size(), c.hits, c.description);
    const covey_stats s = datapath_->stats();
    EXPECT_EQ(s.packets, 1u) << c.description;
    EXPECT_EQ(s.*c.outcome, 1u) << c.description << ": outcome counter";
    const std::uint64_t outcomes = s.not_ip + s.malformed + s.encrypt + s.bypass_deny + s.bypass_implicit +
                                   s.fail_close_drop + s.table_error + s.bypass_no_tek + s.steer_full;
    EXPECT_EQ(outcomes, 1u) << c.description << ": exactly one outcome";
    if (HasFailure()) return;
  }
}

TEST_F(Classifier, UnseenPortsAreCounted) {
  install(acl_from({"permit ip any any"}), {});
  datapath_->reset_stats();
  run(covey::testing::frame(with(v4("10.1.1.1", "10.2.2.2", 6, 1, 2), [](FrameSpec& s) { s.later_fragment = true; })));
  run(covey::testing::frame(v4("10.1.1.1", "10.2.2.2", 6, 1, 2)));
  run(covey::testing::frame(v4("10.1.1.1", "10.2.2.2", 1)));
  EXPECT_EQ(datapath_->stats().ports_unseen, 1u) << "the fragment only: ICMP has no ports to miss";
}

TEST_F(Classifier, TekExpiryEnforcesFailCloseWithoutTheFlag) {
  // The GM writes the last TEK's expiry; if the GM is gone when it
  // passes, nobody sets no_tek_active, and the deadline still holds.
  install(acl_from({"permit ip any any"}), acl_from({"permit ip any any"}));
  const auto bytes = covey::testing::frame(v4("10.1.1.1", "10.2.2.2", 6, 1, 2));
  datapath_->set_tek_expiry(monotonic_ns() + 3600ull * 1000000000ull);
  EXPECT_EQ(run(bytes).retval, static_cast<std::uint32_t>(TC_ACT_OK)) << "a TEK is active for an hour";
  // The programs read the coarse clock, up to a tick behind this one.
  datapath_->set_tek_expiry(monotonic_ns() - 50000000ull);
  EXPECT_EQ(run(bytes).retval, static_cast<std::uint32_t>(TC_ACT_SHOT)) << "the last TEK expired";
  datapath_->set_tek_expiry(0);
  EXPECT_EQ(run(bytes).retval, static_cast<std::uint32_t>(TC_ACT_OK)) << "no deadline";
}

TEST_F(Classifier, InstallSwitchesGenerationsWhole) {
  install(acl_from({"permit ip any any"}), {});
  const std::uint32_t first = datapath_->generation();
  const auto bytes = covey::testing::frame(v4("10.1.1.1", "10.2.2.2", 6, 1, 2));
  EXPECT_TRUE(steered(run(bytes).mark));
  EXPECT_EQ(datapath_->hits(COVEY_ACL_MAIN), std::vector<std::uint64_t>{1});

  install(acl_from({"deny ip 10.0.0.0/8 any", "permit ip any any"}), {});
  EXPECT_NE(datapath_->generation(), first);
  EXPECT_EQ(run(bytes).mark, kMarkIn) << "the new ACL denies it";
  EXPECT_EQ(datapath_->hits(COVEY_ACL_MAIN), (std::vector<std::uint64_t>{1, 0})) << "counters of the new ACL";

  install(acl_from({"permit ip any any"}), {});
  EXPECT_EQ(datapath_->generation(), first);
  EXPECT_EQ(datapath_->hits(COVEY_ACL_MAIN), std::vector<std::uint64_t>{0}) << "a reused generation starts at 0";
}

TEST_F(Classifier, RefusesAnAclLargerThanItsMaps) {
  Options o;
  o.capacity = Capacity{};
  o.capacity.cross_cells = 16;
  auto small = Datapath::open(o);
  ASSERT_TRUE(small.ok()) << small.error();
  auto c = compile_acl(covey::testing::site_acl(1000));
  ASSERT_TRUE(c.ok());
  auto empty = compile_acl({});
  auto r = (*small)->install(*c, *empty);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("cross-product cells per generation and the maps hold 16"), std::string::npos)
      << r.error();
}

// Random ACLs and frames: the kernel's verdict, mark and counters against
// the reference matcher, packet by packet.
void cross_check(Datapath& d, const std::vector<AclEntry>& acl, const std::vector<AclEntry>& fail_close,
                 bool no_tek_active, Rng& rng, int frames,
                 TestRun (*run_frame)(const std::vector<std::uint8_t>&, std::uint32_t)) {
  d.set_no_tek_active(no_tek_active);
  std::vector<std::uint64_t> want_main(acl.size(), 0), want_fc(fail_close.size(), 0);
  for (int i = 0; i < frames; ++i) {
    const std::uint8_t family = (i % 2) ? 6 : 4;
    const auto& aim = (i % 3 == 0 && !fail_close.empty()) ? fail_close : acl;
    const PacketFields p = covey::testing::random_packet(rng, aim, family);
    const FrameSpec spec = covey::testing::spec_for(p, rng);
    const PacketFields seen = covey::testing::fields(spec);

    Verdict want = Verdict::Clear;
    bool decided = false;
    if (no_tek_active) {
      if (auto f = first_match(fail_close, seen)) {
        ++want_fc[*f];
        if (fail_close[*f].action == AclEntry::Action::Permit) {
          want = Verdict::Drop;
          decided = true;
        }
      }
    }
    if (!decided) {
      if (auto m = first_match(acl, seen)) {
        ++want_main[*m];
        // With no TEK there is no SA: a permit outside the fail-close ACL goes in clear.
        if (acl[*m].action == AclEntry::Action::Permit && !no_tek_active) want = Verdict::Encrypt;
      }
    }
    const TestRun r = run_frame(covey::testing::frame(spec), kMarkIn);
    const bool ok = r.retval == (want == Verdict::Drop ? TC_ACT_SHOT : TC_ACT_OK) &&
                    (want == Verdict::Encrypt ? steered(r.mark) : r.mark == kMarkIn);
    if (!ok) {
      const auto m = first_match(acl, seen);
      FAIL() << "frame " << i << " (IPv" << int(family) << ", protocol " << seen.protocol << ", ports "
             << seen.source_port << " -> " << seen.destination_port << "): kernel retval " << r.retval << " mark 0x"
             << std::hex << r.mark << ", reference " << (m ? acl[*m].str() : std::string("implicit deny"));
    }
  }
  EXPECT_EQ(d.hits(COVEY_ACL_MAIN), want_main) << "per-entry hits of the ACL";
  EXPECT_EQ(d.hits(COVEY_ACL_FAIL_CLOSE), want_fc) << "per-entry hits of the fail-close ACL";
  EXPECT_EQ(d.stats().table_error, 0u);
}

TEST_F(Classifier, AgreesWithReferenceOnRandomAcls) {
  Rng rng(11);
  struct Round {
    std::size_t entries, fail_close;
    std::size_t pool;
    bool no_tek_active;
  };
  const Round rounds[] = {
      {10, 0, 40, false},   {60, 10, 0, true},     {300, 0, 0, false},     {1000, 50, 40, true},
      {1000, 0, 40, false}, {10000, 0, 40, false}, {10000, 200, 40, true},
  };
  for (const Round& round : rounds) {
    const auto acl = covey::testing::random_acl(rng, round.entries, 0, round.pool);
    const auto fail_close = covey::testing::random_acl(rng, round.fail_close, 0, round.pool);
    SCOPED_TRACE(std::to_string(round.entries) + " entries, fail-close ACL of " + std::to_string(round.fail_close) +
                 (round.no_tek_active ? ", no TEK active" : ""));
    install(acl, fail_close);
    datapath_->reset_stats();
    cross_check(*datapath_, acl, fail_close, round.no_tek_active, rng, 4000, &Classifier::run);
    if (HasFailure()) return;
  }
}

TEST_F(Classifier, AgreesWithReferenceOnTenThousandSiteEntries) {
  Rng rng(12);
  for (std::uint8_t family : {std::uint8_t{4}, std::uint8_t{6}}) {
    SCOPED_TRACE("IPv" + std::to_string(family));
    const auto acl = covey::testing::site_acl(10000, family);
    install(acl, {});
    datapath_->reset_stats();
    cross_check(*datapath_, acl, {}, false, rng, 4000, &Classifier::run);
  }
}

// Pinned maps: a second process (here a second Datapath) and bpftool see
// the same state, and BTF makes bpftool's dump readable.
TEST(PinnedMaps, BpftoolReadsThemAndASecondLoaderReusesThem) {
  char tmpl[] = "/tmp/covey-bpffs-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  ASSERT_EQ(mount("bpf", root.c_str(), "bpf", 0, nullptr), 0) << "mount -t bpf: " << std::strerror(errno);
  const std::string dir = root + "/covey/GET_VPN";
  {
    Options o;
    o.capacity.entries = 64;
    o.capacity.cross_cells = 1024;
    o.pin_dir = dir;
    auto first = Datapath::open(o);
    ASSERT_TRUE(first.ok()) << first.error();
    auto acl = compile_acl(acl_from({"deny udp any eq 848 any eq 848", "permit ip 10.0.0.0/8 10.0.0.0/8"}));
    auto none = compile_acl({});
    ASSERT_TRUE((*first)->install(*acl, *none).ok());
    ASSERT_TRUE((*first)->set_steering_mark(kSteerMark, kSteerMask).ok());

    bpf_test_run_opts opts{};
    opts.sz = sizeof(opts);
    const auto bytes = covey::testing::frame(v4("10.1.1.1", "10.2.2.2", 6, 1, 2));
    opts.data_in = bytes.data();
    opts.data_size_in = static_cast<std::uint32_t>(bytes.size());
    opts.repeat = 3;
    ASSERT_EQ(bpf_prog_test_run_opts((*first)->program_fd(), &opts), 0);

    auto second = Datapath::open(o);
    ASSERT_TRUE(second.ok()) << second.error();
    EXPECT_EQ((*second)->generation(), (*first)->generation());
    EXPECT_EQ((*second)->hits(COVEY_ACL_MAIN), (std::vector<std::uint64_t>{0, 3})) << "the same counters";

    const std::string cmd = "bpftool -j map dump pinned " + dir + "/covey_acl 2>&1";
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
    ASSERT_TRUE(pipe);
    std::string text;
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe.get())) text.append(buf, n);
    auto dump = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(dump.is_discarded()) << text.substr(0, 500);
    bool seen_permit = false;
    for (const auto& e : dump) {
      const auto& v = e.at("formatted").at("value");
      if (v.at("position") == 2 && v.at("action") == "COVEY_ACL_PERMIT" && v.at("protocol") == 0 &&
          v.at("src_len") == 8)
        seen_permit = true;
    }
    EXPECT_TRUE(seen_permit) << "bpftool shows entry 2 by field name: " << text.substr(0, 800);
  }
  std::filesystem::remove_all(dir);
  umount(root.c_str());
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace covey::datapath

int main(int argc, char** argv) {
  if (geteuid() != 0) {
    std::printf("bpf_classify_test: skipped: BPF_PROG_TEST_RUN of a tc program needs root "
                "(CAP_BPF and CAP_NET_ADMIN); run it as root, e.g. sudo ctest -L bpf\n");
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
