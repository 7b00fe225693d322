// The one adapter between user space and covey's BPF data path
// (bpf/covey_dp.bpf.c): loads it from its libbpf skeleton, sizes and
// (optionally) pins its maps, installs compiled ACLs, sets the steering,
// anchors, SPIs, TBAR and fail-close state, reads the counters back, and
// attaches the programs to interfaces.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "covey_maps.h"
#include "crypto/result.h"
#include "datapath/acl_tables.h"

struct covey_dp;  // bpftool's skeleton (covey_dp.skel.h)

namespace covey::datapath {

// The programs, by where they attach (bpf/README.md).
enum class Program {
  LanIngress,  // tc ingress of each protected interface
  WanEgress,   // tc egress of the WAN interface
  WanXdp,      // XDP on the WAN interface
  WanIngress,  // tc ingress of the WAN interface
};
const char* program_name(Program p);

// What each table map holds per generation (both generations are
// allocated). Fixed when the maps are created; install() refuses an ACL
// that does not fit, with the numbers.
struct Capacity {
  std::uint32_t entries = 16384;         // ACL lines, the group ACL and the fail-close ACL together
  std::uint32_t trie_cells = 1u << 20;   // 4 MiB
  std::uint32_t port_cells = 1u << 20;   // 4 MiB: 4 classifiers of 2 x 65537 + 257
  std::uint32_t cross_cells = 1u << 22;  // 16 MiB
  // Address pairs being steered at once (a power of two, at most
  // COVEY_STEER_SLOTS_MAX): a pair holds its slot while it sends, and
  // for steer_stale after.
  std::uint32_t steer_slots = 1u << 18;  // 14 MiB
  // Senders whose TBAR duplicate window is kept (528 bytes each).
  std::uint32_t tbar_peers = 4096;
  bool operator==(const Capacity&) const = default;

  // Exactly what these two ACLs need.
  static Capacity fitting(const CompiledAcl& acl, const CompiledAcl& fail_close);
};

struct Options {
  Capacity capacity;
  // A directory on a BPF filesystem (created if missing), e.g.
  // /sys/fs/bpf/covey/GET_VPN: maps are pinned there by name, and maps
  // already pinned there are reused, so a restarted GM continues with the
  // state the kernel kept. Empty: nothing is pinned.
  std::string pin_dir;
  // For BPF_PROG_TEST_RUN only (bpf/maps.h): the programs read the clock
  // from skb->cb[1..2] and the secpath's SPI from skb->cb[0].
  bool test_hooks = false;
  // For tests only: called after each write a configuration change makes
  // to memory the programs read, so a test can run packets between the
  // steps of one change.
  std::function<void()> between_writes;
};

// An outbound SA's outer addresses and the inbound SA's local address
// (DESIGN.md's anchors), in network order; IPv4 in the first 4 bytes.
struct Anchors {
  std::uint8_t family = 4;  // 4 or 6
  std::array<std::uint8_t, 16> local{}, group{}, in{};
};

// The group's TBAR policy on this member.
struct TbarPolicy {
  bool stamp = false;            // stamp what this member encrypts
  bool check = false;            // check and strip stamps on what it decrypts
  std::uint16_t sid = 0;         // this member's SID
  std::uint32_t window_ms = 0;   // accepted: |stamp - now| <= window
  std::uint16_t tcp_mss_v4 = 0;  // clamp stamped SYNs' MSS (tcp_mss_for_stamp); 0 = none
  std::uint16_t tcp_mss_v6 = 0;
  // The group SA's inner MTU per family (kmod::esp_tunnel_inner_mtu of
  // the WAN's MTU for that outer family): a packet over it once stamped is
  // answered instead of being sent, IPv4 with DF by ICMP fragmentation
  // needed for inner_mtu_v4 - 12, IPv6 by Packet Too Big for inner_mtu_v6
  // - 16 (bpf/README.md, "Path MTU"). 0 = unknown: no answer.
  std::uint32_t inner_mtu_v4 = 0;
  std::uint32_t inner_mtu_v6 = 0;
};

// The largest TCP MSS whose segments, stamped, still fit `inner_mtu`
// (the same inner MTU as TbarPolicy's, kmod::esp_tunnel_inner_mtu): the
// IP and TCP headers and the stamp (IPv4: 12 bytes; IPv6: its 16-byte
// destination-options header) taken off. It equals the MSS a sender
// derives from the ICMP answer's MTU, inner_mtu - 12.
std::uint16_t tcp_mss_for_stamp(std::uint32_t inner_mtu, std::uint8_t family);

class Datapath {
 public:
  static crypto::Result<std::unique_ptr<Datapath>> open(const Options& options);
  ~Datapath();
  Datapath(const Datapath&) = delete;
  Datapath& operator=(const Datapath&) = delete;

  // Every change below (install and the set_ functions) is atomic from a
  // packet's point of view: a packet uses the settings from before it or
  // from after it, never a state in between (bpf/README.md, "Changing
  // settings"); a change returns once no packet uses the old settings.
  // One writer at a time.

  // Writes both ACLs into the generation packets are not using, then
  // switches packets to it: a packet sees the old policy or the new one,
  // never a mix. Hit counters of the new generation start at zero.
  crypto::Result<void> install(const CompiledAcl& acl, const CompiledAcl& fail_close);

