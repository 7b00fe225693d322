#include "datapath/acl_compile.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <unordered_map>
#include <utility>

namespace covey::datapath {

namespace {

using gdoi::AclEntry;
using crypto::Error;

constexpr std::uint8_t kTcp = 6;
constexpr std::uint8_t kUdp = 17;

bool ports_apply(const AclEntry& e) { return e.protocol == kTcp || e.protocol == kUdp; }

bool prefix_contains(const gdoi::Prefix& p, const std::array<std::uint8_t, 16>& a) {
  const unsigned whole = p.length / 8u, rest = p.length % 8u;
  for (unsigned i = 0; i < whole; ++i)
    if (p.address[i] != a[i]) return false;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff00u >> rest);
  return ((p.address[whole] ^ a[whole]) & mask) == 0;
}

bool port_matches(const gdoi::PortRange& r, std::uint32_t port, bool permit) {
  if (r.is_any()) return true;
  if (port == COVEY_PORT_UNSEEN) return permit;
  return r.first <= port && port <= r.last;
}

// The packet fields an entry can constrain; a stage of the compiler looks
// at a set of them.
enum Dim : unsigned { kSrc = 1, kDst = 2, kProto = 4, kSport = 8, kDport = 16, kAll = 31 };

// The fields in which an entry matches every packet (of its family).
unsigned wildcard_dims(const AclEntry& e) {
  unsigned d = 0;
  if (e.source.length == 0) d |= kSrc;
  if (e.destination.length == 0) d |= kDst;
  if (e.protocol == 0) d |= kProto;
  if (!ports_apply(e) || e.source_port.is_any()) d |= kSport;
  if (!ports_apply(e) || e.destination_port.is_any()) d |= kDport;
  return d;
}

std::uint64_t mix(std::uint64_t h, std::uint64_t w) {
  h ^= w + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}

// Distinct sets of entries, as bitsets in entry order, numbered densely:
// the equivalence classes of one stage. Each set keeps the span of its
// non-zero words so intersections touch only the words that matter.
class ClassSet {
 public:
  explicit ClassSet(std::size_t words) : words_(words) {}

  // The class of the set whose words [lo, hi) are `bits[lo..hi)` and
  // whose other words are zero.
  std::uint32_t intern(const std::uint64_t* bits, std::size_t lo, std::size_t hi) {
    while (lo < hi && bits[lo] == 0) ++lo;
    while (hi > lo && bits[hi - 1] == 0) --hi;
    if (lo == hi) lo = hi = 0;
    std::uint64_t h = mix(lo, hi);
    for (std::size_t w = lo; w < hi; ++w) h = mix(h, bits[w]);
    auto [first, last] = index_.equal_range(h);
    for (auto it = first; it != last; ++it) {
      const auto& s = spans_[it->second];
      if (s.first == lo && s.second == hi &&
          std::equal(bits + lo, bits + hi, store_.data() + it->second * words_ + lo))
        return it->second;
    }
    const auto id = static_cast<std::uint32_t>(spans_.size());
    store_.resize(store_.size() + words_, 0);
    std::copy(bits + lo, bits + hi, store_.data() + id * words_ + lo);
    spans_.emplace_back(lo, hi);
    index_.emplace(h, id);
    return id;
  }

  const std::uint64_t* bits(std::uint32_t id) const { return store_.data() + std::size_t{id} * words_; }
  std::pair<std::size_t, std::size_t> span(std::uint32_t id) const { return spans_[id]; }
  std::size_t size() const { return spans_.size(); }

 private:
  std::size_t words_;
  std::vector<std::uint64_t> store_;
  std::vector<std::pair<std::size_t, std::size_t>> spans_;
  std::unordered_multimap<std::uint64_t, std::uint32_t> index_;
};

struct PrefixKey {
  std::array<std::uint8_t, 16> address{};
  std::uint8_t length = 0;
  auto operator<=>(const PrefixKey&) const = default;
};

bool key_contains(const PrefixKey& outer, const PrefixKey& inner) {
  if (outer.length > inner.length) return false;
  gdoi::Prefix p;
  p.address = outer.address;
  p.length = outer.length;
  return prefix_contains(p, inner.address);
}

// Compiles the entries of one address family. Local entry j is the j-th
// entry of that family in ACL order; positions_[j] is its ACL position.
class FamilyCompiler {
 public:
  FamilyCompiler(std::span<const AclEntry> acl, std::vector<std::size_t> positions, std::uint8_t family,
                 const CompileLimits& limits)
      : acl_(acl), positions_(std::move(positions)), family_(family), limits_(limits),
        words_((positions_.size() + 63) / 64) {
    for (std::size_t j = 0; j < positions_.size(); ++j) wildcards_.push_back(wildcard_dims(entry(j)));
  }

