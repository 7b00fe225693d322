#include "gm/dataplane.h"

#include <ifaddrs.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <sys/statfs.h>
#include <time.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <tuple>

#include "common/log.h"
#include "datapath/acl_compile.h"
#include "gm/kernel_sa.h"
#include "kmod-free/probe.h"

namespace covey::gm {

using crypto::Error;
using nlohmann::json;

std::uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::vector<SaStep> plan_sas(const std::vector<TekView>& teks, const std::map<std::uint32_t, InstalledSa>& installed) {
  std::map<std::uint32_t, InstalledSa> want;
  for (const TekView& v : teks) {
    if (v.state == TekState::Expired) continue;
    want[v.tek->spi].inbound = true;
    if (v.state == TekState::Active) want[v.tek->spi].outbound = true;
  }
  std::vector<SaStep> steps;
  using K = SaStep::Kind;
  auto have = [&](std::uint32_t spi) { auto i = installed.find(spi); return i == installed.end() ? InstalledSa{} : i->second; };
  for (const auto& [spi, w] : want)
    if (!have(spi).inbound) steps.push_back({K::AddInbound, spi});
  for (const auto& [spi, w] : want)
    if (w.outbound && !have(spi).outbound) steps.push_back({K::AddOutbound, spi});
  for (const auto& [spi, h] : installed) {
    auto w = want.find(spi);
    if (h.outbound && (w == want.end() || !w->second.outbound)) steps.push_back({K::RemoveOutbound, spi});
  }
  for (const auto& [spi, h] : installed)
    if (h.inbound && !want.contains(spi)) steps.push_back({K::RemoveInbound, spi});
  return steps;
}

bool forget_expired(std::map<std::uint32_t, InstalledSa>& installed, const kmod::StateExpiry& expiry, std::uint32_t reqid,
                    const kmod::GroupAnchors& anchors) {
  const kmod::StateInfo& s = expiry.state;
  if (s.reqid != reqid || s.mark.mask != kmod::kDefaultSteeringMark.mask) return false;
  const bool outbound = s.destination == anchors.group, inbound = s.destination == anchors.in;
  if (!outbound && !inbound) return false;
  auto held = installed.find(s.spi);
  if (!expiry.hard || held == installed.end()) return true;
  (outbound ? held->second.outbound : held->second.inbound) = false;
  if (held->second == InstalledSa{}) installed.erase(held);
  return true;
}

std::vector<gdoi::AclEntry> own_lan_bypass(const std::vector<gdoi::Prefix>& lans) {
  std::vector<gdoi::AclEntry> out;
  for (const gdoi::Prefix& p : lans)
    for (const gdoi::Prefix& q : lans) {
      if (p == q || p.family != q.family) continue;
      gdoi::AclEntry e;
      e.action = gdoi::AclEntry::Action::Deny;
      e.source = p;
      e.destination = q;
      out.push_back(e);
    }
  return out;
}

namespace {

// The networks of `interfaces`' addresses (IPv4, and IPv6 but link-local).
std::vector<gdoi::Prefix> interface_prefixes(const std::vector<kmod::Interface>& interfaces) {
  std::vector<gdoi::Prefix> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || !i->ifa_netmask) continue;
    if (std::none_of(interfaces.begin(), interfaces.end(), [&](const kmod::Interface& f) { return f.name == i->ifa_name; }))
      continue;
    gdoi::Prefix p;
    const std::uint8_t* addr = nullptr;
    const std::uint8_t* mask = nullptr;
    std::size_t n = 0;
    if (i->ifa_addr->sa_family == AF_INET) {
      p.family = 4, n = 4;
      addr = reinterpret_cast<const std::uint8_t*>(&reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr);
      mask = reinterpret_cast<const std::uint8_t*>(&reinterpret_cast<sockaddr_in*>(i->ifa_netmask)->sin_addr);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      p.family = 6, n = 16;
      addr = reinterpret_cast<const std::uint8_t*>(&reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr);
      mask = reinterpret_cast<const std::uint8_t*>(&reinterpret_cast<sockaddr_in6*>(i->ifa_netmask)->sin6_addr);
      if (addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80) continue;
    } else {
      continue;
    }
    for (std::size_t b = 0; b < n; ++b) {
      p.address[b] = addr[b] & mask[b];
      p.length = static_cast<std::uint8_t>(p.length + std::popcount(mask[b]));
    }
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  }
  freeifaddrs(list);
  return out;
}

