// covey's data path beyond classification (bpf/covey_dp.bpf.c), run by
// the kernel through BPF_PROG_TEST_RUN: steering with address
// preservation (slot, mark, rewrite after encryption, the GM's own
// traffic), inbound XDP (SPIs, clear traffic that should have been
// encrypted), and TBAR (stamp, MSS clamp, window, duplicates, removal).
// Tables of {description, packet in, map state, expected verdict,
// expected packet out (built independently, byte for byte), counters}.
//
// The programs are loaded with test hooks (bpf/maps.h): the clock comes
// from skb->cb[1..2] and a decrypted packet's SPI from skb->cb[0], the two
// things a test run cannot give. The binary runs in a network namespace
// of its own (no routes but its own). Needs root; exits 77 without it.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>
#include <linux/if_link.h>
#include <linux/pkt_cls.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "acl_samples.h"
#include "datapath/acl_compile.h"
#include "kmod-free/datapath.h"
#include "packets.h"
#include "test_run.h"

namespace covey::datapath {
namespace {

using namespace covey::testing;  // NOLINT: frames and addresses

constexpr std::uint32_t kSteerMark = 0xe00;
constexpr std::uint32_t kSteerMask = 0xf00;
constexpr std::uint32_t kSpi = 0x1A2B3C4D;     // the group's current TEK: in and out
constexpr std::uint32_t kOldSpi = 0x0BADCAFE;  // the previous TEK, still accepted inbound
constexpr std::uint32_t kForeignSpi = 0x00C0FFEE;
constexpr std::uint64_t kSecond = 1000000000ull;
constexpr std::uint64_t kMs = 1000000ull;
constexpr std::uint32_t kRedirect = 7;  // TC_ACT_REDIRECT
constexpr Mac kWanMac{0x02, 0, 0, 0, 0, 0x0c};

const auto kAnchorLocal = ip4("169.254.0.1");
const auto kAnchorGroup = ip4("169.254.0.2");
const auto kAnchorIn = ip4("169.254.0.3");
const auto kAnchorLocal6 = ip6("fd00::1");
const auto kAnchorGroup6 = ip6("fd00::2");
const auto kAnchorIn6 = ip6("fd00::3");

const std::vector<std::string> kAcl = {
    "deny udp any eq 848 any eq 848",   // 1: GDOI stays in clear
    "deny ip 10.1.9.0/24 any",          // 2: an exempt subnet
    "permit ip 10.0.0.0/8 10.0.0.0/8",  // 3: site to site
    "v6: deny udp any eq 848 any eq 848",
    "v6: permit ip 2001:db8::/32 2001:db8::/32",
};

const std::vector<std::string> kFailClose = {
    "permit ip 10.0.0.0/8 10.0.0.0/8",
    "v6: permit ip 2001:db8::/32 2001:db8::/32",
};

// ---------------------------------------------------------------------
// Counters: every field of covey_stats by name, so a case states the
// counters it moves and all others must stay where they were.

struct Counter {
  const char* name;
  __u64 covey_stats::*field;
};

const std::vector<Counter>& counters() {
#define COVEY_COUNTER(name, section, drop, text) Counter{#name, &covey_stats::name},
  static const std::vector<Counter> all = {COVEY_STATS(COVEY_COUNTER)};
#undef COVEY_COUNTER
  return all;
}

using Delta = std::map<std::string, std::uint64_t>;

void expect_delta(const covey_stats& before, const covey_stats& after, const Delta& want,
                  const std::string& what) {
  ASSERT_EQ(counters().size(), sizeof(covey_stats) / sizeof(__u64))
      << "a counter is missing from the test's list";
  for (const auto& [name, n] : want) {
    bool known = false;
    for (const Counter& c : counters()) known |= name == c.name;
    ASSERT_TRUE(known) << what << ": no counter named " << name;
  }
  for (const Counter& c : counters()) {
    const auto it = want.find(c.name);
    EXPECT_EQ(after.*c.field - before.*c.field, it == want.end() ? 0u : it->second)
        << what << ": counter " << c.name;
  }
}

// ---------------------------------------------------------------------
// Running a program.

struct Ctx {
  std::uint32_t mark = 0;
  std::uint32_t spi = 0;    // the secpath's SPI (cb[0]); 0 = not decrypted
  std::uint64_t clock = 0;  // ns (cb[1..2])
  std::uint32_t ingress_ifindex = 0;
  std::uint32_t ifindex = 0;
  std::uint32_t gso_segs = 0, gso_size = 0;
};

using Result = covey::testing::TestRun;

Result run_tc(const Datapath& d, Program p, const Bytes& in, const Ctx& c = {}) {
  __sk_buff ctx{};
  ctx.mark = c.mark;
  ctx.cb[0] = c.spi;
  ctx.cb[1] = static_cast<std::uint32_t>(c.clock);
  ctx.cb[2] = static_cast<std::uint32_t>(c.clock >> 32);
  ctx.ingress_ifindex = c.ingress_ifindex;
  ctx.ifindex = c.ifindex;
  ctx.gso_segs = c.gso_segs;
  ctx.gso_size = c.gso_size;
  return covey::testing::test_run(d.program_fd(p), in, &ctx);
}

Result run_xdp(const Datapath& d, const Bytes& in) {
  return covey::testing::test_run(d.program_fd(Program::WanXdp), in, nullptr);
}

// ---------------------------------------------------------------------
// Frames.

Bytes udp4(const std::string& src, const std::string& dst, std::uint16_t sport = 5000,
           std::uint16_t dport = 6000) {
  Ipv4Frame f;
  f.src = ip4(src);
  f.dst = ip4(dst);
  f.payload = udp(sport, dport, 24);
  return frame(f);
}

// ESP as the group SA's output leaves it (outer = the anchors), or with
// other outer addresses.
Bytes esp4(std::array<std::uint8_t, 4> src, std::array<std::uint8_t, 4> dst, std::uint32_t spi = kSpi,
           std::uint16_t frag = 0, unsigned vlan_tags = 0) {
  Ipv4Frame f;
  f.src = src;
  f.dst = dst;
  f.protocol = 50;
  f.frag = frag;
  f.id = 0x77;
  f.vlan_tags = vlan_tags;
  f.payload = esp(spi, 9);
  return frame(f);
}

Bytes esp6(std::array<std::uint8_t, 16> src, std::array<std::uint8_t, 16> dst, std::uint32_t spi = kSpi) {
  Ipv6Frame f;
  f.src = src;
  f.dst = dst;
  f.payload = esp(spi, 9);
  return frame(f);
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes b;
  for (const Bytes& p : parts) b.insert(b.end(), p.begin(), p.end());
  return b;
}

Ipv6Frame v6(std::uint8_t next, Bytes payload, const std::string& src = "2001:db8:1::1",
             const std::string& dst = "2001:db8:2::2") {
  Ipv6Frame f;
  f.src = ip6(src);
  f.dst = ip6(dst);
  f.next = next;
  f.payload = std::move(payload);
  return f;
}

std::uint32_t gen_of(std::uint32_t mark) {
  return mark & COVEY_MARK_GEN_MASK;
}
std::uint32_t slot_of(std::uint32_t mark) {
  return mark >> COVEY_MARK_SLOT_SHIFT;
}
bool steered(std::uint32_t mark) {
  return (mark & COVEY_MARK_STEER_FIELD) == kSteerMark && gen_of(mark) != 0;
}

// ---------------------------------------------------------------------
// A loaded data path with the group's state.

std::unique_ptr<Datapath> open_datapath(std::uint32_t steer_slots, bool test_hooks = true,
                                        std::function<void()> between_writes = {}) {
  auto acl = compile_acl(acl_from(kAcl));
  auto fail_close = compile_acl(acl_from(kFailClose));
  EXPECT_TRUE(acl.ok() && fail_close.ok());
  if (!acl.ok() || !fail_close.ok()) return nullptr;
  Options o;
  o.capacity = Capacity::fitting(*acl, *fail_close);
  // Room for the other policies some tests install.
  o.capacity.entries += 8;
  o.capacity.trie_cells *= 2;
  o.capacity.port_cells *= 2;
  o.capacity.cross_cells *= 2;
  o.capacity.steer_slots = steer_slots;
  o.capacity.tbar_peers = 64;
  o.test_hooks = test_hooks;
  o.between_writes = std::move(between_writes);
  auto d = Datapath::open(o);
  EXPECT_TRUE(d.ok()) << (d.ok() ? "" : d.error());
  if (!d.ok()) return nullptr;
  std::unique_ptr<Datapath> dp = std::move(*d);
  EXPECT_TRUE(dp->install(*acl, *fail_close).ok());
  EXPECT_TRUE(dp->set_steering_mark(kSteerMark, kSteerMask).ok());
  dp->set_steer_stale(std::chrono::seconds(1));
  Anchors a4;
  a4.family = 4;
  std::copy(kAnchorLocal.begin(), kAnchorLocal.end(), a4.local.begin());
  std::copy(kAnchorGroup.begin(), kAnchorGroup.end(), a4.group.begin());
  std::copy(kAnchorIn.begin(), kAnchorIn.end(), a4.in.begin());
  dp->set_anchors(a4);
  Anchors a6;
  a6.family = 6;
  a6.local = kAnchorLocal6;
  a6.group = kAnchorGroup6;
  a6.in = kAnchorIn6;
  dp->set_anchors(a6);
  dp->set_wan_mac(kWanMac);
  EXPECT_TRUE(dp->set_spi(kSpi, COVEY_SPI_INBOUND | COVEY_SPI_OUTBOUND).ok());
  EXPECT_TRUE(dp->set_spi(kOldSpi, COVEY_SPI_INBOUND).ok());
  return dp;
}

class DatapathTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { dp_ = open_datapath(64).release(); }
  static void TearDownTestSuite() {
    delete dp_;
    dp_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(dp_, nullptr) << "the data path did not load";
    dp_->set_no_tek_active(false);
    dp_->set_tek_expiry(0);
    dp_->set_tbar({});
    dp_->set_drop_unknown_spi(false);
    dp_->set_drop_clear(false);
    dp_->set_egress_fib(false);
    // Each test starts a minute after the last: every slot is idle by then.
    clock_ += 60 * kSecond;
  }
  static Datapath* dp_;
  static std::uint64_t clock_;
};
Datapath* DatapathTest::dp_ = nullptr;
std::uint64_t DatapathTest::clock_ = 1000 * kSecond;

// The ticket LAN ingress gives a pair at `clock`.
std::uint32_t steer(const Datapath& d, const Bytes& clear, std::uint64_t clock) {
  const Result r = run_tc(d, Program::LanIngress, clear, {.mark = 0x12345, .clock = clock});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_OK));
  EXPECT_TRUE(steered(r.mark)) << std::hex << r.mark;
  return r.mark;
}

// ---------------------------------------------------------------------
// Steering.

TEST_F(DatapathTest, PermitRecordsThePairInItsSlotAndCarriesTheTicketInTheMark) {
  const Bytes in = udp4("10.1.1.1", "10.2.2.2");
  const covey_stats before = dp_->stats();
  const Result r = run_tc(*dp_, Program::LanIngress, in, {.mark = 0x12345, .clock = clock_});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_OK));
  EXPECT_EQ(r.out, in) << "steering does not touch the packet (TBAR off)";
  EXPECT_TRUE(steered(r.mark)) << std::hex << r.mark;
  expect_delta(before, dp_->stats(), {{"packets", 1}, {"encrypt", 1}, {"steer_claimed", 1}}, "first packet");

  const auto slot = dp_->steer_slot(slot_of(r.mark));
  ASSERT_TRUE(slot);
  EXPECT_EQ(slot->gen, gen_of(r.mark));
  EXPECT_EQ(slot->family, static_cast<__u32>(COVEY_FAMILY_V4));
  const auto src = ip4("10.1.1.1"), dst = ip4("10.2.2.2");
  EXPECT_EQ(Bytes(slot->src, slot->src + 4), Bytes(src.begin(), src.end()));
  EXPECT_EQ(Bytes(slot->dst, slot->dst + 4), Bytes(dst.begin(), dst.end()));
  EXPECT_EQ(slot->used_ns, clock_);

  // The pair's next packets find the same slot; its use time is refreshed
  // only once a quarter of the stale time has passed (no write per packet).
  const covey_stats before2 = dp_->stats();
  EXPECT_EQ(steer(*dp_, in, clock_ + 100 * kMs), r.mark);
  EXPECT_EQ(dp_->steer_slot(slot_of(r.mark))->used_ns, clock_);
  EXPECT_EQ(steer(*dp_, in, clock_ + 300 * kMs), r.mark);
  EXPECT_EQ(dp_->steer_slot(slot_of(r.mark))->used_ns, clock_ + 300 * kMs);
  expect_delta(before2, dp_->stats(), {{"packets", 2}, {"encrypt", 2}}, "same pair");

  // Another pair: another slot.
  const std::uint32_t other = steer(*dp_, udp4("10.1.1.1", "10.2.2.3"), clock_);
  EXPECT_NE(slot_of(other), slot_of(r.mark));
}

TEST_F(DatapathTest, RewriteAfterEncryption) {
  const std::uint32_t ticket = steer(*dp_, udp4("10.1.1.1", "10.2.2.2"), clock_);
  const std::uint32_t ticket6 = steer(
      *dp_,
      [] {
        Ipv6Frame f;
        f.src = ip6("2001:db8:1::5");
        f.dst = ip6("2001:db8:2::9");
        f.next = 17;
        f.payload = udp(1, 2, 8);
        return frame(f);
      }(),
      clock_);
  const std::uint32_t other_gen = (ticket & ~COVEY_MARK_GEN_MASK) | (gen_of(ticket) % 255 + 1);
  const Bytes from_anchors = esp4(kAnchorLocal, kAnchorGroup);
  const Bytes rewritten = esp4(ip4("10.1.1.1"), ip4("10.2.2.2"));

  struct Case {
    std::string description;
    Bytes in;
    std::uint32_t mark;
    std::uint32_t retval;
    Bytes out;  // empty: the same as in
    std::uint32_t mark_out;
    Delta delta;
  };
  const std::vector<Case> cases = {
      {"steered ESP from the anchors leaves with the pair's addresses, checksum fixed, mark cleared",
       from_anchors,
       ticket,
       TC_ACT_OK,
       rewritten,
       0,
       {{"rewritten", 1}}},
      {"the same packet on a second pass (a redirect to the same device): untouched",
       rewritten,
       0,
       TC_ACT_OK,
       {},
       0,
       {{"esp_out", 1}}},
      {"IPv6: the outer addresses become the pair's",
       esp6(kAnchorLocal6, kAnchorGroup6),
       ticket6,
       TC_ACT_OK,
       esp6(ip6("2001:db8:1::5"), ip6("2001:db8:2::9")),
       0,
       {{"rewritten", 1}}},
      {"a ticket whose generation the slot does not hold is dropped",
       from_anchors,
       other_gen,
       TC_ACT_SHOT,
       {},
       other_gen,
       {{"rewrite_stale", 1}}},
      {"a ticket naming a slot past the table is dropped",
       from_anchors,
       (0xfffffu << 12) | kSteerMark | 1,
       TC_ACT_SHOT,
       {},
       (0xfffffu << 12) | kSteerMark | 1,
       {{"rewrite_stale", 1}}},
      {"a ticket of generation 0 is dropped",
       from_anchors,
       ticket & ~COVEY_MARK_GEN_MASK,
       TC_ACT_SHOT,
       {},
       ticket & ~COVEY_MARK_GEN_MASK,
       {{"rewrite_stale", 1}}},
      {"an IPv6 ticket on IPv4 ESP is dropped",
       from_anchors,
       ticket6,
       TC_ACT_SHOT,
       {},
       ticket6,
       {{"rewrite_mismatch", 1}}},
      {"steered ESP whose outer source is not ANCHOR_LOCAL is dropped",
       esp4(ip4("169.254.0.9"), kAnchorGroup),
       ticket,
       TC_ACT_SHOT,
       {},
       ticket,
       {{"rewrite_mismatch", 1}}},
      {"steered ESP whose outer destination is not ANCHOR_GROUP is dropped",
       esp4(kAnchorLocal, ip4("10.2.2.2")),
       ticket,
       TC_ACT_SHOT,
       {},
       ticket,
       {{"rewrite_mismatch", 1}}},
      {"ESP to ANCHOR_GROUP without a ticket is dropped: the anchor never leaves",
       from_anchors,
       0,
       TC_ACT_SHOT,
       {},
       0,
       {{"anchor_unsteered", 1}}},
      {"a steered packet still in clear at the WAN is dropped (no XFRM policy took it)",
       udp4("10.1.1.1", "10.2.2.2"),
       ticket,
       TC_ACT_SHOT,
       {},
       ticket,
       {{"steered_clear", 1}}},
      {"the group's ESP (outbound SPI), unsteered, passes",
       esp4(ip4("10.1.1.1"), ip4("10.9.9.9")),
       0x55,
       TC_ACT_OK,
       {},
       0x55,
       {{"esp_out", 1}}},
      {"an inbound-only SPI is not the group's output: classified as the GM's own ESP",
       esp4(ip4("172.16.0.1"), ip4("172.16.0.2"), kOldSpi),
       0,
       TC_ACT_OK,
       {},
       0,
       {{"packets", 1}, {"bypass_implicit", 1}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    const covey_stats before = dp_->stats();
    const Result r = run_tc(*dp_, Program::WanEgress, c.in, {.mark = c.mark, .clock = clock_});
    EXPECT_EQ(r.retval, c.retval);
    const Bytes& want = c.out.empty() ? c.in : c.out;
    EXPECT_EQ(r.out, want) << "got  " << hex(r.out) << "\nwant " << hex(want);
    if (r.out.size() > 14 && r.out[12] == 0x08) {
      EXPECT_TRUE(ipv4_checksum_ok(r.out));
    }
    EXPECT_EQ(r.mark, c.mark_out) << std::hex << r.mark;
    expect_delta(before, dp_->stats(), c.delta, c.description);
  }
}

TEST_F(DatapathTest, RewriteClearsOnlyCoveysMarkBits) {
  // Bits of the steering field outside steer_mask belong to someone else.
  ASSERT_TRUE(dp_->set_steering_mark(0x200, 0x300).ok());
  const Result classified =
      run_tc(*dp_, Program::LanIngress, udp4("10.1.1.1", "10.2.2.2"), {.mark = 0xc00, .clock = clock_});
  EXPECT_EQ(classified.mark & COVEY_MARK_STEER_FIELD, 0xe00u) << std::hex << classified.mark;
  const Result r =
      run_tc(*dp_, Program::WanEgress, esp4(kAnchorLocal, kAnchorGroup), {.mark = classified.mark});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_OK));
  EXPECT_EQ(r.mark, 0xc00u) << std::hex << r.mark;
  ASSERT_TRUE(dp_->set_steering_mark(kSteerMark, kSteerMask).ok());
  EXPECT_FALSE(dp_->set_steering_mark(0x1e00, 0x1f00).ok()) << "a mask outside the steering field";
  EXPECT_FALSE(dp_->set_steering_mark(0xe00, 0x0f0).ok()) << "a mark outside its mask";
}

