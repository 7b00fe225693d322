#include "kmod-free/datapath.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "covey_dp.skel.h"

namespace covey::datapath {

namespace {

using crypto::Error;

static_assert(sizeof(covey_stats) % sizeof(std::uint64_t) == 0, "covey_stats holds u64 counters only");
// User space writes a copy through mmap and the programs index it by
// `live`: the copies' 64-bit fields stay aligned in both.
static_assert(offsetof(covey_configs, copy) % 8 == 0 && sizeof(covey_config) % 8 == 0,
              "covey_config copies keep their 64-bit fields aligned");

std::string error_text(int err) {
  return std::strerror(err < 0 ? -err : err);
}

std::uint32_t rows(std::uint32_t cells) {
  return (cells + COVEY_CELLS_PER_ROW - 1) / COVEY_CELLS_PER_ROW;
}
// Cells one generation occupies: whole rows, so generations never share a row.
std::size_t gen_cells(std::uint32_t cells) {
  return std::size_t{rows(cells)} * COVEY_CELLS_PER_ROW;
}

// libbpf's warnings carry the verifier's log when a load fails: keep them,
// drop the debug chatter.
int libbpf_print(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[4096];
  std::vsnprintf(line, sizeof line, format, args);
  // attach_tc creates the clsact qdisc if missing; an existing one is
  // not an error, though the kernel says so. Nor is an empty slot where
  // attach_tc and detach_tc look for covey's filter.
  for (const char* expected :
       {"Exclusivity flag on, cannot modify", "Cannot find specified filter chain",
        "Filter with specified priority/protocol not found", "Specified filter handle not found"})
    if (std::strstr(line, expected)) return 0;
  return std::fputs(line, stderr);
}

template <class T>
void store(T& field, T value) {
  std::atomic_ref<T>(field).store(value, std::memory_order_release);
}

constexpr std::uint64_t kDefaultSteerStaleNs = 1000000000ull;

// tc filters covey installs: one per hook, found again by handle and
// priority, and told from another tool's filter there by its program's name.
constexpr std::uint32_t kTcHandle = 0xc0e1;
constexpr std::uint32_t kTcPriority = 1;

std::string interface_short_name(int ifindex) {
  char name[IF_NAMESIZE] = {};
  return if_indextoname(static_cast<unsigned>(ifindex), name) ? name : "?";
}

std::string interface_name(int ifindex) {
  return interface_short_name(ifindex) + " (ifindex " + std::to_string(ifindex) + ")";
}

bool is_egress(Program p) {
  return p == Program::WanEgress;
}

}  // namespace

const char* program_name(Program p) {
  switch (p) {
    case Program::LanIngress: return "covey_lan_ingress";
    case Program::WanEgress: return "covey_wan_egress";
    case Program::WanXdp: return "covey_wan_xdp";
    case Program::WanIngress: return "covey_wan_ingress";
  }
  return "?";
}

std::uint16_t tcp_mss_for_stamp(std::uint32_t inner_mtu, std::uint8_t family) {
  const std::uint32_t headers =
      family == 6 ? 40u + 20u + COVEY_TBAR_DSTOPT_LEN : 20u + 20u + COVEY_TBAR_OPT_LEN;
  if (inner_mtu <= headers) return 0;
  return static_cast<std::uint16_t>(std::min<std::uint32_t>(inner_mtu - headers, 0xffff));
}

Capacity Capacity::fitting(const CompiledAcl& acl, const CompiledAcl& fail_close) {
  Capacity c{};
  c.entries = c.trie_cells = c.port_cells = c.cross_cells = 0;
  for (const CompiledAcl* a : {&acl, &fail_close}) {
    c.entries += static_cast<std::uint32_t>(a->entries.size());
    for (const FamilyTables* t : {&a->v4, &a->v6}) {
      // Each classifier's trie starts on a row: up to a row's worth of padding.
      if (!t->trie.empty())
        c.trie_cells += static_cast<std::uint32_t>(t->trie.size()) + COVEY_CELLS_PER_ROW - 1;
      c.port_cells += static_cast<std::uint32_t>(t->ports.size());
      c.cross_cells += static_cast<std::uint32_t>(t->cross.size());
    }
  }
  // A map holds at least one element.
  for (std::uint32_t* v : {&c.entries, &c.trie_cells, &c.port_cells, &c.cross_cells}) *v = std::max(*v, 1u);
  return c;
}

crypto::Result<std::unique_ptr<Datapath>> Datapath::open(const Options& options) {
  static std::once_flag print_once;
  std::call_once(print_once, [] { libbpf_set_print(libbpf_print); });

  std::unique_ptr<Datapath> d(new Datapath());
  d->capacity_ = options.capacity;
  d->pin_dir_ = options.pin_dir;
  d->between_writes_ = options.between_writes;
  const Capacity& cap = d->capacity_;
  if (cap.entries == 0 || cap.trie_cells == 0 || cap.port_cells == 0 || cap.cross_cells == 0 ||
      cap.tbar_peers == 0)
    return Error{"covey datapath: every map capacity must be at least 1"};
  if (cap.steer_slots == 0 || (cap.steer_slots & (cap.steer_slots - 1)) != 0 ||
      cap.steer_slots > COVEY_STEER_SLOTS_MAX)
    return Error{"covey datapath: steer_slots must be a power of two from 1 to " +
                 std::to_string(COVEY_STEER_SLOTS_MAX) + ", not " + std::to_string(cap.steer_slots)};

  if (!d->pin_dir_.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(d->pin_dir_, ec);
    if (ec) return Error{"covey datapath: cannot create pin directory " + d->pin_dir_ + ": " + ec.message()};
    struct statfs fs {};
    if (statfs(d->pin_dir_.c_str(), &fs) != 0)
      return Error{"covey datapath: pin directory " + d->pin_dir_ + ": " + error_text(errno)};
    if (static_cast<unsigned long>(fs.f_type) != BPF_FS_MAGIC)
      return Error{"covey datapath: pin directory " + d->pin_dir_ +
                   " is not on a BPF filesystem; mount one with: mount -t bpf bpf /sys/fs/bpf"};
  }

  bpf_object_open_opts opts{};
  opts.sz = sizeof(opts);
  opts.pin_root_path = d->pin_dir_.empty() ? nullptr : d->pin_dir_.c_str();
  d->skel_ = covey_dp__open_opts(&opts);
  if (!d->skel_) return Error{"covey datapath: opening the BPF object failed: " + error_text(errno)};

  auto& maps = d->skel_->maps;
  if (d->pin_dir_.empty()) {
    bpf_map* map = nullptr;
    bpf_object__for_each_map(map, d->skel_->obj) bpf_map__set_pin_path(map, nullptr);
  }
  struct {
    bpf_map* map;
    std::uint32_t entries;
  } sizes[] = {
      {maps.covey_acl_trie, 2 * rows(cap.trie_cells)},
      {maps.covey_acl_ports, 2 * rows(cap.port_cells)},
      {maps.covey_acl_cross, 2 * rows(cap.cross_cells)},
      {maps.covey_acl, 2 * cap.entries},
      {maps.covey_acl_hits, 2 * cap.entries},
      {maps.covey_steer_slots, cap.steer_slots},
      {maps.covey_tbar_peers, cap.tbar_peers},
  };
  for (const auto& s : sizes) {
    if (int err = bpf_map__set_max_entries(s.map, s.entries))
      return Error{std::string("covey datapath: sizing map ") + bpf_map__name(s.map) + ": " +
                   error_text(err)};
  }
  d->skel_->rodata->covey_test_hooks = options.test_hooks ? 1 : 0;
  if (int err = covey_dp__load(d->skel_)) {
    return Error{"covey datapath: loading the BPF programs failed: " + error_text(err) +
                 (d->pin_dir_.empty()
                      ? std::string()
                      : " (maps pinned in " + d->pin_dir_ + " with other sizes are not reused)")};
  }
  if (auto r = d->map_tables(); !r) return Error{r.error()};

  if (auto r = d->open_grace_period(); !r) return Error{r.error()};
  // Maps reused from a pin: a writer before this one may have switched
  // copies and stopped before its grace period ended.
  if (!d->pin_dir_.empty()) d->wait_for_programs();

  // Steering state that must hold before the first packet; maps reused
  // from a pin keep their seed (slots in use stay where they are).
  std::uint32_t seed = d->live().steer_seed;
  while (seed == 0) {
    if (getrandom(&seed, sizeof(seed), 0) != static_cast<ssize_t>(sizeof(seed)))
      return Error{"covey datapath: getrandom for the steering hash seed: " + error_text(errno)};
  }
  d->change([&](covey_config& c) {
    c.steer_slot_mask = cap.steer_slots - 1;
    if (c.steer_stale_ns == 0) c.steer_stale_ns = kDefaultSteerStaleNs;
    c.steer_seed = seed;
  });
  return d;
}

crypto::Result<void> Datapath::map_tables() {
  auto map_memory = [](bpf_map* map, std::size_t& len) -> crypto::Result<void*> {
    const std::size_t bytes = std::size_t{bpf_map__value_size(map)} * bpf_map__max_entries(map);
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    len = (bytes + page - 1) / page * page;
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(map), 0);
    if (p == MAP_FAILED) {
      len = 0;
      return Error{std::string("covey datapath: mmap of map ") + bpf_map__name(map) + ": " +
                   error_text(errno)};
    }
    return p;
  };
  auto& maps = skel_->maps;
  auto config = map_memory(maps.covey_config, config_len_);
  if (!config) return Error{config.error()};
  configs_ = static_cast<covey_configs*>(*config);
  auto trie = map_memory(maps.covey_acl_trie, trie_len_);
  if (!trie) return Error{trie.error()};
  trie_ = static_cast<std::uint32_t*>(*trie);
  auto ports = map_memory(maps.covey_acl_ports, ports_len_);
  if (!ports) return Error{ports.error()};
  ports_ = static_cast<std::uint32_t*>(*ports);
  auto cross = map_memory(maps.covey_acl_cross, cross_len_);
  if (!cross) return Error{cross.error()};
  cross_ = static_cast<std::uint32_t*>(*cross);
  return {};
}