std::string steps_word(SaStep::Kind k) {
  switch (k) {
    case SaStep::Kind::AddInbound: return "installing the inbound SA";
    case SaStep::Kind::AddOutbound: return "installing the outbound SA";
    case SaStep::Kind::RemoveOutbound: return "removing the outbound SA";
    case SaStep::Kind::RemoveInbound: return "removing the inbound SA";
  }
  return "?";
}

datapath::Anchors bpf_anchors(const kmod::GroupAnchors& a) {
  datapath::Anchors b;
  b.family = a.local.family;
  b.local = a.local.bytes;
  b.group = a.group.bytes;
  b.in = a.in.bytes;
  return b;
}

std::string pin_name(const std::string& group) {
  std::string n = group;
  for (char& c : n)
    if (c == '/' || c == '.' || c == ' ') c = '_';
  return n;
}

// `ip netns exec` gives its command a fresh /sys, without the BPF
// filesystem systemd mounts at /sys/fs/bpf; the maps must be pinned
// somewhere bpftool can find them (from the same mount namespace).
crypto::Result<void> mount_bpffs() {
  const char* dir = "/sys/fs/bpf";
  struct statfs fs {};
  if (statfs(dir, &fs) == 0 && fs.f_type == BPF_FS_MAGIC) return {};
  if (mount("bpf", dir, "bpf", 0, "mode=0700") != 0)
    return Error{std::string("cannot mount the BPF filesystem at ") + dir + ": " + std::strerror(errno)};
  log(LogLevel::Info, std::string("mounted the BPF filesystem at ") + dir);
  return {};
}

// One data path per network namespace: the anchors and the XFRM entries
// covey owns are the namespace's, and a second member would flush the
// first one's SAs. An abstract Unix socket is per network namespace and
// goes away with the process, also on kill -9.
crypto::Result<int> claim_namespace(const std::string& group) {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{std::string("socket(AF_UNIX): ") + std::strerror(errno)};
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const char name[] = "covey-gm data path";
  std::memcpy(a.sun_path + 1, name, sizeof name - 1);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), offsetof(sockaddr_un, sun_path) + sizeof name) != 0) {
    int e = errno;
    close(fd);
    if (e == EADDRINUSE)
      return Error{"group " + group + ": another covey-gm already drives the data path in this network namespace "
                   "(one group per host: the anchors and covey's XFRM entries are the host's)"};
    return Error{std::string("binding the data path's claim socket: ") + std::strerror(e)};
  }
  return fd;
}

}  // namespace

crypto::Result<std::unique_ptr<Dataplane>> Dataplane::start(const DataplaneOptions& options) {
  auto claim = claim_namespace(options.group_name);
  if (!claim) return Error{claim.error()};
  std::unique_ptr<Dataplane> d(new Dataplane);
  d->claim_fd_ = *claim;
  if (auto ok = mount_bpffs(); !ok) return Error{"group " + options.group_name + ": " + ok.error()};
  // The kernel first: a member that cannot encrypt must say so at start,
  // not when the first protected packet leaves in clear.
  kmod::ProbeReport report = kmod::probe_kernel();
  if (!report.ready())
    return Error{"this kernel lacks what covey's data path needs (covey-gm --probe):\n" + report.text()};
  d->options_ = options;
  d->esp6_ = report.esp6();
  d->reqid_ = kmod::kDefaultOwnership.reqid_first | (options.group_id & 0xffffu);
  d->pin_dir_ = options.pin_root + "/" + pin_name(options.group_name);
  if (auto ok = d->setup(); !ok) {
    d->stop();
    return Error{ok.error()};
  }
  return d;
}

