// The key server's state file at 100,000 members (issue 14, "Cost per
// member"): a save of every member (fsync included, so wall time), a
// restore into freshly configured groups, and what the lazy member saves
// cost per registration when members join a key server that already holds
// 10,000 or 100,000: each iteration admits kBatch members as registrations
// do (Group::admit, one SID each) and then saves as covey-ks's lazy save
// does (ks::StateFile::save), counting the save's CPU per registration.
//
// Members are spread over two groups of half each: a group hands out at
// most 65,535 SIDs (RFC 6407 SIDs here are 16 bits), one per registration.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>

#include "gdoi/vendor_id.h"
#include "ks/state_store.h"
#include "ks/store.h"

using namespace covey;

namespace {

namespace fs = std::filesystem;

constexpr std::uint32_t kGroups[] = {134, 135};

gdoi::GroupPolicy policy(std::uint32_t identity) {
  gdoi::GroupPolicy p;
  p.name = "GROUP_" + std::to_string(identity);
  p.identity = identity;
  gdoi::AclEntry permit;
  permit.source = *gdoi::Prefix::parse("10.0.0.0/8");
  permit.destination = *gdoi::Prefix::parse("10.0.0.0/8");
  p.acl = {permit};
  p.kek.signature = gdoi::KekPolicy::Signature::EcdsaP256;
  p.kek.signature_key_bits = 256;
  return p;
}

std::unique_ptr<ks::Groups> make_groups() {
  auto groups = std::make_unique<ks::Groups>();
  static const std::string pem = *crypto::PrivateKey::generate_ec(crypto::EcCurve::P256)->to_pem();
  for (std::uint32_t id : kGroups) {
    auto key = crypto::PrivateKey::from_pem(pem);
    auto g = ks::Group::create(policy(id), ks::Authorization{}, std::move(*key), *Address::parse("127.0.0.1"),
                               1'700'000'000);
    groups->add(std::move(*g));
  }
  return groups;
}

// Member i: 127.0.0.0/8 from 127.1.0.1 on, as gm-swarm sends from.
ike::Phase1Sa member_sa(std::uint32_t i) {
  ike::Phase1Sa sa;
  const std::uint32_t a = (127u << 24) + (1u << 16) + 1 + i;
  sa.peer.address.family = 4;
  for (int b = 0; b < 4; ++b) sa.peer.address.bytes[static_cast<std::size_t>(b)] = static_cast<std::uint8_t>(a >> (24 - 8 * b));
  sa.peer.port = static_cast<std::uint16_t>(20000 + i % 40000);
  sa.peer_vendor_ids = {gdoi::covey_vendor_id()};
  return sa;
}

// Admits member `i` into its group as a registration does, reserving
// SIDs as Groups::admit would (in memory: the save that follows writes the mark).
void admit(ks::Groups& groups, std::uint32_t i, std::int64_t now) {
  ks::Group& g = *groups.find(kGroups[i % 2]);
  if (!g.sids_reserved_for(1)) g.set_sid_mark(g.sid_mark() + ks::Groups::kSidBlock);
  auto a = g.admit(member_sa(i), 1, now, *Address::parse("127.0.0.1"));
  if (!a) throw std::runtime_error(a.error());
  groups.mark_state_dirty();
}

struct Dir {
  fs::path path;
  Dir() {
    char tmpl[] = "/tmp/covey-state-bench-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~Dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

double cpu_s() {
  timespec t{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// A full save of N members, as at shutdown or a rekey: wall time, fsync included.
void BM_StateSave(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  Dir dir;
  auto groups = make_groups();
  for (std::uint32_t i = 0; i < n; ++i) admit(*groups, i, 1'700'000'000 + i / 1000);
  const std::string path = ks::state_file_path(dir.path.string());
  for (auto _ : state) {
    auto r = ks::save_state(path, *groups);
    if (!r) {
      state.SkipWithError(r.error().c_str());
      return;
    }
  }
  state.counters["file_bytes"] = static_cast<double>(fs::file_size(path));
}

// The restore covey-ks does at start: the file read, checked and parsed
// into the configured groups.
void BM_StateRestore(benchmark::State& state) {
  const auto n = static_cast<std::uint32_t>(state.range(0));
  Dir dir;
  auto groups = make_groups();
  for (std::uint32_t i = 0; i < n; ++i) admit(*groups, i, 1'700'000'000 + i / 1000);
  ks::StateFile file(dir.path.string());
  if (auto r = file.save(*groups); !r) {
    state.SkipWithError(r.error().c_str());
    return;
  }
  std::size_t restored = 0;
  for (auto _ : state) {
    auto fresh = make_groups();
    auto r = file.restore(*fresh);
    if (!r || !*r) {
      state.SkipWithError(r ? "nothing restored" : r.error().c_str());
      return;
    }
    restored = 0;
    for (std::uint32_t id : kGroups) restored += fresh->find(id)->members().size();
    state.PauseTiming();
    fresh.reset();  // freeing 100,000 members is not the restore's time
    state.ResumeTiming();
  }
  if (restored != n) state.SkipWithError("restored another member count");
}

// Registrations into a key server that already holds N members, saved
// lazily as covey-ks does: kBatch registrations (a second's worth at
// 1,000 registrations/s), then one save, which appends them to the
// journal. The batch's admissions are not timed. Counters, CPU per
// registration: the appends; the snapshots that compact the journal,
// amortized (a snapshot's CPU, the first save's and any in the run, times
// the journal bytes a registration adds over the snapshot's size: one
// snapshot per snapshot-size of journal); and their sum.
void BM_StateSavePerRegistration(benchmark::State& state) {
  constexpr std::uint32_t kBatch = 1000;
  const auto n = static_cast<std::uint32_t>(state.range(0));
  Dir dir;
  auto groups = make_groups();
  std::uint32_t next = 0;
  for (; next < n; ++next) admit(*groups, next, 1'700'000'000);
  ks::StateFile file(dir.path.string());
  const std::string path = ks::state_file_path(dir.path.string());
  const std::string journal = path + ks::kJournalSuffix;
  double snapshot_cpu = 0, append_cpu = 0, journal_bytes = 0;
  int snapshots = 0;
  auto save = [&]() -> bool {
    const double before_bytes = fs::exists(journal) ? static_cast<double>(fs::file_size(journal)) : 0;
    const double c0 = cpu_s();
    auto r = file.save(*groups);
    const double cpu = cpu_s() - c0;
    if (!r) {
      state.SkipWithError(r.error().c_str());
      return false;
    }
    groups->mark_state_written();
    if (fs::exists(journal)) {
      append_cpu += cpu;
      journal_bytes += static_cast<double>(fs::file_size(journal)) - before_bytes;
    } else {
      snapshot_cpu += cpu;
      ++snapshots;
    }
    return true;
  };
  if (!save()) return;  // the snapshot a key server starts with
  std::uint64_t registrations = 0;
  for (auto _ : state) {
    state.PauseTiming();
    // Members beyond N register anew; past the SID space's headroom the
    // first members register again (a re-registration is a change too).
    for (std::uint32_t k = 0; k < kBatch; ++k, ++next) admit(*groups, next % (n + 20'000), 1'700'000'100);
    registrations += kBatch;
    state.ResumeTiming();
    if (!save()) return;
  }
  const double regs = static_cast<double>(registrations);
  const double append_us = append_cpu * 1e6 / regs;
  const double compaction_us =
      snapshot_cpu / snapshots * 1e6 * (journal_bytes / regs) / static_cast<double>(fs::file_size(path));
  state.counters["append_cpu_us_per_registration"] = append_us;
  state.counters["compaction_cpu_us_per_registration"] = compaction_us;
  state.counters["save_cpu_us_per_registration"] = append_us + compaction_us;
  state.counters["journal_bytes_per_registration"] = journal_bytes / regs;
}

}  // namespace

BENCHMARK(BM_StateSave)->Arg(10'000)->Arg(100'000)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_StateRestore)->Arg(10'000)->Arg(100'000)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
// CPU per registration of a few milliseconds' saves swings with the
// machine's load: the report takes the median of three runs.
BENCHMARK(BM_StateSavePerRegistration)
    ->Arg(10'000)
    ->Arg(100'000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(20)
    ->Repetitions(3);

BENCHMARK_MAIN();