  crypto::Result<FamilyTables> run();

 private:
  const AclEntry& entry(std::size_t j) const { return acl_[positions_[j]]; }
  bool permit(std::size_t j) const { return entry(j).action == AclEntry::Action::Permit; }
  std::string family_name() const { return family_ == 6 ? "IPv6" : "IPv4"; }

  // Entries that match every packet in the fields outside `dims`: once a
  // set of entries for a stage over `dims` holds one, no later entry of the
  // set can be the first match, so the set ends there. Cutting sets short
  // is what keeps the number of distinct classes near the ACL's real shape.
  // Why it is exact: let w be a packet's first match and t the first
  // terminal entry of a set over `dims` the packet is in. t matches the
  // packet in `dims` (it is in the set) and outside them (terminal), so
  // w <= t and w survives the cut; every cut set keeps only entries the
  // packet matches in its fields, so the last table's first entry is w.
  const std::vector<std::uint64_t>& terminal(unsigned dims) {
    auto& t = terminal_[dims];
    if (t.empty()) {
      t.assign(words_, 0);
      for (std::size_t j = 0; j < positions_.size(); ++j)
        if ((wildcards_[j] | dims) == kAll) t[j / 64] |= std::uint64_t{1} << (j % 64);
    }
    return t;
  }

  // Clears every entry after the first terminal one within words [lo, hi).
  static void cut(std::uint64_t* bits, const std::uint64_t* term, std::size_t lo, std::size_t hi) {
    for (std::size_t w = lo; w < hi; ++w) {
      const std::uint64_t hit = bits[w] & term[w];
      if (hit == 0) continue;
      const int b = std::countr_zero(hit);
      if (b < 63) bits[w] &= (std::uint64_t{1} << (b + 1)) - 1;
      std::fill(bits + w + 1, bits + hi, 0);
      return;
    }
  }

  std::uint32_t intern_cut(ClassSet& classes, std::vector<std::uint64_t>& bits, unsigned dims) {
    cut(bits.data(), terminal(dims).data(), 0, words_);
    return classes.intern(bits.data(), 0, words_);
  }

  crypto::Result<std::uint32_t> address_dim(bool source, ClassSet& classes, std::vector<std::uint32_t>& trie);
  void port_dim(bool source, ClassSet& classes, std::vector<std::uint32_t>& ports);
  void protocol_dim(ClassSet& classes, std::vector<std::uint32_t>& ports);
  crypto::Result<void> reserve_cross(std::size_t rows, std::size_t cols, const char* what, const char* row_name,
                                     const char* col_name);
  crypto::Result<void> cross(const ClassSet& rows, const ClassSet& cols, unsigned dims, ClassSet& out,
                             std::vector<std::uint32_t>& table, const char* what, const char* row_name,
                             const char* col_name);
  crypto::Result<void> final_table(const ClassSet& rows, const ClassSet& cols, std::vector<std::uint32_t>& table);

  std::span<const AclEntry> acl_;
  std::vector<std::size_t> positions_;
  std::uint8_t family_;
  CompileLimits limits_;
  std::size_t words_;
  std::vector<unsigned> wildcards_;
  std::unordered_map<unsigned, std::vector<std::uint64_t>> terminal_;
  std::size_t cross_cells_ = 0;
};

struct BlockKey {
  std::vector<std::uint32_t> cells;
  bool operator==(const BlockKey&) const = default;
};
struct BlockKeyHash {
  std::size_t operator()(const BlockKey& k) const {
    std::uint64_t h = 0;
    for (auto c : k.cells) h = mix(h, c);
    return static_cast<std::size_t>(h);
  }
};

class TrieBuilder {
 public:
  TrieBuilder(const std::vector<PrefixKey>& prefixes, const std::vector<std::uint32_t>& cls,
              std::vector<std::uint32_t>& trie)
      : prefixes_(prefixes), cls_(cls), trie_(trie) {}

  // The root block (COVEY_TRIE_ROOT_CELLS cells); returns its offset.
  std::uint32_t root(std::uint32_t inherited) {
    const auto cells = block_cells(0, 0, prefixes_.size(), inherited);
    const auto offset = static_cast<std::uint32_t>(trie_.size());
    trie_.insert(trie_.end(), cells.begin(), cells.end());
    return offset;
  }