TEST_F(DatapathTest, TheGmsOwnTrafficIsBouncedToIngressAndForwardedTrafficIsCountedOnce) {
  const Bytes own = udp4("10.1.1.5", "10.3.3.3");
  Bytes bounced = own;
  std::copy(kMacA.begin(), kMacA.end(), bounced.begin());  // destination MAC = the interface's own

  struct Case {
    std::string description;
    Bytes in;
    std::uint32_t ingress_ifindex;
    bool no_tek;
    std::uint32_t retval;
    Bytes out;
    bool marked;
    Delta delta;
    std::vector<std::uint64_t> hits;
  };
  const std::vector<Case> cases = {
      {"the GM's own permitted packet: steered, addressed to itself, redirected to ingress",
       own,
       0,
       false,
       kRedirect,
       bounced,
       true,
       {{"packets", 1}, {"encrypt", 1}, {"steer_claimed", 1}, {"local_bounced", 1}},
       {0, 0, 1}},
      {"the GM's own GDOI packet: denied, sent in clear",
       udp4("10.1.1.5", "10.3.3.3", 848, 848),
       0,
       false,
       TC_ACT_OK,
       {},
       false,
       {{"packets", 1}, {"bypass_deny", 1}},
       {1, 0, 0}},
      {"forwarded and denied: already counted at the LAN's ingress, not again",
       udp4("10.1.9.1", "10.3.3.3"),
       1,
       false,
       TC_ACT_OK,
       {},
       false,
       {{"packets", 1}},
       {0, 0, 0}},
      {"forwarded from an interface without covey, permitted: steered here, counted here",
       udp4("10.1.1.6", "10.3.3.3"),
       1,
       false,
       kRedirect,
       {},
       true,
       {{"packets", 1}, {"encrypt", 1}, {"steer_claimed", 1}, {"local_bounced", 1}},
       {0, 0, 1}},
      {"no TEK: the fail-close ACL drops the GM's own protected packet",
       own,
       0,
       true,
       TC_ACT_SHOT,
       {},
       false,
       {{"packets", 1}, {"fail_close_drop", 1}},
       {0, 0, 0}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    ASSERT_TRUE(dp_->install(*compile_acl(acl_from(kAcl)), *compile_acl(acl_from(kFailClose))).ok());
    dp_->set_no_tek_active(c.no_tek);
    const covey_stats before = dp_->stats();
    const Result r =
        run_tc(*dp_, Program::WanEgress, c.in, {.clock = clock_, .ingress_ifindex = c.ingress_ifindex});
    EXPECT_EQ(r.retval, c.retval);
    if (c.out.empty()) {
      if (c.retval != kRedirect) {
        EXPECT_EQ(r.out, c.in);
      }
    } else {
      EXPECT_EQ(r.out, c.out) << "got  " << hex(r.out) << "\nwant " << hex(c.out);
    }
    EXPECT_EQ(steered(r.mark), c.marked) << std::hex << r.mark;
    expect_delta(before, dp_->stats(), c.delta, c.description);
    auto hits = dp_->hits(COVEY_ACL_MAIN);
    hits.resize(3);
    EXPECT_EQ(hits, c.hits);
  }
}

// Two address pairs that must share one slot: the table has one.
TEST(Collision, TwoPairsInOneSlotNeverLeaveWithEachOthersAddresses) {
  auto dp = open_datapath(1);
  ASSERT_TRUE(dp);
  const std::uint64_t t0 = 5000 * kSecond;
  const Bytes a = udp4("10.1.1.1", "10.2.2.2"), b = udp4("10.4.4.4", "10.5.5.5");
  const Bytes from_anchors = esp4(kAnchorLocal, kAnchorGroup);
  const Bytes as_a = esp4(ip4("10.1.1.1"), ip4("10.2.2.2")), as_b = esp4(ip4("10.4.4.4"), ip4("10.5.5.5"));
  auto rewrite = [&](std::uint32_t mark) {
    return run_tc(*dp, Program::WanEgress, from_anchors, {.mark = mark});
  };

  const std::uint32_t ticket_a = steer(*dp, a, t0);
  EXPECT_EQ(slot_of(ticket_a), 0u);

  // B arrives while A is in use: it cannot take the slot and is dropped.
  covey_stats before = dp->stats();
  Result r = run_tc(*dp, Program::LanIngress, b, {.clock = t0 + 500 * kMs});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_SHOT));
  EXPECT_FALSE(steered(r.mark));
  expect_delta(before, dp->stats(), {{"packets", 1}, {"steer_full", 1}}, "B while A is in use");
  r = rewrite(ticket_a);
  EXPECT_EQ(r.out, as_a) << "A's packet still leaves as A";

  // A idle for longer than the stale time: B takes the slot, with a new
  // generation. A packet of A still in flight is then dropped, never
  // sent with B's addresses; B's leaves as B.
  const std::uint32_t ticket_b = steer(*dp, b, t0 + 1500 * kMs);
  EXPECT_EQ(slot_of(ticket_b), 0u);
  EXPECT_NE(gen_of(ticket_b), gen_of(ticket_a));
  before = dp->stats();
  r = rewrite(ticket_a);
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_SHOT)) << "A's late packet";
  EXPECT_NE(r.out, as_b);
  expect_delta(before, dp->stats(), {{"rewrite_stale", 1}}, "A's packet after B took the slot");
  r = rewrite(ticket_b);
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_OK));
  EXPECT_EQ(r.out, as_b);

  // Now A is the newcomer and waits.
  r = run_tc(*dp, Program::LanIngress, a, {.clock = t0 + 1600 * kMs});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(rewrite(ticket_b).out, as_b);
}

TEST(Collision, GenerationsCycleThrough255BeforeATicketRepeats) {
  // A ticket (slot, generation) comes back only after 255 reassignments,
  // each at least the stale time after the last: a packet would have to
  // stay in flight 254 stale times (over 4 minutes at 1 s) to meet its
  // own ticket on another pair; bpf/README.md has the argument.
  auto dp = open_datapath(1);
  ASSERT_TRUE(dp);
  std::uint64_t t = 9000 * kSecond;
  std::vector<std::uint32_t> gens;
  for (int i = 0; i < 256; ++i) {
    const Bytes pair = udp4("10.1.1." + std::to_string(i % 2 + 1), "10.2.2.2");
    gens.push_back(gen_of(steer(*dp, pair, t)));
    t += 1100 * kMs;
  }
  for (int i = 0; i < 255; ++i)
    EXPECT_EQ(gens[static_cast<std::size_t>(i)], static_cast<std::uint32_t>(i + 1));
  EXPECT_EQ(gens[255], 1u) << "after 255, generation 1 again (0 is never a ticket)";
}

// Random interleavings of classification, time and rewrites of packets
// in flight, with more pairs than slots: every rewritten packet carries
// its own pair's addresses, whatever happened to the slots meanwhile.
TEST(Collision, RandomInterleavingsNeverMisaddress) {
  auto dp = open_datapath(2);
  ASSERT_TRUE(dp);
  std::mt19937_64 rng(7);
  std::vector<std::array<std::uint8_t, 4>> src, dst;
  for (int i = 0; i < 6; ++i) {
    src.push_back(ip4("10.1.0." + std::to_string(i + 1)));
    dst.push_back(ip4("10.2.0." + std::to_string(i + 1)));
  }
  struct InFlight {
    int pair;
    std::uint32_t mark;
  };
  std::vector<InFlight> flight;
  std::uint64_t t = 20000 * kSecond;
  int sent = 0, stale = 0, refused = 0;
  const Bytes from_anchors = esp4(kAnchorLocal, kAnchorGroup);
  for (int op = 0; op < 4000; ++op) {
    const auto pick = rng() % 10;
    if (pick < 4) {
      const int p = static_cast<int>(rng() % src.size());
      Ipv4Frame f;
      f.src = src[static_cast<std::size_t>(p)];
      f.dst = dst[static_cast<std::size_t>(p)];
      f.payload = udp(1, 2, 4);
      const Result r = run_tc(*dp, Program::LanIngress, frame(f), {.clock = t});
      if (r.retval == TC_ACT_OK) {
        ASSERT_TRUE(steered(r.mark));
        flight.push_back({p, r.mark});
      } else {
        ++refused;
      }
    } else if (pick < 7) {
      t += (rng() % 1500) * kMs;
    } else if (!flight.empty()) {
      const std::size_t i = rng() % flight.size();
      const InFlight pkt = flight[i];
      if (rng() % 3)
        flight.erase(flight.begin() + static_cast<std::ptrdiff_t>(i));  // else: GSO, more to come
      const Result r = run_tc(*dp, Program::WanEgress, from_anchors, {.mark = pkt.mark});
      if (r.retval == TC_ACT_OK) {
        ++sent;
        ASSERT_EQ(r.out,
                  esp4(src[static_cast<std::size_t>(pkt.pair)], dst[static_cast<std::size_t>(pkt.pair)]))
            << "op " << op << ": a packet of pair " << pkt.pair << " left with other addresses";
      } else {
        ASSERT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_SHOT));
        ++stale;
      }
    }
  }
  // The run must have exercised all three outcomes to mean anything.
  EXPECT_GT(sent, 100);
  EXPECT_GT(stale, 10);
  EXPECT_GT(refused, 10);
}

// A slot a claim is writing (seq odd: covey_maps.h) is read by nobody,
// even when its generation and addresses look right: a packet that met
// it in the middle of the claim's writes would read a mix of two pairs.
// The state a claim leaves for nanoseconds is set here by hand.
TEST(Collision, ASlotBeingClaimedIsNeitherReadNorTaken) {
  auto dp = open_datapath(1);
  ASSERT_TRUE(dp);
  const int fd = dp->map_fd("covey_steer_slots");
  ASSERT_GE(fd, 0);
  const std::uint64_t t0 = 7000 * kSecond;
  const Bytes a = udp4("10.1.1.1", "10.2.2.2"), b = udp4("10.4.4.4", "10.5.5.5");
  const Bytes from_anchors = esp4(kAnchorLocal, kAnchorGroup);
  const std::uint32_t ticket_a = steer(*dp, a, t0);
  auto set_seq = [&](std::uint32_t seq) {
    covey_steer_slot slot{};
    const std::uint32_t key = 0;
    ASSERT_EQ(bpf_map_lookup_elem(fd, &key, &slot), 0);
    slot.seq = seq;
    ASSERT_EQ(bpf_map_update_elem(fd, &key, &slot, BPF_ANY), 0);
  };
  const std::uint32_t seq = dp->steer_slot(0)->seq;
  ASSERT_EQ(seq % 2, 0u) << "a claim left the slot even";

  set_seq(seq + 1);
  covey_stats before = dp->stats();
  Result r = run_tc(*dp, Program::WanEgress, from_anchors, {.mark = ticket_a});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_SHOT)) << "rewrite from a slot being written";
  expect_delta(before, dp->stats(), {{"rewrite_stale", 1}}, "rewrite during a claim");
  before = dp->stats();
  r = run_tc(*dp, Program::LanIngress, a, {.clock = t0 + 100 * kMs});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_SHOT)) << "A's own slot, being written, is not A's";
  r = run_tc(*dp, Program::LanIngress, b, {.clock = t0 + 5 * kSecond});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_SHOT)) << "a slot being written is not claimed";
  expect_delta(before, dp->stats(), {{"packets", 2}, {"steer_full", 2}}, "classification during a claim");

  set_seq(seq + 2);
  r = run_tc(*dp, Program::WanEgress, from_anchors, {.mark = ticket_a});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_OK));
  EXPECT_EQ(r.out, esp4(ip4("10.1.1.1"), ip4("10.2.2.2"))) << "once written, read again";
}

// The kernel's address of a function (/proc/kallsyms; 0 if not shown).
std::uint64_t kernel_symbol(const std::string& name) {
  FILE* f = std::fopen("/proc/kallsyms", "r");
  if (!f) return 0;
  char line[512];
  std::uint64_t at = 0;
  while (!at && std::fgets(line, sizeof line, f)) {
    unsigned long long address = 0;
    char type = 0;
    char sym[256] = {};
    if (std::sscanf(line, "%llx %c %255s", &address, &type, sym) == 3 && name == sym) at = address;
  }
  std::fclose(f);
  return at;
}

// How many times a loaded program (its subprograms included) calls the
// kernel helper at `helper`: the verifier leaves helper - __bpf_call_base
// in the call's imm.
int helper_calls(int prog_fd, std::uint64_t helper, std::uint64_t call_base) {
  bpf_prog_info info{};
  __u32 len = sizeof info;
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) return -1;
  std::vector<bpf_insn> insns(info.xlated_prog_len / sizeof(bpf_insn));
  info = {};
  info.xlated_prog_len = static_cast<__u32>(insns.size() * sizeof(bpf_insn));
  info.xlated_prog_insns = reinterpret_cast<std::uintptr_t>(insns.data());
  len = sizeof info;
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) return -1;
  const auto imm = static_cast<std::int32_t>(helper - call_base);
  int calls = 0;
  for (const bpf_insn& i : insns)
    calls += i.code == (BPF_JMP | BPF_CALL) && i.src_reg == 0 && i.imm == imm;
  return calls;
}

// Classification and the rewrite run for every packet the group sends:
// neither may take a lock (a torn read of a slot is detected instead).
TEST(Collision, NoLockIsTakenForAPacketSent) {
  auto dp = open_datapath(64);
  ASSERT_TRUE(dp);
  const std::uint64_t base = kernel_symbol("__bpf_call_base");
  ASSERT_NE(base, 0u) << "/proc/kallsyms shows no addresses (kernel.kptr_restrict?)";
  for (const char* lock : {"bpf_spin_lock", "bpf_spin_unlock"}) {
    SCOPED_TRACE(lock);
    const std::uint64_t helper = kernel_symbol(lock);
    ASSERT_NE(helper, 0u);
    for (const Program p : {Program::LanIngress, Program::WanEgress})
      EXPECT_EQ(helper_calls(dp->program_fd(p), helper, base), 0) << program_name(p);
    // The TBAR receiver keeps its per-sender lock: the scan finds it.
    EXPECT_GT(helper_calls(dp->program_fd(Program::WanIngress), helper, base), 0);
  }
}

// ---------------------------------------------------------------------
// Inbound XDP.