Datapath::~Datapath() {
  if (configs_) munmap(configs_, config_len_);
  for (int fd : {sync_outer_fd_, sync_inner_fd_})
    if (fd >= 0) close(fd);
  if (trie_) munmap(trie_, trie_len_);
  if (ports_) munmap(ports_, ports_len_);
  if (cross_) munmap(cross_, cross_len_);
  if (skel_) covey_dp__destroy(skel_);
}

crypto::Result<void> Datapath::install(const CompiledAcl& acl, const CompiledAcl& fail_close) {
  const Capacity need = Capacity::fitting(acl, fail_close);
  struct {
    const char* what;
    std::uint32_t need, have;
  } checks[] = {{"ACL entries", need.entries, capacity_.entries},
                {"trie cells", need.trie_cells, capacity_.trie_cells},
                {"port cells", need.port_cells, capacity_.port_cells},
                {"cross-product cells", need.cross_cells, capacity_.cross_cells}};
  for (const auto& c : checks) {
    if (c.need > c.have) {
      return Error{std::string("covey datapath: the ACLs need ") + std::to_string(c.need) + " " + c.what +
                   " per generation and the maps hold " + std::to_string(c.have) +
                   "; reload the datapath with a larger capacity (" + acl.summary() + ")"};
    }
  }

  // The generation packets do not use: no packet has used it since the
  // last change's grace period ended.
  const std::uint32_t gen = 1 - generation();
  std::size_t trie_at = gen * gen_cells(capacity_.trie_cells);
  std::size_t ports_at = gen * gen_cells(capacity_.port_cells);
  std::size_t cross_at = gen * gen_cells(capacity_.cross_cells);
  std::uint32_t slot = gen * capacity_.entries;
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return Error{"covey datapath: cannot count possible CPUs: " + error_text(cpus)};

  const CompiledAcl* kinds[2] = {&acl, &fail_close};
  for (std::uint32_t kind = 0; kind < 2; ++kind) {
    const CompiledAcl& a = *kinds[kind];
    const std::uint32_t entry_base = slot;
    for (std::uint32_t family = 0; family < 2; ++family) {
      const FamilyTables& t = family == COVEY_FAMILY_V4 ? a.v4 : a.v6;
      covey_acl_head h = t.head;
      h.entry_base = entry_base;
      h.acl_length = static_cast<std::uint32_t>(a.entries.size());
      if (h.entries != 0) {
        // Trie offsets are relative to trie_base; skip records need it row aligned.
        trie_at = (trie_at + COVEY_CELLS_PER_ROW - 1) / COVEY_CELLS_PER_ROW * COVEY_CELLS_PER_ROW;
        std::memcpy(trie_ + trie_at, t.trie.data(), t.trie.size() * sizeof(std::uint32_t));
        h.trie_base = static_cast<std::uint32_t>(trie_at);
        trie_at += t.trie.size();
        std::memcpy(ports_ + ports_at, t.ports.data(), t.ports.size() * sizeof(std::uint32_t));
        const auto pb = static_cast<std::uint32_t>(ports_at);
        h.proto_base += pb;
        h.sport_base += pb;
        h.dport_base += pb;
        ports_at += t.ports.size();
        std::memcpy(cross_ + cross_at, t.cross.data(), t.cross.size() * sizeof(std::uint32_t));
        const auto cb = static_cast<std::uint32_t>(cross_at);
        h.sd_base += cb;
        h.ps_base += cb;
        h.xd_base += cb;
        h.final_base += cb;
        cross_at += t.cross.size();
      }
      const std::uint32_t key = COVEY_HEAD_INDEX(gen, kind, family);
      if (bpf_map_update_elem(bpf_map__fd(skel_->maps.covey_acl_heads), &key, &h, BPF_ANY) != 0)
        return Error{"covey datapath: writing covey_acl_heads: " + error_text(errno)};
      wrote();
    }

    if (!a.entries.empty()) {
      auto count = static_cast<std::uint32_t>(a.entries.size());
      std::vector<std::uint32_t> keys(count);
      for (std::uint32_t i = 0; i < count; ++i) keys[i] = entry_base + i;
      if (bpf_map_update_batch(bpf_map__fd(skel_->maps.covey_acl), keys.data(), a.entries.data(), &count,
                               nullptr) != 0)
        return Error{"covey datapath: writing covey_acl: " + error_text(errno)};
      count = static_cast<std::uint32_t>(a.entries.size());
      std::vector<std::uint64_t> zeros(std::size_t{count} * static_cast<std::size_t>(cpus), 0);
      if (bpf_map_update_batch(bpf_map__fd(skel_->maps.covey_acl_hits), keys.data(), zeros.data(), &count,
                               nullptr) != 0)
        return Error{"covey datapath: clearing covey_acl_hits: " + error_text(errno)};
    }
    slot += static_cast<std::uint32_t>(a.entries.size());
  }

  // The tables are written through mmap, the heads through bpf(): both
  // before the switch (change() fences before it stores `live`).
  change([&](covey_config& c) { c.generation = gen; });
  return {};
}