 private:
  // The cells of the block for the addresses that share their first `bit`
  // bits with prefixes[lo]: the prefixes in [lo, hi) lie inside it, those
  // no longer than `bit` are already in `inherited`. Leaf-pushed: a cell
  // holds the class of the longest prefix covering all of it, or the cell
  // of what lies below it when a longer prefix does.
  std::vector<std::uint32_t> block_cells(unsigned bit, std::size_t lo, std::size_t hi, std::uint32_t inherited) {
    const bool root = bit == 0;
    const unsigned stride = root ? 16 : 8;
    const unsigned end = bit + stride;
    auto cell_of = [&](const PrefixKey& p) -> std::uint32_t {
      return root ? (std::uint32_t{p.address[0]} << 8 | p.address[1]) : p.address[bit / 8];
    };
    std::vector<std::uint32_t> cells(std::size_t{1} << stride, inherited);

    // Prefixes ending in this block, shortest first, so longer ones overwrite.
    std::vector<std::size_t> ending;
    for (std::size_t i = lo; i < hi; ++i)
      if (prefixes_[i].length > bit && prefixes_[i].length <= end) ending.push_back(i);
    std::stable_sort(ending.begin(), ending.end(),
                     [&](std::size_t a, std::size_t b) { return prefixes_[a].length < prefixes_[b].length; });
    for (std::size_t i : ending) {
      const std::uint32_t first = cell_of(prefixes_[i]);
      const std::size_t count = std::size_t{1} << (end - prefixes_[i].length);
      std::fill_n(cells.begin() + first, count, cls_[i]);
    }

    // Runs of prefixes in one cell: a run with a prefix longer than the
    // block continues below that cell.
    for (std::size_t i = lo; i < hi;) {
      const std::uint32_t k = cell_of(prefixes_[i]);
      std::size_t j = i;
      bool deeper = false;
      for (; j < hi && cell_of(prefixes_[j]) == k; ++j) deeper |= prefixes_[j].length > end;
      if (deeper) cells[k] = below(end, i, j, cells[k]);
      i = j;
    }
    return cells;
  }

  // The cell for a block below the root: the class itself when the block
  // holds nothing else; a skip record when it holds one cell of interest
  // (merged with the record below it when that one continues the chain);
  // else a block, stored once however many cells point to it.
  std::uint32_t below(unsigned bit, std::size_t lo, std::size_t hi, std::uint32_t inherited) {
    const auto cells = block_cells(bit, lo, hi, inherited);
    const unsigned byte = bit / 8;
    std::size_t special = cells.size(), count = 0;
    for (std::size_t k = 0; k < cells.size(); ++k) {
      if (cells[k] != inherited) {
        special = k;
        ++count;
      }
    }
    if (count == 0) return inherited;
    if (count == 1) {
      const std::uint32_t cell = cells[special];
      if (cell & COVEY_TRIE_SKIP) {
        // The record below was made for this chain alone (records are not
        // shared), so it can take this byte too.
        const std::uint32_t offset = cell & COVEY_TRIE_OFFSET;
        auto& first = skip_first_.at(offset);
        covey_trie_skip r;
        std::memcpy(&r, trie_.data() + offset, sizeof r);
        if (r.miss == inherited && first == byte + 1) {
          set_key_byte(r, byte, static_cast<std::uint8_t>(special));
          std::memcpy(trie_.data() + offset, &r, sizeof r);
          first = byte;
          return cell;
        }
      }
      covey_trie_skip r{};
      set_key_byte(r, byte, static_cast<std::uint8_t>(special));
      r.next = cell;
      r.resume = byte + 1;
      r.miss = inherited;
      trie_.resize((trie_.size() + COVEY_CELLS_PER_ROW - 1) / COVEY_CELLS_PER_ROW * COVEY_CELLS_PER_ROW, 0);
      const auto offset = static_cast<std::uint32_t>(trie_.size());
      trie_.resize(trie_.size() + COVEY_CELLS_PER_ROW);
      std::memcpy(trie_.data() + offset, &r, sizeof r);
      skip_first_[offset] = byte;
      return COVEY_TRIE_SKIP | offset;
    }
    BlockKey key{cells};
    if (auto it = shared_.find(key); it != shared_.end()) return COVEY_TRIE_NEXT | it->second;
    const auto offset = static_cast<std::uint32_t>(trie_.size());
    trie_.insert(trie_.end(), cells.begin(), cells.end());
    shared_.emplace(std::move(key), offset);
    return COVEY_TRIE_NEXT | offset;
  }

