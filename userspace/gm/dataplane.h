// The member's data path: what covey-gm puts into the kernel so the
// group's traffic is encrypted, steered with its own addresses on the
// wire, replay-checked and failed closed (docs/ARCHITECTURE.md, "The data
// path"). The agent hands it the member's keys (gm/rekey_state.h) on every
// change and every tick; it makes the kernel match:
//   - each TEK held for receiving -> an inbound XFRM state per address
//     family (IPv4, and IPv6 where the host has it) and a
//     COVEY_SPI_INBOUND entry; the active TEK also an outbound state per
//     family (installed at activation, so the sender switches then, not before);
//   - the policy -> the compiled ACL and fail-close ACL, TBAR settings;
//   - a lease: the BPF programs steer only while the agent keeps renewing
//     it, so a dead covey-gm fails closed within `lease` (the programs and
//     maps outlive the process).
// plan_sas() is the pure part: what to add and remove, from what is held
// and what is installed.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "crypto/result.h"
#include "kmod-free/datapath.h"
#include "gdoi/policy.h"
#include "gm/rekey_state.h"
#include "kmod-free/rtnl.h"
#include "kmod-free/xfrm.h"

namespace covey::gm {

// What the kernel holds of one TEK.
struct InstalledSa {
  bool inbound = false;
  bool outbound = false;
  bool operator==(const InstalledSa&) const = default;
};

// One step towards the wanted SAs, in the order they must happen: new
// inbound states first (a peer may already send on them), then the new
// outbound state, then the old outbound state out, then stale inbound.
struct SaStep {
  enum class Kind : std::uint8_t { AddInbound, AddOutbound, RemoveOutbound, RemoveInbound };
  Kind kind;
  std::uint32_t spi;
  bool operator==(const SaStep&) const = default;
};

// Wanted: every TEK that is pending, active or receive-only is received
// on; the active one is sent on.
std::vector<SaStep> plan_sas(const std::vector<TekView>& teks, const std::map<std::uint32_t, InstalledSa>& installed);

// The kernel announced the expiry of a state (XFRMNLGRP_EXPIRE). If it is
// one of the group's (its reqid, covey's mark mask, an anchor as its
// destination) and the expiry is hard, the kernel has deleted it: it no
// longer counts as installed, so the next plan_sas puts it back while its
// TEK is held, and otherwise forgets it. Returns whether it was the group's.
bool forget_expired(std::map<std::uint32_t, InstalledSa>& installed, const kmod::StateExpiry& expiry, std::uint32_t reqid,
                    const kmod::GroupAnchors& anchors);

// Traffic between two of the member's own LAN prefixes is routed by the
// member itself and never crosses the WAN, so it must not be steered into
// the group SA (it would leave by the WAN as ESP and come back, or be sent
// as ESP to a LAN host). `deny ip P Q` for every ordered pair of distinct
// prefixes of one family, put before the key server's ACL: the classifier
// already decides first-match at no cost per entry.
std::vector<gdoi::AclEntry> own_lan_bypass(const std::vector<gdoi::Prefix>& lans);

struct DataplaneOptions {
  std::string group_name;
  std::uint32_t group_id = 0;
  std::string wan;
  std::vector<std::string> lans;
  std::vector<gdoi::AclEntry> fail_close;  // the member's own lines, before the key server's
  // Where the inbound decisions are made (known SPIs to ANCHOR_IN, unknown
  // SPIs and clear traffic dropped): Auto = XDP where the driver runs it
  // natively and the WAN is no veth, else tc ingress; Off = tc ingress.
  enum class XdpMode : std::uint8_t { Auto, Native, Generic, Off };
  XdpMode xdp_mode = XdpMode::Auto;
  bool drop_unknown_spi = false;
  std::string pin_root = "/sys/fs/bpf/covey";
  // The anchors of each family's group SAs: IPv4 traffic goes into
  // IPv4 states, IPv6 traffic into IPv6 states, so the outer header can
  // take the inner one's addresses. Never on any wire (the rewrite puts the
  // real addresses back before the packet leaves), so any addresses
  // the host uses for nothing else serve: IPv4 link-local, an IPv6 unique
  // local prefix (RFC 4193; covey's default spells c0e1). IPv6 ones are
  // installed where the WAN has IPv6 (not disable_ipv6).
  kmod::GroupAnchors anchors{*Address::parse("169.254.77.1"), *Address::parse("169.254.77.2"),
                             *Address::parse("169.254.77.3")};
  kmod::GroupAnchors anchors_v6{*Address::parse("fd00:c0e1:77::1"), *Address::parse("fd00:c0e1:77::2"),
                                *Address::parse("fd00:c0e1:77::3")};
  std::chrono::seconds lease{5};
};

// What the BPF programs counted (all CPUs summed), with the ACL lines the
// hits belong to: the installed ACL and fail-close ACL, in order.
struct DataplaneCounters {
  covey_stats stats{};
  struct AclHits {
    std::string line;
    std::uint64_t hits = 0;
  };
  std::vector<AclHits> acl, fail_close;
};

class Dataplane {
 public:
  // Checks the kernel first (kmod::probe_kernel) and refuses with its
  // report; removes what a crashed run left; then anchors, sysctls, BPF
  // (pinned under pin_root/<group>), policies, and attaches. Traffic the
  // fail-close ACL covers is dropped from here until a TEK is active.
  static crypto::Result<std::unique_ptr<Dataplane>> start(const DataplaneOptions& options);
  ~Dataplane();
  Dataplane(const Dataplane&) = delete;
  Dataplane& operator=(const Dataplane&) = delete;