// The grace period: updating an element of a map-in-map makes the bpf()
// call wait, with synchronize_rcu(), until every program that may still
// see the old element has finished (kernel/bpf/syscall.c,
// maybe_wait_bpf_programs; the kernel's own BPF selftests wait for
// programs the same way). covey's programs run inside RCU read-side
// sections (tc and XDP under rcu_read_lock with bottom halves off,
// BPF_PROG_TEST_RUN under rcu_read_lock), so once it returns no packet
// still reads settings from before the switch. The outer map is used by
// no program: it exists for this wait.
crypto::Result<void> Datapath::open_grace_period() {
  sync_inner_fd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY, "covey_sync_in", 4, 4, 1, nullptr);
  if (sync_inner_fd_ < 0)
    return Error{"covey datapath: creating the map that waits for programs: " + error_text(sync_inner_fd_)};
  bpf_map_create_opts opts{};
  opts.sz = sizeof(opts);
  opts.inner_map_fd = static_cast<__u32>(sync_inner_fd_);
  sync_outer_fd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "covey_sync", 4, 4, 1, &opts);
  if (sync_outer_fd_ < 0)
    return Error{"covey datapath: creating the map that waits for programs: " + error_text(sync_outer_fd_)};
  return {};
}

void Datapath::wait_for_programs() const {
  const std::uint32_t key = 0;
  if (bpf_map_update_elem(sync_outer_fd_, &key, &sync_inner_fd_, BPF_ANY) == 0) return;
  // Cannot happen with the maps open() made; if it did, a program run
  // lasts microseconds and this is four orders of magnitude more, but no
  // guarantee.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

const covey_config& Datapath::live() const {
  return configs_->copy[std::atomic_ref<__u32>(configs_->live).load(std::memory_order_acquire) & 1];
}

void Datapath::change(const std::function<void(covey_config&)>& edit) {
  const std::uint32_t now = std::atomic_ref<__u32>(configs_->live).load(std::memory_order_acquire) & 1;
  covey_config next = configs_->copy[now];
  edit(next);
  if (std::memcmp(&next, &configs_->copy[now], sizeof next) == 0) return;
  // The idle copy: no program has read it since the last change's grace
  // period ended (or, for maps reused from a pin, open()'s).
  std::memcpy(&configs_->copy[1 - now], &next, sizeof next);
  wrote();
  std::atomic_thread_fence(std::memory_order_seq_cst);
  store(configs_->live, 1 - now);
  wrote();
  wait_for_programs();
}

void Datapath::store_live(__u64 covey_config::*field, __u64 value) {
  store<__u64>(configs_->copy[std::atomic_ref<__u32>(configs_->live).load() & 1].*field, value);
  wrote();
}

crypto::Result<void> Datapath::set_steering_mark(std::uint32_t mark, std::uint32_t mask) {
  if (mask == 0 || (mask & ~COVEY_MARK_STEER_FIELD) != 0 || (mark & ~mask) != 0) {
    char text[160];
    std::snprintf(
        text, sizeof text,
        "covey datapath: steering mark 0x%x/0x%x must be a non-empty mask within 0x%x and a mark within "
        "the mask (the other mark bits carry the steering slot)",
        mark, mask, COVEY_MARK_STEER_FIELD);
    return Error{text};
  }
  change([&](covey_config& c) {
    c.steer_mask = mask;
    c.steer_mark = mark;
  });
  return {};
}

void Datapath::set_steer_stale(std::chrono::nanoseconds stale) {
  change([&](covey_config& c) { c.steer_stale_ns = static_cast<__u64>(std::max<std::int64_t>(stale.count(), 1)); });
}

void Datapath::set_flag(std::uint32_t flag, bool on) {
  change([&](covey_config& c) { c.flags = on ? c.flags | flag : c.flags & ~flag; });
}

void Datapath::set_anchors(const Anchors& a) {
  change([&](covey_config& c) {
    if (a.family == 6) {
      std::memcpy(c.anchor_local_v6, a.local.data(), 16);
      std::memcpy(c.anchor_group_v6, a.group.data(), 16);
      std::memcpy(c.anchor_in_v6, a.in.data(), 16);
      c.flags |= COVEY_CFG_ANCHORS_V6;
    } else {
      std::memcpy(c.anchor_local_v4, a.local.data(), 4);
      std::memcpy(c.anchor_group_v4, a.group.data(), 4);
      std::memcpy(c.anchor_in_v4, a.in.data(), 4);
      c.flags |= COVEY_CFG_ANCHORS_V4;
    }
  });
}

void Datapath::set_wan_mac(const std::array<std::uint8_t, 6>& mac) {
  change([&](covey_config& c) { std::memcpy(c.wan_mac, mac.data(), mac.size()); });
}

crypto::Result<void> Datapath::set_spi(std::uint32_t spi, std::uint32_t flags) {
  const covey_spi value{flags};
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.covey_spis), &spi, &value, BPF_ANY) != 0) {
    char text[96];
    std::snprintf(text, sizeof text, "covey datapath: adding SPI 0x%08X to covey_spis: ", spi);
    return Error{text + error_text(errno)};
  }
  return {};
}

