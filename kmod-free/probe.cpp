#include "probe.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <libmnl/libmnl.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>

#include "rtnl.h"
#include "xfrm.h"

namespace covey::kmod {

namespace {

using Verdict = ProbeItem::Verdict;

std::string errno_words(int e) {
  const char* name = strerrorname_np(e);
  return std::string(name ? name : "errno " + std::to_string(e)) + ": " + std::strerror(e);
}

ProbeItem ok(std::string what, bool required = true) { return {std::move(what), Verdict::Ok, required, {}, {}}; }
ProbeItem missing(std::string what, std::string detail, std::string remedy, bool required = true) {
  return {std::move(what), Verdict::Missing, required, std::move(detail), std::move(remedy)};
}
ProbeItem untested(std::string what, std::string detail, bool required = true) {
  return {std::move(what), Verdict::Untested, required, std::move(detail), {}};
}

// ---- libbpf's own messages, kept for the report instead of stderr ----

std::mutex libbpf_mutex;
std::string libbpf_messages;

int capture_libbpf(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[512];
  int n = std::vsnprintf(line, sizeof line, format, args);
  std::lock_guard lock(libbpf_mutex);
  libbpf_messages.append(line);
  return n;
}

std::string take_libbpf_messages() {
  std::lock_guard lock(libbpf_mutex);
  std::string s;
  s.swap(libbpf_messages);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (auto& c : s)
    if (c == '\n') c = ' ';
  return s;
}

// ---- XFRM ----

struct TransformCase {
  const char* transform;  // GET VPN's words, as in the group policy
  EspCipher cipher;
  EspIntegrity integrity;
  bool required;
  const char* modules;  // what provides it when it is missing
};

// The item that says whether ESP takes IPv6 outer headers (ProbeReport::esp6).
constexpr std::string_view kEsp6 = "ESP over IPv6 (esp6)";

const TransformCase kTransforms[] = {
    {"esp-aes-256 esp-sha256-hmac", kAes256Cbc, kHmacSha256_128, true,
     "authenc cbc aes_generic hmac sha256_generic (CONFIG_CRYPTO_AUTHENC, _CBC, _AES, _HMAC, _SHA256)"},
    {"esp-aes-256 esp-sha-hmac", kAes256Cbc, kHmacSha1_96, true,
     "authenc cbc aes_generic hmac sha1_generic (CONFIG_CRYPTO_AUTHENC, _CBC, _AES, _HMAC, _SHA1)"},
    {"esp-aes-128 esp-sha256-hmac", kAes128Cbc, kHmacSha256_128, true,
     "authenc cbc aes_generic hmac sha256_generic (CONFIG_CRYPTO_AUTHENC, _CBC, _AES, _HMAC, _SHA256)"},
    {"esp-aes-128 esp-sha-hmac", kAes128Cbc, kHmacSha1_96, true,
     "authenc cbc aes_generic hmac sha1_generic (CONFIG_CRYPTO_AUTHENC, _CBC, _AES, _HMAC, _SHA1)"},
    // 3DES is legacy (covey-ks warns about it): a GM without it still
    // carries every AES group.
    {"esp-3des esp-sha256-hmac", kTripleDesCbc, kHmacSha256_128, false,
     "authenc cbc des_generic hmac sha256_generic (CONFIG_CRYPTO_DES)"},
    {"esp-3des esp-sha-hmac", kTripleDesCbc, kHmacSha1_96, false,
     "authenc cbc des_generic hmac sha1_generic (CONFIG_CRYPTO_DES)"},
};

crypto::SecretBytes random_key(std::size_t n) {
  crypto::SecretBytes k(n);
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(k.data() + got, n - got, 0);
    if (r > 0) got += static_cast<std::size_t>(r);
  }
  return k;
}

Address addr(const char* text) { return *Address::parse(text); }

// How a refused throwaway ESP state failed: the kernel checks the
// algorithms (ENOSYS when the crypto API lacks one) before it looks for
// the ESP type (EPROTONOSUPPORT without esp4/esp6).
enum class EspOutcome { Ok, NoEsp, NoAlgorithm, Other };

struct EspTry {
  EspOutcome outcome = EspOutcome::Other;
  std::string detail;
};

EspTry try_esp_state(XfrmSocket& xfrm, const TransformCase& transform, const GroupAnchors& anchors,
                     std::uint32_t spi, std::uint32_t reqid, Mark steering) {
  const EspAlgorithms algorithms = esp_algorithms(transform.cipher, transform.integrity);
  const crypto::SecretBytes encryption_key = random_key(algorithms.encryption_key_bytes);
  const crypto::SecretBytes integrity_key = random_key(algorithms.integrity_key_bytes);
  auto pair = group_sa_pair({spi, encryption_key.view(), integrity_key.view()}, algorithms, anchors, reqid, steering);
  if (!pair) return {EspOutcome::Other, pair.error()};
  const EspState& state = pair->outbound;
  if (auto r = xfrm.add_sa(state); !r) {
    const auto& refusal = xfrm.last_refusal();
    EspOutcome o = !refusal                                 ? EspOutcome::Other
                   : refusal->error == -EPROTONOSUPPORT     ? EspOutcome::NoEsp
                   : refusal->error == -ENOSYS              ? EspOutcome::NoAlgorithm
                                                            : EspOutcome::Other;
    return {o, r.error()};
  }
  if (auto r = xfrm.delete_sa(StateId{state.destination, state.spi, 50, state.mark}); !r)
    return {EspOutcome::Other, "added, but could not delete it again: " + r.error()};
  return {EspOutcome::Ok, {}};
}

void probe_xfrm(const ProbeOptions& o, std::vector<ProbeItem>& items) {
  const std::string netlink = "XFRM netlink (xfrm_user)";
  auto opened = XfrmSocket::open(o.ownership);
  if (!opened) {
    items.push_back(missing(netlink, opened.error(), "modprobe xfrm_user (kernel option CONFIG_XFRM_USER)"));
    items.push_back(untested("XFRM states and policies, ESP", "needs XFRM netlink"));
    return;
  }
  XfrmSocket& xfrm = **opened;
  if (auto dumped = xfrm.states(); !dumped) {
    items.push_back(missing(netlink, dumped.error(), "modprobe xfrm_user (kernel option CONFIG_XFRM_USER)"));
    return;
  }
  items.push_back(ok(netlink));

  // Documentation addresses (RFC 5737, RFC 3849): the namespace is empty
  // anyway, and nothing here is ever routed.
  const GroupAnchors v4{addr("192.0.2.1"), addr("192.0.2.2"), addr("192.0.2.3")};
  const GroupAnchors v6{addr("2001:db8::1"), addr("2001:db8::2"), addr("2001:db8::3")};
  const std::uint32_t reqid = o.ownership.reqid_last;
  std::uint32_t spi = 0xc0e0ff00u;

  const std::string policy_what = "XFRM policy matched by skb mark " + o.steering.str() + " with an ESP tunnel template";
  Policy policy = group_policies(v4, 4, reqid, o.steering, 0xffff).out;
  if (auto r = xfrm.add_policy(policy); !r)
    items.push_back(missing(policy_what, r.error(), "a kernel with CONFIG_XFRM and CONFIG_XFRM_USER (marks: Linux 2.6.34 or later)"));
  else if (auto d = xfrm.delete_policy(policy); !d)
    items.push_back(missing(policy_what, "added, but could not delete it again: " + d.error(), "report this as a covey bug"));
  else
    items.push_back(ok(policy_what));

  std::vector<EspTry> tries;
  for (const auto& t : kTransforms) tries.push_back(try_esp_state(xfrm, t, v4, ++spi, reqid, o.steering));

  // ESP itself: known once any transform went in; missing when the kernel
  // said the ESP type is.
  const std::string esp = "ESP (esp4) tunnel-mode states, replay window 0";
  const EspTry* no_esp = nullptr;
  bool any_ok = false;
  for (const auto& t : tries) {
    if (t.outcome == EspOutcome::Ok) any_ok = true;
    if (t.outcome == EspOutcome::NoEsp && !no_esp) no_esp = &t;
  }
  if (any_ok)
    items.push_back(ok(esp));
  else if (no_esp)
    items.push_back(missing(esp, no_esp->detail, "modprobe esp4 (kernel option CONFIG_INET_ESP); Debian's kernels ship it as a module"));
  else
    items.push_back(untested(esp, "no transform could be tried: " + tries.front().detail));

  for (std::size_t i = 0; i < tries.size(); ++i) {
    const TransformCase& c = kTransforms[i];
    const EspAlgorithms a = esp_algorithms(c.cipher, c.integrity);
    std::string what = "ESP transform " + std::string(c.transform) + " (" + std::string(a.encryption) + " " +
                       std::to_string(a.encryption_key_bytes * 8) + "-bit, " + std::string(a.integrity) + " " +
                       std::to_string(a.truncation_bits) + "-bit ICV)";
    switch (tries[i].outcome) {
      case EspOutcome::Ok: items.push_back(ok(what, c.required)); break;
      case EspOutcome::NoEsp:
        items.push_back(untested(what, "the kernel knows both algorithms; untested until ESP is there", c.required));
        break;
      case EspOutcome::NoAlgorithm:
      case EspOutcome::Other:
        items.push_back(missing(what, tries[i].detail, std::string("modprobe ") + c.modules, c.required));
        break;
    }
  }

  // IPv6 outer headers: without them the data path carries IPv4 alone
  // (the IPv6 group SAs need esp6), so this is not required.
  const std::string esp6 = std::string(kEsp6) + ", " + std::string(kTransforms[0].transform);
  EspTry t6 = try_esp_state(xfrm, kTransforms[0], v6, ++spi, reqid, o.steering);
  if (t6.outcome == EspOutcome::Ok)
    items.push_back(ok(esp6, false));
  else
    items.push_back(missing(esp6, t6.detail, "modprobe esp6 (kernel option CONFIG_INET6_ESP); needed for IPv6 only", false));
}

// ---- BPF ----

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// A program that does nothing but return `verdict`: what is probed is
// the kernel's willingness to load and attach, not the program.
int load_minimal(bpf_prog_type type, int verdict, std::string* why) {
  bpf_insn insns[2] = {};
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;  // r0 = verdict
  insns[0].dst_reg = BPF_REG_0;
  insns[0].imm = verdict;
  insns[1].code = BPF_JMP | BPF_EXIT;
  char log[1024] = {};
  bpf_prog_load_opts opts{};
  opts.sz = sizeof opts;
  opts.log_buf = log;
  opts.log_size = sizeof log;
  opts.log_level = 0;
  int fd = bpf_prog_load(type, type == BPF_PROG_TYPE_XDP ? "covey_probe_xdp" : "covey_probe_tc", "GPL", insns, 2, &opts);
  if (fd < 0) {
    *why = "bpf(BPF_PROG_LOAD) failed (" + errno_words(-fd) + ")";
    if (log[0]) *why += ": " + std::string(log);
    std::string lib = take_libbpf_messages();
    if (!lib.empty()) *why += "; libbpf: " + lib;
  }
  return fd;
}

std::string bpf_remedy(const std::string& why) {
  if (why.find("EPERM") != std::string::npos)
    return "run as root (CAP_BPF and CAP_NET_ADMIN); on kernels before 5.11 also raise RLIMIT_MEMLOCK";
  return "a kernel with CONFIG_BPF_SYSCALL and CONFIG_NET_CLS_BPF";
}

struct Helper {
  bpf_func_id id;
  const char* name;
  const char* why;
  const char* since;
};

const Helper kHelpers[] = {
    {BPF_FUNC_skb_get_xfrm_state, "bpf_skb_get_xfrm_state", "tells decrypted packets and their SPI at tc ingress", "4.18"},
    {BPF_FUNC_fib_lookup, "bpf_fib_lookup", "routes rewritten ESP from tc egress", "4.18"},
    {BPF_FUNC_redirect_neigh, "bpf_redirect_neigh", "sends rewritten ESP to the next hop", "5.10"},
    {BPF_FUNC_skb_adjust_room, "bpf_skb_adjust_room", "inserts and strips the TBAR option, BPF_ADJ_ROOM_NET", "5.2"},
    {BPF_FUNC_l3_csum_replace, "bpf_l3_csum_replace", "fixes the IPv4 checksum after rewriting addresses", "4.1"},
    {BPF_FUNC_skb_store_bytes, "bpf_skb_store_bytes", "rewrites the outer addresses", "4.1"},
    {BPF_FUNC_redirect, "bpf_redirect", "bounces the GM's own traffic to ingress, BPF_F_INGRESS", "4.4"},
};

void probe_bpf(std::vector<ProbeItem>& items) {
  const std::string prog_what = "BPF program load (tc, BPF_PROG_TYPE_SCHED_CLS)";
  std::string why;
  Fd tc_prog(load_minimal(BPF_PROG_TYPE_SCHED_CLS, 0 /* TC_ACT_OK */, &why));
  if (tc_prog.get() < 0)
    items.push_back(missing(prog_what, why, bpf_remedy(why)));
  else
    items.push_back(ok(prog_what));

  // The veth pair lives in the throwaway namespace; deleting one end
  // deletes both, and the namespace would take them anyway.
  const char* dev = "covey-probe0";
  const char* peer = "covey-probe1";
  auto rtnl = RouteSocket::open();
  std::string veth_error = rtnl ? "" : rtnl.error();
  if (rtnl)
    if (auto made = (*rtnl)->create_veth(dev, peer); !made) veth_error = made.error();
  int ifindex = 0, peer_index = 0;
  std::string where = "veth";
  if (veth_error.empty()) {
    ifindex = static_cast<int>(if_nametoindex(dev));
    peer_index = static_cast<int>(if_nametoindex(peer));
  } else {
    // Without veth (a module this probe does not need the GM to have), lo
    // still carries tc and generic XDP.
    ifindex = static_cast<int>(if_nametoindex("lo"));
    where = "lo (no veth: " + veth_error + ")";
  }

  const std::string tc_what = "tc clsact qdisc with BPF on ingress and egress (" + where + ")";
  if (tc_prog.get() < 0) {
    items.push_back(untested(tc_what, "no BPF program to attach"));
  } else {
    bpf_tc_hook hook{};
    hook.sz = sizeof hook;
    hook.ifindex = ifindex;
    hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
    int err = bpf_tc_hook_create(&hook);
    std::string failure;
    if (err < 0 && err != -EEXIST) {
      failure = "creating the clsact qdisc failed (" + errno_words(-err) + ")";
    } else {
      for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
        bpf_tc_hook h = hook;
        h.attach_point = point;
        bpf_tc_opts opts{};
        opts.sz = sizeof opts;
        opts.prog_fd = tc_prog.get();
        if (int e = bpf_tc_attach(&h, &opts); e < 0) {
          failure = std::string("attaching at ") + (point == BPF_TC_INGRESS ? "ingress" : "egress") + " failed (" +
                    errno_words(-e) + ")";
          break;
        }
      }
      bpf_tc_hook_destroy(&hook);  // removes clsact and both filters
    }
    if (failure.empty()) {
      items.push_back(ok(tc_what));
    } else {
      std::string lib = take_libbpf_messages();
      items.push_back(missing(tc_what, failure + (lib.empty() ? "" : "; libbpf: " + lib),
                              "modprobe sch_ingress cls_bpf (kernel options CONFIG_NET_SCH_INGRESS, CONFIG_NET_CLS_BPF, CONFIG_NET_CLS_ACT)"));
    }
  }