crypto::Result<void> Dataplane::setup() {
  const std::string where = "group " + options_.group_name + ": ";
  auto wan = kmod::interface_info(options_.wan);
  if (!wan) return Error{where + "WAN " + wan.error()};
  wan_ = *wan;
  for (const std::string& name : options_.lans) {
    auto lan = kmod::interface_info(name);
    if (!lan) return Error{where + "LAN " + lan.error()};
    lans_.push_back(*lan);
  }
  // Subscribed before the LANs' addresses are read, so that none added
  // from here on is missed (follow_addresses).
  auto addresses = kmod::AddressChanges::open();
  if (!addresses) return Error{where + addresses.error()};
  addresses_ = std::move(*addresses);
  bypass_ = own_lan_bypass(interface_prefixes(lans_));
  for (const gdoi::AclEntry& e : bypass_)
    log(LogLevel::Info, "Group " + options_.group_name + ": between its own LANs in clear, before the group's ACL: " + e.str());
  auto xfrm = kmod::XfrmSocket::open();
  if (!xfrm) return Error{where + xfrm.error()};
  xfrm_ = std::move(*xfrm);
  auto expiries = kmod::XfrmExpiries::open();
  if (!expiries) return Error{where + expiries.error()};
  expiries_ = std::move(*expiries);
  // What a run that died left behind (states with keys of a TEK nobody
  // rekeys any more) goes before anything new is installed.
  auto flushed = xfrm_->flush_owned();
  if (!flushed) return Error{where + flushed.error()};
  if (!flushed->policies_deleted.empty() || !flushed->states_deleted.empty())
    log(LogLevel::Info, "Group " + options_.group_name + ": removed what an earlier covey-gm left in XFRM: " + flushed->str());
  auto rtnl = kmod::RouteSocket::open();
  if (!rtnl) return Error{where + rtnl.error()};
  rtnl_ = std::move(*rtnl);

  // The anchors (ARCHITECTURE.md), IPv4's and, where the WAN has IPv6,
  // IPv6's: each family's traffic needs states of its own family for the
  // outer header to take its addresses.
  families_.push_back({options_.anchors, {}});
  auto v6_off = kmod::read_sysctl("net.ipv6.conf." + wan_.name + ".disable_ipv6");
  if (esp6_ && v6_off && *v6_off == "0")
    families_.push_back({options_.anchors_v6, {}});
  else
    log(LogLevel::Warning, "Group " + options_.group_name + ": " +
                               (esp6_ ? wan_.name + " has no IPv6" : std::string("the kernel has no ESP over IPv6 (esp6)")) +
                               ": IPv6 traffic the ACL permits is dropped, never sent in clear");
  for (const FamilyPath& f : families_)
    if (auto ok = add_anchors(f.anchors); !ok) return Error{where + ok.error()};

  // The GM's own traffic is bounced from the WAN's egress to its ingress
  // to meet XFRM: the kernel must accept a packet from a local address
  // arriving there, not check its source strictly, and not answer it with
  // an ICMP redirect. IPv6 has no such checks, nor a knob against the
  // redirect (one it may send goes to this host itself, which ignores
  // redirects while forwarding); it forwards the bounced packet only with
  // forwarding on, as it does a LAN's.
  const std::string conf = "net.ipv4.conf." + wan_.name + ".";
  for (const auto& [key, value] : {std::pair<std::string, std::string>{conf + "accept_local", "1"},
                                   {conf + "rp_filter", "2"},
                                   {conf + "send_redirects", "0"},
                                   {"net.ipv4.conf.all.send_redirects", "0"}})
    if (auto ok = kmod::write_sysctl(key, value); !ok) return Error{where + ok.error()};
  if (!lans_.empty())
    if (auto fwd = kmod::read_sysctl("net.ipv4.ip_forward"); fwd && *fwd == "0")
      log(LogLevel::Warning, "Group " + options_.group_name +
                                 ": net.ipv4.ip_forward is 0: traffic of the LAN interfaces will not be forwarded");
  if (families_.size() > 1)
    if (auto fwd = kmod::read_sysctl("net.ipv6.conf.all.forwarding"); fwd && *fwd == "0")
      log(LogLevel::Warning, "Group " + options_.group_name +
                                 ": net.ipv6.conf.all.forwarding is 0: IPv6 traffic of the LAN interfaces, and this "
                                 "host's own IPv6 traffic into the group SA, will not be forwarded");

  datapath::Options o;
  o.pin_dir = pin_dir_;
  auto dp = datapath::Datapath::open(o);
  if (!dp) return Error{where + dp.error()};
  dp_ = std::move(*dp);
  if (auto ok = dp_->set_steering_mark(kmod::kDefaultSteeringMark.value, kmod::kDefaultSteeringMark.mask); !ok)
    return Error{where + ok.error()};
  for (const FamilyPath& f : families_) dp_->set_anchors(bpf_anchors(f.anchors));
  dp_->set_wan_mac(wan_.mac);
  dp_->set_egress_fib(true);
  dp_->set_drop_unknown_spi(options_.drop_unknown_spi);
  dp_->set_drop_clear(true);
  // No TEK yet: the fail-close ACL holds, and a restarted member's pinned
  // maps forget the SPIs of SAs just flushed.
  dp_->set_no_tek_active(true);
  if (auto ok = forget_spis(); !ok) return Error{where + ok.error()};
  if (auto ok = install_policy(gdoi::GroupPolicy{}); !ok) return ok;
  apply_tbar();

  // Each family's inner traffic meets its own family's states.
  for (const FamilyPath& f : families_) {
    kmod::GroupPolicies p = kmod::group_policies(f.anchors, f.anchors.local.family, reqid_, kmod::kDefaultSteeringMark, 0xffff);
    for (const kmod::Policy* pol : {&p.out, &p.in, &p.fwd})
      if (auto ok = xfrm_->add_policy(*pol); !ok) return Error{where + ok.error()};
  }

  for (const kmod::Interface& lan : lans_)
    if (auto ok = dp_->attach_tc(lan.ifindex, datapath::Program::LanIngress); !ok) return Error{where + ok.error()};
  if (auto ok = dp_->attach_tc(wan_.ifindex, datapath::Program::WanEgress); !ok) return Error{where + ok.error()};
  if (auto ok = dp_->attach_tc(wan_.ifindex, datapath::Program::WanIngress); !ok) return Error{where + ok.error()};
  attached_ = true;
  // Inbound decisions in XDP where the driver runs it in place; at tc
  // ingress on a veth (its XDP copies every packet it cannot run in place:
  // in the VM bench covey ran at 0.80-0.85x a static tunnel's rate with XDP,
  // about 1x without) and when XDP would be generic (it would also see the
  // packets XFRM just decrypted and could not tell them from clear ones).
  const bool veth = kmod::interface_driver(wan_.name) == "veth";
  const bool xdp_wanted = options_.xdp_mode == DataplaneOptions::XdpMode::Native || options_.xdp_mode == DataplaneOptions::XdpMode::Generic ||
                          (options_.xdp_mode == DataplaneOptions::XdpMode::Auto && !veth);
  if (xdp_wanted) {
    const std::uint32_t flags = options_.xdp_mode == DataplaneOptions::XdpMode::Native    ? XDP_FLAGS_DRV_MODE
                                : options_.xdp_mode == DataplaneOptions::XdpMode::Generic ? XDP_FLAGS_SKB_MODE
                                                                        : 0u;
    if (auto ok = dp_->attach_xdp(wan_.ifindex, flags); !ok)
      return Error{where + ok.error() + "; xdp_mode = \"off\" attaches no XDP"};
    xdp_attached_ = true;
    if (options_.xdp_mode == DataplaneOptions::XdpMode::Auto &&
        datapath::Datapath::xdp_attached_mode(wan_.ifindex) == XDP_ATTACHED_SKB) {
      (void)dp_->detach_xdp(wan_.ifindex);
      xdp_attached_ = false;
    }
  } else if (auto ok = dp_->detach_xdp(wan_.ifindex); !ok) {
    // Not wanted now: an earlier run's goes, another tool's stays.
    log(LogLevel::Info, "Group " + options_.group_name + ": " + ok.error());
  }
  dp_->set_inbound_tc(!xdp_attached_);
  if (xdp_attached_ && options_.xdp_mode == DataplaneOptions::XdpMode::Generic) {
    // Asked for: generic XDP sees decrypted packets too, so no clear drop.
    dp_->set_drop_clear(false);
    log(LogLevel::Warning, "Group " + options_.group_name + ": XDP in generic mode on " + wan_.name +
                               " (xdp_mode = \"generic\"): clear traffic that the ACL says must arrive encrypted "
                               "is not dropped on arrival; xdp_mode = \"off\" decides at tc ingress instead");
  }
  inbound_ = "tc ingress";
  if (xdp_attached_) {
    const bool generic = datapath::Datapath::xdp_attached_mode(wan_.ifindex) == XDP_ATTACHED_SKB;
    inbound_ = generic ? "XDP (generic)" : "XDP (native)";
  }
  std::string lans;
  for (const auto& l : lans_) lans += (lans.empty() ? "" : ", ") + l.name;
  log(LogLevel::Info, "Group " + options_.group_name + ": data path on WAN " + wan_.name + " (inbound at " + inbound_ + ")" +
                          (lans.empty() ? std::string(" (this host's own traffic only)") : ", LAN " + lans) + ", maps in " +
                          pin_dir_ + (options_.fail_close.empty() ? "" : "; fail-close until a TEK is active"));
  return {};
}

