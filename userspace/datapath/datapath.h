// The one adapter between user space and covey's tc classifier
// (bpf/covey_tc.bpf.c): loads it from its libbpf skeleton, sizes and
// (optionally) pins its maps, installs compiled ACLs, sets the steering
// mark and the fail-close state, and reads the counters back. Attaching
// the program to interfaces is the caller's (it has the fd).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "covey_maps.h"
#include "crypto/result.h"
#include "datapath/acl_compile.h"

struct covey_tc;  // bpftool's skeleton (covey_tc.skel.h)

namespace covey::datapath {

// What each table map holds per generation (both generations are
// allocated). Fixed when the maps are created; install() refuses an ACL
// that does not fit, with the numbers.
struct Capacity {
  std::uint32_t entries = 16384;                 // ACL lines, the group ACL and the fail-close ACL together
  std::uint32_t trie_cells = 1u << 20;           // 4 MiB
  std::uint32_t port_cells = 1u << 20;           // 4 MiB: 4 classifiers of 2 x 65537 + 257
  std::uint32_t cross_cells = 1u << 22;          // 16 MiB
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
};

class Datapath {
 public:
  static crypto::Result<std::unique_ptr<Datapath>> open(const Options& options);
  ~Datapath();
  Datapath(const Datapath&) = delete;
  Datapath& operator=(const Datapath&) = delete;

  // Writes both ACLs into the generation packets are not using, then
  // switches packets to it: a packet sees the old policy or the new one,
  // never a mix. Hit counters of the new generation start at zero.
  crypto::Result<void> install(const CompiledAcl& acl, const CompiledAcl& fail_close);

  // skb->mark for a permitted packet: `mark` within `mask`, other bits
  // kept. Two stores: set it before traffic, not while packets flow.
  void set_steering_mark(std::uint32_t mark, std::uint32_t mask);
  // Fail-close: enforced while no_tek_active is set, and after
  // `expires_ns` (CLOCK_MONOTONIC; 0 = never) even if the flag is clear.
  void set_no_tek_active(bool no_tek_active);
  void set_tek_expiry(std::uint64_t expires_ns);

  std::uint32_t generation() const;
  // Matches per entry of the live generation, in ACL order, all CPUs summed.
  std::vector<std::uint64_t> hits(covey_acl_kind kind) const;
  covey_stats stats() const;  // all CPUs summed
  void reset_stats();

  int program_fd() const;
  const Capacity& capacity() const { return capacity_; }

 private:
  Datapath() = default;
  crypto::Result<void> map_tables();

  covey_tc* skel_ = nullptr;
  Capacity capacity_;
  std::string pin_dir_;
  covey_config* config_ = nullptr;  // mmapped covey_config
  std::uint32_t* trie_ = nullptr;   // mmapped cells
  std::uint32_t* ports_ = nullptr;
  std::uint32_t* cross_ = nullptr;
  std::size_t config_len_ = 0, trie_len_ = 0, ports_len_ = 0, cross_len_ = 0;
  std::chrono::steady_clock::time_point last_flip_{};
};

}  // namespace covey::datapath