  // Key and mask hold address bytes in memory order, as the BPF side
  // compares them: byte b of the address is byte b of the array.
  static void set_key_byte(covey_trie_skip& r, unsigned byte, std::uint8_t value) {
    std::uint8_t key[16], mask[16];
    std::memcpy(key, r.key, sizeof key);
    std::memcpy(mask, r.mask, sizeof mask);
    key[byte] = value;
    mask[byte] = 0xff;
    std::memcpy(r.key, key, sizeof key);
    std::memcpy(r.mask, mask, sizeof mask);
  }

  const std::vector<PrefixKey>& prefixes_;
  const std::vector<std::uint32_t>& cls_;
  std::vector<std::uint32_t>& trie_;
  std::unordered_map<BlockKey, std::uint32_t, BlockKeyHash> shared_;
  // Skip record offset -> the first address byte it compares.
  std::unordered_map<std::uint32_t, unsigned> skip_first_;
};

// Source or destination: one class per distinct prefix (the entries whose
// prefix contains it), the class of an address being that of its longest
// matching prefix; the trie maps addresses to classes. Returns the root.
crypto::Result<std::uint32_t> FamilyCompiler::address_dim(bool source, ClassSet& classes,
                                                          std::vector<std::uint32_t>& trie) {
  // Bits beyond the length are cleared: a decoded entry may carry them,
  // and the trie places a prefix by its address.
  auto key = [&](std::size_t j) {
    const gdoi::Prefix& p = source ? entry(j).source : entry(j).destination;
    PrefixKey k{p.address, p.length};
    for (unsigned i = 0; i < 16; ++i) {
      const unsigned bits = k.length > i * 8 ? std::min(8u, k.length - i * 8) : 0;
      k.address[i] &= static_cast<std::uint8_t>(0xff00u >> bits);
    }
    return k;
  };
  std::vector<PrefixKey> prefixes;
  for (std::size_t j = 0; j < positions_.size(); ++j) prefixes.push_back(key(j));
  std::sort(prefixes.begin(), prefixes.end());
  prefixes.erase(std::unique(prefixes.begin(), prefixes.end()), prefixes.end());

  // Sorted by (address, length), a prefix's ancestors come before it: a
  // stack of the current chain gives each prefix its nearest ancestor, and
  // its set is its own entries plus its ancestor's set.
  const std::size_t m = prefixes.size();
  std::vector<std::uint64_t> sets(m * words_, 0);
  for (std::size_t j = 0; j < positions_.size(); ++j) {
    const auto i = static_cast<std::size_t>(std::lower_bound(prefixes.begin(), prefixes.end(), key(j)) -
                                            prefixes.begin());
    sets[i * words_ + j / 64] |= std::uint64_t{1} << (j % 64);
  }
  std::vector<std::size_t> chain;
  for (std::size_t i = 0; i < m; ++i) {
    while (!chain.empty() && !key_contains(prefixes[chain.back()], prefixes[i])) chain.pop_back();
    if (!chain.empty())
      for (std::size_t w = 0; w < words_; ++w) sets[i * words_ + w] |= sets[chain.back() * words_ + w];
    chain.push_back(i);
  }
  const unsigned dim = source ? kSrc : kDst;
  std::vector<std::uint32_t> cls(m);
  std::vector<std::uint64_t> tmp(words_);
  for (std::size_t i = 0; i < m; ++i) {
    std::copy_n(sets.begin() + static_cast<std::ptrdiff_t>(i * words_), words_, tmp.begin());
    cls[i] = intern_cut(classes, tmp, dim);
  }
  // Addresses outside every prefix match no entry; that class exists only
  // when there are such addresses (no "any" prefix).
  std::uint32_t outside;
  if (prefixes.front().length == 0) {
    outside = cls.front();
  } else {
    std::fill(tmp.begin(), tmp.end(), 0);
    outside = classes.intern(tmp.data(), 0, words_);
  }

  TrieBuilder builder(prefixes, cls, trie);
  const std::uint32_t root = builder.root(outside);
  if (trie.size() > limits_.max_trie_cells) {
    return Error{family_name() + " " + (source ? "source" : "destination") + " trie needs " +
                 std::to_string(trie.size()) + " cells for " + std::to_string(m) + " distinct prefixes, over the limit of " +
                 std::to_string(limits_.max_trie_cells)};
  }
  return root;
}

// A port: one class per run of ports with the same entries, plus the
// unseen-port slot (permits with a port match and entries with none).
void FamilyCompiler::port_dim(bool source, ClassSet& classes, std::vector<std::uint32_t>& ports) {
  const unsigned dim = source ? kSport : kDport;
  struct Edge {
    std::uint32_t port;  // where entry j starts or stops matching
    std::size_t j;
    bool starts;
  };
  std::vector<Edge> edges;
  std::vector<std::uint64_t> active(words_, 0), unseen(words_, 0);
  for (std::size_t j = 0; j < positions_.size(); ++j) {
    const std::uint64_t bit = std::uint64_t{1} << (j % 64);
    if (wildcards_[j] & dim) {
      active[j / 64] |= bit;
      unseen[j / 64] |= bit;
      continue;
    }
    const gdoi::PortRange& r = source ? entry(j).source_port : entry(j).destination_port;
    edges.push_back({r.first, j, true});
    edges.push_back({std::uint32_t{r.last} + 1, j, false});
    if (permit(j)) unseen[j / 64] |= bit;
  }
  std::sort(edges.begin(), edges.end(), [](const Edge& a, const Edge& b) { return a.port < b.port; });
  std::vector<std::uint64_t> tmp(words_);
  std::size_t e = 0;
  for (std::uint32_t port = 0; port < 65536;) {
    for (; e < edges.size() && edges[e].port == port; ++e) {
      const std::uint64_t bit = std::uint64_t{1} << (edges[e].j % 64);
      if (edges[e].starts) active[edges[e].j / 64] |= bit;
      else active[edges[e].j / 64] &= ~bit;
    }
    const std::uint32_t next = e < edges.size() ? std::min<std::uint32_t>(edges[e].port, 65536) : 65536;
    tmp = active;
    ports.insert(ports.end(), next - port, intern_cut(classes, tmp, dim));
    port = next;
  }
  ports.push_back(intern_cut(classes, unseen, dim));
}

// The protocol: one class per protocol number, plus the unseen slot.
void FamilyCompiler::protocol_dim(ClassSet& classes, std::vector<std::uint32_t>& ports) {
  std::vector<std::uint64_t> tmp(words_);
  for (std::uint32_t proto = 0; proto < COVEY_PROTO_SLOTS; ++proto) {
    std::fill(tmp.begin(), tmp.end(), 0);
    for (std::size_t j = 0; j < positions_.size(); ++j) {
      const std::uint8_t p = entry(j).protocol;
      const bool match = p == 0 || (proto == COVEY_PROTO_UNSEEN ? permit(j) : p == proto);
      if (match) tmp[j / 64] |= std::uint64_t{1} << (j % 64);
    }
    ports.push_back(intern_cut(classes, tmp, kProto));
  }
}

crypto::Result<void> FamilyCompiler::reserve_cross(std::size_t rows, std::size_t cols, const char* what,
                                                   const char* row_name, const char* col_name) {
  const std::size_t cells = rows * cols;
  if (cross_cells_ + cells > limits_.max_cross_cells) {
    return Error{family_name() + " entries: the " + what + " table needs " + std::to_string(cells) + " cells (" +
                 std::to_string(rows) + " " + row_name + " classes x " + std::to_string(cols) + " " + col_name +
                 " classes), " + std::to_string(cross_cells_) + " already used, over the limit of " +
                 std::to_string(limits_.max_cross_cells) + " cells"};
  }
  cross_cells_ += cells;
  return {};
}

// A cross-product table: cell (r, c) is the class of the entries in both
// row class r and column class c, cut at the first terminal entry.
crypto::Result<void> FamilyCompiler::cross(const ClassSet& rows, const ClassSet& cols, unsigned dims, ClassSet& out,
                                           std::vector<std::uint32_t>& table, const char* what,
                                           const char* row_name, const char* col_name) {
  if (auto r = reserve_cross(rows.size(), cols.size(), what, row_name, col_name); !r) return Error{r.error()};
  const auto& term = terminal(dims);
  std::vector<std::uint64_t> tmp(words_, 0);
  for (std::uint32_t r = 0; r < rows.size(); ++r) {
    const auto [rlo, rhi] = rows.span(r);
    const std::uint64_t* rb = rows.bits(r);
    for (std::uint32_t c = 0; c < cols.size(); ++c) {
      const auto [clo, chi] = cols.span(c);
      const std::uint64_t* cb = cols.bits(c);
      const std::size_t lo = std::max(rlo, clo), hi = std::max(lo, std::min(rhi, chi));
      for (std::size_t w = lo; w < hi; ++w) tmp[w] = rb[w] & cb[w];
      cut(tmp.data(), term.data(), lo, hi);
      table.push_back(out.intern(tmp.data(), lo, hi));
    }
  }
  return {};
}

// The last table: cell (address class, service class) is the first entry
// in both, as a COVEY_RESULT_* value.
crypto::Result<void> FamilyCompiler::final_table(const ClassSet& rows, const ClassSet& cols,
                                                 std::vector<std::uint32_t>& table) {
  if (auto r = reserve_cross(rows.size(), cols.size(), "final", "address", "service"); !r) return Error{r.error()};
  for (std::uint32_t r = 0; r < rows.size(); ++r) {
    const auto [rlo, rhi] = rows.span(r);
    const std::uint64_t* rb = rows.bits(r);
    for (std::uint32_t c = 0; c < cols.size(); ++c) {
      const auto [clo, chi] = cols.span(c);
      const std::uint64_t* cb = cols.bits(c);
      std::uint32_t result = COVEY_RESULT_NONE;
      for (std::size_t w = std::max(rlo, clo); w < std::min(rhi, chi); ++w) {
        if (const std::uint64_t hit = rb[w] & cb[w]) {
          const std::size_t j = w * 64 + static_cast<std::size_t>(std::countr_zero(hit));
          result = static_cast<std::uint32_t>(positions_[j] + 1) | (permit(j) ? COVEY_RESULT_PERMIT : 0);
          break;
        }
      }
      table.push_back(result);
    }
  }
  return {};
}

crypto::Result<FamilyTables> FamilyCompiler::run() {
  FamilyTables t;
  covey_acl_head& h = t.head;
  h.entries = static_cast<std::uint32_t>(positions_.size());
  h.entry_base = 0;

  ClassSet src(words_), dst(words_), proto(words_), sport(words_), dport(words_);
  auto sroot = address_dim(true, src, t.trie);
  if (!sroot) return Error{sroot.error()};
  auto droot = address_dim(false, dst, t.trie);
  if (!droot) return Error{droot.error()};
  h.src_root = *sroot;
  h.dst_root = *droot;

  h.proto_base = static_cast<std::uint32_t>(t.ports.size());
  protocol_dim(proto, t.ports);
  h.sport_base = static_cast<std::uint32_t>(t.ports.size());
  port_dim(true, sport, t.ports);
  h.dport_base = static_cast<std::uint32_t>(t.ports.size());
  port_dim(false, dport, t.ports);

  ClassSet address(words_), protocol_port(words_), service(words_);
  h.sd_base = static_cast<std::uint32_t>(t.cross.size());
  h.sd_width = static_cast<std::uint32_t>(dst.size());
  if (auto r = cross(src, dst, kSrc | kDst, address, t.cross, "(source, destination)", "source", "destination"); !r)
    return Error{r.error()};
  h.ps_base = static_cast<std::uint32_t>(t.cross.size());
  h.ps_width = static_cast<std::uint32_t>(sport.size());
  if (auto r = cross(proto, sport, kProto | kSport, protocol_port, t.cross, "(protocol, source port)", "protocol",
                     "source port");
      !r)
    return Error{r.error()};
  h.xd_base = static_cast<std::uint32_t>(t.cross.size());
  h.xd_width = static_cast<std::uint32_t>(dport.size());
  if (auto r = cross(protocol_port, dport, kProto | kSport | kDport, service, t.cross,
                     "(protocol-port, destination port)", "protocol-port", "destination port");
      !r)
    return Error{r.error()};
  h.final_base = static_cast<std::uint32_t>(t.cross.size());
  h.final_width = static_cast<std::uint32_t>(service.size());
  if (auto r = final_table(address, service, t.cross); !r) return Error{r.error()};

  t.classes = {src.size(),     dst.size(),     proto.size(),         sport.size(),
               dport.size(),   address.size(), protocol_port.size(), service.size()};
  return t;
}

covey_acl_entry map_entry(const AclEntry& e, std::size_t position) {
  covey_acl_entry m{};
  m.action = e.action == AclEntry::Action::Permit ? COVEY_ACL_PERMIT : COVEY_ACL_DENY;
  m.position = static_cast<std::uint32_t>(position + 1);
  m.protocol = e.protocol;
  m.family = e.source.family;
  m.src_len = e.source.length;
  m.dst_len = e.destination.length;
  const bool ports = ports_apply(e);
  m.sport_first = ports ? e.source_port.first : 0;
  m.sport_last = ports ? e.source_port.last : 65535;
  m.dport_first = ports ? e.destination_port.first : 0;
  m.dport_last = ports ? e.destination_port.last : 65535;
  std::memcpy(m.src, e.source.address.data(), sizeof m.src);
  std::memcpy(m.dst, e.destination.address.data(), sizeof m.dst);
  return m;
}

std::string entry_name(const AclEntry& e, std::size_t position) {
  return "ACL entry " + std::to_string(position + 1) + " (" + e.str() + ")";
}

}  // namespace