crypto::Result<void> Datapath::remove_spi(std::uint32_t spi) {
  if (bpf_map_delete_elem(bpf_map__fd(skel_->maps.covey_spis), &spi) != 0 && errno != ENOENT) {
    char text[96];
    std::snprintf(text, sizeof text, "covey datapath: removing SPI 0x%08X from covey_spis: ", spi);
    return Error{text + error_text(errno)};
  }
  return {};
}

std::vector<std::uint32_t> Datapath::spis() const {
  const int fd = bpf_map__fd(skel_->maps.covey_spis);
  std::vector<std::uint32_t> out;
  std::uint32_t next = 0;
  for (const void* prev = nullptr; bpf_map_get_next_key(fd, prev, &next) == 0; prev = &out.back())
    out.push_back(next);
  return out;
}

void Datapath::set_inbound_tc(bool on) {
  set_flag(COVEY_CFG_INBOUND_TC, on);
}
void Datapath::set_drop_unknown_spi(bool on) {
  set_flag(COVEY_CFG_DROP_UNKNOWN_SPI, on);
}
void Datapath::set_drop_clear(bool on) {
  set_flag(COVEY_CFG_DROP_CLEAR, on);
}
void Datapath::set_egress_fib(bool on) {
  set_flag(COVEY_CFG_EGRESS_FIB, on);
}

