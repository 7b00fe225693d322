// What the running kernel has and lacks for covey's data path
// (`covey-gm --probe`): XFRM netlink, ESP with each transform covey may
// be handed, policies matched by mark, BPF program load, tc clsact and
// XDP attach, the BPF helpers the programs call, the BPF filesystem.
//
// Everything is tried for real, in a throwaway network namespace the
// probe creates for itself (a thread that unshares its network namespace),
// on a throwaway veth pair; the states, policies, programs and links are
// removed explicitly, and the namespace dies with the thread. Nothing is
// left behind, and the host's own SAs and interfaces are never touched.
#pragma once

#include <string>
#include <vector>

#include "xfrm_msg.h"

namespace covey::kmod {

struct ProbeItem {
  enum class Verdict { Ok, Missing, Untested };
  std::string what;     // "ESP (esp4) in tunnel mode"
  Verdict verdict = Verdict::Untested;
  bool required = true;  // false: reported, not needed for the IPv4 data path
  std::string detail;   // on Missing/Untested: what happened, in the kernel's words
  std::string remedy;   // on Missing: what to do
};

struct ProbeReport {
  std::string kernel;  // "Linux 6.1.0-31-amd64 x86_64"
  std::vector<ProbeItem> items;

  // Every required item is Ok.
  bool ready() const;
  // ESP with IPv6 outer headers works (esp6): the data path carries IPv6
  // too. Optional: without it IPv4 still works.
  bool esp6() const;
  // One line per item ("ok", "MISSING", "untested"), a "fix:" line under
  // each missing one, and a verdict line.
  std::string text() const;
};

struct ProbeOptions {
  Ownership ownership = kDefaultOwnership;
  Mark steering = kDefaultSteeringMark;
};

// Needs root (CAP_SYS_ADMIN for the namespace, CAP_NET_ADMIN, CAP_BPF);
// without it the report says so.
ProbeReport probe_kernel(const ProbeOptions& options = {});

}  // namespace covey::kmod