  // skb->mark for a permitted packet: `mark` within `mask`, both inside
  // COVEY_MARK_STEER_FIELD (the rest of the mark carries the slot), the
  // field's other bits kept.
  crypto::Result<void> set_steering_mark(std::uint32_t mark, std::uint32_t mask);
  // How long a steering slot stays with an idle address pair (default 1 s).
  void set_steer_stale(std::chrono::nanoseconds stale);
  void set_anchors(const Anchors& anchors);
  // The WAN's own MAC: XDP leaves frames from it alone (the GM's bounced packets).
  void set_wan_mac(const std::array<std::uint8_t, 6>& mac);
  // The group's SPIs (COVEY_SPI_INBOUND, COVEY_SPI_OUTBOUND).
  crypto::Result<void> set_spi(std::uint32_t spi, std::uint32_t flags);
  crypto::Result<void> remove_spi(std::uint32_t spi);
  // The SPIs in covey_spis now (a pinned map keeps an earlier run's).
  std::vector<std::uint32_t> spis() const;
  // The WAN's tc ingress program makes the inbound decisions of
  // covey_wan_xdp (known SPIs to ANCHOR_IN, unknown-SPI and clear drops):
  // for a WAN without XDP attached.
  void set_inbound_tc(bool on);
  void set_drop_unknown_spi(bool on);
  void set_drop_clear(bool on);
  // Route rewritten ESP by its real destination (bpf_fib_lookup and
  // bpf_redirect_neigh) rather than where the anchor's route sent it.
  void set_egress_fib(bool on);
  void set_tbar(const TbarPolicy& policy);
  // The KS's pseudotime (ms) at CLOCK_MONOTONIC `at_ns`: one store.
  void set_pseudotime(std::uint32_t pseudotime_ms, std::uint64_t at_ns);
  // Forgets senders idle for more than twice the window at `now_ns`
  // (their replays would be late): how many.
  std::size_t expire_tbar_peers(std::uint64_t now_ns);
  std::optional<covey_tbar_peer> tbar_peer(std::uint16_t sid) const;
  std::optional<covey_steer_slot> steer_slot(std::uint32_t index) const;
  std::uint32_t tbar_counter() const;  // the next counter this member sends
  void set_tbar_counter(std::uint32_t counter);

  // Attaching: tc programs to the clsact qdisc of `ifindex` (created if
  // missing, never removed) at covey's own handle and priority, XDP in
  // `xdp_flags` mode (XDP_FLAGS_DRV_MODE, _SKB_MODE, or 0). Only covey's
  // programs are replaced or detached (known by name: an earlier run's are
  // covey's too); another program in covey's place is refused, named by
  // name and id, and left where it is. What stays attached survives this
  // process: fail-close with the GM gone.
  crypto::Result<void> attach_tc(int ifindex, Program program);
  crypto::Result<void> detach_tc(int ifindex, Program program);
  crypto::Result<void> attach_xdp(int ifindex, std::uint32_t xdp_flags);
  crypto::Result<void> detach_xdp(int ifindex);
  // How the kernel runs the XDP program on `ifindex`: XDP_ATTACHED_DRV,
  // _SKB, _HW, _MULTI, or XDP_ATTACHED_NONE (also when it cannot say).
  static std::uint8_t xdp_attached_mode(int ifindex);
  // Fail-close: enforced while no_tek_active is set, and after
  // `expires_ns` (CLOCK_MONOTONIC; 0 = never) even if the flag is clear.
  void set_no_tek_active(bool no_tek_active);
  void set_tek_expiry(std::uint64_t expires_ns);

  std::uint32_t generation() const;
  // Matches per entry of the live generation, in ACL order, all CPUs summed.
  std::vector<std::uint64_t> hits(covey_acl_kind kind) const;
  covey_stats stats() const;  // all CPUs summed
  void reset_stats();

  int program_fd(Program program = Program::LanIngress) const;
  // A map of the object by name (e.g. "covey_steer_slots"), -1 if none:
  // for tests and diagnostics, the same maps bpftool shows.
  int map_fd(const char* name) const;
  const Capacity& capacity() const { return capacity_; }

 private:
  Datapath() = default;
  crypto::Result<void> map_tables();
  crypto::Result<void> open_grace_period();
  // Returns once no program run that started before the call is still
  // running (an RCU grace period).
  void wait_for_programs() const;
  // The settings packets use now.
  const covey_config& live() const;
  // Every change of settings: `edit` applied to a copy of the live
  // settings, written to the idle copy, packets switched to it with one
  // store; returns once no packet still uses the old copy. No-op if
  // `edit` changes nothing.
  void change(const std::function<void(covey_config&)>& edit);
  // A single word a packet reads once, stored into the live copy.
  void store_live(__u64 covey_config::*field, __u64 value);
  void set_flag(std::uint32_t flag, bool on);
  bool is_covey(const std::string& kernel_name) const;
  crypto::Result<bool> tc_slot_is_covey(int ifindex, Program program) const;
  void wrote() const {
    if (between_writes_) between_writes_();
  }

  covey_dp* skel_ = nullptr;
  Capacity capacity_;
  std::string pin_dir_;
  std::function<void()> between_writes_;
  covey_configs* configs_ = nullptr;  // mmapped covey_config
  std::uint32_t* trie_ = nullptr;   // mmapped cells
  std::uint32_t* ports_ = nullptr;
  std::uint32_t* cross_ = nullptr;
  std::size_t config_len_ = 0, trie_len_ = 0, ports_len_ = 0, cross_len_ = 0;
  int sync_outer_fd_ = -1, sync_inner_fd_ = -1;  // wait_for_programs()
};

}  // namespace covey::datapath