TEST_F(DatapathTest, XdpInbound) {
  const auto real_src = ip4("10.2.2.2"), real_dst = ip4("10.1.1.1");
  struct Case {
    std::string description;
    Bytes in;
    bool drop_unknown, drop_clear;
    std::uint32_t action;
    Bytes out;
    Delta delta;
  };
  const std::vector<Case> cases = {
      {"ESP with the group's SPI: outer destination becomes ANCHOR_IN, checksum fixed",
       esp4(real_src, real_dst),
       false,
       false,
       XDP_PASS,
       esp4(real_src, kAnchorIn),
       {{"esp_in", 1}}},
      {"ESP with the previous TEK's SPI (rollover): the same",
       esp4(real_src, real_dst, kOldSpi),
       false,
       false,
       XDP_PASS,
       esp4(real_src, kAnchorIn, kOldSpi),
       {{"esp_in", 1}}},
      {"behind a VLAN tag",
       esp4(real_src, real_dst, kSpi, 0, 1),
       false,
       false,
       XDP_PASS,
       esp4(real_src, kAnchorIn, kSpi, 0, 1),
       {{"esp_in", 1}}},
      {"IPv6 ESP with the group's SPI",
       esp6(ip6("2001:db8:2::9"), ip6("2001:db8:1::5")),
       false,
       false,
       XDP_PASS,
       esp6(ip6("2001:db8:2::9"), kAnchorIn6),
       {{"esp_in", 1}}},
      {"IPv6 ESP with an unknown SPI, dropping configured: dropped",
       esp6(ip6("2001:db8:2::9"), ip6("2001:db8:1::5"), kForeignSpi),
       true,
       false,
       XDP_DROP,
       {},
       {{"esp_unknown_drop", 1}}},
      {"IPv6 ESP with an unknown SPI, dropping not configured: passed as it is",
       esp6(ip6("2001:db8:2::9"), ip6("2001:db8:1::5"), kForeignSpi),
       false,
       false,
       XDP_PASS,
       {},
       {{"esp_unknown_pass", 1}}},
      {"a later IPv6 fragment between addresses the ACL protects: to ANCHOR_IN for reassembly",
       frame(v6(44, cat({fragment6(50, 1480, false), Bytes(32, 0xee)}), "2001:db8:2::9", "2001:db8:1::5")),
       false,
       false,
       XDP_PASS,
       frame(v6(44, cat({fragment6(50, 1480, false), Bytes(32, 0xee)}), "2001:db8:2::9", "fd00::3")),
       {{"esp_in_fragment", 1}}},
      {"IPv6 clear traffic the ACL protects, dropping configured: dropped",
       frame(v6(17, udp(1, 2, 8), "2001:db8:2::9", "2001:db8:1::5")),
       false,
       true,
       XDP_DROP,
       {},
       {{"clear_drop", 1}}},
      {"IPv6 clear traffic the ACL exempts (GDOI): passed",
       frame(v6(17, udp(848, 848, 8), "2001:db8:2::9", "2001:db8:1::5")),
       false,
       true,
       XDP_PASS,
       {},
       {}},
      {"the first fragment of group ESP: by its SPI",
       esp4(real_src, real_dst, kSpi, 0x2000),
       false,
       false,
       XDP_PASS,
       esp4(real_src, kAnchorIn, kSpi, 0x2000),
       {{"esp_in", 1}}},
      {"a later fragment between addresses the ACL protects: to ANCHOR_IN for reassembly",
       esp4(real_src, real_dst, kSpi, 185),
       false,
       false,
       XDP_PASS,
       esp4(real_src, kAnchorIn, kSpi, 185),
       {{"esp_in_fragment", 1}}},
      {"a later fragment between addresses the ACL does not protect: untouched",
       esp4(ip4("172.16.0.1"), ip4("172.16.0.2"), kSpi, 185),
       false,
       false,
       XDP_PASS,
       {},
       {}},
      {"unknown SPI, dropping configured: dropped",
       esp4(real_src, real_dst, kForeignSpi),
       true,
       false,
       XDP_DROP,
       {},
       {{"esp_unknown_drop", 1}}},
      {"unknown SPI, dropping not configured: passed as it is",
       esp4(real_src, real_dst, kForeignSpi),
       false,
       false,
       XDP_PASS,
       {},
       {{"esp_unknown_pass", 1}}},
      {"clear traffic the ACL protects, dropping configured: dropped",
       udp4("10.2.2.2", "10.1.1.1"),
       false,
       true,
       XDP_DROP,
       {},
       {{"clear_drop", 1}}},
      {"clear traffic the ACL protects, dropping not configured: passed",
       udp4("10.2.2.2", "10.1.1.1"),
       false,
       false,
       XDP_PASS,
       {},
       {}},
      {"clear traffic the ACL exempts (GDOI): passed",
       udp4("10.2.2.2", "10.1.1.1", 848, 848),
       false,
       true,
       XDP_PASS,
       {},
       {}},
      {"clear traffic outside the ACL: passed", udp4("192.0.2.1", "10.1.1.1"), false, true, XDP_PASS, {}, {}},
      {"the GM's own steered packet bounced in from the WAN's egress: passed",
       [] {
         Ipv4Frame f;
         f.src = ip4("10.1.1.5");
         f.dst = ip4("10.3.3.3");
         f.payload = udp(1, 2, 4);
         f.dmac = kWanMac;
         f.smac = kWanMac;
         return frame(f);
       }(),
       false,
       true,
       XDP_PASS,
       {},
       {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    dp_->set_drop_unknown_spi(c.drop_unknown);
    dp_->set_drop_clear(c.drop_clear);
    const Bytes& want = c.out.empty() ? c.in : c.out;
    // The same decisions at the WAN's tc ingress (COVEY_CFG_INBOUND_TC, for
    // a WAN without XDP), on packets XFRM has not seen (no secpath); there
    // the GM's own bounced packets are known by their steering mark.
    for (const bool tc : {false, true}) {
      SCOPED_TRACE(tc ? "tc ingress" : "XDP");
      dp_->set_inbound_tc(tc);
      const covey_stats before = dp_->stats();
      const bool own = c.description.starts_with("the GM's own");
      const Result r = tc ? run_tc(*dp_, Program::WanIngress, c.in,
                                   {.mark = own ? (5u << COVEY_MARK_SLOT_SHIFT) | kSteerMark | 1 : 0u, .spi = 0})
                          : run_xdp(*dp_, c.in);
      const std::uint32_t action = !tc ? c.action : c.action == XDP_DROP ? TC_ACT_SHOT : TC_ACT_OK;
      EXPECT_EQ(r.retval, action);
      EXPECT_EQ(r.out, want) << "got  " << hex(r.out) << "\nwant " << hex(want);
      expect_delta(before, dp_->stats(), c.delta, c.description);
    }
  }
  dp_->set_inbound_tc(false);
  // Without the flag, tc ingress leaves what XDP decides alone.
  const Bytes esp = esp4(real_src, real_dst);
  const covey_stats before = dp_->stats();
  const Result r = run_tc(*dp_, Program::WanIngress, esp, {.spi = 0});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_OK));
  EXPECT_EQ(r.out, esp);
  expect_delta(before, dp_->stats(), {}, "tc ingress without COVEY_CFG_INBOUND_TC");
}

// ---------------------------------------------------------------------
// TBAR: the sender's stamp.

constexpr std::uint16_t kSid = 0x0102;
constexpr std::uint32_t kPseudotime = 0x00ABCDEF;

TbarPolicy tbar_on(std::uint32_t window_ms = 2000, std::uint16_t mss = 0) {
  TbarPolicy p;
  p.stamp = true;
  p.check = true;
  p.sid = kSid;
  p.window_ms = window_ms;
  p.tcp_mss_v4 = mss;
  return p;
}

TEST_F(DatapathTest, TbarStampInsertedExactly) {
  dp_->set_tbar(tbar_on(2000, 1386));
  dp_->set_pseudotime(kPseudotime, clock_);
  const std::uint64_t now = clock_ + 1500 * kMs + 999999;  // 1.999999 s on: pseudotime + 1500

  struct Case {
    std::string description;
    Ipv4Frame in;
    std::uint32_t retval;
    std::optional<Ipv4Frame> out;  // none: unchanged
    std::uint32_t counters;        // counters the packet used
    Delta delta;
    Ctx ctx = {};
  };
  auto base = [](std::uint8_t protocol, Bytes payload) {
    Ipv4Frame f;
    f.src = ip4("10.1.1.1");
    f.dst = ip4("10.2.2.2");
    f.protocol = protocol;
    f.payload = std::move(payload);
    f.id = 0x4321;
    return f;
  };
  auto stamped = [](Ipv4Frame f, std::uint32_t counter, bool aligned_id = true) {
    const Bytes s = stamp(kSid, kPseudotime + 1500, counter);
    f.options.insert(f.options.begin(), s.begin(), s.end());
    if (aligned_id) f.id = static_cast<std::uint16_t>(counter);
    return f;
  };
  const std::uint32_t c0 = 0x7000fff0;
  const Delta stamped_delta = {{"packets", 1}, {"encrypt", 1}, {"steer_claimed", 1}, {"tbar_stamped", 1}};
  Delta clamped_delta = stamped_delta;
  clamped_delta["mss_clamped"] = 1;
  Ipv4Frame with_options = base(17, udp(1, 2, 16));
  with_options.options = {0x94, 4, 0, 0};  // router alert
  Ipv4Frame fragment = base(17, udp(1, 2, 16));
  fragment.frag = 0x2000;
  Ipv4Frame full_options = base(17, udp(1, 2, 16));
  full_options.options.assign(32, 1);  // 52-byte header: no room for 12 more

  const std::vector<Case> cases = {
      {"UDP: the option first, header length, total length, ID = counter, checksum", base(17, udp(1, 2, 16)),
       TC_ACT_OK, stamped(base(17, udp(1, 2, 16)), c0), 1, stamped_delta},
      {"existing options follow the stamp", with_options, TC_ACT_OK, stamped(with_options, c0 + 1), 1,
       stamped_delta},
      {"a fragment keeps its ID (its reassembly needs it)", fragment, TC_ACT_OK,
       stamped(fragment, c0 + 2, false), 1, stamped_delta},
      {"TCP SYN: MSS above the clamp lowered to it, TCP checksum fixed",
       base(6, tcp(40000, 443, 0x02, mss_option(1460))), TC_ACT_OK,
       stamped(base(6, tcp(40000, 443, 0x02, mss_option(1386))), c0 + 3), 1, clamped_delta},
      {"TCP SYN-ACK with more options: MSS found among them",
       base(6, tcp(443, 40000, 0x12, Bytes{1, 1, 4, 2, 2, 4, 0x05, 0xb4, 3, 3, 7})), TC_ACT_OK,
       stamped(base(6, tcp(443, 40000, 0x12, Bytes{1, 1, 4, 2, 2, 4, 0x05, 0x6a, 3, 3, 7})), c0 + 4), 1,
       clamped_delta},
      {"TCP SYN with a smaller MSS: unchanged", base(6, tcp(40000, 443, 0x02, mss_option(1200))), TC_ACT_OK,
       stamped(base(6, tcp(40000, 443, 0x02, mss_option(1200))), c0 + 5), 1, stamped_delta},
      {"TCP segment (no SYN): MSS-like bytes in its payload left alone",
       base(6, tcp(40000, 443, 0x10, {}, 8)), TC_ACT_OK,
       stamped(base(6, tcp(40000, 443, 0x10, {}, 8)), c0 + 6), 1, stamped_delta},
      {"no room for the stamp in the header: dropped, never sent unstamped",
       full_options,
       TC_ACT_SHOT,
       std::nullopt,
       0,
       {{"packets", 1}, {"steer_claimed", 1}, {"tbar_no_room", 1}}},
      {"a GSO skb the kernel cannot grow (not TCP): dropped, never sent unstamped",
       base(17, udp(1, 2, 16)),
       TC_ACT_SHOT,
       std::nullopt,
       0,
       {{"packets", 1}, {"steer_claimed", 1}, {"tbar_error", 1}},
       Ctx{.gso_segs = 3, .gso_size = 8}},
      {"denied traffic is not stamped",
       base(17, udp(848, 848, 16)),
       TC_ACT_OK,
       std::nullopt,
       0,
       {{"packets", 1}, {"bypass_deny", 1}}},
  };
  dp_->set_tbar_counter(c0);
  std::uint32_t counter = c0;
  int pair = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    // A fresh destination per case, so each claims its slot.
    Ipv4Frame in = c.in, out = c.out.value_or(c.in);
    in.dst[3] = out.dst[3] = static_cast<std::uint8_t>(100 + pair++);
    Ctx ctx = c.ctx;
    ctx.clock = now;
    const covey_stats before = dp_->stats();
    const Result r = run_tc(*dp_, Program::LanIngress, frame(in), ctx);
    EXPECT_EQ(r.retval, c.retval);
    if (c.retval == TC_ACT_OK) {
      const Bytes want = frame(out);
      EXPECT_EQ(r.out, want) << "got  " << hex(r.out) << "\nwant " << hex(want);
      EXPECT_TRUE(ipv4_checksum_ok(r.out));
      if (in.protocol == 6) {
        EXPECT_TRUE(tcp_checksum_ok(r.out));
      }
    }
    expect_delta(before, dp_->stats(), c.delta, c.description);
    counter += c.counters;
    EXPECT_EQ(dp_->tbar_counter(), counter);
  }
}

TEST_F(DatapathTest, TbarStampOffLeavesPacketsAlone) {
  TbarPolicy p = tbar_on();
  p.stamp = false;
  dp_->set_tbar(p);
  const Bytes in = udp4("10.1.1.1", "10.2.2.77");
  const Result r = run_tc(*dp_, Program::LanIngress, in, {.clock = clock_});
  EXPECT_EQ(r.out, in);
  EXPECT_TRUE(steered(r.mark));
}

TEST_F(DatapathTest, TbarStampOnTheGmsOwnTraffic) {
  dp_->set_tbar(tbar_on());
  dp_->set_pseudotime(kPseudotime, clock_);
  dp_->set_tbar_counter(77);
  Ipv4Frame f;
  f.src = ip4("10.1.1.5");
  f.dst = ip4("10.3.3.99");
  f.payload = udp(1, 2, 8);
  const Result r = run_tc(*dp_, Program::WanEgress, frame(f), {.clock = clock_ + 2 * kMs});
  EXPECT_EQ(r.retval, kRedirect);
  Ipv4Frame want = f;
  const Bytes s = stamp(kSid, kPseudotime + 2, 77);
  want.options = s;
  want.id = 77;
  want.dmac = kMacA;
  EXPECT_EQ(r.out, frame(want)) << hex(r.out);
}

// ---------------------------------------------------------------------
// Path MTU: a DF packet the stamp would make too big for the SA is not
// sent; the stamping program answers with ICMP fragmentation needed for
// the inner MTU less the stamp's 12 bytes.

// 1500 bytes outer, AES-256-CBC / HMAC-SHA-256-128 (kmod::esp_tunnel_inner_mtu).
constexpr std::uint32_t kInnerMtu = 1438;

TEST(TcpMssForStamp, LeavesRoomForTheHeadersAndTheStamp) {
  EXPECT_EQ(tcp_mss_for_stamp(1438, 4), 1386) << "1438 - 20 - 20 - 12";
  EXPECT_EQ(tcp_mss_for_stamp(1406, 6), 1330) << "1406 - 40 - 20 - 16 (the IPv6 destination-options stamp)";
  EXPECT_EQ(tcp_mss_for_stamp(52, 4), 0);
  // What a sender takes from the answer's MTU (inner - 12) less its headers: the same.
  EXPECT_EQ(tcp_mss_for_stamp(kInnerMtu, 4), kInnerMtu - COVEY_TBAR_OPT_LEN - 40);
}

// A frame of exactly `total` bytes of IPv4 (header, options and payload).
Ipv4Frame sized(std::uint8_t protocol, std::size_t total, std::uint16_t frag = 0x4000,
                const Bytes& options = {}, std::uint8_t icmp_type = 8) {
  Ipv4Frame f;
  f.src = ip4("10.1.1.1");
  f.dst = ip4("10.2.2.2");
  f.protocol = protocol;
  f.frag = frag;
  f.options = options;
  f.id = 0x4321;
  const std::size_t l4 = total - 20 - options.size();
  if (protocol == 17) {
    f.payload = udp(1000, 2000, l4 - 8);
  } else if (protocol == 6) {
    f.payload = tcp(40000, 443, 0x10, {}, l4 - 20);
  } else {
    f.payload = Bytes(l4, 0x5a);
    f.payload[0] = icmp_type;
    f.payload[1] = 0;
  }
  return f;
}

TbarPolicy tbar_mtu(std::uint32_t inner_mtu = kInnerMtu, bool stamp = true) {
  TbarPolicy p = tbar_on(2000, tcp_mss_for_stamp(kInnerMtu, 4));
  p.stamp = stamp;
  p.inner_mtu_v4 = inner_mtu;
  return p;
}