void Datapath::set_tbar(const TbarPolicy& p) {
  change([&](covey_config& c) {
    c.tbar_sid = p.sid;
    c.tbar_window_ms = p.window_ms;
    c.tcp_mss_v4 = p.tcp_mss_v4;
    c.tcp_mss_v6 = p.tcp_mss_v6;
    c.inner_mtu_v4 = p.inner_mtu_v4;
    c.inner_mtu_v6 = p.inner_mtu_v6;
    c.flags &= ~(COVEY_CFG_TBAR_STAMP | COVEY_CFG_TBAR_CHECK);
    c.flags |= (p.stamp ? COVEY_CFG_TBAR_STAMP : 0u) | (p.check ? COVEY_CFG_TBAR_CHECK : 0u);
  });
}

void Datapath::set_pseudotime(std::uint32_t pseudotime_ms, std::uint64_t at_ns) {
  // The clock at which pseudotime was 0 (mod 2^32 ms): two's complement,
  // the program's unsigned subtraction undoes it.
  store_live(&covey_config::tbar_epoch_ns, at_ns - std::uint64_t{pseudotime_ms} * 1000000ull);
}

std::size_t Datapath::expire_tbar_peers(std::uint64_t now_ns) {
  const int fd = bpf_map__fd(skel_->maps.covey_tbar_peers);
  const std::uint64_t idle =
      2ull * live().tbar_window_ms * 1000000ull;
  std::vector<std::uint32_t> stale;
  std::uint32_t key = 0, next = 0;
  const void* at = nullptr;
  while (bpf_map_get_next_key(fd, at, &next) == 0) {
    covey_tbar_peer peer{};
    if (bpf_map_lookup_elem(fd, &next, &peer) == 0 && peer.started && now_ns > peer.last_ns &&
        now_ns - peer.last_ns > idle)
      stale.push_back(next);
    key = next;
    at = &key;
  }
  std::size_t removed = 0;
  for (std::uint32_t sid : stale) removed += bpf_map_delete_elem(fd, &sid) == 0 ? 1 : 0;
  return removed;
}