// ANCHOR_LOCAL and ANCHOR_IN are local addresses; XFRM output needs a
// route to ANCHOR_GROUP, and the route needs no neighbour lookup (ARP or
// neighbour discovery: the rewritten packet is routed again by its real
// destination, bpf_fib_lookup + bpf_redirect_neigh), hence a permanent entry.
crypto::Result<void> Dataplane::add_anchors(const kmod::GroupAnchors& a) {
  const int lo = static_cast<int>(if_nametoindex("lo"));
  const std::uint8_t host = a.local.family == 6 ? 128 : 32;
  for (const Address& local : {a.local, a.in})
    if (auto ok = rtnl_->add_address(lo, local, host); !ok) return ok;
  if (auto ok = rtnl_->replace_neighbor(wan_.ifindex, a.group, wan_.mac); !ok) return ok;
  return rtnl_->replace_host_route(a.group, wan_.ifindex);
}

// A restarted member finds its pinned maps as the last run left them; the
// SPIs there belonged to states flushed at start.
crypto::Result<void> Dataplane::forget_spis() {
  for (std::uint32_t spi : dp_->spis())
    if (auto ok = dp_->remove_spi(spi); !ok) return ok;
  return {};
}

crypto::Result<void> Dataplane::install_policy(const gdoi::GroupPolicy& policy) {
  const std::string where = "group " + options_.group_name + ": ";
  std::vector<gdoi::AclEntry> main = bypass_;
  main.insert(main.end(), policy.acl.begin(), policy.acl.end());
  std::vector<gdoi::AclEntry> fail_close = bypass_;
  fail_close.insert(fail_close.end(), options_.fail_close.begin(), options_.fail_close.end());
  fail_close.insert(fail_close.end(), policy.fail_close_acl.begin(), policy.fail_close_acl.end());
  if (!policy_ || main != acl_ || fail_close != fail_close_) {
    auto acl = datapath::compile_acl(main);
    if (!acl) return Error{where + "the ACL: " + acl.error()};
    auto fc = datapath::compile_acl(fail_close);
    if (!fc) return Error{where + "the fail-close ACL: " + fc.error()};
    if (auto ok = dp_->install(*acl, *fc); !ok) return Error{where + ok.error()};
  }
  policy_ = policy;
  acl_ = std::move(main);
  fail_close_ = std::move(fail_close);
  return {};
}