TEST_F(DatapathTest, PathMtuDfPacketsTooBigOnceStampedAreAnswered) {
  enum class Outcome { Stamped, Answered, Untouched };
  struct Case {
    std::string description;
    Ipv4Frame in;
    Outcome outcome;
    std::uint32_t retval;
    Delta delta;
    Program program = Program::LanIngress;
    TbarPolicy policy = tbar_mtu();
    Ctx ctx = {};
  };
  const Delta stamped = {{"packets", 1}, {"encrypt", 1}, {"steer_claimed", 1}, {"tbar_stamped", 1}};
  const Delta answered = {{"packets", 1}, {"frag_needed_sent", 1}};
  const Bytes alert = {0x94, 4, 0, 0};  // router alert
  const std::vector<Case> cases = {
      {"UDP, DF, exactly the inner MTU once stamped: stamped and steered", sized(17, kInnerMtu - 12),
       Outcome::Stamped, TC_ACT_OK, stamped},
      {"UDP, DF, one byte more: answered with fragmentation needed for 1426, back out to the sender",
       sized(17, kInnerMtu - 11), Outcome::Answered, kRedirect, answered},
      {"UDP, not DF, one byte more: stamped and left to the kernel (it encrypts the packet whole and "
       "fragments the ESP packet)",
       sized(17, kInnerMtu - 11, 0), Outcome::Stamped, TC_ACT_OK, stamped},
      {"IP options, DF, at the limit: stamped", sized(17, kInnerMtu - 12, 0x4000, alert), Outcome::Stamped,
       TC_ACT_OK, stamped},
      {"IP options, DF, one byte more: answered, the header quoted with its options",
       sized(17, kInnerMtu - 11, 0x4000, alert), Outcome::Answered, kRedirect, answered},
      {"TCP, DF, over: answered, the whole TCP header quoted", sized(6, 1500), Outcome::Answered, kRedirect,
       answered},
      {"a TCP GSO skb whose segments are too big (20 + 20 + 1399 > 1438): answered", sized(6, 2838),
       Outcome::Answered, kRedirect, answered, Program::LanIngress, tbar_mtu(),
       Ctx{.gso_segs = 2, .gso_size = 1399}},
      {"a TCP GSO skb whose segments fit (20 + 20 + 1398): not answered (the stamp takes its 12 bytes from "
       "each segment's payload; a test run cannot make a TCP GSO skb, so the stamp refuses it here)",
       sized(6, 2836),
       Outcome::Untouched,
       TC_ACT_SHOT,
       {{"packets", 1}, {"steer_claimed", 1}, {"tbar_error", 1}},
       Program::LanIngress,
       tbar_mtu(),
       Ctx{.gso_segs = 2, .gso_size = 1398}},
      {"ICMP echo, DF, over: answered", sized(1, kInnerMtu - 11), Outcome::Answered, kRedirect, answered},
      {"an ICMP error, DF, over: never answered (RFC 1122 3.2.2), stamped and left to the kernel",
       sized(1, kInnerMtu - 11, 0x4000, {}, 3), Outcome::Stamped, TC_ACT_OK, stamped},
      {"a later fragment with DF, over: the kernel answers none (RFC 1122 3.2.2), so neither does covey",
       sized(17, 1500, 0x4000 | 185),
       Outcome::Stamped,
       TC_ACT_OK,
       {{"packets", 1}, {"ports_unseen", 1}, {"encrypt", 1}, {"steer_claimed", 1}, {"tbar_stamped", 1}}},
      {"stamping off: not answered, steered as it is (the kernel's own check is the right one)",
       sized(17, kInnerMtu - 11),
       Outcome::Untouched,
       TC_ACT_OK,
       {{"packets", 1}, {"encrypt", 1}, {"steer_claimed", 1}},
       Program::LanIngress,
       tbar_mtu(kInnerMtu, false)},
      {"inner MTU unknown (0): stamped, not answered", sized(17, 1500), Outcome::Stamped, TC_ACT_OK, stamped,
       Program::LanIngress, tbar_mtu(0)},
      {"the GM's own packet at the WAN's egress, DF, over: answered into its own stack",
       sized(17, kInnerMtu - 11), Outcome::Answered, kRedirect, answered, Program::WanEgress},
      {"the GM's own packet at the limit: stamped and bounced",
       sized(17, kInnerMtu - 12),
       Outcome::Stamped,
       kRedirect,
       {{"packets", 1}, {"encrypt", 1}, {"steer_claimed", 1}, {"tbar_stamped", 1}, {"local_bounced", 1}},
       Program::WanEgress},
  };

  dp_->set_pseudotime(kPseudotime, clock_);
  std::uint32_t counter = 0x51000000;
  dp_->set_tbar_counter(counter);
  int pair = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    dp_->set_tbar(c.policy);
    Ipv4Frame in = c.in;
    in.dst[2] = 77;  // a pair no other test used, in a slot of its own
    in.dst[3] = static_cast<std::uint8_t>(100 + pair++);
    const Bytes frame_in = frame(in);
    Ctx ctx = c.ctx;
    ctx.clock = clock_;
    ctx.mark = 0x12345;
    const covey_stats before = dp_->stats();
    const Result r = run_tc(*dp_, c.program, frame_in, ctx);
    EXPECT_EQ(r.retval, c.retval);
    expect_delta(before, dp_->stats(), c.delta, c.description);
    const bool local = c.program == Program::WanEgress;
    switch (c.outcome) {
      case Outcome::Stamped: {
        Ipv4Frame want = in;
        const Bytes s = stamp(kSid, kPseudotime, counter);
        want.options.insert(want.options.begin(), s.begin(), s.end());
        if ((in.frag & 0x3fff) == 0) want.id = static_cast<std::uint16_t>(counter);
        if (local) want.dmac = in.smac;  // the bounce
        EXPECT_EQ(r.out, frame(want)) << "got  " << hex(r.out) << "\nwant " << hex(frame(want));
        EXPECT_TRUE(steered(r.mark)) << std::hex << r.mark;
        ++counter;
        break;
      }
      case Outcome::Answered: {
        const Bytes want = frag_needed(frame_in, static_cast<std::uint16_t>(kInnerMtu - 12), in.smac,
                                       local ? in.smac : in.dmac);
        EXPECT_EQ(r.out, want) << "got  " << hex(r.out) << "\nwant " << hex(want);
        EXPECT_TRUE(ipv4_checksum_ok(r.out));
        EXPECT_TRUE(icmp_checksum_ok(r.out));
        EXPECT_EQ(r.mark, 0x12345u) << "not steered";
        // A device filling in a checksum left pending (CHECKSUM_PARTIAL)
        // over the quoted TCP or UDP header changes nothing.
        if (in.protocol == 6 || in.protocol == 17) {
          Bytes filled = r.out;
          fill_pending_checksum(filled, 14 + 28 + 20 + in.options.size(), in.protocol == 6 ? 16 : 6);
          EXPECT_EQ(filled, r.out) << hex(filled);
        }
        break;
      }
      case Outcome::Untouched:
        if (c.retval == TC_ACT_OK) {
          EXPECT_EQ(r.out, frame_in);
        }
        break;
    }
    EXPECT_EQ(dp_->tbar_counter(), counter) << "an answered packet uses no counter";
  }
}

// The same answers as they would look with the device filling in a
// pending transport checksum: the quoted checksum field was chosen for
// it. Random quoted headers, so every sum and its rotation occur.
TEST_F(DatapathTest, PathMtuAnswerSurvivesAPendingChecksum) {
  dp_->set_tbar(tbar_mtu());
  dp_->set_pseudotime(kPseudotime, clock_);
  std::mt19937 rng(11);
  for (int i = 0; i < 400; ++i) {
    Ipv4Frame in = sized(i % 2 ? 6 : 17, 1500);
    for (std::size_t b = 0; b < 20 && b < in.payload.size(); ++b)
      in.payload[b] = static_cast<std::uint8_t>(rng());
    if (in.protocol == 6) in.payload[12] = 0x50;  // data offset 5, whatever else is random
    in.id = static_cast<std::uint16_t>(rng());
    const Bytes frame_in = frame(in);
    const Result r = run_tc(*dp_, Program::LanIngress, frame_in, {.clock = clock_});
    ASSERT_EQ(r.retval, kRedirect) << i;
    ASSERT_EQ(r.out, frag_needed(frame_in, static_cast<std::uint16_t>(kInnerMtu - 12), in.smac, in.dmac))
        << i;
    Bytes filled = r.out;
    fill_pending_checksum(filled, 14 + 28 + 20, in.protocol == 6 ? 16 : 6);
    ASSERT_EQ(filled, r.out) << i;
    ASSERT_TRUE(icmp_checksum_ok(filled)) << i;
  }
}

// ---------------------------------------------------------------------
// TBAR: the receiver.

struct Step {
  std::string description;
  std::int64_t offset_ms;  // stamp's pseudotime minus the receiver's
  std::uint32_t counter;
  std::uint32_t verdict;  // TC_ACT_OK or TC_ACT_SHOT
  const char* counter_moved;
  std::int32_t id_delta = 0;  // IPv4 ID - counter (a segment of a GSO skb)
  std::uint16_t frag = 0x4000;
  std::uint16_t sid = 0;  // 0: the scenario's
};

class TbarReceive : public DatapathTest {
 protected:
  static constexpr std::uint32_t kWindow = 1000;
  void SetUp() override {
    DatapathTest::SetUp();
    TbarPolicy p = tbar_on(kWindow);
    p.stamp = false;
    dp_->set_tbar(p);
    dp_->set_pseudotime(kNow, clock_);
  }
  static constexpr std::uint32_t kNow = 500000;

  static Ipv4Frame inner(std::uint32_t id, std::uint16_t frag) {
    Ipv4Frame f;
    f.src = ip4("10.2.2.2");
    f.dst = ip4("10.1.1.1");
    f.payload = udp(7, 8, 20);
    f.id = static_cast<std::uint16_t>(id);
    f.frag = frag;
    return f;
  }
  static Bytes stamped(std::uint16_t sid, std::uint32_t pseudotime, std::uint32_t counter, std::uint32_t id,
                       std::uint16_t frag = 0x4000) {
    Ipv4Frame f = inner(id, frag);
    f.options = stamp(sid, pseudotime, counter);
    return frame(f);
  }

  void play(std::uint16_t sid, const std::vector<Step>& steps, std::uint32_t now = kNow) {
    dp_->set_pseudotime(now, clock_);
    for (const Step& s : steps) {
      SCOPED_TRACE(s.description);
      const std::uint32_t id = s.counter + static_cast<std::uint32_t>(s.id_delta);
      const Bytes in =
          stamped(s.sid ? s.sid : sid, now + static_cast<std::uint32_t>(s.offset_ms), s.counter, id, s.frag);
      const covey_stats before = dp_->stats();
      const Result r = run_tc(*dp_, Program::WanIngress, in, {.spi = kSpi, .clock = clock_});
      EXPECT_EQ(r.retval, s.verdict);
      if (s.verdict == TC_ACT_OK) {
        const Bytes want = frame(inner(id, s.frag));
        EXPECT_EQ(r.out, want) << "stamp removed\ngot  " << hex(r.out) << "\nwant " << hex(want);
      }
      expect_delta(before, dp_->stats(), {{s.counter_moved, 1}}, s.description);
    }
  }
};

TEST_F(TbarReceive, WindowEdges) {
  const std::int64_t w = kWindow;
  play(11, {
               {"now", 0, 1, TC_ACT_OK, "tbar_accepted"},
               {"exactly the window old: accepted", -w, 2, TC_ACT_OK, "tbar_accepted"},
               {"one ms older: late", -w - 1, 3, TC_ACT_SHOT, "tbar_late"},
               {"exactly the window ahead: accepted", w, 4, TC_ACT_OK, "tbar_accepted"},
               {"one ms further ahead: early", w + 1, 5, TC_ACT_SHOT, "tbar_early"},
               {"an hour late", -3600000, 6, TC_ACT_SHOT, "tbar_late"},
               {"late packets do not use up their counter", 0, 3, TC_ACT_OK, "tbar_accepted"},
           });
}

TEST_F(TbarReceive, PseudotimeIsComparedModulo2To32) {
  play(12,
       {
           {"pseudotime wrapped past 0 on the sender, not yet here: in the window", 5, 1, TC_ACT_OK,
            "tbar_accepted"},
           {"not yet wrapped on the sender: in the window", -5, 2, TC_ACT_OK, "tbar_accepted"},
           {"late across the wrap", -static_cast<std::int64_t>(kWindow) - 1, 3, TC_ACT_SHOT, "tbar_late"},
       },
       0xfffffffe);
}

TEST_F(TbarReceive, TheClockAdvancesPseudotime) {
  // Stamped at pseudotime kNow; the receiver's clock 1.5 s later: late
  // with a 1 s window, and in time at 0.5 s.
  const Bytes in = stamped(13, kNow, 1, 1);
  Result r = run_tc(*dp_, Program::WanIngress, in, {.spi = kSpi, .clock = clock_ + 1500 * kMs});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_SHOT));
  r = run_tc(*dp_, Program::WanIngress, in, {.spi = kSpi, .clock = clock_ + 500 * kMs});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_OK));
}

TEST_F(TbarReceive, DuplicatesInsideTheWindow) {
  play(14,
       {
           {"first", 0, 100, TC_ACT_OK, "tbar_accepted"},
           {"the same packet again: duplicate", 0, 100, TC_ACT_SHOT, "tbar_duplicate"},
           {"replayed 900 ms later (still in time): duplicate", -900, 100, TC_ACT_SHOT, "tbar_duplicate"},
           {"out of order, not seen yet: accepted", 0, 98, TC_ACT_OK, "tbar_accepted"},
           {"and then again: duplicate", 0, 98, TC_ACT_SHOT, "tbar_duplicate"},
           {"another sender with the same counter: its own window", 0, 100, TC_ACT_OK, "tbar_accepted", 0,
            0x4000, 15},
           {"segments of one GSO skb: same stamp, IDs counter + i", 0, 101, TC_ACT_OK, "tbar_accepted", 0},
           {"... segment 1", 0, 101, TC_ACT_OK, "tbar_accepted", 1},
           {"... segment 2", 0, 101, TC_ACT_OK, "tbar_accepted", 2},
           {"... segment 1 replayed: duplicate", 0, 101, TC_ACT_SHOT, "tbar_duplicate", 1},
           {"a fragment: its counter as stamped (its ID is the sender's)", 0, 200, TC_ACT_OK, "tbar_accepted",
            0x1234, 0x2000},
           {"the fragment again: duplicate", 0, 200, TC_ACT_SHOT, "tbar_duplicate", 0x1234, 0x2000},
       });
  const auto peer = dp_->tbar_peer(14);
  ASSERT_TRUE(peer);
  EXPECT_EQ(peer->top, 200u);
  EXPECT_EQ(peer->last_ns, clock_);
}

TEST_F(TbarReceive, CounterWindowSlides) {
  const std::uint32_t b = 0xfffff000;                      // and wraps past 2^32 below
  const std::uint32_t span = COVEY_TBAR_WINDOW_BITS - 64;  // counters always remembered behind the top
  play(16, {
               {"start", 0, b, TC_ACT_OK, "tbar_accepted"},
               {"a block on", 0, b + 64, TC_ACT_OK, "tbar_accepted"},
               {"start is still remembered", 0, b, TC_ACT_SHOT, "tbar_duplicate"},
               {"top moves to the window's span past start", 0, b + span - 1, TC_ACT_OK, "tbar_accepted"},
               {"start, span - 1 behind: still a duplicate", 0, b, TC_ACT_SHOT, "tbar_duplicate"},
               {"one more: start now span behind the top", 0, b + span, TC_ACT_OK, "tbar_accepted"},
               {"start: too old to tell (dropped, counted apart)", 0, b, TC_ACT_SHOT, "tbar_too_old"},
               {"start + 1, span - 1 behind, never seen: accepted", 0, b + 1, TC_ACT_OK, "tbar_accepted"},
               {"across 2^32: far ahead", 0, b + 10 * span, TC_ACT_OK, "tbar_accepted"},
               {"the old top, now far behind: too old", 0, b + span, TC_ACT_SHOT, "tbar_too_old"},
               {"just behind the new top, never seen: accepted", 0, b + 10 * span - 5, TC_ACT_OK,
                "tbar_accepted"},
               {"the new top again: duplicate", 0, b + 10 * span, TC_ACT_SHOT, "tbar_duplicate"},
           });
}

