// Codec speed. Target (issue: foundation): decoding and validating a full
// registration message 4 under 2 us on one core.
#include <benchmark/benchmark.h>

#include "samples.h"
#include "wire/message.h"

using namespace covey;
using namespace covey::wire;

namespace {

Header pull_header() { return samples::header(ExchangeType::GroupkeyPull, 0x1a2b3c4d); }

// Message 4 as covey-ks sends it, plus the policy of message 2 (SA with KEK,
// GAP and one TEK): everything a GM validates to come out holding keys.
Bytes full_registration_message() {
  std::vector<Payload> p = samples::pull4();
  p.insert(p.begin() + 1, samples::group_sa());
  return encode_message(pull_header(), p);
}

void BM_DecodeRegistrationMessage4(benchmark::State& state) {
  Bytes d = full_registration_message();
  for (auto _ : state) {
    auto m = decode_message(d);
    if (!m.ok()) state.SkipWithError(m.error().message().c_str());
    benchmark::DoNotOptimize(m);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * d.size()));
  state.counters["octets"] = static_cast<double>(d.size());
}
BENCHMARK(BM_DecodeRegistrationMessage4);

void BM_DecodeRegistrationMessage2(benchmark::State& state) {
  Bytes d = encode_message(pull_header(), samples::pull2());
  for (auto _ : state) benchmark::DoNotOptimize(decode_message(d));
}
BENCHMARK(BM_DecodeRegistrationMessage2);

void BM_EncodeRegistrationMessage4(benchmark::State& state) {
  std::vector<Payload> p = samples::pull4();
  p.insert(p.begin() + 1, samples::group_sa());
  Header h = pull_header();
  for (auto _ : state) benchmark::DoNotOptimize(encode_message(h, p));
}
BENCHMARK(BM_EncodeRegistrationMessage4);

void BM_DecodePush(benchmark::State& state) {
  Bytes d = samples::all_datagrams().back();
  for (auto _ : state) benchmark::DoNotOptimize(decode_message(d));
}
BENCHMARK(BM_DecodePush);

}  // namespace

BENCHMARK_MAIN();
