#include "datapath/datapath.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "covey_tc.skel.h"

namespace covey::datapath {

namespace {

using crypto::Error;

std::string error_text(int err) { return std::strerror(err < 0 ? -err : err); }

std::uint32_t rows(std::uint32_t cells) { return (cells + COVEY_CELLS_PER_ROW - 1) / COVEY_CELLS_PER_ROW; }
// Cells one generation occupies: whole rows, so generations never share a row.
std::size_t gen_cells(std::uint32_t cells) { return std::size_t{rows(cells)} * COVEY_CELLS_PER_ROW; }

// libbpf's warnings carry the verifier's log when a load fails: keep them,
// drop the debug chatter.
int libbpf_print(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  return std::vfprintf(stderr, format, args);
}

// A packet that read the previous generation's head finishes within
// microseconds (tc runs with bottom halves off); the generation it read is
// rewritten only after this much time, three orders of magnitude more.
constexpr auto kGenerationQuiesce = std::chrono::milliseconds(10);

template <class T>
void store(T& field, T value) {
  std::atomic_ref<T>(field).store(value, std::memory_order_release);
}

}  // namespace

Capacity Capacity::fitting(const CompiledAcl& acl, const CompiledAcl& fail_close) {
  Capacity c{};
  c.entries = c.trie_cells = c.port_cells = c.cross_cells = 0;
  for (const CompiledAcl* a : {&acl, &fail_close}) {
    c.entries += static_cast<std::uint32_t>(a->entries.size());
    for (const FamilyTables* t : {&a->v4, &a->v6}) {
      // Each classifier's trie starts on a row: up to a row's worth of padding.
      if (!t->trie.empty()) c.trie_cells += static_cast<std::uint32_t>(t->trie.size()) + COVEY_CELLS_PER_ROW - 1;
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
  const Capacity& cap = d->capacity_;
  if (cap.entries == 0 || cap.trie_cells == 0 || cap.port_cells == 0 || cap.cross_cells == 0)
    return Error{"covey datapath: every map capacity must be at least 1"};

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
  d->skel_ = covey_tc__open_opts(&opts);
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
  };
  for (const auto& s : sizes) {
    if (int err = bpf_map__set_max_entries(s.map, s.entries))
      return Error{std::string("covey datapath: sizing map ") + bpf_map__name(s.map) + ": " + error_text(err)};
  }
  if (int err = covey_tc__load(d->skel_)) {
    return Error{"covey datapath: loading the tc classifier failed: " + error_text(err) +
                 (d->pin_dir_.empty() ? std::string()
                                      : " (maps pinned in " + d->pin_dir_ + " with other sizes are not reused)")};
  }
  if (auto r = d->map_tables(); !r) return Error{r.error()};
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
      return Error{std::string("covey datapath: mmap of map ") + bpf_map__name(map) + ": " + error_text(errno)};
    }
    return p;
  };
  auto& maps = skel_->maps;
  auto config = map_memory(maps.covey_config, config_len_);
  if (!config) return Error{config.error()};
  config_ = static_cast<covey_config*>(*config);
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
  if (config_) munmap(config_, config_len_);
  if (trie_) munmap(trie_, trie_len_);
  if (ports_) munmap(ports_, ports_len_);
  if (cross_) munmap(cross_, cross_len_);
  if (skel_) covey_tc__destroy(skel_);
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

  if (const auto since = std::chrono::steady_clock::now() - last_flip_; since < kGenerationQuiesce)
    std::this_thread::sleep_for(kGenerationQuiesce - since);

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
  // happen before the switch.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  store(config_->generation, gen);
  last_flip_ = std::chrono::steady_clock::now();
  return {};
}

void Datapath::set_steering_mark(std::uint32_t mark, std::uint32_t mask) {
  store(config_->steer_mask, mask);
  store(config_->steer_mark, mark);
}

void Datapath::set_no_tek_active(bool no_tek_active) { store(config_->no_tek_active, no_tek_active ? 1u : 0u); }

void Datapath::set_tek_expiry(std::uint64_t expires_ns) {
  store(config_->tek_expires_ns, static_cast<__u64>(expires_ns));
}

std::uint32_t Datapath::generation() const {
  return std::atomic_ref<std::uint32_t>(config_->generation).load(std::memory_order_acquire) & 1;
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
    sum.packets += s.packets;
    sum.not_ip += s.not_ip;
    sum.malformed += s.malformed;
    sum.ports_unseen += s.ports_unseen;
    sum.encrypt += s.encrypt;
    sum.bypass_deny += s.bypass_deny;
    sum.bypass_implicit += s.bypass_implicit;
    sum.fail_close_drop += s.fail_close_drop;
    sum.table_error += s.table_error;
  }
  return sum;
}

void Datapath::reset_stats() {
  const int cpus = std::max(libbpf_num_possible_cpus(), 1);
  std::vector<covey_stats> zeros(static_cast<std::size_t>(cpus));
  const std::uint32_t key = 0;
  bpf_map_update_elem(bpf_map__fd(skel_->maps.covey_stats), &key, zeros.data(), BPF_ANY);
}

int Datapath::program_fd() const { return bpf_program__fd(skel_->progs.covey_classify); }

}  // namespace covey::datapath