TEST_F(TbarReceive, WhatIsNotTheGroupsIsLeftAlone) {
  const Bytes in = stamped(17, kNow, 1, 1);
  const Bytes plain = frame(inner(1, 0x4000));
  struct Case {
    std::string description;
    Bytes in;
    std::uint32_t spi;
    bool check;
    std::uint32_t verdict;
    Bytes out;
    Delta delta;
  };
  const std::vector<Case> cases = {
      {"not decrypted (no secpath): untouched", in, 0, true, TC_ACT_OK, in, {}},
      {"decrypted by another SA: untouched", in, kForeignSpi, true, TC_ACT_OK, in, {}},
      {"the group's, without a stamp: dropped", plain, kSpi, true, TC_ACT_SHOT, {}, {{"tbar_missing", 1}}},
      {"the previous TEK's, stamped: checked and stripped",
       in,
       kOldSpi,
       true,
       TC_ACT_OK,
       plain,
       {{"tbar_accepted", 1}}},
      {"TBAR off: a stamp is still removed, nothing checked", in, kSpi, false, TC_ACT_OK, plain, {}},
      {"TBAR off, no stamp: untouched", plain, kSpi, false, TC_ACT_OK, plain, {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    TbarPolicy p = tbar_on(kWindow);
    p.check = c.check;
    dp_->set_tbar(p);
    const covey_stats before = dp_->stats();
    const Result r = run_tc(*dp_, Program::WanIngress, c.in, {.spi = c.spi, .clock = clock_});
    EXPECT_EQ(r.retval, c.verdict);
    if (c.verdict == TC_ACT_OK) {
      EXPECT_EQ(r.out, c.out) << hex(r.out);
    }
    expect_delta(before, dp_->stats(), c.delta, c.description);
  }
}

// The stamp is not copied into later fragments (its option's copy bit is
// clear): a datagram fragmented after it was stamped carries it in the
// fragment at offset 0 only, which is checked like any packet; a later
// fragment reaches nobody without it, and passes unstamped.
TEST_F(TbarReceive, AFragmentedDatagramIsJudgedByItsFirstFragment) {
  Ipv4Frame nops = inner(0x2222, 185);           // the last fragment
  nops.options.assign(COVEY_TBAR_OPT_LEN, 1);    // Linux's ip_options_fragment(): NOPs in the stamp's place
  Ipv4Frame bare = inner(0x2222, 0x2000 | 100);  // a middle one; RFC 791 lets a sender leave the option out
  struct Case {
    std::string description;
    Bytes in;
    std::uint32_t verdict;
    Delta delta;
  };
  const std::vector<Case> cases = {
      {"a later fragment with the stamp's NOPs: passed unchecked, untouched",
       frame(nops),
       TC_ACT_OK,
       {{"tbar_unstamped_fragment", 1}}},
      {"a later fragment without options: the same",
       frame(bare),
       TC_ACT_OK,
       {{"tbar_unstamped_fragment", 1}}},
      {"the first fragment without a stamp: dropped, and its datagram with it",
       frame(inner(0x2222, 0x2000)),
       TC_ACT_SHOT,
       {{"tbar_missing", 1}}},
      {"a whole datagram without a stamp: dropped",
       frame(inner(0x2222, 0x4000)),
       TC_ACT_SHOT,
       {{"tbar_missing", 1}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    const covey_stats before = dp_->stats();
    const Result r = run_tc(*dp_, Program::WanIngress, c.in, {.spi = kSpi, .clock = clock_});
    EXPECT_EQ(r.retval, c.verdict);
    if (c.verdict == TC_ACT_OK) {
      EXPECT_EQ(r.out, c.in) << hex(r.out);
    }
    expect_delta(before, dp_->stats(), c.delta, c.description);
  }
  // Fragments stamped each (fragmented before covey saw them) are checked
  // each, the later ones too.
  play(19, {
               {"a later fragment, stamped itself: checked", 0, 300, TC_ACT_OK, "tbar_accepted", 7, 185},
               {"the same again: duplicate", 0, 300, TC_ACT_SHOT, "tbar_duplicate", 7, 185},
               {"one too old: late", -static_cast<std::int64_t>(kWindow) - 1, 301, TC_ACT_SHOT, "tbar_late",
                7, 185},
           });
}

TEST_F(TbarReceive, StampAndStripRoundTrip) {
  TbarPolicy p = tbar_on(kWindow, 1386);
  dp_->set_tbar(p);
  dp_->set_tbar_counter(5000);
  Ipv4Frame f;
  f.src = ip4("10.1.1.1");
  f.dst = ip4("10.2.2.44");
  f.protocol = 6;
  f.payload = tcp(1, 2, 0x10, {}, 100);
  f.options = {0x94, 4, 0, 0};
  const Result sent = run_tc(*dp_, Program::LanIngress, frame(f), {.clock = clock_});
  ASSERT_EQ(sent.retval, static_cast<std::uint32_t>(TC_ACT_OK));
  const Result received =
      run_tc(*dp_, Program::WanIngress, sent.out, {.spi = kSpi, .clock = clock_ + 3 * kMs});
  EXPECT_EQ(received.retval, static_cast<std::uint32_t>(TC_ACT_OK));
  f.id = 5000;  // the sender's ID alignment stays
  EXPECT_EQ(received.out, frame(f)) << hex(received.out);
  EXPECT_TRUE(ipv4_checksum_ok(received.out));
  EXPECT_TRUE(tcp_checksum_ok(received.out));
  EXPECT_EQ(run_tc(*dp_, Program::WanIngress, sent.out, {.spi = kSpi, .clock = clock_ + 4 * kMs}).retval,
            static_cast<std::uint32_t>(TC_ACT_SHOT))
      << "the same packet replayed";
}

TEST_F(TbarReceive, IdleSendersAreForgottenAfterTwiceTheWindow) {
  play(18, {{"one packet", 0, 1, TC_ACT_OK, "tbar_accepted"}});
  ASSERT_TRUE(dp_->tbar_peer(18));
  dp_->expire_tbar_peers(clock_ + 2 * kWindow * kMs);  // the other tests' senders, idle for minutes
  EXPECT_TRUE(dp_->tbar_peer(18)) << "kept: idle exactly twice the window";
  EXPECT_EQ(dp_->expire_tbar_peers(clock_ + 2 * kWindow * kMs + 1), 1u);
  EXPECT_FALSE(dp_->tbar_peer(18));
}

// The stamp's pseudotime from the kernel's own clock (no test hooks): the
// same CLOCK_MONOTONIC user space anchors the pseudotime to.
TEST(TbarClock, TheStampCarriesPseudotimeFromTheMonotonicClock) {
  auto dp = open_datapath(64, false);
  ASSERT_TRUE(dp);
  dp->set_tbar(tbar_on());
  auto mono = [] {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * kSecond + static_cast<std::uint64_t>(ts.tv_nsec);
  };
  const std::uint64_t at = mono();
  dp->set_pseudotime(kPseudotime, at);
  const std::uint64_t before = mono();
  const Result r = run_tc(*dp, Program::LanIngress, udp4("10.1.1.1", "10.2.2.2"));
  const std::uint64_t after = mono();
  ASSERT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_OK));
  ASSERT_GE(r.out.size(), 14u + 32u);
  const std::uint32_t pt = static_cast<std::uint32_t>(r.out[14 + 24] << 24 | r.out[14 + 25] << 16 |
                                                      r.out[14 + 26] << 8 | r.out[14 + 27]);
  // The programs read the coarse clock: up to a tick (at most 10 ms) behind.
  EXPECT_GE(pt + 10, kPseudotime + (before - at) / kMs);
  EXPECT_LE(pt, kPseudotime + (after - at) / kMs);
}

// ---------------------------------------------------------------------
// IPv6: the stamp as a Destination Options header of its own, Packet Too
// Big, the receiver, and the link's own ICMPv6.

// The stamp's segment field of a packet that is not a GSO skb: TCP's
// sequence number (tcp(): 1000) with shift 0; 0 for anything else.
constexpr std::uint16_t kSeg = 1000;

TEST_F(DatapathTest, TbarStampV6InsertedExactly) {
  TbarPolicy p = tbar_on(2000);
  p.tcp_mss_v6 = 1330;
  dp_->set_tbar(p);
  dp_->set_pseudotime(kPseudotime, clock_);
  const std::uint64_t now = clock_ + 1500 * kMs + 999999;  // pseudotime + 1500
  const std::uint32_t pt = kPseudotime + 1500;
  const Bytes u = udp(1, 2, 16);

  struct Case {
    std::string description;
    Ipv6Frame in;
    std::uint32_t retval;
    // The stamped packet for a counter; none: not stamped.
    std::function<Ipv6Frame(std::uint32_t)> out;
    Delta delta;
    Ctx ctx = {};
  };
  const Delta stamped = {{"packets", 1}, {"encrypt", 1}, {"steer_claimed", 1}, {"tbar_stamped", 1}};
  Delta clamped = stamped;
  clamped["mss_clamped"] = 1;
  Delta later = stamped;
  later["ports_unseen"] = 1;
  const Bytes data(24, 0x5a);
  const std::vector<Case> cases = {
      {"UDP: the stamp's header first after the IPv6 header, next headers chained, payload length + 16",
       v6(17, u), TC_ACT_OK,
       [&](std::uint32_t c) {
         return v6(60, cat({stamp6(17, kSid, pt, c), u}));
       },
       stamped},
      {"TCP: the segment field holds the sequence number (shift 0)", v6(6, tcp(40000, 443, 0x10, {}, 8)),
       TC_ACT_OK,
       [&](std::uint32_t c) {
         return v6(60, cat({stamp6(6, kSid, pt, c, kSeg), tcp(40000, 443, 0x10, {}, 8)}));
       },
       stamped},
      {"TCP SYN: MSS above the IPv6 clamp lowered to it, TCP checksum fixed",
       v6(6, tcp(40000, 443, 0x02, mss_option(1440))), TC_ACT_OK,
       [&](std::uint32_t c) {
         return v6(60, cat({stamp6(6, kSid, pt, c, kSeg), tcp(40000, 443, 0x02, mss_option(1330))}));
       },
       clamped},
      {"TCP SYN with a smaller MSS: unchanged", v6(6, tcp(40000, 443, 0x02, mss_option(1220))), TC_ACT_OK,
       [&](std::uint32_t c) {
         return v6(60, cat({stamp6(6, kSid, pt, c, kSeg), tcp(40000, 443, 0x02, mss_option(1220))}));
       },
       stamped},
      {"after a Hop-by-Hop header, which stays first (RFC 8200 4.1)", v6(0, cat({hop_by_hop(17), u})),
       TC_ACT_OK,
       [&](std::uint32_t c) {
         return v6(0, cat({hop_by_hop(60), stamp6(17, kSid, pt, c), u}));
       },
       stamped},
      {"after a 64-byte Hop-by-Hop header, the longest moved", v6(0, cat({hop_by_hop(17, 64), u})), TC_ACT_OK,
       [&](std::uint32_t c) {
         return v6(0, cat({hop_by_hop(60, 64), stamp6(17, kSid, pt, c), u}));
       },
       stamped},
      {"a Routing header follows the stamp", v6(43, cat({routing(17), u})), TC_ACT_OK,
       [&](std::uint32_t c) {
         return v6(60, cat({stamp6(43, kSid, pt, c), routing(17), u}));
       },
       stamped},
      {"an existing Destination Options header follows the stamp's", v6(60, cat({dest_options(17), u})),
       TC_ACT_OK,
       [&](std::uint32_t c) {
         return v6(60, cat({stamp6(60, kSid, pt, c), dest_options(17), u}));
       },
       stamped},
      {"Hop-by-Hop, Destination Options, Routing, Fragment (first): the stamp second",
       v6(0, cat({hop_by_hop(60), dest_options(43), routing(44), fragment6(17, 0, true), u})), TC_ACT_OK,
       [&](std::uint32_t c) {
         return v6(0, cat({hop_by_hop(60), stamp6(60, kSid, pt, c), dest_options(43), routing(44),
                           fragment6(17, 0, true), u}));
       },
       stamped},
      {"a later fragment: stamped, the stamp before its Fragment header (per fragment)",
       v6(44, cat({fragment6(17, 1480, false), data})), TC_ACT_OK,
       [&](std::uint32_t c) {
         return v6(60, cat({stamp6(44, kSid, pt, c), fragment6(17, 1480, false), data}));
       },
       later},
      {"a Hop-by-Hop header over 64 bytes: no room, dropped, never sent unstamped",
       v6(0, cat({hop_by_hop(17, 72), u})),
       TC_ACT_SHOT,
       nullptr,
       {{"packets", 1}, {"steer_claimed", 1}, {"tbar_no_room", 1}}},
      {"a GSO skb the kernel cannot grow (not TCP): dropped, never sent unstamped",
       v6(17, u),
       TC_ACT_SHOT,
       nullptr,
       {{"packets", 1}, {"steer_claimed", 1}, {"tbar_error", 1}},
       Ctx{.gso_segs = 3, .gso_size = 8}},
      {"a GSO skb whose TCP header is not right after the stamp cannot number its segments: dropped",
       v6(43, cat({routing(6), tcp(1, 2, 0x10, {}, 8)})),
       TC_ACT_SHOT,
       nullptr,
       {{"packets", 1}, {"steer_claimed", 1}, {"tbar_error", 1}},
       Ctx{.gso_segs = 2, .gso_size = 4}},
      {"denied traffic is not stamped",
       v6(17, udp(848, 848, 16)),
       TC_ACT_OK,
       nullptr,
       {{"packets", 1}, {"bypass_deny", 1}}},
  };
  const std::uint32_t c0 = 0x6100fff0;
  dp_->set_tbar_counter(c0);
  std::uint32_t counter = c0;
  int pair = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    Ipv6Frame in = c.in;
    in.dst[15] = static_cast<std::uint8_t>(100 + pair++);
    Ctx ctx = c.ctx;
    ctx.clock = now;
    const covey_stats before = dp_->stats();
    const Result r = run_tc(*dp_, Program::LanIngress, frame(in), ctx);
    EXPECT_EQ(r.retval, c.retval);
    if (c.retval == TC_ACT_OK) {
      Ipv6Frame out = c.out ? c.out(counter) : in;
      out.dst = in.dst;
      const Bytes want = frame(out);
      EXPECT_EQ(r.out, want) << "got  " << hex(r.out) << "\nwant " << hex(want);
      std::uint8_t protocol = 0;
      ipv6_upper(r.out, &protocol);
      if (protocol == 6) {
        EXPECT_TRUE(tcp6_checksum_ok(r.out));
      }
      EXPECT_EQ(steered(r.mark), c.out != nullptr) << std::hex << r.mark;
    }
    expect_delta(before, dp_->stats(), c.delta, c.description);
    if (c.out) ++counter;
    EXPECT_EQ(dp_->tbar_counter(), counter);
  }
}

TEST_F(DatapathTest, TbarStampV6OnTheGmsOwnTraffic) {
  dp_->set_tbar(tbar_on());
  dp_->set_pseudotime(kPseudotime, clock_);
  dp_->set_tbar_counter(91);
  const Ipv6Frame f = v6(17, udp(1, 2, 8), "2001:db8:1::5", "2001:db8:3::99");
  const covey_stats before = dp_->stats();
  const Result r = run_tc(*dp_, Program::WanEgress, frame(f), {.clock = clock_ + 2 * kMs});
  EXPECT_EQ(r.retval, kRedirect);
  Ipv6Frame want =
      v6(60, cat({stamp6(17, kSid, kPseudotime + 2, 91), udp(1, 2, 8)}), "2001:db8:1::5", "2001:db8:3::99");
  want.dmac = kMacA;  // the bounce: to the interface itself
  EXPECT_EQ(r.out, frame(want)) << hex(r.out);
  expect_delta(
      before, dp_->stats(),
      {{"packets", 1}, {"encrypt", 1}, {"steer_claimed", 1}, {"tbar_stamped", 1}, {"local_bounced", 1}},
      "the GM's own IPv6");
}

// The GSO skbs a test run cannot make: segments of one TCP skb carry the
// same stamp, and the receiver numbers them from their sequence numbers
// (covey_maps.h, covey_tbar_dstopt_v6). Their sender's side (the counters
// reserved, the shift) is exercised in the VM.

// 1500 bytes outer IPv6, AES-256-CBC / HMAC-SHA-256-128: 1500 - 40 - 8 -
// 16 - 16 = 1420, rounded down to 16 bytes, - 2 (kmod::esp_tunnel_inner_mtu).
constexpr std::uint32_t kInnerMtu6 = 1406;
constexpr std::uint32_t kUsable6 = kInnerMtu6 - COVEY_TBAR_DSTOPT_LEN;  // 1390

TEST(TcpMssForStamp, IPv6LeavesRoomForItsStampHeader) {
  // The MSS a sender derives from the answer's MTU (inner - 16) less 60.
  EXPECT_EQ(tcp_mss_for_stamp(kInnerMtu6, 6), kUsable6 - 40 - 20);
}

// A frame of exactly `total` bytes of IPv6 (header, `chain` and upper
// layer), from 2001:db8:1::1.
Ipv6Frame sized6(std::uint8_t protocol, std::size_t total, const Bytes& chain = {},
                 std::uint8_t chain_next = 0, std::uint8_t icmp_type = 128) {
  const std::size_t l4 = total - 40 - chain.size();
  Bytes upper;
  if (protocol == 17) {
    upper = udp(1000, 2000, l4 - 8);
  } else if (protocol == 6) {
    upper = tcp(40000, 443, 0x10, {}, l4 - 20);
  } else {
    upper = Bytes(l4, 0x5a);
    upper[0] = icmp_type;
    upper[1] = 0;
  }
  return v6(chain.empty() ? protocol : chain_next, cat({chain, upper}));
}

TbarPolicy tbar_mtu6(std::uint32_t inner_mtu = kInnerMtu6, bool stamp = true) {
  TbarPolicy p = tbar_on(2000);
  p.stamp = stamp;
  p.inner_mtu_v6 = inner_mtu;
  p.tcp_mss_v6 = tcp_mss_for_stamp(kInnerMtu6, 6);
  return p;
}

TEST_F(DatapathTest, PathMtuV6PacketsTooBigOnceStampedAreAnswered) {
  enum class Outcome { Stamped, Answered, Untouched };
  struct Case {
    std::string description;
    Ipv6Frame in;
    Outcome outcome;
    std::uint32_t retval;
    Delta delta;
    Program program = Program::LanIngress;
    TbarPolicy policy = tbar_mtu6();
    Ctx ctx = {};
  };
  const Delta stamped = {{"packets", 1}, {"encrypt", 1}, {"steer_claimed", 1}, {"tbar_stamped", 1}};
  const Delta answered = {{"packets", 1}, {"frag_needed_sent", 1}};
  Delta answered_later = answered;
  answered_later["ports_unseen"] = 1;
  const Bytes chain = cat({hop_by_hop(43), routing(17)});
  Ipv6Frame later = v6(44, cat({fragment6(17, 1480, false), Bytes(kInnerMtu6 - 40 - 8 - 15, 0x33)}));
  const std::vector<Case> cases = {
      {"UDP exactly the inner MTU once stamped: stamped and steered", sized6(17, kUsable6), Outcome::Stamped,
       TC_ACT_OK, stamped},
      {"UDP one byte more: answered with Packet Too Big for 1390, back out to the sender",
       sized6(17, kUsable6 + 1), Outcome::Answered, kRedirect, answered},
      {"TCP over: answered, the whole TCP header quoted", sized6(6, 1500), Outcome::Answered, kRedirect,
       answered},
      {"behind Hop-by-Hop and Routing headers: answered, the chain quoted whole",
       sized6(17, kUsable6 + 1, chain, 0), Outcome::Answered, kRedirect, answered},
      {"a later fragment, over: answered (IPv6 has no exception for fragments), 8 bytes of its data quoted",
       later, Outcome::Answered, kRedirect, answered_later},
      {"ICMPv6 echo request, over: answered", sized6(58, kUsable6 + 1), Outcome::Answered, kRedirect,
       answered},
      {"an ICMPv6 error, over: never answered (RFC 4443 2.4 (e)), stamped and left to the kernel",
       sized6(58, kUsable6 + 1, {}, 0, 1), Outcome::Stamped, TC_ACT_OK, stamped},
      {"a TCP GSO skb whose segments are too big (40 + 20 + 1331 > 1390 + 16): answered", sized6(6, 2722),
       Outcome::Answered, kRedirect, answered, Program::LanIngress, tbar_mtu6(),
       Ctx{.gso_segs = 2, .gso_size = 1347}},
      {"a TCP GSO skb whose segments fit (40 + 20 + 1346): not answered (a test run cannot make a TCP GSO "
       "skb, so the stamp refuses it here)",
       sized6(6, 2752),
       Outcome::Untouched,
       TC_ACT_SHOT,
       {{"packets", 1}, {"steer_claimed", 1}, {"tbar_error", 1}},
       Program::LanIngress,
       tbar_mtu6(),
       Ctx{.gso_segs = 2, .gso_size = 1346}},
      {"stamping off: not answered, steered as it is (the kernel's own check is the right one)",
       sized6(17, kUsable6 + 1),
       Outcome::Untouched,
       TC_ACT_OK,
       {{"packets", 1}, {"encrypt", 1}, {"steer_claimed", 1}},
       Program::LanIngress,
       tbar_mtu6(kInnerMtu6, false)},
      {"inner MTU unknown (0): stamped, not answered", sized6(17, 1500), Outcome::Stamped, TC_ACT_OK, stamped,
       Program::LanIngress, tbar_mtu6(0)},
      {"inner MTU under 1280 + 16 (an answer would name less than IPv6's minimum): stamped, left to the "
       "kernel",
       sized6(17, 1500), Outcome::Stamped, TC_ACT_OK, stamped, Program::LanIngress, tbar_mtu6(1295)},
      {"the GM's own packet at the WAN's egress, over: answered into its own stack", sized6(17, kUsable6 + 1),
       Outcome::Answered, kRedirect, answered, Program::WanEgress},
      {"the GM's own packet at the limit: stamped and bounced",
       sized6(17, kUsable6),
       Outcome::Stamped,
       kRedirect,
       {{"packets", 1}, {"encrypt", 1}, {"steer_claimed", 1}, {"tbar_stamped", 1}, {"local_bounced", 1}},
       Program::WanEgress},
  };

  dp_->set_pseudotime(kPseudotime, clock_);
  std::uint32_t counter = 0x52000000;
  dp_->set_tbar_counter(counter);
  int pair = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    dp_->set_tbar(c.policy);
    Ipv6Frame in = c.in;
    in.dst[14] = 0x77;  // a pair no other test used, in a slot of its own
    in.dst[15] = static_cast<std::uint8_t>(100 + pair++);
    const Bytes frame_in = frame(in);
    ASSERT_TRUE(c.ctx.gso_size || frame_in.size() - 14 == 40 + in.payload.size());
    Ctx ctx = c.ctx;
    ctx.clock = clock_;
    ctx.mark = 0x12345;
    const covey_stats before = dp_->stats();
    const Result r = run_tc(*dp_, c.program, frame_in, ctx);
    EXPECT_EQ(r.retval, c.retval);
    expect_delta(before, dp_->stats(), c.delta, c.description);
    const bool local = c.program == Program::WanEgress;
    switch (c.outcome) {
      case Outcome::Stamped: {
        Ipv6Frame want = in;
        want.next = 60;
        want.payload = cat({stamp6(in.next, kSid, kPseudotime, counter), in.payload});
        if (local) want.dmac = in.smac;  // the bounce
        EXPECT_EQ(r.out, frame(want)) << "got  " << hex(r.out) << "\nwant " << hex(frame(want));
        EXPECT_TRUE(steered(r.mark)) << std::hex << r.mark;
        ++counter;
        break;
      }
      case Outcome::Answered: {
        const Bytes want = packet_too_big(frame_in, kUsable6, in.smac, local ? in.smac : in.dmac);
        EXPECT_EQ(r.out, want) << "got  " << hex(r.out) << "\nwant " << hex(want);
        EXPECT_TRUE(icmp6_checksum_ok(r.out));
        EXPECT_EQ(r.mark, 0x12345u) << "not steered";
        std::uint8_t protocol = 0;
        bool later_fragment = false;
        const std::size_t upper = ipv6_upper(frame_in, &protocol, &later_fragment);
        if (!later_fragment && (protocol == 6 || protocol == 17)) {
          Bytes filled = r.out;
          fill_pending_checksum(filled, upper + 48, protocol == 6 ? 16 : 6);
          EXPECT_EQ(filled, r.out) << hex(filled);
        }
        break;
      }
      case Outcome::Untouched:
        if (c.retval == TC_ACT_OK) {
          EXPECT_EQ(r.out, frame_in);
        }
        break;
    }
    EXPECT_EQ(dp_->tbar_counter(), counter) << "an answered packet uses no counter";
  }
}