bool entry_matches(const AclEntry& e, const PacketFields& p) {
  if (e.source.family != p.family) return false;
  const bool permit = e.action == AclEntry::Action::Permit;
  if (e.protocol != 0) {
    if (p.protocol == COVEY_PROTO_UNSEEN) {
      if (!permit) return false;
    } else if (e.protocol != p.protocol) {
      return false;
    }
  }
  if (!prefix_contains(e.source, p.source) || !prefix_contains(e.destination, p.destination)) return false;
  if (ports_apply(e)) {
    if (!port_matches(e.source_port, p.source_port, permit)) return false;
    if (!port_matches(e.destination_port, p.destination_port, permit)) return false;
  }
  return true;
}

std::optional<std::size_t> first_match(std::span<const AclEntry> acl, const PacketFields& packet) {
  for (std::size_t i = 0; i < acl.size(); ++i)
    if (entry_matches(acl[i], packet)) return i;
  return std::nullopt;
}

crypto::Result<CompiledAcl> compile_acl(std::span<const AclEntry> acl, const CompileLimits& limits) {
  if (acl.size() >= COVEY_RESULT_ENTRY)
    return Error{"ACL has " + std::to_string(acl.size()) + " entries, more than the classifier can number"};
  CompiledAcl out;
  std::vector<std::size_t> v4, v6;
  for (std::size_t i = 0; i < acl.size(); ++i) {
    const AclEntry& e = acl[i];
    if (e.source.family != 4 && e.source.family != 6)
      return Error{entry_name(e, i) + ": address family " + std::to_string(e.source.family) + " is neither 4 nor 6"};
    if (e.destination.family != e.source.family) {
      return Error{entry_name(e, i) + ": source is IPv" + std::to_string(e.source.family) +
                   " but destination is IPv" + std::to_string(e.destination.family)};
    }
    const unsigned max = e.source.family == 6 ? 128 : 32;
    if (e.source.length > max || e.destination.length > max)
      return Error{entry_name(e, i) + ": prefix length beyond /" + std::to_string(max)};
    if (ports_apply(e) && (e.source_port.first > e.source_port.last ||
                           e.destination_port.first > e.destination_port.last))
      return Error{entry_name(e, i) + ": a port range is backwards"};
    (e.source.family == 6 ? v6 : v4).push_back(i);
    out.entries.push_back(map_entry(e, i));
  }
  for (auto [family, positions, tables] :
       {std::tuple{std::uint8_t{4}, &v4, &out.v4}, std::tuple{std::uint8_t{6}, &v6, &out.v6}}) {
    if (positions->empty()) {
      tables->head.acl_length = static_cast<std::uint32_t>(acl.size());
      continue;
    }
    auto t = FamilyCompiler(acl, *positions, family, limits).run();
    if (!t) return Error{t.error()};
    *tables = std::move(*t);
    tables->head.acl_length = static_cast<std::uint32_t>(acl.size());
  }
  return out;
}