std::optional<covey_tbar_peer> Datapath::tbar_peer(std::uint16_t sid) const {
  const std::uint32_t key = sid;
  covey_tbar_peer peer{};
  if (bpf_map_lookup_elem_flags(bpf_map__fd(skel_->maps.covey_tbar_peers), &key, &peer, BPF_F_LOCK) != 0)
    return std::nullopt;
  return peer;
}

std::optional<covey_steer_slot> Datapath::steer_slot(std::uint32_t index) const {
  covey_steer_slot slot{};
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.covey_steer_slots), &index, &slot) != 0)
    return std::nullopt;
  return slot;
}

std::uint32_t Datapath::tbar_counter() const {
  const std::uint32_t key = 0;
  covey_tbar_tx tx{};
  bpf_map_lookup_elem(bpf_map__fd(skel_->maps.covey_tbar_tx), &key, &tx);
  return tx.counter;
}

void Datapath::set_tbar_counter(std::uint32_t counter) {
  const std::uint32_t key = 0;
  const covey_tbar_tx tx{counter, 0};
  bpf_map_update_elem(bpf_map__fd(skel_->maps.covey_tbar_tx), &key, &tx, BPF_ANY);
}

namespace {

// A program's name as the kernel keeps it (15 characters: covey_lan_ingre).
std::string kernel_name(int prog_fd) {
  bpf_prog_info info{};
  std::uint32_t len = sizeof info;
  return bpf_obj_get_info_by_fd(prog_fd, &info, &len) == 0 ? std::string(info.name) : std::string();
}

// A program attached by someone, by its id: an fd for XDP's old_prog_fd and
// its kernel name (empty if it is gone).
struct Attached {
  explicit Attached(std::uint32_t prog_id) : id(prog_id), fd(bpf_prog_get_fd_by_id(prog_id)) {
    if (fd >= 0) name = kernel_name(fd);
  }
  ~Attached() {
    if (fd >= 0) close(fd);
  }
  Attached(const Attached&) = delete;
  Attached& operator=(const Attached&) = delete;
  std::string str() const { return "'" + name + "' (id " + std::to_string(id) + ")"; }
  std::uint32_t id;
  int fd;
  std::string name;
};

// The XDP programs on `ifindex`, with the mode flag each was attached in.
crypto::Result<std::vector<std::pair<std::uint32_t, std::uint32_t>>> xdp_programs(int ifindex) {
  bpf_xdp_query_opts q{};
  q.sz = sizeof q;
  if (int err = bpf_xdp_query(ifindex, 0, &q))
    return Error{"covey datapath: asking which XDP program " + interface_name(ifindex) +
                 " runs: " + error_text(err)};
  std::vector<std::pair<std::uint32_t, std::uint32_t>> out;
  for (auto [id, mode] :
       {std::pair{q.drv_prog_id, XDP_FLAGS_DRV_MODE}, std::pair{q.skb_prog_id, XDP_FLAGS_SKB_MODE},
        std::pair{q.hw_prog_id, XDP_FLAGS_HW_MODE}})
    if (id != 0) out.emplace_back(id, mode);
  return out;
}

std::string tc_hook_text(int ifindex, Program program) {
  return std::string("tc ") + (is_egress(program) ? "egress" : "ingress") + " of " + interface_name(ifindex);
}

bpf_tc_hook tc_hook(int ifindex, Program program) {
  bpf_tc_hook hook{};
  hook.sz = sizeof(hook);
  hook.ifindex = ifindex;
  hook.attach_point = is_egress(program) ? BPF_TC_EGRESS : BPF_TC_INGRESS;
  return hook;
}

}  // namespace

std::uint8_t Datapath::xdp_attached_mode(int ifindex) {
  bpf_xdp_query_opts q{};
  q.sz = sizeof q;
  return bpf_xdp_query(ifindex, 0, &q) == 0 ? q.attach_mode : std::uint8_t{XDP_ATTACHED_NONE};
}

// Covey's programs are known by name, so those of an earlier run (kill -9
// leaves them attached: fail-close) are covey's too.
bool Datapath::is_covey(const std::string& name) const {
  if (name.empty()) return false;
  for (Program p : {Program::LanIngress, Program::WanEgress, Program::WanXdp, Program::WanIngress})
    if (kernel_name(program_fd(p)) == name) return true;
  return false;
}