TEST_F(DatapathTest, PathMtuV6AnswerSurvivesAPendingChecksum) {
  dp_->set_tbar(tbar_mtu6());
  dp_->set_pseudotime(kPseudotime, clock_);
  std::mt19937 rng(13);
  for (int i = 0; i < 200; ++i) {
    Ipv6Frame in = sized6(i % 2 ? 6 : 17, 1500);
    for (std::size_t b = 0; b < 20 && b < in.payload.size(); ++b)
      in.payload[b] = static_cast<std::uint8_t>(rng());
    if (in.next == 6) in.payload[12] = 0x50;
    Bytes frame_in = frame(in);
    const Result r = run_tc(*dp_, Program::LanIngress, frame_in, {.clock = clock_});
    ASSERT_EQ(r.retval, kRedirect) << i;
    ASSERT_EQ(r.out, packet_too_big(frame_in, kUsable6, in.smac, in.dmac)) << i;
    Bytes filled = r.out;
    fill_pending_checksum(filled, 14 + 48 + 40, in.next == 6 ? 16 : 6);
    ASSERT_EQ(filled, r.out) << i;
    ASSERT_TRUE(icmp6_checksum_ok(filled)) << i;
  }
}

// The receiver, IPv6.
struct Step6 {
  std::string description;
  std::int64_t offset_ms;  // stamp's pseudotime minus the receiver's
  std::uint32_t counter;
  std::uint32_t verdict;
  const char* counter_moved;
  std::uint16_t sid = 0;  // 0: the scenario's
};

class TbarReceive6 : public TbarReceive {
 protected:
  static Bytes udp_in() { return udp(7, 8, 20); }
  static Ipv6Frame inner(std::uint8_t next, Bytes payload) {
    return v6(next, std::move(payload), "2001:db8:2::2", "2001:db8:1::1");
  }
  // A decrypted packet: `before` the stamp (a Hop-by-Hop header), the
  // stamp, `after` it (the rest of the chain and the upper layer).
  static Bytes stamped(std::uint16_t sid, std::uint32_t pseudotime, std::uint32_t counter,
                       std::uint8_t next = 17, Bytes after = udp_in(), std::uint16_t segment = 0) {
    return frame(inner(60, cat({stamp6(next, sid, pseudotime, counter, segment), after})));
  }
  Result receive(const Bytes& in) {
    return run_tc(*dp_, Program::WanIngress, in, {.spi = kSpi, .clock = clock_});
  }

  void play6(std::uint16_t sid, const std::vector<Step6>& steps, std::uint32_t now = kNow) {
    dp_->set_pseudotime(now, clock_);
    for (const Step6& s : steps) {
      SCOPED_TRACE(s.description);
      const Bytes in = stamped(s.sid ? s.sid : sid, now + static_cast<std::uint32_t>(s.offset_ms), s.counter);
      const covey_stats before = dp_->stats();
      const Result r = receive(in);
      EXPECT_EQ(r.retval, s.verdict);
      if (s.verdict == TC_ACT_OK) {
        const Bytes want = frame(inner(17, udp_in()));
        EXPECT_EQ(r.out, want) << "stamp removed\ngot  " << hex(r.out) << "\nwant " << hex(want);
      }
      expect_delta(before, dp_->stats(), {{s.counter_moved, 1}}, s.description);
    }
  }
};

TEST_F(TbarReceive6, WindowEdges) {
  const std::int64_t w = kWindow;
  play6(61, {
                {"now", 0, 1, TC_ACT_OK, "tbar_accepted"},
                {"exactly the window old: accepted", -w, 2, TC_ACT_OK, "tbar_accepted"},
                {"one ms older: late", -w - 1, 3, TC_ACT_SHOT, "tbar_late"},
                {"exactly the window ahead: accepted", w, 4, TC_ACT_OK, "tbar_accepted"},
                {"one ms further ahead: early", w + 1, 5, TC_ACT_SHOT, "tbar_early"},
                {"an hour late", -3600000, 6, TC_ACT_SHOT, "tbar_late"},
                {"late packets do not use up their counter", 0, 3, TC_ACT_OK, "tbar_accepted"},
            });
}

TEST_F(TbarReceive6, PseudotimeIsComparedModulo2To32) {
  play6(62,
        {
            {"wrapped on the sender, not yet here: in the window", 5, 1, TC_ACT_OK, "tbar_accepted"},
            {"late across the wrap", -static_cast<std::int64_t>(kWindow) - 1, 2, TC_ACT_SHOT, "tbar_late"},
        },
        0xfffffffe);
}

TEST_F(TbarReceive6, DuplicatesAndCollisions) {
  const std::uint32_t span = COVEY_TBAR_WINDOW_BITS - 64;
  play6(63,
        {
            {"first", 0, 100, TC_ACT_OK, "tbar_accepted"},
            {"the same packet again: duplicate", 0, 100, TC_ACT_SHOT, "tbar_duplicate"},
            {"replayed 900 ms later (still in time): duplicate", -900, 100, TC_ACT_SHOT, "tbar_duplicate"},
            {"out of order, not seen yet: accepted", 0, 98, TC_ACT_OK, "tbar_accepted"},
            {"another sender's packet with the same counter: its own window, accepted", 0, 100, TC_ACT_OK,
             "tbar_accepted", 64},
            {"and its replay: duplicate", 0, 100, TC_ACT_SHOT, "tbar_duplicate", 64},
            {"the top moves a window's span on", 0, 100 + span, TC_ACT_OK, "tbar_accepted"},
            {"the first counter, now too old to tell", 0, 100, TC_ACT_SHOT, "tbar_too_old"},
        });
  const auto peer = dp_->tbar_peer(63);
  ASSERT_TRUE(peer);
  EXPECT_EQ(peer->top, 100 + span);
}

// Segments of one TCP GSO skb carry one stamp; each is numbered by its
// sequence number: counter + ((seq >> shift) - segment) mod 2^12.
TEST_F(TbarReceive6, SegmentsOfOneStampAreToldApartBySequenceNumber) {
  const std::uint32_t seq0 = 0xfffffc00, size = 1200, shift = 10, c0 = 5000;  // seq wraps past 2^32 below
  const auto segment = static_cast<std::uint16_t>(shift << 12 | ((seq0 >> shift) & 0xfff));
  auto seg = [&](std::uint32_t i) {
    Bytes t = tcp(1, 2, 0x10, {}, size);
    const std::uint32_t seq = seq0 + i * size;
    for (int b = 0; b < 4; ++b)
      t[4 + static_cast<std::size_t>(b)] = static_cast<std::uint8_t>(seq >> (24 - 8 * b));
    return t;
  };
  std::uint32_t last = 0;
  for (std::uint32_t i = 0; i < 6; ++i) {
    SCOPED_TRACE("segment " + std::to_string(i));
    const covey_stats before = dp_->stats();
    const Result r = receive(stamped(65, kNow, c0, 6, seg(i), segment));
    EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_OK));
    EXPECT_EQ(r.out, frame(inner(6, seg(i)))) << hex(r.out);
    EXPECT_TRUE(tcp6_checksum_ok(r.out));
    expect_delta(before, dp_->stats(), {{"tbar_accepted", 1}}, "a segment");
    last = c0 + ((((seq0 + i * size) >> shift) - (seq0 >> shift)) & 0xfff);
  }
  EXPECT_EQ(dp_->tbar_peer(65)->top, last) << "the last segment's counter";
  EXPECT_EQ(last, c0 + 5u)
      << "the sixth segment starts (5 * 1200) >> 10 = 5 counters on (seq0 is 1024-aligned)";
  const covey_stats before = dp_->stats();
  EXPECT_EQ(receive(stamped(65, kNow, c0, 6, seg(3), segment)).retval,
            static_cast<std::uint32_t>(TC_ACT_SHOT));
  expect_delta(before, dp_->stats(), {{"tbar_duplicate", 1}}, "a segment replayed");
}