std::size_t CompiledAcl::bytes() const {
  std::size_t cells = 0;
  for (const FamilyTables* t : {&v4, &v6}) cells += t->trie.size() + t->ports.size() + t->cross.size();
  return cells * sizeof(std::uint32_t) + entries.size() * sizeof(covey_acl_entry);
}

std::string CompiledAcl::summary() const {
  std::string s = std::to_string(entries.size()) + " entries";
  for (const FamilyTables* t : {&v4, &v6}) {
    if (t->head.entries == 0) continue;
    const ClassCounts& c = t->classes;
    s.append(t == &v4 ? "; IPv4: " : "; IPv6: ")
        .append(std::to_string(t->head.entries))
        .append(" entries, classes src ")
        .append(std::to_string(c.source))
        .append(" dst ")
        .append(std::to_string(c.destination))
        .append(" proto ")
        .append(std::to_string(c.protocol))
        .append(" sport ")
        .append(std::to_string(c.source_port))
        .append(" dport ")
        .append(std::to_string(c.destination_port))
        .append(" address ")
        .append(std::to_string(c.address))
        .append(" service ")
        .append(std::to_string(c.service))
        .append(", cells trie ")
        .append(std::to_string(t->trie.size()))
        .append(" ports ")
        .append(std::to_string(t->ports.size()))
        .append(" cross ")
        .append(std::to_string(t->cross.size()));
  }
  s.append("; ").append(std::to_string((bytes() + 1023) / 1024)).append(" KiB");
  return s;
}