int Dataplane::address_fd() const { return addresses_->fd(); }

crypto::Result<void> Dataplane::follow_addresses() {
  const std::string group = "Group " + options_.group_name + ": ";
  auto changed = addresses_->take();
  if (!changed) return Error{group + changed.error()};
  if (!*changed) return {};
  std::vector<gdoi::AclEntry> bypass = own_lan_bypass(interface_prefixes(lans_));
  if (bypass == bypass_) return {};
  for (const gdoi::AclEntry& e : bypass)
    if (std::find(bypass_.begin(), bypass_.end(), e) == bypass_.end())
      log(LogLevel::Info, group + "a LAN address was added: between its own LANs in clear, before the group's ACL: " + e.str());
  for (const gdoi::AclEntry& e : bypass_)
    if (std::find(bypass.begin(), bypass.end(), e) == bypass.end())
      log(LogLevel::Info, group + "a LAN address was removed: no longer in clear: " + e.str());
  // Kept as installed if the tables cannot be: the next change tries again.
  std::swap(bypass_, bypass);
  if (auto ok = install_policy(policy_ ? *policy_ : gdoi::GroupPolicy{}); !ok) {
    std::swap(bypass_, bypass);
    return Error{"the own-LAN bypass after an address change: " + ok.error()};
  }
  return {};
}