  Fd xdp_prog(load_minimal(BPF_PROG_TYPE_XDP, 2 /* XDP_PASS */, &why));
  const std::string generic_what = "XDP attach, generic (skb) mode (" + where + ")";
  const std::string native_what = "XDP attach, native (driver) mode (veth)";
  auto try_xdp = [&](int index, std::uint32_t mode) -> std::string {
    int e = bpf_xdp_attach(index, xdp_prog.get(), mode, nullptr);
    if (e < 0) {
      std::string lib = take_libbpf_messages();
      return "bpf_xdp_attach failed (" + errno_words(-e) + ")" + (lib.empty() ? "" : "; libbpf: " + lib);
    }
    bpf_xdp_detach(index, mode, nullptr);
    return "";
  };
  if (xdp_prog.get() < 0) {
    items.push_back(missing(generic_what, why, bpf_remedy(why) + ""));
  } else {
    std::string g = try_xdp(peer_index ? peer_index : ifindex, XDP_FLAGS_SKB_MODE);
    if (g.empty())
      items.push_back(ok(generic_what));
    else
      items.push_back(missing(generic_what, g, "a kernel with CONFIG_BPF_SYSCALL and CONFIG_NET (generic XDP works on every device)"));
    // Native mode depends on the WAN NIC's driver; veth tells whether the
    // kernel's native path works at all. Generic is enough for covey.
    if (!peer_index) {
      items.push_back(untested(native_what, "no veth pair", false));
    } else {
      std::string n = try_xdp(ifindex, XDP_FLAGS_DRV_MODE);
      if (n.empty())
        items.push_back(ok(native_what, false));
      else
        items.push_back(missing(native_what, n, "none needed: covey falls back to generic XDP", false));
    }
  }
  if (veth_error.empty()) (void)(*rtnl)->delete_link(ifindex);

