// The raw-crypto bound for one registration (issue: gm-swarm): the OpenSSL
// work, through covey::crypto, that Main Mode plus GROUPKEY-PULL costs each
// side with the default transform (aes-256, sha256, PSK), and nothing else:
// no parsing, no encoding, no sockets. tests/bench/registration_bench.py
// turns these into the registrations/s the machine's crypto allows and
// compares gm-swarm's measured rate against it.
//
// Counted per side, from ike/main_mode.cpp and gdoi/pull.cpp (the KS's
// side is the responder, the member's the initiator; both match):
//   DH      1 keygen (KE), 1 peer-value check, 1 derive (g^xy)
//   prf     10 HMAC-SHA256: SKEYID, SKEYID_d/a/e, HASH_I, HASH_R,
//           HASH(1), HASH(2), HASH(3), HASH(4)
//           (encryption_key: none, SKEYID_e is already 32 bytes for aes-256)
//   digest  2 SHA-256: the phase-1 IV, the GROUPKEY-PULL IV
//   CBC     3 encryptions and 3 decryptions, AES-256, of the sizes on the
//           wire (lengths of the encrypted bodies, from a capture):
//           MM5 80, MM6 48, PULL1 96, PULL2 256, PULL3 48, PULL4 528 octets
//   random  member 4 draws (CKY-I, Ni, M-ID, Ni of the pull); KS 3 (CKY-R,
//           Nr, Nr of the pull)
// Not counted: the KS's group key material (made once per group, not per
// member) and the IKE/GDOI codec.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "crypto/cipher.h"
#include "crypto/dh.h"
#include "crypto/gdoi.h"
#include "crypto/hash.h"
#include "crypto/ikev1.h"
#include "crypto/random.h"

using namespace covey;
using namespace covey::crypto;

namespace {

constexpr auto kHash = HashAlgorithm::Sha256;
constexpr auto kCipher = CipherAlgorithm::Aes256Cbc;

// Encrypted body lengths, message by message.
constexpr std::size_t kMm5 = 80, kMm6 = 48, kPull1 = 96, kPull2 = 256, kPull3 = 48, kPull4 = 528;

template <class T>
T must(Result<T> r, benchmark::State& state) {
  if (!r) state.SkipWithError(r.error().c_str());
  return r ? std::move(*r) : T{};
}

// What both sides hold that is not the subject of the measurement: the
// peer's KE (made on the other side), the PSK, the messages' octets.
struct Fixture {
  DhGroup group;
  Bytes peer_public;
  Bytes psk = Bytes(24, 0x42);
  Bytes sai_b = Bytes(44, 0x01), id_b = Bytes(8, 0x7f);
  Bytes cky_i = Bytes(8, 0x11), cky_r = Bytes(8, 0x22);
  Bytes payload_pad = Bytes(kPull4, 0x5a);