// TBAR needs all three: the policy's window, this member's SID and the key
// server's pseudotime. Without the pseudotime a stamp would carry this
// host's clock, which every receiver would drop as late or early.
void Dataplane::apply_tbar() {
  datapath::TbarPolicy t;
  if (policy_ && policy_->tbar_window_ms && !sids_.empty() && pseudotime_epoch_ns_) {
    t.stamp = t.check = true;
    t.sid = static_cast<std::uint16_t>(sids_.front());
    t.window_ms = *policy_->tbar_window_ms;
    // The inner packet's MTU through the group SA on this WAN (the route
    // to ANCHOR_GROUP is the WAN's, so its MTU is the WAN's): a stamped
    // packet larger than this is answered with fragmentation-needed.
    if (auto alg = esp_algorithms(policy_->tek)) {
      t.inner_mtu_v4 = kmod::esp_tunnel_inner_mtu(wan_.mtu, *alg, 4);
      t.tcp_mss_v4 = datapath::tcp_mss_for_stamp(t.inner_mtu_v4, 4);
      t.inner_mtu_v6 = kmod::esp_tunnel_inner_mtu(wan_.mtu, *alg, 6);
      t.tcp_mss_v6 = datapath::tcp_mss_for_stamp(t.inner_mtu_v6, 6);
    }
  }
  const auto key = [](const datapath::TbarPolicy& p) {
    return std::tuple(p.stamp, p.check, p.sid, p.window_ms, p.tcp_mss_v4, p.tcp_mss_v6, p.inner_mtu_v4, p.inner_mtu_v6);
  };
  if (tbar_ && key(*tbar_) == key(t)) return;
  dp_->set_tbar(t);
  if (policy_ && policy_->tbar_window_ms)
    log(LogLevel::Info, "Group " + options_.group_name + ": " +
                            (t.stamp ? "time-based anti-replay on, SID " + std::to_string(t.sid) + ", window " +
                                           std::to_string(t.window_ms) + " ms"
                                     : std::string("time-based anti-replay waits for the key server's pseudotime")));
  tbar_ = t;
}

crypto::Result<void> Dataplane::step(FamilyPath& f, const SaStep& s, const RekeyState& keys, std::int64_t now) {
  const kmod::GroupAnchors& a = f.anchors;
  const std::string what = "group " + options_.group_name + ": " + steps_word(s.kind) + " (IPv" +
                           std::to_string(a.local.family) + ") of TEK SPI " + spi_hex(s.spi) + ": ";
  InstalledSa& held = f.installed[s.spi];
  switch (s.kind) {
    case SaStep::Kind::AddInbound:
    case SaStep::Kind::AddOutbound: {
      const TekView* view = nullptr;
      const auto views = keys.teks(now);
      for (const TekView& v : views)
        if (v.tek->spi == s.spi) view = &v;
      if (!view) return Error{what + "the TEK is no longer held"};
      auto pair = group_sa_pair(*view->tek, keys.policy().tek, a, reqid_, kmod::kDefaultSteeringMark);
      if (!pair) return Error{what + pair.error()};
      // The kernel drops the state on its own if this process is gone
      // when the TEK ends (covey-gm removes it itself otherwise).
      const std::uint64_t hard = static_cast<std::uint64_t>(std::max<std::int64_t>(view->remaining_s, 0)) + 120;
      pair->inbound.hard_lifetime_s = pair->outbound.hard_lifetime_s = hard;
      if (s.kind == SaStep::Kind::AddInbound) {
        if (auto ok = xfrm_->add_sa(pair->inbound); !ok) return Error{what + ok.error()};
        held.inbound = true;
      } else {
        if (auto ok = xfrm_->add_sa(pair->outbound); !ok) return Error{what + ok.error()};
        held.outbound = true;
      }
      break;
    }
    case SaStep::Kind::RemoveOutbound:
      held.outbound = false;
      if (auto ok = xfrm_->delete_sa({a.group, s.spi, 50, kmod::kDefaultSteeringMark}); !ok) return Error{what + ok.error()};
      break;
    case SaStep::Kind::RemoveInbound:
      held.inbound = false;
      if (auto ok = xfrm_->delete_sa({a.in, s.spi, 50, kmod::Mark{0, kmod::kDefaultSteeringMark.mask}}); !ok)
        return Error{what + ok.error()};
      break;
  }
  if (held == InstalledSa{}) f.installed.erase(s.spi);
  if (auto ok = publish_spi(s.spi); !ok) return Error{what + ok.error()};
  return {};
}

crypto::Result<void> Dataplane::publish_spi(std::uint32_t spi) {
  std::uint32_t flags = 0;
  for (const FamilyPath& f : families_)
    if (auto held = f.installed.find(spi); held != f.installed.end())
      flags |= (held->second.inbound ? COVEY_SPI_INBOUND : 0u) | (held->second.outbound ? COVEY_SPI_OUTBOUND : 0u);
  return flags ? dp_->set_spi(spi, flags) : dp_->remove_spi(spi);
}