// Segments of one stamp that GRO merged again after decryption arrive as
// one skb (gso_segs, gso_size) with the first segment's sequence number:
// all their counters are taken, so none can be replayed alone later, and
// a merged skb holding a segment already seen is a duplicate. (A test run
// cannot make the skb a TCP GSO one, so the stamp's removal is refused
// here, tbar_error, after the window has taken the counters; the removal
// of a real one is the kernel's bpf_skb_adjust_room on TCP GSO, as for
// the sender.)
TEST_F(TbarReceive6, SegmentsMergedByGroTakeAllTheirCounters) {
  const std::uint32_t seq0 = 0x40000000, size = 1200, shift = 10, c0 = 9000;
  const auto segment = static_cast<std::uint16_t>(shift << 12 | ((seq0 >> shift) & 0xfff));
  auto seg = [&](std::uint32_t i) {
    Bytes t = tcp(1, 2, 0x10, {}, size);
    const std::uint32_t seq = seq0 + i * size;
    for (int b = 0; b < 4; ++b)
      t[4 + static_cast<std::size_t>(b)] = static_cast<std::uint8_t>(seq >> (24 - 8 * b));
    return t;
  };
  auto merged = [&](std::uint32_t first, std::uint32_t segs) {
    return run_tc(*dp_, Program::WanIngress, stamped(68, kNow, c0, 6, seg(first), segment),
                  {.spi = kSpi, .clock = clock_, .gso_segs = segs, .gso_size = size});
  };
  covey_stats before = dp_->stats();
  EXPECT_EQ(merged(0, 4).retval, static_cast<std::uint32_t>(TC_ACT_SHOT));
  expect_delta(before, dp_->stats(), {{"tbar_error", 1}},
               "four segments merged (removal refused in a test run)");
  const std::uint32_t last = c0 + ((3 * size) >> shift);
  EXPECT_EQ(dp_->tbar_peer(68)->top, last) << "the last segment's counter";
  for (std::uint32_t i = 1; i < 4; ++i) {
    SCOPED_TRACE("segment " + std::to_string(i) + " replayed alone");
    before = dp_->stats();
    EXPECT_EQ(receive(stamped(68, kNow, c0, 6, seg(i), segment)).retval,
              static_cast<std::uint32_t>(TC_ACT_SHOT));
    expect_delta(before, dp_->stats(), {{"tbar_duplicate", 1}}, "a merged segment replayed");
  }
  before = dp_->stats();
  EXPECT_EQ(receive(stamped(68, kNow, c0, 6, seg(4), segment)).retval, static_cast<std::uint32_t>(TC_ACT_OK));
  expect_delta(before, dp_->stats(), {{"tbar_accepted", 1}}, "the next segment, not merged");
  before = dp_->stats();
  EXPECT_EQ(merged(5, 3).retval, static_cast<std::uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(merged(4, 2).retval, static_cast<std::uint32_t>(TC_ACT_SHOT));
  expect_delta(before, dp_->stats(), {{"tbar_error", 1}, {"tbar_duplicate", 1}},
               "segments 5-7 merged: new; 4-5 merged: 4 and 5 seen");
  EXPECT_EQ(dp_->tbar_peer(68)->top, c0 + ((7 * size) >> shift));
}

TEST_F(TbarReceive6, StampsAmongOtherExtensionHeadersAndWhatIsNotTheGroups) {
  const Bytes u = udp_in();
  const Bytes plain = frame(inner(17, u));
  const Bytes in = stamped(66, kNow, 1);
  struct Case {
    std::string description;
    Bytes in;
    std::uint32_t spi;
    bool check;
    std::uint32_t verdict;
    Bytes out;
    Delta delta;
  };
  const std::vector<Case> cases = {
      {"not decrypted (no secpath): untouched", in, 0, true, TC_ACT_OK, in, {}},
      {"decrypted by another SA: untouched", in, kForeignSpi, true, TC_ACT_OK, in, {}},
      {"the group's, without a stamp: dropped", plain, kSpi, true, TC_ACT_SHOT, {}, {{"tbar_missing", 1}}},
      {"after a Hop-by-Hop header: checked, stripped, the Hop-by-Hop header first again",
       frame(inner(0, cat({hop_by_hop(60), stamp6(17, 66, kNow, 2), u}))),
       kSpi,
       true,
       TC_ACT_OK,
       frame(inner(0, cat({hop_by_hop(17), u}))),
       {{"tbar_accepted", 1}}},
      {"after a 64-byte Hop-by-Hop header",
       frame(inner(0, cat({hop_by_hop(60, 64), stamp6(17, 66, kNow, 3), u}))),
       kSpi,
       true,
       TC_ACT_OK,
       frame(inner(0, cat({hop_by_hop(17, 64), u}))),
       {{"tbar_accepted", 1}}},
      {"before Destination Options, Routing and Fragment headers: stripped, the rest kept",
       frame(inner(60,
                   cat({stamp6(60, 66, kNow, 4), dest_options(43), routing(44), fragment6(17, 0, true), u}))),
       kSpi,
       true,
       TC_ACT_OK,
       frame(inner(60, cat({dest_options(43), routing(44), fragment6(17, 0, true), u}))),
       {{"tbar_accepted", 1}}},
      {"a Destination Options header that is not a stamp, where the stamp goes: missing",
       frame(inner(60, cat({dest_options(17), u}))),
       kSpi,
       true,
       TC_ACT_SHOT,
       {},
       {{"tbar_missing", 1}}},
      {"a stamp further down the chain than covey puts it: missing",
       frame(inner(43, cat({routing(60), stamp6(17, 66, kNow, 5), u}))),
       kSpi,
       true,
       TC_ACT_SHOT,
       {},
       {{"tbar_missing", 1}}},
      {"the previous TEK's, stamped: checked and stripped",
       stamped(66, kNow, 6),
       kOldSpi,
       true,
       TC_ACT_OK,
       plain,
       {{"tbar_accepted", 1}}},
      {"TBAR off: a stamp is still removed, nothing checked", in, kSpi, false, TC_ACT_OK, plain, {}},
      {"TBAR off, no stamp: untouched", plain, kSpi, false, TC_ACT_OK, plain, {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    TbarPolicy p = tbar_on(kWindow);
    p.check = c.check;
    dp_->set_tbar(p);
    const covey_stats before = dp_->stats();
    const Result r = run_tc(*dp_, Program::WanIngress, c.in, {.spi = c.spi, .clock = clock_});
    EXPECT_EQ(r.retval, c.verdict);
    if (c.verdict == TC_ACT_OK) {
      EXPECT_EQ(r.out, c.out) << "got  " << hex(r.out) << "\nwant " << hex(c.out);
    }
    expect_delta(before, dp_->stats(), c.delta, c.description);
  }
}

// As for IPv4: a datagram is judged by its first fragment; a later
// fragment without a stamp passes unchecked.
TEST_F(TbarReceive6, AFragmentedDatagramIsJudgedByItsFirstFragment) {
  const Bytes data(40, 0x44);
  struct Case {
    std::string description;
    Bytes in;
    std::uint32_t verdict;
    Delta delta;
  };
  const std::vector<Case> cases = {
      {"a later fragment without a stamp: passed unchecked, untouched",
       frame(inner(44, cat({fragment6(17, 1480, false), data}))),
       TC_ACT_OK,
       {{"tbar_unstamped_fragment", 1}}},
      {"the first fragment without a stamp: dropped, and its datagram with it",
       frame(inner(44, cat({fragment6(17, 0, true), udp_in()}))),
       TC_ACT_SHOT,
       {{"tbar_missing", 1}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.description);
    const covey_stats before = dp_->stats();
    const Result r = receive(c.in);
    EXPECT_EQ(r.retval, c.verdict);
    if (c.verdict == TC_ACT_OK) {
      EXPECT_EQ(r.out, c.in) << hex(r.out);
    }
    expect_delta(before, dp_->stats(), c.delta, c.description);
  }
  // Fragments stamped each (covey stamps every fragment it forwards) are
  // checked each, the later ones too.
  const Bytes later = frame(inner(60, cat({stamp6(44, 67, kNow, 300), fragment6(17, 1480, false), data})));
  covey_stats before = dp_->stats();
  Result r = receive(later);
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_OK));
  EXPECT_EQ(r.out, frame(inner(44, cat({fragment6(17, 1480, false), data}))));
  EXPECT_EQ(receive(later).retval, static_cast<std::uint32_t>(TC_ACT_SHOT));
  expect_delta(before, dp_->stats(), {{"tbar_accepted", 1}, {"tbar_duplicate", 1}},
               "a stamped later fragment");
}

TEST_F(TbarReceive6, StampAndStripRoundTrip) {
  TbarPolicy p = tbar_on(kWindow);
  p.tcp_mss_v6 = 1330;
  dp_->set_tbar(p);
  dp_->set_tbar_counter(7000);
  for (const bool with_hbh : {false, true}) {
    SCOPED_TRACE(with_hbh ? "with a Hop-by-Hop header" : "plain TCP");
    const Bytes t = tcp(1, 2, 0x10, {}, 100);
    const Ipv6Frame f = with_hbh ? v6(0, cat({hop_by_hop(6), t}), "2001:db8:1::1", "2001:db8:2::45")
                                 : v6(6, t, "2001:db8:1::1", "2001:db8:2::44");
    const Result sent = run_tc(*dp_, Program::LanIngress, frame(f), {.clock = clock_});
    ASSERT_EQ(sent.retval, static_cast<std::uint32_t>(TC_ACT_OK));
    ASSERT_EQ(sent.out.size(), frame(f).size() + COVEY_TBAR_DSTOPT_LEN);
    const Result received =
        run_tc(*dp_, Program::WanIngress, sent.out, {.spi = kSpi, .clock = clock_ + 3 * kMs});
    EXPECT_EQ(received.retval, static_cast<std::uint32_t>(TC_ACT_OK));
    EXPECT_EQ(received.out, frame(f)) << hex(received.out);
    EXPECT_TRUE(tcp6_checksum_ok(received.out));
    EXPECT_EQ(run_tc(*dp_, Program::WanIngress, sent.out, {.spi = kSpi, .clock = clock_ + 4 * kMs}).retval,
              static_cast<std::uint32_t>(TC_ACT_SHOT))
        << "the same packet replayed";
  }
}

// ---------------------------------------------------------------------
// The link's own ICMPv6 under `permit ipv6 any any`, fail-close and the
// clear-traffic drop: neighbour discovery and MLD are never steered or
// dropped (parse.h, covey_ipv6_link_control); other ICMPv6 is the ACL's.

Bytes icmp6(std::uint8_t type, std::uint8_t hop_limit, const std::string& src, const std::string& dst,
            bool router_alert = false) {
  Bytes msg(24, 0);
  msg[0] = type;
  Ipv6Frame f = router_alert ? v6(0, cat({hop_by_hop(58), msg}), src, dst) : v6(58, msg, src, dst);
  f.hop_limit = hop_limit;
  return frame(f);
}

TEST(LinkControl, NeighbourDiscoveryAndMldAreNeverSteeredOrDropped) {
  auto dp = open_datapath(64);
  ASSERT_TRUE(dp);
  const auto any6 = compile_acl(acl_from({"v6: permit ip any any"}));
  ASSERT_TRUE(any6.ok());
  ASSERT_TRUE(dp->install(*any6, *any6).ok());
  dp->set_tbar(tbar_on());
  const std::uint64_t clock = 60000 * kSecond;

  struct Probe {
    std::string description;
    Bytes frame;
    bool link;  // the link's own: passes everywhere
  };
  std::vector<Probe> probes;
  for (const int type : {133, 134, 135, 136, 137, 141, 142, 148, 149})
    probes.push_back({"ND type " + std::to_string(type) + ", hop limit 255",
                      icmp6(static_cast<std::uint8_t>(type), 255, "fe80::1", "2001:db8:9::1"), true});
  for (const int type : {130, 131, 132, 143, 151, 152, 153})
    probes.push_back({"MLD type " + std::to_string(type) + ", hop limit 1, behind a Router Alert",
                      icmp6(static_cast<std::uint8_t>(type), 1, "fe80::1", "ff02::16", true), true});
  probes.push_back({"a neighbour solicitation to a global address (a global source's NS answered)",
                    icmp6(136, 255, "2001:db8:1::1", "2001:db8:2::2"), true});
  probes.push_back({"ND type 135 with hop limit 64 (it could only be forwarded): the ACL's",
                    icmp6(135, 64, "2001:db8:1::1", "2001:db8:2::2"), false});
  probes.push_back(
      {"MLD type 143 with hop limit 255: the ACL's", icmp6(143, 255, "fe80::1", "ff02::16"), false});
  probes.push_back(
      {"echo request, hop limit 255: the ACL's", icmp6(128, 255, "2001:db8:1::1", "2001:db8:2::2"), false});
  probes.push_back(
      {"type 138 (router renumbering) is not the link's", icmp6(138, 255, "fe80::1", "ff02::2"), false});

  for (const Probe& p : probes) {
    SCOPED_TRACE(p.description);
    for (const bool no_tek : {false, true}) {
      SCOPED_TRACE(no_tek ? "fail-close" : "TEK active");
      dp->set_no_tek_active(no_tek);
      // LAN ingress and the GM's own at WAN egress.
      for (const Program prog : {Program::LanIngress, Program::WanEgress}) {
        SCOPED_TRACE(program_name(prog));
        const covey_stats before = dp->stats();
        const Result r = run_tc(*dp, prog, p.frame, {.mark = 0x12345, .clock = clock});
        if (p.link) {
          EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_OK));
          EXPECT_EQ(r.out, p.frame);
          EXPECT_EQ(r.mark, 0x12345u);
          expect_delta(before, dp->stats(), {{"packets", 1}, {"nd_bypass", 1}}, p.description);
        } else if (no_tek) {
          EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_SHOT));
          expect_delta(before, dp->stats(), {{"packets", 1}, {"fail_close_drop", 1}}, p.description);
        } else {
          EXPECT_TRUE(steered(r.mark)) << std::hex << r.mark;
          EXPECT_GT(dp->stats().tbar_stamped, before.tbar_stamped);
        }
      }
    }
    dp->set_no_tek_active(false);
    // Arriving in clear on the WAN with the clear-traffic drop on.
    dp->set_drop_clear(true);
    const covey_stats before = dp->stats();
    const Result r = run_xdp(*dp, p.frame);
    EXPECT_EQ(r.retval, p.link ? static_cast<std::uint32_t>(XDP_PASS) : static_cast<std::uint32_t>(XDP_DROP));
    expect_delta(before, dp->stats(), p.link ? Delta{} : Delta{{"clear_drop", 1}}, p.description);
    dp->set_drop_clear(false);
  }
}

// Fail-close, IPv6: the fail-close ACL drops what it permits; a group
// permit outside it goes out in clear while no TEK is active.
TEST_F(DatapathTest, FailCloseV6) {
  dp_->set_no_tek_active(true);
  const Bytes inside = frame(v6(17, udp(1, 2, 8)));
  covey_stats before = dp_->stats();
  Result r = run_tc(*dp_, Program::LanIngress, inside, {.clock = clock_});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_SHOT));
  expect_delta(before, dp_->stats(), {{"packets", 1}, {"fail_close_drop", 1}}, "fail-close, IPv6");
  dp_->set_no_tek_active(false);
  dp_->set_tek_expiry(clock_ - kSecond);
  before = dp_->stats();
  r = run_tc(*dp_, Program::LanIngress, inside, {.clock = clock_});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_SHOT));
  expect_delta(before, dp_->stats(), {{"packets", 1}, {"fail_close_drop", 1}}, "past the TEK's expiry, IPv6");
  dp_->set_tek_expiry(0);
  before = dp_->stats();
  r = run_tc(*dp_, Program::LanIngress, inside, {.clock = clock_});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_OK));
  EXPECT_TRUE(steered(r.mark));
  expect_delta(before, dp_->stats(), {{"packets", 1}, {"encrypt", 1}, {"steer_claimed", 1}}, "a TEK again");
}

// Two IPv6 address pairs that must share one slot.
// A pair's slot depends on every 32-bit word of both addresses: 512
// pairs that differ in one word only (consecutive values, the hardest
// input for a weak hash) all get slots of their own, spread over the
// table as random pairs would be. A word the hash left out would send
// them all to the same 8 probes, and all but 8 would be steer_full.
TEST(Collision, PairsDifferingInOneWordSpreadOverTheSlots) {
  auto dp = open_datapath(4096);
  ASSERT_TRUE(dp);
  auto any = compile_acl(acl_from({"permit ip any any", "v6: permit ip any any"}));
  auto none = compile_acl({});
  ASSERT_TRUE(any.ok() && none.ok());
  ASSERT_TRUE(dp->install(*any, *none).ok());
  std::uint64_t clock = 5000 * kSecond;
  for (unsigned family : {4u, 6u}) {
    const unsigned words = family == 4 ? 1 : 4;  // per address
    for (unsigned word = 0; word < 2 * words; ++word) {
      clock += 60 * kSecond;  // every slot idle since the last round: a fresh table
      std::map<std::uint32_t, unsigned> slots;
      std::vector<unsigned> per_eighth(8, 0);
      for (unsigned n = 0; n < 512; ++n) {
        std::array<std::uint8_t, 16> src = ip6("2001:db8:1::1"), dst = ip6("2001:db8:2::2");
        if (family == 4) {
          src = {10, 1, 1, 1};
          dst = {10, 2, 2, 2};
        }
        auto& a = word < words ? src : dst;
        const unsigned at = (word % words) * 4;
        a[at + 2] = static_cast<std::uint8_t>(a[at + 2] ^ (n >> 8));
        a[at + 3] = static_cast<std::uint8_t>(a[at + 3] ^ n);
        Bytes in;
        if (family == 4) {
          Ipv4Frame f;
          std::copy_n(src.begin(), 4, f.src.begin());
          std::copy_n(dst.begin(), 4, f.dst.begin());
          f.payload = udp(1, 2, 8);
          in = frame(f);
        } else {
          Ipv6Frame f = v6(17, udp(1, 2, 8));
          f.src = src;
          f.dst = dst;
          in = frame(f);
        }
        const Result r = run_tc(*dp, Program::LanIngress, in, {.clock = clock});
        ASSERT_TRUE(steered(r.mark)) << "IPv" << family << ", word " << word << ", pair " << n;
        ++slots[slot_of(r.mark)];
        ++per_eighth[slot_of(r.mark) / 512];
      }
      EXPECT_EQ(slots.size(), 512u) << "IPv" << family << ", word " << word;
      // 64 expected in each eighth, standard deviation 7.5.
      for (unsigned c : per_eighth) {
        EXPECT_GT(c, 24u) << "IPv" << family << ", word " << word;
        EXPECT_LT(c, 104u) << "IPv" << family << ", word " << word;
      }
    }
  }
}

TEST(Collision, TwoIpv6PairsInOneSlotNeverLeaveWithEachOthersAddresses) {
  auto dp = open_datapath(1);
  ASSERT_TRUE(dp);
  const std::uint64_t t0 = 5000 * kSecond;
  const Bytes a = frame(v6(17, udp(1, 2, 8), "2001:db8:1::1", "2001:db8:2::2"));
  const Bytes b = frame(v6(17, udp(1, 2, 8), "2001:db8:4::4", "2001:db8:5::5"));
  const Bytes from_anchors = esp6(kAnchorLocal6, kAnchorGroup6);
  const Bytes as_a = esp6(ip6("2001:db8:1::1"), ip6("2001:db8:2::2"));
  const Bytes as_b = esp6(ip6("2001:db8:4::4"), ip6("2001:db8:5::5"));
  auto rewrite = [&](std::uint32_t mark) {
    return run_tc(*dp, Program::WanEgress, from_anchors, {.mark = mark});
  };
  const std::uint32_t ticket_a = steer(*dp, a, t0);
  Result r = run_tc(*dp, Program::LanIngress, b, {.clock = t0 + 500 * kMs});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_SHOT)) << "B while A is in use";
  EXPECT_EQ(rewrite(ticket_a).out, as_a);
  const std::uint32_t ticket_b = steer(*dp, b, t0 + 1500 * kMs);
  EXPECT_NE(gen_of(ticket_b), gen_of(ticket_a));
  const covey_stats before = dp->stats();
  r = rewrite(ticket_a);
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_SHOT)) << "A's late packet";
  EXPECT_NE(r.out, as_b);
  expect_delta(before, dp->stats(), {{"rewrite_stale", 1}}, "A's packet after B took the slot");
  EXPECT_EQ(rewrite(ticket_b).out, as_b);
}

// ---------------------------------------------------------------------
// Changing settings while packets flow: a packet sees the settings from
// before a change or from after it, never a state in between (the stamp
// or the replay check switched off mid-change, half a policy).

constexpr std::uint16_t kPeerSid = 0x0909;
constexpr std::uint32_t kPeerNow = 700000;

// Two policies that differ in every TBAR field and in the ACL's verdict
// on the probe pair (10.7.7.7 -> 10.8.8.8); both stamp and check.
struct Policy {
  TbarPolicy tbar;
  std::vector<std::string> acl;
  bool probe_encrypted;
};
Policy policy(int which) {
  Policy p;
  p.tbar = tbar_on(which ? 3000 : 1000, which ? 1300 : 1386);
  p.tbar.sid = which ? 0x0b0b : 0x0a0a;
  p.tbar.inner_mtu_v4 = which ? 1400 : kInnerMtu;
  p.acl = kAcl;
  if (which) p.acl.insert(p.acl.begin(), "deny ip 10.7.7.0/24 10.8.8.0/24");
  p.probe_encrypted = !which;
  return p;
}

::testing::AssertionResult install_policy(Datapath& d, const Policy& p) {
  const auto acl = compile_acl(acl_from(p.acl));
  const auto fail_close = compile_acl(acl_from({"permit ip 10.0.0.0/8 10.0.0.0/8"}));
  if (!acl.ok() || !fail_close.ok()) return ::testing::AssertionFailure() << "the ACLs do not compile";
  if (auto r = d.install(*acl, *fail_close); !r) return ::testing::AssertionFailure() << r.error();
  return ::testing::AssertionSuccess();
}

// A packet from a peer, stamped and already accepted once: every later
// copy is a replay.
Bytes peer_packet() {
  Ipv4Frame f;
  f.src = ip4("10.2.2.2");
  f.dst = ip4("10.1.1.1");
  f.payload = udp(7, 8, 20);
  f.id = 1;
  f.options = stamp(kPeerSid, kPeerNow, 1);
  return frame(f);
}

// What one round of packets saw; empty when it is one of the policies'.
struct Seen {
  std::uint16_t sid = 0;       // the stamp's SID on the steady pair
  bool probe_encrypted = false;
  std::string wrong;           // what no policy allows
};

Seen run_probes(const Datapath& d, std::uint64_t clock) {
  Seen s;
  const Bytes steady = udp4("10.1.1.1", "10.2.2.2"), probe = udp4("10.7.7.7", "10.8.8.8");
  auto stamp_sid = [](const Result& r, std::size_t in) -> int {
    if (r.out.size() != in + COVEY_TBAR_OPT_LEN || r.out[34] != COVEY_TBAR_OPT_V4 || r.out[35] != COVEY_TBAR_OPT_LEN)
      return -1;
    return r.out[36] << 8 | r.out[37];
  };
  const Result sent = run_tc(d, Program::LanIngress, steady, {.clock = clock});
  const int sid = stamp_sid(sent, steady.size());
  if (sent.retval != TC_ACT_OK || !steered(sent.mark) || sid < 0)
    s.wrong += "a permitted packet left unstamped (retval " + std::to_string(sent.retval) + ", " +
               std::to_string(sent.out.size()) + " bytes); ";
  s.sid = static_cast<std::uint16_t>(sid);
  const Result replay = run_tc(d, Program::WanIngress, peer_packet(), {.spi = kSpi, .clock = clock});
  if (replay.retval != TC_ACT_SHOT) s.wrong += "a replayed packet passed; ";
  const Result p = run_tc(d, Program::LanIngress, probe, {.clock = clock});
  s.probe_encrypted = steered(p.mark);
  if (p.retval != TC_ACT_OK || (s.probe_encrypted ? stamp_sid(p, probe.size()) < 0 : p.out != probe))
    s.wrong += "the probe was neither encrypted and stamped nor sent in clear as it was; ";
  return s;
}

bool is_policy(const Seen& s, const Policy& p) {
  return s.sid == p.tbar.sid && s.probe_encrypted == p.probe_encrypted;
}