  // The member's keys now (seconds of common/clock.h, as RekeyState keeps them):
  // the policy's tables if it changed, the SAs, the SPIs, the lease.
  // Errors name the SA or table and leave the rest as it was.
  crypto::Result<void> sync(const RekeyState& keys, std::int64_t now);
  // The key server's pseudotime `ms` as received at CLOCK_MONOTONIC
  // `at_ns`. Never moves the member's pseudotime back (a retransmitted
  // push is older than it looks) unless `registration`.
  void pseudotime(std::uint32_t ms, std::uint64_t at_ns, bool registration);

  // The kernel announces address changes here (readable: call
  // follow_addresses()).
  int address_fd() const;
  // The LAN interfaces' prefixes read again after an announcement: a
  // prefix added to a LAN (a container network on a bridge) joins the
  // own-LAN bypass, a removed one leaves it, and the tables switch in one
  // store, so no packet meets half of the change.
  crypto::Result<void> follow_addresses();

  // Detaches the programs, removes covey's states, policies, anchors and
  // pinned maps: the host is as before start().
  void stop();

  nlohmann::json status() const;
  // nullopt while the BPF programs are not loaded.
  std::optional<DataplaneCounters> counters() const;
  // "active", "fail-close" (no TEK active: the fail-close ACL drops) or "error".
  const char* state() const;

 private:
  Dataplane() = default;
  crypto::Result<void> setup();
  crypto::Result<void> forget_spis();
  crypto::Result<void> install_policy(const gdoi::GroupPolicy& policy);
  void apply_tbar();
  struct FamilyPath;
  crypto::Result<void> add_anchors(const kmod::GroupAnchors& a);
  crypto::Result<void> step(FamilyPath& f, const SaStep& s, const RekeyState& keys, std::int64_t now);
  // The SPI map's entry for `spi`: inbound (outbound) if some family's
  // state is installed.
  crypto::Result<void> publish_spi(std::uint32_t spi);
  // Brings installed_ (and the SPI map) in line with what the kernel expired.
  void take_expiries();

  DataplaneOptions options_;
  kmod::Interface wan_;
  std::vector<kmod::Interface> lans_;
  std::string pin_dir_;
  std::uint32_t reqid_ = 0;
  std::unique_ptr<kmod::XfrmSocket> xfrm_;
  std::unique_ptr<kmod::XfrmExpiries> expiries_;
  std::unique_ptr<kmod::RouteSocket> rtnl_;
  std::unique_ptr<kmod::AddressChanges> addresses_;
  std::unique_ptr<datapath::Datapath> dp_;
  std::optional<gdoi::GroupPolicy> policy_;  // installed
  std::vector<gdoi::AclEntry> bypass_;       // own_lan_bypass of the LAN interfaces' prefixes
  std::vector<gdoi::AclEntry> acl_;          // installed: bypass_, then the key server's ACL
  std::vector<gdoi::AclEntry> fail_close_;   // installed: bypass_, the member's lines, then the key server's
  std::vector<std::uint32_t> sids_;
  std::optional<datapath::TbarPolicy> tbar_;  // applied
  // Per address family the data path carries: its anchors and the TEKs'
  // states under them (plan_sas runs per family).
  struct FamilyPath {
    kmod::GroupAnchors anchors;
    std::map<std::uint32_t, InstalledSa> installed;
  };
  std::vector<FamilyPath> families_;  // IPv4 first
  std::optional<std::uint32_t> sending_;
  std::optional<std::uint64_t> pseudotime_epoch_ns_;  // CLOCK_MONOTONIC ns at pseudotime 0, mod 2^32 ms
  std::optional<std::string> error_;
  bool esp6_ = false;  // the probe found ESP over IPv6
  bool attached_ = false;
  bool xdp_attached_ = false;
  std::string inbound_;  // "XDP (native)", "XDP (generic)", "tc ingress"
  int claim_fd_ = -1;  // this network namespace's data path is ours while it is open
};

// CLOCK_MONOTONIC in ns, the programs' clock.
std::uint64_t monotonic_ns();

}  // namespace covey::gm