void Dataplane::take_expiries() {
  if (!expiries_) return;
  const std::string group = "Group " + options_.group_name + ": ";
  auto batch = expiries_->take();
  if (!batch) {
    log(LogLevel::Warning, group + batch.error());
    return;
  }
  std::vector<std::map<std::uint32_t, InstalledSa>> before;
  for (const FamilyPath& f : families_) before.push_back(f.installed);
  for (const kmod::StateExpiry& e : batch->expiries)
    for (FamilyPath& f : families_) {
      const bool held = f.installed.contains(e.state.spi);
      if (!forget_expired(f.installed, e, reqid_, f.anchors)) continue;
      log(e.hard ? LogLevel::Warning : LogLevel::Info,
          group + e.str() + (!e.hard ? "" : held ? "; no longer installed, put back while its TEK is held" : ""));
      break;
    }
  if (batch->overrun) {
    // The kernel dropped announcements: ask it about each state covey-gm
    // counts as installed (a lookup each, covey's states only).
    log(LogLevel::Warning, group + "missed XFRM expiries (the socket overflowed): looking the group's states up again");
    for (FamilyPath& f : families_) {
      const kmod::GroupAnchors& a = f.anchors;
      for (auto it = f.installed.begin(); it != f.installed.end();) {
        auto gone = [&](const Address& destination, kmod::Mark mark) {
          auto found = xfrm_->find_state({destination, it->first, 50, mark});
          return found && !*found;
        };
        if (it->second.outbound && gone(a.group, kmod::kDefaultSteeringMark)) it->second.outbound = false;
        if (it->second.inbound && gone(a.in, kmod::Mark{0, kmod::kDefaultSteeringMark.mask})) it->second.inbound = false;
        it = it->second == InstalledSa{} ? f.installed.erase(it) : std::next(it);
      }
    }
  }
  for (std::size_t i = 0; i < families_.size(); ++i)
    for (const auto& [spi, was] : before[i]) {
      auto now = families_[i].installed.find(spi);
      if (now != families_[i].installed.end() && now->second == was) continue;
      if (auto ok = publish_spi(spi); !ok) log(LogLevel::Warning, group + "TEK SPI " + spi_hex(spi) + ": " + ok.error());
    }
}

crypto::Result<void> Dataplane::sync(const RekeyState& keys, std::int64_t now) {
  crypto::Result<void> result;
  take_expiries();
  if (keys.is_registered() && (!policy_ || *policy_ != keys.policy()))
    if (auto ok = install_policy(keys.policy()); !ok) result = Error{ok.error()};
  if (keys.is_registered()) sids_ = keys.sids();
  apply_tbar();
  if (keys.is_registered()) {
    const auto teks = keys.teks(now);
    for (FamilyPath& f : families_)
      for (const SaStep& s : plan_sas(teks, f.installed)) {
        auto ok = step(f, s, keys, now);
        if (!ok && result) result = Error{ok.error()};
        if (ok && s.kind == SaStep::Kind::AddOutbound && &f == &families_.front())
          log(LogLevel::Info, "Group " + options_.group_name + ": sending on TEK SPI " + spi_hex(s.spi));
      }
  }
  // Sending: on the TEK whose outbound states every family has.
  sending_.reset();
  if (!families_.empty())
    for (const auto& held : families_.front().installed) {
      const std::uint32_t spi = held.first;  // a plain variable: clang 14 captures no structured bindings
      if (held.second.outbound && std::all_of(families_.begin(), families_.end(), [&](const FamilyPath& f) {
            auto other = f.installed.find(spi);
            return other != f.installed.end() && other->second.outbound;
          }))
        sending_ = spi;
    }
  // The lease: renewed every tick while a TEK is active. If covey-gm dies,
  // the programs find it expired and the fail-close ACL takes over.
  if (sending_) {
    dp_->set_tek_expiry(monotonic_ns() + static_cast<std::uint64_t>(options_.lease.count()) * 1000000000ull);
    dp_->set_no_tek_active(false);
  } else {
    dp_->set_no_tek_active(true);
  }
  if (now % 60 == 0) dp_->expire_tbar_peers(monotonic_ns());
  error_ = result ? std::nullopt : std::optional<std::string>(result.error());
  return result;
}

void Dataplane::pseudotime(std::uint32_t ms, std::uint64_t at_ns, bool registration) {
  // Epoch: the clock at which pseudotime was 0 (mod 2^32 ms).
  const std::uint64_t epoch = at_ns - static_cast<std::uint64_t>(ms) * 1000000ull;
  if (!registration && pseudotime_epoch_ns_) {
    // A later epoch means an earlier pseudotime now: a stale message.
    const std::int64_t behind_ms = static_cast<std::int64_t>(epoch - *pseudotime_epoch_ns_) / 1000000;
    if (behind_ms > 0) return;
  }
  pseudotime_epoch_ns_ = epoch;
  dp_->set_pseudotime(ms, at_ns);
  apply_tbar();
}