  static Fixture make(std::uint16_t id) {
    auto g = DhGroup::from_id(id);
    auto peer = g->generate();
    return Fixture{*g, peer->public_value()};
  }
};

// One side's Main Mode: what on_key_exchange and on_authentication compute.
void main_mode_side(const Fixture& f, bool initiator, benchmark::State& state) {
  benchmark::DoNotOptimize(random_bytes(8));  // our cookie
  auto group = DhGroup::from_id(f.group.id());
  auto peer = group->validate_peer_public_value(f.peer_public);
  auto pair = group->generate();
  if (!peer || !pair) {
    state.SkipWithError((peer ? pair.error() : peer.error()).c_str());
    return;
  }
  Bytes nonce = must(random_bytes(32), state);
  SecretBytes gxy = must(pair->shared_secret(*peer), state);
  const Bytes& g_xi = initiator ? pair->public_value() : f.peer_public;
  const Bytes& g_xr = initiator ? f.peer_public : pair->public_value();
  SecretBytes skeyid = must(ikev1::skeyid_psk(kHash, f.psk, nonce, nonce), state);
  auto keys = must(ikev1::derive_skeyid_dae(kHash, skeyid, gxy, f.cky_i, f.cky_r), state);
  SecretBytes key = must(ikev1::encryption_key(kHash, keys.e, kCipher), state);
  Bytes iv = must(ikev1::phase1_iv(kHash, kCipher, g_xi, g_xr), state);
  ikev1::Phase1Transcript t{g_xi, g_xr, f.cky_i, f.cky_r, f.sai_b};
  benchmark::DoNotOptimize(ikev1::hash_i(kHash, skeyid, t, f.id_b));
  benchmark::DoNotOptimize(ikev1::hash_r(kHash, skeyid, t, f.id_b));
  ByteView mine = ByteView(f.payload_pad).first(initiator ? kMm5 : kMm6);
  ByteView theirs = ByteView(f.payload_pad).first(initiator ? kMm6 : kMm5);
  benchmark::DoNotOptimize(cbc_encrypt(kCipher, key, iv, mine));
  benchmark::DoNotOptimize(cbc_decrypt(kCipher, key, iv, theirs));
}

// One side's GROUPKEY-PULL: four HASHes, the exchange's IV, two messages
// sealed and two opened.
void pull_side(const Fixture& f, bool initiator, benchmark::State& state) {
  SecretBytes skeyid_a(ByteView(f.payload_pad).first(32));
  SecretBytes key(ByteView(f.payload_pad).first(32));
  Bytes last_block(16, 0x33);
  if (initiator) benchmark::DoNotOptimize(random_bytes(4));  // M-ID
  Bytes nonce = must(random_bytes(32), state);
  Bytes iv = must(ikev1::phase2_iv(kHash, kCipher, last_block, 0x01020304), state);
  ByteView body = f.payload_pad;
  benchmark::DoNotOptimize(gdoi::hash1(kHash, skeyid_a, 0x01020304, body.first(36), body.first(16)));
  benchmark::DoNotOptimize(gdoi::hash2(kHash, skeyid_a, 0x01020304, nonce, body.first(36), body.first(220)));
  benchmark::DoNotOptimize(gdoi::hash3(kHash, skeyid_a, 0x01020304, nonce, nonce, {}));
  benchmark::DoNotOptimize(gdoi::hash4(kHash, skeyid_a, 0x01020304, nonce, nonce, body.first(8), body.first(480)));
  // Member seals 1 and 3 and opens 2 and 4; the KS the reverse.
  auto crypt = [&](bool seal, std::size_t n) {
    if (seal) benchmark::DoNotOptimize(cbc_encrypt(kCipher, key, iv, body.first(n)));
    else benchmark::DoNotOptimize(cbc_decrypt(kCipher, key, iv, body.first(n)));
  };
  crypt(initiator, kPull1);
  crypt(!initiator, kPull2);
  crypt(initiator, kPull3);
  crypt(!initiator, kPull4);
}

// The member's crypto for one registration, DH group from the argument.
void BM_RegistrationCryptoGm(benchmark::State& state) {
  Fixture f = Fixture::make(static_cast<std::uint16_t>(state.range(0)));
  for (auto _ : state) {
    main_mode_side(f, true, state);
    pull_side(f, true, state);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RegistrationCryptoGm)->Arg(19)->Arg(14)->Unit(benchmark::kMicrosecond);

// The key server's crypto for one registration.
void BM_RegistrationCryptoKs(benchmark::State& state) {
  Fixture f = Fixture::make(static_cast<std::uint16_t>(state.range(0)));
  for (auto _ : state) {
    main_mode_side(f, false, state);
    pull_side(f, false, state);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RegistrationCryptoKs)->Arg(19)->Arg(14)->Unit(benchmark::kMicrosecond);

// The parts, to see where the time goes.
void BM_DhGenerate(benchmark::State& state) {
  auto g = DhGroup::from_id(static_cast<std::uint16_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(g->generate());
}
BENCHMARK(BM_DhGenerate)->Arg(19)->Arg(14)->Unit(benchmark::kMicrosecond);

void BM_DhValidatePeer(benchmark::State& state) {
  Fixture f = Fixture::make(static_cast<std::uint16_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(f.group.validate_peer_public_value(f.peer_public));
}
BENCHMARK(BM_DhValidatePeer)->Arg(19)->Arg(14)->Unit(benchmark::kMicrosecond);

void BM_DhSharedSecret(benchmark::State& state) {
  Fixture f = Fixture::make(static_cast<std::uint16_t>(state.range(0)));
  auto pair = f.group.generate();
  auto peer = f.group.validate_peer_public_value(f.peer_public);
  for (auto _ : state) benchmark::DoNotOptimize(pair->shared_secret(*peer));
}
BENCHMARK(BM_DhSharedSecret)->Arg(19)->Arg(14)->Unit(benchmark::kMicrosecond);

void BM_PrfSha256(benchmark::State& state) {
  Bytes key(32, 1), data(static_cast<std::size_t>(state.range(0)), 2);
  for (auto _ : state) benchmark::DoNotOptimize(prf(kHash, key, {data}));
}
BENCHMARK(BM_PrfSha256)->Arg(64)->Arg(512);

void BM_CbcEncryptAes256(benchmark::State& state) {
  Bytes key(32, 1), iv(16, 2), data(static_cast<std::size_t>(state.range(0)), 3);
  for (auto _ : state) benchmark::DoNotOptimize(cbc_encrypt(kCipher, key, iv, data));
}
BENCHMARK(BM_CbcEncryptAes256)->Arg(48)->Arg(528);

}  // namespace

BENCHMARK_MAIN();