std::uint32_t classify(const FamilyTables& t, const PacketFields& p) {
  const covey_acl_head& h = t.head;
  if (h.entries == 0) return COVEY_RESULT_NONE;
  auto at = [](const std::vector<std::uint32_t>& v, std::uint64_t i, std::uint32_t& out) {
    if (i >= v.size()) return false;
    out = v[i];
    return true;
  };
  const unsigned bytes = p.family == 6 ? 16 : 4;
  auto walk = [&](std::uint32_t root, const std::array<std::uint8_t, 16>& a, std::uint32_t& cls) {
    std::uint32_t words[4];
    std::memcpy(words, a.data(), sizeof words);
    const std::uint64_t base = h.trie_base;
    std::uint32_t cell = 0;
    if (!at(t.trie, base + root + (std::uint32_t{a[0]} << 8 | a[1]), cell)) return false;
    unsigned i = 2;
    for (int step = 0; step <= COVEY_TRIE_STEPS; ++step) {
      if (!(cell & (COVEY_TRIE_NEXT | COVEY_TRIE_SKIP))) {
        cls = cell;
        return true;
      }
      if (cell & COVEY_TRIE_NEXT) {
        if (i >= bytes || !at(t.trie, base + (cell & COVEY_TRIE_OFFSET) + a[i], cell)) return false;
        ++i;
        continue;
      }
      const std::uint64_t r = base + (cell & COVEY_TRIE_OFFSET);
      if (r % COVEY_CELLS_PER_ROW != 0 || r + COVEY_CELLS_PER_ROW > t.trie.size()) return false;
      covey_trie_skip rec;
      std::memcpy(&rec, t.trie.data() + r, sizeof rec);
      std::uint32_t diff = 0;
      for (int w = 0; w < 4; ++w) diff |= (words[w] ^ rec.key[w]) & rec.mask[w];
      if (diff) {
        cls = rec.miss;
        return true;
      }
      cell = rec.next;
      i = rec.resume;
    }
    return false;
  };
  std::uint32_t s = 0, d = 0, pr = 0, sp = 0, dp = 0, ac = 0, x = 0, sv = 0, r = 0;
  if (!walk(h.src_root, p.source, s) || !walk(h.dst_root, p.destination, d)) return COVEY_RESULT_ERROR;
  if (p.protocol >= COVEY_PROTO_SLOTS || p.source_port >= COVEY_PORT_SLOTS || p.destination_port >= COVEY_PORT_SLOTS)
    return COVEY_RESULT_ERROR;
  if (!at(t.ports, std::uint64_t{h.proto_base} + p.protocol, pr) ||
      !at(t.ports, std::uint64_t{h.sport_base} + p.source_port, sp) ||
      !at(t.ports, std::uint64_t{h.dport_base} + p.destination_port, dp))
    return COVEY_RESULT_ERROR;
  if (!at(t.cross, std::uint64_t{h.sd_base} + std::uint64_t{s} * h.sd_width + d, ac) ||
      !at(t.cross, std::uint64_t{h.ps_base} + std::uint64_t{pr} * h.ps_width + sp, x) ||
      !at(t.cross, std::uint64_t{h.xd_base} + std::uint64_t{x} * h.xd_width + dp, sv) ||
      !at(t.cross, std::uint64_t{h.final_base} + std::uint64_t{ac} * h.final_width + sv, r))
    return COVEY_RESULT_ERROR;
  return r;
}

std::uint32_t classify(const CompiledAcl& acl, const PacketFields& packet) {
  return classify(acl.family(packet.family), packet);
}

}  // namespace covey::datapath