void Dataplane::stop() {
  const std::string group = options_.group_name;
  if (dp_ && attached_) {
    for (const kmod::Interface& lan : lans_)
      if (auto ok = dp_->detach_tc(lan.ifindex, datapath::Program::LanIngress); !ok) log(LogLevel::Warning, ok.error());
    for (auto p : {datapath::Program::WanEgress, datapath::Program::WanIngress})
      if (auto ok = dp_->detach_tc(wan_.ifindex, p); !ok) log(LogLevel::Warning, ok.error());
    if (xdp_attached_)
      if (auto ok = dp_->detach_xdp(wan_.ifindex); !ok) log(LogLevel::Warning, ok.error());
    xdp_attached_ = false;
    attached_ = false;
  }
  expiries_.reset();
  addresses_.reset();
  if (xfrm_) {
    auto flushed = xfrm_->flush_owned();
    if (!flushed) log(LogLevel::Warning, "Group " + group + ": " + flushed.error());
  }
  if (rtnl_ && wan_.ifindex) {
    const int lo = static_cast<int>(if_nametoindex("lo"));
    for (const FamilyPath& f : families_) {
      const kmod::GroupAnchors& a = f.anchors;
      (void)rtnl_->delete_host_route(a.group, wan_.ifindex);
      (void)rtnl_->delete_neighbor(wan_.ifindex, a.group);
      for (const Address& local : {a.local, a.in}) (void)rtnl_->delete_address(lo, local, a.local.family == 6 ? 128 : 32);
    }
  }
  families_.clear();
  dp_.reset();
  if (!pin_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(pin_dir_, ec);
    if (ec) log(LogLevel::Warning, "Group " + group + ": removing " + pin_dir_ + ": " + ec.message());
  }
}

Dataplane::~Dataplane() {
  if (claim_fd_ >= 0) close(claim_fd_);
}

std::optional<DataplaneCounters> Dataplane::counters() const {
  if (!dp_) return std::nullopt;
  DataplaneCounters c;
  c.stats = dp_->stats();
  auto hits = [&](covey_acl_kind kind, const std::vector<gdoi::AclEntry>& acl) {
    std::vector<DataplaneCounters::AclHits> out;
    const std::vector<std::uint64_t> h = dp_->hits(kind);
    for (std::size_t i = 0; i < acl.size(); ++i) out.push_back({acl[i].str(), i < h.size() ? h[i] : 0});
    return out;
  };
  c.acl = hits(COVEY_ACL_MAIN, acl_);
  c.fail_close = hits(COVEY_ACL_FAIL_CLOSE, fail_close_);
  return c;
}

const char* Dataplane::state() const { return error_ ? "error" : (sending_ ? "active" : "fail-close"); }

json Dataplane::status() const {
  json j;
  j["state"] = state();
  j["error"] = error_ ? json(*error_) : json(nullptr);
  j["wan"] = wan_.name;
  json lans = json::array();
  for (const auto& l : lans_) lans.push_back(l.name);
  j["lans"] = lans;
  j["pin_dir"] = pin_dir_;
  j["inbound"] = inbound_;
  j["sending_spi"] = sending_ ? json(spi_hex(*sending_)) : json(nullptr);
  json in = json::array();
  json families = json::array();
  if (!families_.empty())
    for (const auto& [spi, held] : families_.front().installed)
      if (held.inbound) in.push_back(spi_hex(spi));
  for (const FamilyPath& f : families_) families.push_back(f.anchors.local.family);
  j["inbound_spis"] = in;
  j["families"] = families;
  const auto c = counters();
  if (!c) return j;
  json st;
#define COVEY_STAT(name, section, drop, text) st[#name] = c->stats.name;
  COVEY_STATS(COVEY_STAT)
#undef COVEY_STAT
  j["stats"] = st;
  auto hits = [](const std::vector<DataplaneCounters::AclHits>& acl) {
    json out = json::array();
    for (const auto& e : acl) out.push_back({{"line", e.line}, {"hits", e.hits}});
    return out;
  };
  j["acl_hits"] = hits(c->acl);
  j["fail_close_hits"] = hits(c->fail_close);
  return j;
}

}  // namespace covey::gm