// Steps the writer one store at a time (Options::between_writes) and
// runs the packets between every two stores: a change must never pass
// through a state that is neither the old settings nor the new.
TEST(SettingsChange, PacketsBetweenTheWritesOfAChangeSeeTheOldSettingsOrTheNew) {
  const Policy policies[2] = {policy(0), policy(1)};
  const Policy *from = nullptr, *to = nullptr;
  const std::uint64_t clock = 30000 * kSecond;
  std::unique_ptr<Datapath> dp;
  int steps = 0;
  std::string change;
  dp = open_datapath(64, true, [&] {
    if (!from) return;
    ++steps;
    const Seen s = run_probes(*dp, clock);
    EXPECT_EQ(s.wrong, "") << change << ", after write " << steps;
    // TBAR settings and the ACL are checked apart: between set_tbar and
    // install the packets see the new TBAR settings with the old ACL.
    EXPECT_TRUE(s.sid == from->tbar.sid || s.sid == to->tbar.sid) << change << ": stamped with SID " << s.sid;
  });
  ASSERT_TRUE(dp);
  dp->set_tbar(policies[0].tbar);
  dp->set_pseudotime(kPeerNow, clock);
  ASSERT_TRUE(install_policy(*dp, policies[0]));
  ASSERT_EQ(run_tc(*dp, Program::WanIngress, peer_packet(), {.spi = kSpi, .clock = clock}).retval,
            static_cast<std::uint32_t>(TC_ACT_OK))
      << "the peer's packet, the first time";
  ASSERT_TRUE(is_policy(run_probes(*dp, clock), policies[0]));

  for (int i = 0; i < 6; ++i) {
    from = &policies[i % 2];
    to = &policies[(i + 1) % 2];
    change = "change " + std::to_string(i) + ": TBAR settings";
    dp->set_tbar(to->tbar);
    change = "change " + std::to_string(i) + ": ACL";
    ASSERT_TRUE(install_policy(*dp, *to));
    from = nullptr;
    const Seen s = run_probes(*dp, clock);
    EXPECT_EQ(s.wrong, "");
    EXPECT_TRUE(is_policy(s, *to)) << "change " << i << ": the new settings in force once the change returned";
  }
  EXPECT_GT(steps, 12) << "the writer was stepped";
}

// The same with the packets on another thread, at whatever point of a
// change they happen to run.
TEST(SettingsChange, PacketsRunningAlongsideChangesSeeTheOldSettingsOrTheNew) {
  const Policy policies[2] = {policy(0), policy(1)};
  const std::uint64_t clock = 40000 * kSecond;
  auto dp = open_datapath(64);
  ASSERT_TRUE(dp);
  dp->set_tbar(policies[0].tbar);
  dp->set_pseudotime(kPeerNow, clock);
  ASSERT_TRUE(install_policy(*dp, policies[0]));
  ASSERT_EQ(run_tc(*dp, Program::WanIngress, peer_packet(), {.spi = kSpi, .clock = clock}).retval,
            static_cast<std::uint32_t>(TC_ACT_OK));

  std::atomic<bool> stop{false};
  std::atomic<int> rounds{0};
  std::string wrong;
  std::thread packets([&] {
    while (!stop.load()) {
      const Seen s = run_probes(*dp, clock);
      if (wrong.empty() && !s.wrong.empty()) wrong = s.wrong;
      if (wrong.empty() && s.sid != policies[0].tbar.sid && s.sid != policies[1].tbar.sid)
        wrong = "stamped with SID " + std::to_string(s.sid);
      ++rounds;
    }
  });
  for (int i = 0; i < 40; ++i) {
    dp->set_tbar(policies[(i + 1) % 2].tbar);
    EXPECT_TRUE(install_policy(*dp, policies[(i + 1) % 2]));
  }
  stop = true;
  packets.join();
  EXPECT_EQ(wrong, "");
  EXPECT_GT(rounds.load(), 0);
}

// ---------------------------------------------------------------------
// Routing the rewritten ESP, and attaching: in this binary's own network
// namespace, on an ifb interface (always up with carrier; this kernel has
// no dummy or veth).

bool sh(const std::string& cmd) {
  return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0;
}

TEST_F(DatapathTest, RewrittenEspIsRoutedByItsRealDestination) {
  // bpf_fib_lookup answers only for an interface that forwards, as a GM's WAN does.
  ASSERT_TRUE(sh(
      "sysctl -qw net.ipv4.ip_forward=1 && ip link add covey-wan0 type ifb && ip link set covey-wan0 up && "
      "ip addr add 192.0.2.1/24 dev covey-wan0 && ip route add 10.2.0.0/16 via 192.0.2.254"));
  const std::uint32_t ifindex = if_nametoindex("covey-wan0");
  ASSERT_NE(ifindex, 0u);
  dp_->set_egress_fib(true);
  const Bytes from_anchors = esp4(kAnchorLocal, kAnchorGroup);

  // A route for the real destination: redirected through its neighbour.
  std::uint32_t ticket = steer(*dp_, udp4("10.1.1.1", "10.2.5.5"), clock_);
  covey_stats before = dp_->stats();
  Result r = run_tc(*dp_, Program::WanEgress, from_anchors, {.mark = ticket, .ifindex = ifindex});
  EXPECT_EQ(r.retval, kRedirect);
  EXPECT_EQ(r.out, esp4(ip4("10.1.1.1"), ip4("10.2.5.5")));
  expect_delta(before, dp_->stats(), {{"rewritten", 1}}, "routed");

  // A neighbour the kernel knows, on this same device: the lookup's MAC
  // addresses written and on its way, no redirect (no second pass). A
  // full-size packet too: the route's MTU is checked against the IP
  // packet, not the frame.
  ASSERT_TRUE(sh("ip neigh replace 192.0.2.254 lladdr 02:00:5e:00:02:fe dev covey-wan0 nud permanent"));
  std::array<std::uint8_t, 6> own{};
  {
    // This namespace's interface (its /sys is the host's).
    ifreq req{};
    std::strncpy(req.ifr_name, "covey-wan0", IFNAMSIZ - 1);
    const int fd = socket(AF_INET, SOCK_DGRAM, 0);
    ASSERT_EQ(ioctl(fd, SIOCGIFHWADDR, &req), 0);
    close(fd);
    std::memcpy(own.data(), req.ifr_hwaddr.sa_data, 6);
  }
  for (std::size_t ip_length : {std::size_t{0}, std::size_t{1500}}) {
    auto make = [&](std::array<std::uint8_t, 4> src, std::array<std::uint8_t, 4> dst) {
      Ipv4Frame f;
      f.src = src;
      f.dst = dst;
      f.protocol = 50;
      f.id = 0x77;
      f.payload = esp(kSpi, 9);
      if (ip_length) f.payload.resize(ip_length - 20, 0xab);
      return frame(f);
    };
    ticket = steer(*dp_, udp4("10.1.1.1", "10.2.5.5"), clock_);
    before = dp_->stats();
    r = run_tc(*dp_, Program::WanEgress, make(kAnchorLocal, kAnchorGroup), {.mark = ticket, .ifindex = ifindex});
    EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_OK)) << "IP length " << ip_length;
    Bytes expected = make(ip4("10.1.1.1"), ip4("10.2.5.5"));
    const std::array<std::uint8_t, 6> gateway{0x02, 0x00, 0x5e, 0x00, 0x02, 0xfe};
    std::copy(gateway.begin(), gateway.end(), expected.begin());
    std::copy(own.begin(), own.end(), expected.begin() + 6);
    EXPECT_EQ(r.out, expected) << "IP length " << ip_length;
    expect_delta(before, dp_->stats(), {{"rewritten", 1}}, "routed to a known neighbour");
  }
  ASSERT_TRUE(sh("ip neigh del 192.0.2.254 dev covey-wan0"));

  // None (the anchor's route is no help): dropped, counted.
  ticket = steer(*dp_, udp4("10.1.1.1", "10.7.5.5"), clock_);
  before = dp_->stats();
  r = run_tc(*dp_, Program::WanEgress, from_anchors, {.mark = ticket, .ifindex = ifindex});
  EXPECT_EQ(r.retval, static_cast<std::uint32_t>(TC_ACT_SHOT));
  expect_delta(before, dp_->stats(), {{"rewritten", 1}, {"rewrite_no_route", 1}}, "no route");
  sh("ip link del covey-wan0");
}

std::string run_text(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  std::string text;
  char buf[4096];
  while (pipe && std::fgets(buf, sizeof buf, pipe.get())) text += buf;
  return text;
}

TEST_F(DatapathTest, AttachAndDetach) {
  ASSERT_TRUE(sh("ip link add covey-lan0 type ifb && ip link set covey-lan0 up"));
  const int ifindex = static_cast<int>(if_nametoindex("covey-lan0"));
  ASSERT_NE(ifindex, 0);
  for (Program p : {Program::LanIngress, Program::WanEgress, Program::WanIngress}) {
    auto r = dp_->attach_tc(ifindex, p);
    ASSERT_TRUE(r.ok()) << r.error();
  }
  auto x = dp_->attach_xdp(ifindex, XDP_FLAGS_SKB_MODE);
  ASSERT_TRUE(x.ok()) << x.error();
  EXPECT_TRUE(dp_->attach_tc(ifindex, Program::LanIngress).ok()) << "attaching again replaces";
  const std::string shown = run_text("bpftool net show dev covey-lan0 2>&1");
  bpf_prog_info info{};
  std::uint32_t len = sizeof(info);
  ASSERT_EQ(bpf_obj_get_info_by_fd(dp_->program_fd(Program::WanXdp), &info, &len), 0);
  const std::string xdp = "generic id " + std::to_string(info.id);
  for (const std::string& name : {std::string("covey_lan_ingre"), std::string("covey_wan_egres"), xdp})
    EXPECT_NE(shown.find(name), std::string::npos) << name << " in:\n" << shown;

  for (Program p : {Program::LanIngress, Program::WanEgress}) EXPECT_TRUE(dp_->detach_tc(ifindex, p).ok());
  EXPECT_TRUE(dp_->detach_xdp(ifindex).ok());
  const std::string after = run_text("bpftool net show dev covey-lan0 2>&1");
  EXPECT_EQ(after.find("covey_lan_ingre"), std::string::npos) << after;
  EXPECT_EQ(after.find(xdp), std::string::npos) << after;
  auto bad = dp_->attach_tc(999999, Program::LanIngress);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("covey_lan_ingress to tc ingress of ? (ifindex 999999)"), std::string::npos)
      << bad.error();
  sh("ip link del covey-lan0");
}

// Another tool's program: passes everything, named `name`.
int foreign_program(bpf_prog_type type, const char* name) {
  bpf_insn insns[2] = {};
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;  // r0 = verdict
  insns[0].imm = type == BPF_PROG_TYPE_XDP ? XDP_PASS : TC_ACT_OK;
  insns[1].code = BPF_JMP | BPF_EXIT;
  return bpf_prog_load(type, name, "GPL", insns, 2, nullptr);
}

std::uint32_t prog_id(int fd) {
  bpf_prog_info info{};
  std::uint32_t len = sizeof(info);
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

std::uint32_t xdp_on(int ifindex) {
  std::uint32_t id = 0;
  bpf_xdp_query_id(ifindex, XDP_FLAGS_SKB_MODE, &id);
  return id;
}

// The program at `handle` and `priority` of a tc hook, 0 if none (covey's
// slot: handle 0xc0e1, priority 1).
std::uint32_t tc_on(int ifindex, bpf_tc_attach_point point, std::uint32_t handle = 0xc0e1,
                    std::uint32_t priority = 1) {
  bpf_tc_hook hook{};
  hook.sz = sizeof(hook);
  hook.ifindex = ifindex;
  hook.attach_point = point;
  bpf_tc_opts opts{};
  opts.sz = sizeof(opts);
  opts.handle = handle;
  opts.priority = priority;
  return bpf_tc_query(&hook, &opts) == 0 ? opts.prog_id : 0;
}

// What other tools attach stays where it is; covey replaces and removes
// only its own programs, an earlier run's included (vm.attach_ownership
// checks the same through covey-gm).
TEST_F(DatapathTest, OnlyCoveysOwnProgramsAreReplacedOrRemoved) {
  ASSERT_TRUE(sh("ip link add covey-own0 type ifb && ip link set covey-own0 up"));
  const int ifindex = static_cast<int>(if_nametoindex("covey-own0"));
  ASSERT_NE(ifindex, 0);
  const int xdp = foreign_program(BPF_PROG_TYPE_XDP, "foreign_xdp");
  const int tc = foreign_program(BPF_PROG_TYPE_SCHED_CLS, "foreign_tc");
  ASSERT_GE(xdp, 0);
  ASSERT_GE(tc, 0);

  // A foreign XDP program: refused by name and id, neither replaced nor removed.
  ASSERT_EQ(bpf_xdp_attach(ifindex, xdp, XDP_FLAGS_SKB_MODE, nullptr), 0);
  auto refused = dp_->attach_xdp(ifindex, XDP_FLAGS_SKB_MODE);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().find("covey-own0 (ifindex " + std::to_string(ifindex) +
                                 ") already has XDP program 'foreign_xdp' (id " +
                                 std::to_string(prog_id(xdp)) + ")"),
            std::string::npos)
      << refused.error();
  auto kept = dp_->detach_xdp(ifindex);
  EXPECT_FALSE(kept.ok());
  EXPECT_NE(kept.error().find("left in place"), std::string::npos) << kept.error();
  EXPECT_EQ(xdp_on(ifindex), prog_id(xdp));
  ASSERT_EQ(bpf_xdp_detach(ifindex, XDP_FLAGS_SKB_MODE, nullptr), 0);

  // An earlier run's programs (the object loaded again, then closed as by
  // kill -9) are covey's: replaced.
  {
    auto earlier = open_datapath(64);
    ASSERT_TRUE(earlier);
    ASSERT_TRUE(earlier->attach_xdp(ifindex, XDP_FLAGS_SKB_MODE).ok());
    ASSERT_TRUE(earlier->attach_tc(ifindex, Program::LanIngress).ok());
  }
  auto replaced = dp_->attach_xdp(ifindex, XDP_FLAGS_SKB_MODE);
  ASSERT_TRUE(replaced.ok()) << replaced.error();
  EXPECT_EQ(xdp_on(ifindex), prog_id(dp_->program_fd(Program::WanXdp)));
  ASSERT_TRUE(dp_->attach_tc(ifindex, Program::LanIngress).ok());
  EXPECT_EQ(tc_on(ifindex, BPF_TC_INGRESS), prog_id(dp_->program_fd(Program::LanIngress)));

  // A foreign filter in covey's slot: refused and kept; one at another
  // priority is no concern of covey's.
  bpf_tc_hook egress{};
  egress.sz = sizeof(egress);
  egress.ifindex = ifindex;
  egress.attach_point = BPF_TC_EGRESS;
  bpf_tc_opts slot{};
  slot.sz = sizeof(slot);
  slot.prog_fd = tc;
  slot.handle = 0xc0e1;
  slot.priority = 1;
  ASSERT_EQ(bpf_tc_attach(&egress, &slot), 0);
  bpf_tc_hook ingress = egress;
  ingress.attach_point = BPF_TC_INGRESS;
  bpf_tc_opts beside{};
  beside.sz = sizeof(beside);
  beside.prog_fd = tc;
  beside.handle = 1;
  beside.priority = 7;
  ASSERT_EQ(bpf_tc_attach(&ingress, &beside), 0);
  auto taken = dp_->attach_tc(ifindex, Program::WanEgress);
  ASSERT_FALSE(taken.ok());
  EXPECT_NE(taken.error().find("BPF filter 'foreign_tc' (id " + std::to_string(prog_id(tc)) +
                               ") holds covey's handle 0xc0e1 priority 1"),
            std::string::npos)
      << taken.error();
  EXPECT_FALSE(dp_->detach_tc(ifindex, Program::WanEgress).ok());
  EXPECT_EQ(tc_on(ifindex, BPF_TC_EGRESS), prog_id(tc));

  // Covey's stop: its own programs go, the others stay. Another tool's XDP
  // program attached over covey's meanwhile stays too.
  EXPECT_TRUE(dp_->detach_tc(ifindex, Program::LanIngress).ok());
  EXPECT_EQ(tc_on(ifindex, BPF_TC_INGRESS), 0u);
  EXPECT_EQ(tc_on(ifindex, BPF_TC_INGRESS, 1, 7), prog_id(tc));
  EXPECT_EQ(tc_on(ifindex, BPF_TC_EGRESS), prog_id(tc));
  EXPECT_TRUE(dp_->detach_xdp(ifindex).ok());
  EXPECT_EQ(xdp_on(ifindex), 0u);
  ASSERT_TRUE(dp_->attach_xdp(ifindex, XDP_FLAGS_SKB_MODE).ok());
  ASSERT_EQ(bpf_xdp_attach(ifindex, xdp, XDP_FLAGS_SKB_MODE, nullptr), 0);
  EXPECT_FALSE(dp_->detach_xdp(ifindex).ok());
  EXPECT_EQ(xdp_on(ifindex), prog_id(xdp));
  close(xdp);
  close(tc);
  sh("ip link del covey-own0");
}

}  // namespace
}  // namespace covey::datapath

int main(int argc, char** argv) {
  if (geteuid() != 0) {
    std::printf(
        "bpf_datapath_test: skipped: BPF_PROG_TEST_RUN needs root (CAP_BPF and CAP_NET_ADMIN); "
        "run it as root, e.g. sudo ctest -L bpf\n");
    return 77;
  }
  // A network namespace of our own: routes and interfaces the tests make
  // never touch the host's, and the host's never decide a test.
  if (unshare(CLONE_NEWNET) != 0) {
    std::printf("bpf_datapath_test: unshare(CLONE_NEWNET): %s\n", std::strerror(errno));
    return 1;
  }
  if (std::system("ip link set lo up >/dev/null 2>&1") != 0) {
    std::printf("bpf_datapath_test: ip link set lo up failed in the test's namespace\n");
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
