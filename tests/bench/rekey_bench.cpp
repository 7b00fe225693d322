// What one rekey costs the key server to make (issue: rekey, "Multicast
// rekey: message size and time to build and sign"): ks::Rekeyer::rekey on
// a group with multicast transport, from the new TEK to the signed,
// encrypted datagram handed out, with the state file write left out (its
// cost is the disk's). Per signature scheme; the datagram size is the
// "push_bytes" counter. A multicast rekey is this plus one sendto.
#include <benchmark/benchmark.h>

#include "crypto/sign.h"
#include "ks/rekey.h"

using namespace covey;

namespace {

gdoi::GroupPolicy multicast_policy(gdoi::KekPolicy::Signature sig) {
  gdoi::GroupPolicy p;
  p.name = "GET_VPN";
  p.identity = 134;
  gdoi::AclEntry deny_gdoi, permit;
  deny_gdoi.action = gdoi::AclEntry::Action::Deny;  // deny udp any eq 848 any eq 848
  deny_gdoi.protocol = 17;
  deny_gdoi.source = *gdoi::Prefix::parse("0.0.0.0/0");
  deny_gdoi.destination = *gdoi::Prefix::parse("0.0.0.0/0");
  deny_gdoi.source_port = deny_gdoi.destination_port = gdoi::PortRange{848, 848};
  permit.source = *gdoi::Prefix::parse("192.168.0.0/16");
  permit.destination = *gdoi::Prefix::parse("192.168.0.0/16");
  p.acl = {deny_gdoi, permit};
  p.kek.signature = sig;
  p.kek.signature_key_bits = sig == gdoi::KekPolicy::Signature::Rsa ? 2048 : 256;
  p.rekey.mode = gdoi::RekeyTransport::Mode::Multicast;
  p.rekey.multicast_address = *gdoi::Prefix::parse("239.192.1.1/32");
  return p;
}

void rekey(benchmark::State& state, gdoi::KekPolicy::Signature sig) {
  auto key = sig == gdoi::KekPolicy::Signature::Rsa ? crypto::PrivateKey::generate_rsa(2048)
                                                      : crypto::PrivateKey::generate_ec(crypto::EcCurve::P256);
  ks::Groups groups;
  std::int64_t now = 1'000'000;
  auto g = ks::Group::create(multicast_policy(sig), ks::Authorization{}, std::move(*key), *Address::parse("10.1.12.1"), now);
  if (!g) {
    state.SkipWithError(g.error().c_str());
    return;
  }
  groups.add(std::move(*g));
  ks::Group& group = *groups.find(134);
  ks::Rekeyer rekeyer(groups);
  std::size_t bytes = 0;
  for (auto _ : state) {
    auto seq = rekeyer.rekey(group, ks::RekeyReason::Operator, ++now * 1000);  // takes ms
    auto out = rekeyer.take_outgoing();
    if (!seq || out.size() != 1) {
      state.SkipWithError(seq ? "not one multicast datagram" : seq.error().c_str());
      return;
    }
    bytes = out.front().datagram->size();
    rekeyer.take_events();
    benchmark::DoNotOptimize(out);
  }
  state.counters["push_bytes"] = static_cast<double>(bytes);
}

void BM_MulticastRekey_Rsa2048(benchmark::State& s) { rekey(s, gdoi::KekPolicy::Signature::Rsa); }
void BM_MulticastRekey_EcdsaP256(benchmark::State& s) { rekey(s, gdoi::KekPolicy::Signature::EcdsaP256); }
BENCHMARK(BM_MulticastRekey_Rsa2048)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MulticastRekey_EcdsaP256)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