// What holds covey's handle and priority on a hook: Error if it is not
// covey's, true if it is, false if nothing does.
crypto::Result<bool> Datapath::tc_slot_is_covey(int ifindex, Program program) const {
  bpf_tc_hook hook = tc_hook(ifindex, program);
  bpf_tc_opts q{};
  q.sz = sizeof(q);
  q.handle = kTcHandle;
  q.priority = kTcPriority;
  char slot[48];
  std::snprintf(slot, sizeof slot, "handle 0x%x priority %u", kTcHandle, kTcPriority);
  // No filter at the priority, or none with the handle: ENOENT; no filter on
  // the hook at all, or one of another kind at the priority: EINVAL (then
  // bpf_tc_attach fails, the kernel keeps the priority for that filter).
  if (int err = bpf_tc_query(&hook, &q); err == -ENOENT || err == -EINVAL)
    return false;
  else if (err)
    return Error{"asking what holds covey's " + std::string(slot) + " on " + tc_hook_text(ifindex, program) +
                 ": " + error_text(err)};
  const Attached there(q.prog_id);
  if (!is_covey(there.name))
    return Error{"BPF filter " + there.str() + " holds covey's " + slot + ", not covey's"};
  return true;
}

// Not a flush of the hook: only covey's handle and priority, other filters
// on the hook stay where they are. Covey's own filter there (an earlier
// run's) is replaced.
crypto::Result<void> Datapath::attach_tc(int ifindex, Program program) {
  if (program == Program::WanXdp) return Error{"covey datapath: covey_wan_xdp attaches with attach_xdp"};
  bpf_tc_hook hook = tc_hook(ifindex, program);
  const std::string where = std::string(program_name(program)) + " to " + tc_hook_text(ifindex, program);
  if (int err = bpf_tc_hook_create(&hook); err && err != -EEXIST)
    return Error{"covey datapath: attaching " + where + ": creating the clsact qdisc: " + error_text(err)};
  auto covey = tc_slot_is_covey(ifindex, program);
  if (!covey) {
    char del[96];
    std::snprintf(del, sizeof del, "tc filter del dev %s %s pref %u handle 0x%x bpf",
                  interface_short_name(ifindex).c_str(), is_egress(program) ? "egress" : "ingress",
                  kTcPriority, kTcHandle);
    return Error{"covey datapath: attaching " + where + ": " + covey.error() +
                 ": covey will not replace it; delete it (" + del + ")"};
  }
  bpf_tc_opts opts{};
  opts.sz = sizeof(opts);
  opts.prog_fd = program_fd(program);
  opts.handle = kTcHandle;
  opts.priority = kTcPriority;
  opts.flags = *covey ? BPF_TC_F_REPLACE : 0;
  if (int err = bpf_tc_attach(&hook, &opts))
    return Error{"covey datapath: attaching " + where + ": " + error_text(err) +
                 (err == -EINVAL ? " (does another tool's filter of another kind hold priority " +
                                       std::to_string(kTcPriority) + "?)"
                                 : std::string())};
  return {};
}

// The clsact qdisc stays, also when covey created it: other tools may have
// added filters since, and an empty clsact passes every packet.
crypto::Result<void> Datapath::detach_tc(int ifindex, Program program) {
  const std::string where = std::string("covey datapath: detaching ") + program_name(program) + " from " +
                            tc_hook_text(ifindex, program) + ": ";
  auto covey = tc_slot_is_covey(ifindex, program);
  if (!covey) return Error{where + covey.error() + ": left in place"};
  if (!*covey) return {};
  bpf_tc_hook hook = tc_hook(ifindex, program);
  bpf_tc_opts opts{};
  opts.sz = sizeof(opts);
  opts.handle = kTcHandle;
  opts.priority = kTcPriority;
  if (int err = bpf_tc_detach(&hook, &opts); err && err != -ENOENT) return Error{where + error_text(err)};
  return {};
}

// Only where no XDP program runs, or over covey's own: an earlier run's in
// the same mode is replaced in one step (no moment without a program), in
// another mode removed first.
crypto::Result<void> Datapath::attach_xdp(int ifindex, std::uint32_t xdp_flags) {
  const std::string where = "covey datapath: attaching covey_wan_xdp to " + interface_name(ifindex) + ": ";
  auto programs = xdp_programs(ifindex);
  if (!programs) return Error{programs.error()};
  for (const auto& [id, mode] : *programs) {
    const Attached there(id);
    if (!is_covey(there.name))
      return Error{"covey datapath: " + interface_name(ifindex) + " already has XDP program " + there.str() +
                   " attached, not covey's: covey will not replace it; detach it (ip link set dev " +
                   interface_short_name(ifindex) + " xdp off)"};
  }
  std::unique_ptr<Attached> replaced;
  for (const auto& [id, mode] : *programs) {
    auto there = std::make_unique<Attached>(id);
    if (mode == xdp_flags) {
      replaced = std::move(there);
      continue;
    }
    bpf_xdp_attach_opts o{};
    o.sz = sizeof o;
    o.old_prog_fd = there->fd;
    if (int err = bpf_xdp_detach(ifindex, mode, &o))
      return Error{where + "removing an earlier run's XDP program " + there->str() + ": " + error_text(err)};
  }
  bpf_xdp_attach_opts opts{};
  opts.sz = sizeof opts;
  if (replaced) opts.old_prog_fd = replaced->fd;
  const std::uint32_t flags =
      xdp_flags | (replaced ? 0u : static_cast<std::uint32_t>(XDP_FLAGS_UPDATE_IF_NOEXIST));
  if (int err = bpf_xdp_attach(ifindex, program_fd(Program::WanXdp), flags, &opts))
    return Error{where + error_text(err) +
                 (err == -EBUSY || err == -EEXIST ? " (another XDP program got there first)" : "")};
  return {};
}