  for (const auto& h : kHelpers) {
    const std::string what = std::string("BPF helper ") + h.name + " in tc programs: " + h.why;
    int r = libbpf_probe_bpf_helper(BPF_PROG_TYPE_SCHED_CLS, h.id, nullptr);
    take_libbpf_messages();
    if (r == 1)
      items.push_back(ok(what));
    else if (r == 0)
      items.push_back(missing(what, "the kernel's verifier does not offer it to tc programs",
                              std::string("Linux ") + h.since + " or later"));
    else
      items.push_back(untested(what, "libbpf_probe_bpf_helper failed (" + errno_words(-r) + ")"));
  }
}

void probe_bpffs(std::vector<ProbeItem>& items) {
  const std::string what = "BPF filesystem at /sys/fs/bpf (pinned maps survive a GM restart)";
  struct statfs st{};
  if (statfs("/sys/fs/bpf", &st) == 0 && static_cast<unsigned long>(st.f_type) == BPF_FS_MAGIC) {
    items.push_back(ok(what));
    return;
  }
  // Not mounted here (`ip netns exec` gives a fresh /sys without it):
  // covey-gm mounts it at start if the kernel has it.
  std::ifstream fs("/proc/filesystems");
  std::string line;
  while (std::getline(fs, line))
    if (line.size() >= 4 && line.compare(line.size() - 4, 4, "\tbpf") == 0) {
      items.push_back(ok(what + ": not mounted; covey-gm mounts it at start"));
      return;
    }
  items.push_back(missing(what, "the kernel has no bpf filesystem (not in /proc/filesystems)", "a kernel with CONFIG_BPF_SYSCALL"));
}