crypto::Result<void> Datapath::detach_xdp(int ifindex) {
  const std::string where = "covey datapath: detaching XDP from " + interface_name(ifindex) + ": ";
  auto programs = xdp_programs(ifindex);
  if (!programs) return Error{programs.error()};
  for (const auto& [id, mode] : *programs) {
    const Attached there(id);
    if (!is_covey(there.name))
      return Error{where + "it runs XDP program " + there.str() + ", not covey's: left in place"};
    // Compared and removed in one step: a program attached meanwhile stays.
    bpf_xdp_attach_opts o{};
    o.sz = sizeof o;
    o.old_prog_fd = there.fd;
    if (int err = bpf_xdp_detach(ifindex, mode, &o); err && err != -ENOENT)
      return Error{where + "XDP program " + there.str() + ": " + error_text(err)};
  }
  return {};
}

void Datapath::set_no_tek_active(bool no_tek_active) {
  change([&](covey_config& c) { c.no_tek_active = no_tek_active ? 1u : 0u; });
}

void Datapath::set_tek_expiry(std::uint64_t expires_ns) {
  store_live(&covey_config::tek_expires_ns, static_cast<__u64>(expires_ns));
}

std::uint32_t Datapath::generation() const {
  return live().generation & 1;
}

std::vector<std::uint64_t> Datapath::hits(covey_acl_kind kind) const {
  const std::uint32_t key = COVEY_HEAD_INDEX(generation(), kind, COVEY_FAMILY_V4);
  covey_acl_head h{};
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.covey_acl_heads), &key, &h) != 0) return {};
  const int cpus = libbpf_num_possible_cpus();
  std::vector<std::uint64_t> per_cpu(static_cast<std::size_t>(std::max(cpus, 1)));
  std::vector<std::uint64_t> out(h.acl_length, 0);
  for (std::uint32_t i = 0; i < h.acl_length; ++i) {
    const std::uint32_t slot = h.entry_base + i;
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.covey_acl_hits), &slot, per_cpu.data()) != 0) continue;
    for (std::uint64_t v : per_cpu) out[i] += v;
  }
  return out;
}

covey_stats Datapath::stats() const {
  const int cpus = std::max(libbpf_num_possible_cpus(), 1);
  std::vector<covey_stats> per_cpu(static_cast<std::size_t>(cpus));
  const std::uint32_t key = 0;
  covey_stats sum{};
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.covey_stats), &key, per_cpu.data()) != 0) return sum;
  for (const covey_stats& s : per_cpu) {
    // Every field is a u64 counter: sum them all, whatever is added later.
    auto* to = reinterpret_cast<std::uint64_t*>(&sum);
    const auto* from = reinterpret_cast<const std::uint64_t*>(&s);
    for (std::size_t i = 0; i < sizeof(covey_stats) / sizeof(std::uint64_t); ++i) to[i] += from[i];
  }
  return sum;
}

void Datapath::reset_stats() {
  const int cpus = std::max(libbpf_num_possible_cpus(), 1);
  std::vector<covey_stats> zeros(static_cast<std::size_t>(cpus));
  const std::uint32_t key = 0;
  bpf_map_update_elem(bpf_map__fd(skel_->maps.covey_stats), &key, zeros.data(), BPF_ANY);
}

int Datapath::map_fd(const char* name) const {
  const bpf_map* map = bpf_object__find_map_by_name(skel_->obj, name);
  return map ? bpf_map__fd(map) : -1;
}

int Datapath::program_fd(Program program) const {
  switch (program) {
    case Program::LanIngress: return bpf_program__fd(skel_->progs.covey_lan_ingress);
    case Program::WanEgress: return bpf_program__fd(skel_->progs.covey_wan_egress);
    case Program::WanXdp: return bpf_program__fd(skel_->progs.covey_wan_xdp);
    case Program::WanIngress: return bpf_program__fd(skel_->progs.covey_wan_ingress);
  }
  return -1;
}

}  // namespace covey::datapath