void run_probe(const ProbeOptions& o, ProbeReport& report) {
  // Only this thread moves: the caller's namespace, sockets and SAs stay
  // as they were, and the namespace dies when the thread ends.
  if (unshare(CLONE_NEWNET) != 0) {
    int e = errno;
    report.items.push_back(missing("a throwaway network namespace for the probe", "unshare(CLONE_NEWNET) failed (" + errno_words(e) + ")",
                                   e == EPERM ? "run covey-gm --probe as root (the GM itself needs CAP_NET_ADMIN and CAP_BPF)"
                                              : "a kernel with CONFIG_NET_NS"));
    return;
  }
  probe_xfrm(o, report.items);
  probe_bpf(report.items);
}

}  // namespace

bool ProbeReport::ready() const {
  if (items.empty()) return false;
  for (const auto& i : items)
    if (i.required && i.verdict != Verdict::Ok) return false;
  return true;
}

bool ProbeReport::esp6() const {
  return std::any_of(items.begin(), items.end(), [](const ProbeItem& i) {
    return i.verdict == ProbeItem::Verdict::Ok && std::string_view(i.what).starts_with(kEsp6);
  });
}

std::string ProbeReport::text() const {
  std::string s = "covey data-path probe: " + kernel + " (tried in a throwaway network namespace, nothing kept)\n";
  std::vector<std::string> lacking;
  for (const auto& i : items) {
    const char* tag = i.verdict == Verdict::Ok ? "ok      " : i.verdict == Verdict::Missing ? "MISSING " : "untested";
    s += "  " + std::string(tag) + " " + i.what;
    if (!i.required && i.verdict != Verdict::Ok) s += " [optional]";
    s += "\n";
    if (i.verdict != Verdict::Ok && !i.detail.empty()) s += "           " + i.detail + "\n";
    if (i.verdict == Verdict::Missing && !i.remedy.empty()) s += "           fix: " + i.remedy + "\n";
    if (i.required && i.verdict != Verdict::Ok) lacking.push_back(i.what);
  }
  if (ready()) {
    s += "verdict: this kernel has everything covey's data path needs\n";
  } else {
    s += "verdict: NOT ready for covey's data path: " + std::to_string(lacking.size()) + " required item" +
         (lacking.size() == 1 ? "" : "s") + " missing or untested:";
    for (const auto& l : lacking) s += "\n  - " + l;
    s += "\n";
  }
  return s;
}

ProbeReport probe_kernel(const ProbeOptions& options) {
  ProbeReport report;
  utsname u{};
  if (uname(&u) == 0) report.kernel = std::string(u.sysname) + " " + u.release + " " + u.machine;
  libbpf_print_fn_t previous = libbpf_set_print(capture_libbpf);
  std::thread worker([&] { run_probe(options, report); });
  worker.join();
  libbpf_set_print(previous);
  take_libbpf_messages();
  probe_bpffs(report.items);
  return report;
}

}  // namespace covey::kmod
