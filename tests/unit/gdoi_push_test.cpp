// GROUPKEY-PUSH (RFC 6407 4) and its acknowledgement (RFC 8263) in memory:
// pushes built by covey's key server from a real ks::Group, received by a
// member holding the KEK that registration gave it. Refusals must leave
// the member's rekey SA exactly as it was.
#include <gtest/gtest.h>

#include "python_kat.h"

#include "fixtures.h"

#include <cstdio>
#include <map>
#include <sstream>

#include "crypto/gdoi.h"
#include "crypto/random.h"
#include "gdoi/push.h"
#include "ks/group.h"
#include "wire/message.h"

using namespace covey;
using covey::fixtures::prefix;
using covey::fixtures::psk;
using namespace covey::gdoi;
using covey::crypto::CipherAlgorithm;
using covey::crypto::HashAlgorithm;
using R = PushRefused::Reason;

namespace {


GroupPolicy lab_policy(KekPolicy::Signature sig, CipherAlgorithm kek_cipher) {
  GroupPolicy p = fixtures::group_policy();
  p.kek.cipher = kek_cipher;
  p.kek.signature = sig;
  p.kek.signature_hash = HashAlgorithm::Sha256;
  p.kek.signature_key_bits = sig == KekPolicy::Signature::Rsa ? 2048 : 256;
  return p;
}

crypto::PrivateKey clone_key(const crypto::PrivateKey& k) { return crypto::PrivateKey::from_pem(*k.to_pem()).value(); }

crypto::PrivateKey new_key(KekPolicy::Signature sig) {
  if (sig == KekPolicy::Signature::Rsa) return crypto::PrivateKey::generate_rsa(2048).value();
  return crypto::PrivateKey::generate_ec(crypto::EcCurve::P256).value();
}

const std::int64_t kNow = 1000;
const Address kKs = *Address::parse("10.1.12.1");
const Address kGm = *Address::parse("10.1.23.3");

// A key server's group and a member that registered with it: the member
// decodes message 2's SA and message 4's KD exactly as the pull does.
struct Lab {
  std::unique_ptr<ks::Group> group;
  crypto::PrivateKey signing_key;
  std::optional<PushReceiver> member;

  explicit Lab(KekPolicy::Signature sig = KekPolicy::Signature::Rsa, CipherAlgorithm kek_cipher = CipherAlgorithm::Aes256Cbc)
      : signing_key(new_key(sig)) {
    auto g = ks::Group::create(lab_policy(sig, kek_cipher), ks::Authorization{{prefix("10.1.0.0", 16)}, {}}, clone_key(signing_key), kKs, kNow);
    EXPECT_TRUE(g.ok()) << g.error();
    group = std::move(*g);
    auto offer = group->offer(PeerTraits{true}, kNow * 1000);  // ms
    auto sa = decode_group_sa(offer.sa);
    EXPECT_TRUE(sa.ok()) << sa.error();
    auto keys = decode_key_download(encode_key_download(offer.keys), *sa);
    EXPECT_TRUE(keys.ok()) << keys.error();
    bool ack = false;
    for (const auto& a : offer.sa.kek->attributes) ack |= a.type == wire::kek_attr::KekAckRequested;
    auto r = PushReceiver::create(*keys->kek, sa->policy.kek, group->seq(), ack);
    EXPECT_TRUE(r.ok()) << r.error();
    member.emplace(std::move(*r));
  }

  // A push of one new TEK (and, if given, a new KEK), as the KS makes it.
  PushContent rekey(std::uint32_t seq, const Tek& tek, const std::optional<Kek>& new_kek = std::nullopt) const {
    PushContent c;
    c.seq = seq;
    std::optional<KekAnnouncement> ann;
    if (new_kek) ann = KekAnnouncement{new_kek->spi, kKs, new_kek->lifetime_s};
    c.sa = encode_group_sa(group->policy(), ann, {tek}, false, PeerTraits{true});
    c.keys.teks = {tek};
    c.keys.kek = new_kek;
    return c;
  }

  Bytes push(const PushContent& c, const Kek& under) const {
    auto d = build_push(c, under, group->policy().kek, signing_key);
    EXPECT_TRUE(d.ok()) << d.error();
    return d.ok() ? *d : Bytes{};
  }
  Bytes push(const PushContent& c) const { return push(c, group->kek()); }

  Tek tek() {
    auto t = group->new_tek(kNow);
    EXPECT_TRUE(t.ok()) << t.error();
    return *t;
  }

  Kek fresh_kek() const {
    Kek k;
    auto spi = *crypto::random_bytes(16);
    std::copy(spi.begin(), spi.end(), k.spi.begin());
    k.algorithm_key = *crypto::random_secret(crypto::block_size(group->policy().kek.cipher) +
                                             crypto::key_size(group->policy().kek.cipher));
    k.signature_public_key = group->kek().signature_public_key;
    k.lifetime_s = 86400;
    return k;
  }
};

// What a refusal must not change.
struct Snapshot {
  KekSpi spi;
  Bytes key;
  std::uint32_t seq;
  explicit Snapshot(const PushReceiver& r)
      : spi(r.kek().spi), key(r.kek().algorithm_key.view().begin(), r.kek().algorithm_key.view().end()), seq(r.seq()) {}
  bool operator==(const Snapshot&) const = default;
};

const PushAccepted* accepted(const PushResult& r) { return std::get_if<PushAccepted>(&r); }
const PushRefused* refused(const PushResult& r) { return std::get_if<PushRefused>(&r); }
std::string describe(const PushResult& r) {
  if (auto* f = refused(r)) return std::string(f->counter()) + ": " + f->detail;
  return "accepted SEQ " + std::to_string(std::get<PushAccepted>(r).seq);
}

void expect_same_tek(const Tek& got, const Tek& want) {
  EXPECT_EQ(got.spi, want.spi);
  EXPECT_TRUE(crypto::equal_constant_time(got.encryption_key, want.encryption_key));
  EXPECT_TRUE(crypto::equal_constant_time(got.integrity_key, want.integrity_key));
}

class Push : public ::testing::TestWithParam<KekPolicy::Signature> {};

}  // namespace

INSTANTIATE_TEST_SUITE_P(Signatures, Push,
                         ::testing::Values(KekPolicy::Signature::Rsa, KekPolicy::Signature::EcdsaP256),
                         [](const auto& param_info) { return param_info.param == KekPolicy::Signature::Rsa ? "Rsa" : "EcdsaP256"; });

TEST_P(Push, HeaderIsTheRfcsAndTheMemberGetsTheNewTek) {
  Lab lab(GetParam());
  Tek t = lab.tek();
  Bytes d = lab.push(lab.rekey(1, t));
  auto h = wire::decode_header(d);
  ASSERT_TRUE(h.ok()) << h.error().message();
  // RFC 6407 4.2: cookies are the KEK SPI, exchange 33, only E set, M-ID 0.
  EXPECT_TRUE(std::equal(h->initiator_cookie.begin(), h->initiator_cookie.end(), lab.group->kek().spi.begin()));
  EXPECT_TRUE(std::equal(h->responder_cookie.begin(), h->responder_cookie.end(), lab.group->kek().spi.begin() + 8));
  EXPECT_EQ(h->exchange, 33);
  EXPECT_EQ(h->flags, wire::kFlagEncryption);
  EXPECT_EQ(h->message_id, 0u);
  EXPECT_EQ(h->next_payload, static_cast<std::uint8_t>(wire::PayloadType::SequenceNumber));

  auto r = lab.member->receive(d);
  const PushAccepted* a = accepted(r);
  ASSERT_TRUE(a) << describe(r);
  EXPECT_EQ(a->seq, 1u);
  ASSERT_TRUE(a->sa);
  EXPECT_EQ(a->sa->tek_spis, (std::vector<std::uint32_t>{t.spi}));
  EXPECT_EQ(a->sa->policy.acl, lab.group->policy().acl);
  ASSERT_EQ(a->keys.teks.size(), 1u);
  expect_same_tek(a->keys.teks[0], t);
  EXPECT_FALSE(a->keys.kek);
  EXPECT_FALSE(a->kek_replaced);
  EXPECT_TRUE(a->deletes.empty());
  EXPECT_TRUE(a->ack_requested);  // unicast rekey: KEK_ACK_REQUESTED at registration
  EXPECT_EQ(a->ack_key.spi, lab.group->kek().spi);
  EXPECT_EQ(lab.member->seq(), 1u);

  // SEQ counts on: 2 and 5 are accepted, 4 after 5 is not.
  EXPECT_TRUE(accepted(lab.member->receive(lab.push(lab.rekey(2, lab.tek())))));
  EXPECT_TRUE(accepted(lab.member->receive(lab.push(lab.rekey(5, lab.tek())))));
  auto late = lab.member->receive(lab.push(lab.rekey(4, lab.tek())));
  ASSERT_TRUE(refused(late));
  EXPECT_STREQ(refused(late)->counter(), "replay");
}

TEST_P(Push, ReplayIsRefusedAndChangesNothing) {
  Lab lab(GetParam());
  Bytes d = lab.push(lab.rekey(1, lab.tek()));
  ASSERT_TRUE(accepted(lab.member->receive(d)));
  Snapshot before(*lab.member);
  auto r = lab.member->receive(d);
  ASSERT_TRUE(refused(r));
  EXPECT_EQ(refused(r)->reason, R::Replay);
  EXPECT_STREQ(refused(r)->counter(), "replay");
  EXPECT_NE(refused(r)->detail.find("SEQ 1: not above 1"), std::string::npos) << refused(r)->detail;
  EXPECT_EQ(Snapshot(*lab.member), before);
}

TEST_P(Push, SeqAtOrBelowRegistrationsIsReplay) {
  Lab lab(GetParam());
  auto r = lab.member->receive(lab.push(lab.rekey(0, lab.tek())));  // message 4 said SEQ 0
  ASSERT_TRUE(refused(r));
  EXPECT_EQ(refused(r)->reason, R::Replay);
}

TEST_P(Push, EveryFlippedBitIsRefusedAndChangesNothing) {
  Lab lab(GetParam());
  ASSERT_TRUE(accepted(lab.member->receive(lab.push(lab.rekey(1, lab.tek())))));
  Bytes d = lab.push(lab.rekey(2, lab.tek()));
  const Snapshot before(*lab.member);
  std::map<std::string, int> counters;
  for (std::size_t bit = 0; bit < d.size() * 8; ++bit) {
    Bytes bad = d;
    bad[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    auto r = lab.member->receive(bad);
    ASSERT_TRUE(refused(r)) << "bit " << bit << " (octet " << bit / 8 << ") flipped: " << describe(r);
    ++counters[refused(r)->counter()];
    ASSERT_EQ(Snapshot(*lab.member), before) << "bit " << bit;
  }
  // Cookie bits name another KEK; the rest fail decryption, form or SIG.
  EXPECT_EQ(counters["unknown_kek"], 128);
  EXPECT_GT(counters["bad_signature"], 0);
  EXPECT_GT(counters["malformed"], 0);
  EXPECT_EQ(counters["replay"], 0);
  // And the untouched push still goes through.
  auto r = lab.member->receive(d);
  ASSERT_TRUE(accepted(r)) << describe(r);
}

TEST_P(Push, SignedByAnotherKeyIsBadSignature) {
  Lab lab(GetParam());
  auto other = new_key(GetParam());
  auto d = build_push(lab.rekey(1, lab.tek()), lab.group->kek(), lab.group->policy().kek, other);
  ASSERT_TRUE(d.ok()) << d.error();
  Snapshot before(*lab.member);
  auto r = lab.member->receive(*d);
  ASSERT_TRUE(refused(r)) << describe(r);
  EXPECT_EQ(refused(r)->reason, R::BadSignature) << describe(r);
  EXPECT_STREQ(refused(r)->counter(), "bad_signature");
  EXPECT_EQ(Snapshot(*lab.member), before);
  // The same content from the group's key is fine: SEQ 1 was not consumed.
  EXPECT_TRUE(accepted(lab.member->receive(lab.push(lab.rekey(1, lab.tek())))));
}

TEST_P(Push, UnderAnUnknownKekIsRefused) {
  Lab lab(GetParam());
  Snapshot before(*lab.member);
  auto r = lab.member->receive(lab.push(lab.rekey(1, lab.tek()), lab.fresh_kek()));
  ASSERT_TRUE(refused(r));
  EXPECT_EQ(refused(r)->reason, R::UnknownKek) << describe(r);
  EXPECT_STREQ(refused(r)->counter(), "unknown_kek");
  EXPECT_EQ(Snapshot(*lab.member), before);
}

TEST_P(Push, RightCookiesWrongKeyIsRefusedUndecryptedOrMalformed) {
  Lab lab(GetParam());
  Kek forged = lab.fresh_kek();
  forged.spi = lab.group->kek().spi;
  Snapshot before(*lab.member);
  auto r = lab.member->receive(lab.push(lab.rekey(1, lab.tek()), forged));
  ASSERT_TRUE(refused(r));
  EXPECT_TRUE(refused(r)->reason == R::Malformed || refused(r)->reason == R::BadSignature) << describe(r);
  EXPECT_EQ(Snapshot(*lab.member), before);
}

TEST_P(Push, TruncatedCiphertextIsUndecryptable) {
  Lab lab(GetParam());
  Bytes d = lab.push(lab.rekey(1, lab.tek()));
  d.resize(d.size() - 3);
  const auto n = static_cast<std::uint32_t>(d.size());
  d[24] = static_cast<std::uint8_t>(n >> 24), d[25] = static_cast<std::uint8_t>(n >> 16);
  d[26] = static_cast<std::uint8_t>(n >> 8), d[27] = static_cast<std::uint8_t>(n);
  Snapshot before(*lab.member);
  auto r = lab.member->receive(d);
  ASSERT_TRUE(refused(r));
  EXPECT_EQ(refused(r)->reason, R::Undecryptable) << describe(r);
  EXPECT_STREQ(refused(r)->counter(), "undecryptable");
  EXPECT_EQ(Snapshot(*lab.member), before);
}

TEST_P(Push, KekRolloverThenSeqOneUnderTheNewKek) {
  Lab lab(GetParam());
  const Kek old_kek = lab.group->kek();
  ASSERT_TRUE(accepted(lab.member->receive(lab.push(lab.rekey(1, lab.tek())))));
  ASSERT_TRUE(accepted(lab.member->receive(lab.push(lab.rekey(2, lab.tek())))));

  // SEQ 3 under the old KEK carries the new KEK (RFC 6407 4: a new cookie pair).
  Kek next = lab.fresh_kek();
  Tek t3 = lab.tek();
  auto r = lab.member->receive(lab.push(lab.rekey(3, t3, next), old_kek));
  const PushAccepted* a = accepted(r);
  ASSERT_TRUE(a) << describe(r);
  EXPECT_TRUE(a->kek_replaced);
  ASSERT_TRUE(a->keys.kek);
  EXPECT_EQ(a->keys.kek->spi, next.spi);
  expect_same_tek(a->keys.teks.at(0), t3);
  // The ACK of this push is keyed by the KEK that decrypted it.
  EXPECT_EQ(a->ack_key.spi, old_kek.spi);
  auto ack = build_ack(a->ack_key, a->seq, kGm);
  ASSERT_TRUE(ack.ok()) << ack.error();
  auto v = verify_ack(old_kek, lab.group->policy().kek.cipher, *ack);
  ASSERT_TRUE(v.ok()) << v.error();
  EXPECT_EQ(v->seq, 3u);

  EXPECT_EQ(lab.member->kek().spi, next.spi);
  EXPECT_TRUE(crypto::equal_constant_time(lab.member->kek().algorithm_key, next.algorithm_key));
  EXPECT_EQ(lab.member->seq(), 0u);

  // "the first packet ... encrypted with the new KEK attribute will have a
  // Sequence number of 1".
  Tek t4 = lab.tek();
  Bytes first_new = lab.push(lab.rekey(1, t4), next);
  r = lab.member->receive(first_new);
  a = accepted(r);
  ASSERT_TRUE(a) << describe(r);
  EXPECT_EQ(a->seq, 1u);
  expect_same_tek(a->keys.teks.at(0), t4);
  EXPECT_EQ(a->ack_key.spi, next.spi);
  EXPECT_EQ(lab.member->seq(), 1u);

  // Its replay, and anything still under the old KEK, are refused.
  Snapshot before(*lab.member);
  auto again = lab.member->receive(first_new);
  ASSERT_TRUE(refused(again));
  EXPECT_EQ(refused(again)->reason, R::Replay);
  auto stale = lab.member->receive(lab.push(lab.rekey(4, lab.tek()), old_kek));
  ASSERT_TRUE(refused(stale));
  EXPECT_EQ(refused(stale)->reason, R::UnknownKek);
  EXPECT_EQ(Snapshot(*lab.member), before);
  EXPECT_TRUE(accepted(lab.member->receive(lab.push(lab.rekey(2, lab.tek()), next))));
}

TEST_P(Push, ResentKekKeepsTheSequence) {
  Lab lab(GetParam());
  auto r = lab.member->receive(lab.push(lab.rekey(1, lab.tek(), lab.group->kek())));
  const PushAccepted* a = accepted(r);
  ASSERT_TRUE(a) << describe(r);
  EXPECT_FALSE(a->kek_replaced);
  EXPECT_EQ(lab.member->seq(), 1u);
  auto replay = lab.member->receive(lab.push(lab.rekey(1, lab.tek())));
  ASSERT_TRUE(refused(replay));
  EXPECT_EQ(refused(replay)->reason, R::Replay);
}

TEST_P(Push, NewKeyUnderTheSameCookiesIsMalformed) {
  Lab lab(GetParam());
  Kek same_spi = lab.fresh_kek();
  same_spi.spi = lab.group->kek().spi;
  Snapshot before(*lab.member);
  auto r = lab.member->receive(lab.push(lab.rekey(1, lab.tek(), same_spi)));
  ASSERT_TRUE(refused(r));
  EXPECT_EQ(refused(r)->reason, R::Malformed) << describe(r);
  EXPECT_EQ(Snapshot(*lab.member), before);
}

// ------------------------------ the reference implementation's rekeys (INTEROP.md 5, 6)

namespace {

// `k` with `mask` XORed into octet `i` of KEK_ALGORITHM_KEY (IV then key).
Kek flipped(Kek k, std::size_t i, std::uint8_t mask) {
  Bytes b(k.algorithm_key.view().begin(), k.algorithm_key.view().end());
  b.at(i) ^= mask;
  k.algorithm_key = crypto::SecretBytes(ByteView(b));
  return k;
}

// The push `c` as gdoid makes a KEK rekey (INTEROP.md 6): the SA KEK names
// the new KEK while the KD's KEK packet names `kd_spis[0]` (gdoid: the KEK
// the members hold), one KEK packet per SPI given. build_push refuses to
// make it, so it is made here the same way: signed, then encrypted under
// the KEK the member holds.
Bytes gdoid_push(const Lab& lab, const PushContent& c, const std::vector<KekSpi>& kd_spis) {
  wire::KeyDownloadPayload kd = encode_key_download(c.keys);
  auto kek_packet = std::find_if(kd.packets.begin(), kd.packets.end(), [](const wire::KeyPacket& p) {
    return p.type == static_cast<std::uint8_t>(wire::KeyPacketType::Kek);
  });
  EXPECT_NE(kek_packet, kd.packets.end());
  wire::KeyPacket packet = *kek_packet;
  kd.packets.erase(kek_packet);
  for (const KekSpi& spi : kd_spis) {
    packet.spi.assign(spi.begin(), spi.end());
    kd.packets.insert(kd.packets.begin(), packet);
  }
  const KekPolicy& policy = lab.group->policy().kek;
  const auto scheme = signature_scheme(policy.signature);
  const std::size_t sig_size =
      crypto::gdoi::sign_rekey(lab.signing_key, scheme, policy.signature_hash, wire::encode_header({}), {}, wire::kHeaderSize + 4).value().size();
  Bytes body = wire::encode_payloads({wire::SequenceNumberPayload{c.seq}, *c.sa, kd, wire::SignaturePayload{Bytes(sig_size, 0)}});
  const std::size_t before_sig = body.size() - 4 - sig_size;
  wire::Header h;
  std::copy(lab.group->kek().spi.begin(), lab.group->kek().spi.begin() + 8, h.initiator_cookie.begin());
  std::copy(lab.group->kek().spi.begin() + 8, lab.group->kek().spi.end(), h.responder_cookie.begin());
  h.next_payload = static_cast<std::uint8_t>(wire::PayloadType::SequenceNumber);
  h.exchange = static_cast<std::uint8_t>(wire::ExchangeType::GroupkeyPush);
  h.flags = wire::kFlagEncryption;
  auto sig = crypto::gdoi::sign_rekey(lab.signing_key, scheme, policy.signature_hash, wire::encode_header(h),
                                      ByteView(body).first(before_sig), static_cast<std::uint32_t>(wire::kHeaderSize + body.size()));
  EXPECT_TRUE(sig.ok() && sig->size() == sig_size);
  std::copy(sig->begin(), sig->end(), body.begin() + static_cast<std::ptrdiff_t>(before_sig + 4));
  auto ct = crypto::gdoi::kek_encrypt(policy.cipher, lab.group->kek().algorithm_key, body);
  EXPECT_TRUE(ct.ok());
  h.length = static_cast<std::uint32_t>(wire::kHeaderSize + ct->size());
  Bytes out = wire::encode_header(h);
  append(out, *ct);
  return out;
}

}  // namespace

// DES ignores the lowest bit of each key octet (its parity bit, FIPS 46-3);
// gdoid re-sends its 3DES KEK with those bits set. The same KEK: accepted,
// no KEK rekey, and the member keeps the octets the key server sent last.
TEST_P(Push, ResentTripleDesKekDifferingOnlyInParityBitsIsTheSameKek) {
  Lab lab(GetParam(), CipherAlgorithm::TripleDesCbc);
  Kek resent = lab.group->kek();
  for (std::size_t i = 8; i < 32; ++i) resent = flipped(resent, i, 0x01);  // after the 8-octet IV
  auto r = lab.member->receive(lab.push(lab.rekey(1, lab.tek(), resent)));
  const PushAccepted* a = accepted(r);
  ASSERT_TRUE(a) << describe(r);
  EXPECT_FALSE(a->kek_replaced);
  EXPECT_EQ(lab.member->seq(), 1u);
  EXPECT_TRUE(crypto::equal_constant_time(lab.member->kek().algorithm_key, resent.algorithm_key));
  // The next push, under the same cookies and the same DES key, goes on.
  EXPECT_TRUE(accepted(lab.member->receive(lab.push(lab.rekey(2, lab.tek()), resent))));
}

// Any other bit is another key: every non-parity bit of the 3DES key, and
// every bit of the IV (CBC uses all of it).
TEST_P(Push, TripleDesKekDifferingInAnyOtherBitIsStillANewKek) {
  Lab lab(GetParam(), CipherAlgorithm::TripleDesCbc);
  Snapshot before(*lab.member);
  const Tek t = lab.tek();
  for (std::size_t i = 0; i < 32; ++i)
    for (int bit = i < 8 ? 0 : 1; bit < 8; ++bit) {
      auto r = lab.member->receive(lab.push(lab.rekey(1, t, flipped(lab.group->kek(), i, static_cast<std::uint8_t>(1u << bit)))));
      ASSERT_TRUE(refused(r)) << "octet " << i << " bit " << bit;
      EXPECT_EQ(refused(r)->detail, "GROUPKEY-PUSH SEQ 1: a new KEK under the current cookies (RFC 6407 4: a new cookie pair)");
      EXPECT_EQ(Snapshot(*lab.member), before);
    }
}

// AES has no parity bits: its keys are compared whole.
TEST_P(Push, AesKekDifferingInALowestBitIsStillANewKek) {
  for (CipherAlgorithm c : {CipherAlgorithm::Aes128Cbc, CipherAlgorithm::Aes256Cbc}) {
    Lab lab(GetParam(), c);
    Snapshot before(*lab.member);
    const Tek t = lab.tek();
    for (std::size_t i = 16; i < lab.group->kek().algorithm_key.size(); ++i) {
      auto r = lab.member->receive(lab.push(lab.rekey(1, t, flipped(lab.group->kek(), i, 0x01))));
      ASSERT_TRUE(refused(r)) << crypto::name(c) << " octet " << i;
      EXPECT_EQ(refused(r)->detail, "GROUPKEY-PUSH SEQ 1: a new KEK under the current cookies (RFC 6407 4: a new cookie pair)");
      EXPECT_EQ(Snapshot(*lab.member), before);
    }
  }
}

// gdoid's KEK rekey: one KEK packet naming the KEK this member holds, in a
// push whose SA KEK names a new SPI. The packet's key is the new KEK's.
TEST_P(Push, KekRekeyWhoseKdNamesTheHeldKekGivesTheNewKek) {
  Lab lab(GetParam());
  const Kek held = lab.group->kek();
  const Kek next = lab.fresh_kek();
  auto r = lab.member->receive(gdoid_push(lab, lab.rekey(1, lab.tek(), next), {held.spi}));
  const PushAccepted* a = accepted(r);
  ASSERT_TRUE(a) << describe(r);
  EXPECT_TRUE(a->kek_replaced);
  ASSERT_TRUE(a->keys.kek);
  EXPECT_EQ(a->keys.kek->spi, next.spi);
  EXPECT_EQ(a->interop_note,
            "KD KEK packet named the KEK held (" + to_hex(held.spi) + "), not the SA KEK's new SPI " + to_hex(next.spi) +
                ", as gdoid does: taken as the new KEK's");
  EXPECT_EQ(lab.member->kek().spi, next.spi);
  EXPECT_TRUE(crypto::equal_constant_time(lab.member->kek().algorithm_key, next.algorithm_key));
  EXPECT_EQ(lab.member->seq(), 0u);
  EXPECT_TRUE(accepted(lab.member->receive(lab.push(lab.rekey(1, lab.tek()), next))));
}

// Anything else is refused as before: a KD naming neither KEK, or two KEK
// packets, or a KD naming the held KEK beside an SA KEK naming it too but
// with another key.
TEST_P(Push, KdKekPacketNamingAnythingElseIsStillRefused) {
  Lab lab(GetParam());
  const Kek held = lab.group->kek();
  const Kek next = lab.fresh_kek();
  Snapshot before(*lab.member);
  const Tek t = lab.tek();
  auto third = lab.member->receive(gdoid_push(lab, lab.rekey(1, t, next), {lab.fresh_kek().spi}));
  ASSERT_TRUE(refused(third)) << describe(third);
  EXPECT_EQ(refused(third)->detail, "GROUPKEY-PUSH SEQ 1: KD KEK packet: SPI does not match the SA KEK's");
  auto two = lab.member->receive(gdoid_push(lab, lab.rekey(1, t, next), {held.spi, held.spi}));
  ASSERT_TRUE(refused(two)) << describe(two);
  EXPECT_EQ(refused(two)->detail, "GROUPKEY-PUSH SEQ 1: KD KEK packet: SPI does not match the SA KEK's");
  auto two_new = lab.member->receive(gdoid_push(lab, lab.rekey(1, t, next), {held.spi, next.spi}));
  ASSERT_TRUE(refused(two_new)) << describe(two_new);
  EXPECT_EQ(refused(two_new)->detail, "GROUPKEY-PUSH SEQ 1: KD: more than one KEK packet (RFC 6407 5.6.2)");
  Kek same_spi = next;
  same_spi.spi = held.spi;
  auto same = lab.member->receive(gdoid_push(lab, lab.rekey(1, t, same_spi), {held.spi}));
  ASSERT_TRUE(refused(same)) << describe(same);
  EXPECT_EQ(refused(same)->detail, "GROUPKEY-PUSH SEQ 1: a new KEK under the current cookies (RFC 6407 4: a new cookie pair)");
  EXPECT_EQ(Snapshot(*lab.member), before);
}

TEST_P(Push, DeletesOnlyPushEndsTheGroup) {
  Lab lab(GetParam());
  PushContent c;
  c.seq = 1;
  c.deletes.tek_spis = {lab.group->teks()[0].tek.spi, 0};
  c.deletes.kek_spis = {lab.group->kek().spi};
  auto r = lab.member->receive(lab.push(c));
  const PushAccepted* a = accepted(r);
  ASSERT_TRUE(a) << describe(r);
  EXPECT_FALSE(a->sa);
  EXPECT_TRUE(a->keys.teks.empty());
  EXPECT_EQ(a->deletes.tek_spis, c.deletes.tek_spis);
  EXPECT_EQ(a->deletes.kek_spis, c.deletes.kek_spis);
  EXPECT_TRUE(a->ack_requested);  // RFC 8263 4: ACKed even when the KEK is deleted
}

TEST_P(Push, DeletesBeforeSa) {
  Lab lab(GetParam());
  Tek t = lab.tek();
  PushContent c = lab.rekey(1, t);
  c.deletes.tek_spis = {lab.group->teks()[0].tek.spi};
  auto r = lab.member->receive(lab.push(c));
  const PushAccepted* a = accepted(r);
  ASSERT_TRUE(a) << describe(r);
  EXPECT_EQ(a->deletes.tek_spis, c.deletes.tek_spis);
  expect_same_tek(a->keys.teks.at(0), t);
}

TEST(GroupkeyPush, NothingToPushIsAnError) {
  Lab lab;
  PushContent c;
  c.seq = 1;
  auto d = build_push(c, lab.group->kek(), lab.group->policy().kek, lab.signing_key);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().find("nothing to push"), std::string::npos) << d.error();
}

TEST(GroupkeyPush, SaKekWithoutItsKeyIsAnError) {
  Lab lab;
  Kek next = lab.fresh_kek();
  PushContent c = lab.rekey(1, lab.tek(), next);
  c.keys.kek.reset();
  auto d = build_push(c, lab.group->kek(), lab.group->policy().kek, lab.signing_key);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().find("an SA KEK without its KEK"), std::string::npos) << d.error();
}

TEST(GroupkeyPush, KeyOfTheWrongTypeForThePolicyIsAnError) {
  Lab lab;  // RSA policy
  auto ec = new_key(KekPolicy::Signature::EcdsaP256);
  auto d = build_push(lab.rekey(1, lab.tek()), lab.group->kek(), lab.group->policy().kek, ec);
  EXPECT_FALSE(d.ok());
}

// ------------------------------------------------------ signing-key rollover

namespace {

Bytes spki_of(const crypto::PrivateKey& k) { return *k.public_key()->to_der(); }

KekPolicy::Signature other(KekPolicy::Signature s) {
  return s == KekPolicy::Signature::Rsa ? KekPolicy::Signature::EcdsaP256 : KekPolicy::Signature::Rsa;
}

// The rollover push as the key server makes it: a new KEK whose
// SIG_ALGORITHM_KEY is `next_key`'s public key, an SA KEK naming
// `next_policy`, signed with the key and under the KEK and policy the
// members hold. Returns the push and sets `next_kek`.
Bytes rollover_push(Lab& lab, std::uint32_t seq, const crypto::PrivateKey& next_key, const GroupPolicy& next_policy,
                    Kek& next_kek) {
  next_kek = lab.fresh_kek();
  next_kek.signature_public_key = spki_of(next_key);
  PushContent c;
  c.seq = seq;
  const Tek t = lab.tek();
  c.sa = encode_group_sa(next_policy, KekAnnouncement{next_kek.spi, kKs, next_kek.lifetime_s}, {t}, false,
                         PeerTraits{true});
  c.keys.teks = {t};
  c.keys.kek = next_kek;
  return lab.push(c);
}

GroupPolicy with_signature(GroupPolicy p, KekPolicy::Signature s) {
  p.kek.signature = s;
  p.kek.signature_key_bits = s == KekPolicy::Signature::Rsa ? 2048 : 256;
  return p;
}

}  // namespace

// RFC 6407 5.6.2: the KEK packet of the KD carries the new public key as
// SIG_ALGORITHM_KEY (class 2, TLV, a SubjectPublicKeyInfo); 5.3: the SA KEK
// beside it names its algorithm and length in SIG_ALGORITHM and
// SIG_KEY_LENGTH. Read back from the octets, independently of the decoder
// the member uses.
TEST_P(Push, RolloverPushCarriesTheNewKeyInTheKekPacketsSigAlgorithmKey) {
  Lab lab(GetParam());
  const auto next_sig = other(GetParam());
  auto next_key = new_key(next_sig);
  Kek next_kek;
  const GroupPolicy next_policy = with_signature(lab.group->policy(), next_sig);
  Bytes d = rollover_push(lab, 1, next_key, next_policy, next_kek);

  auto h = wire::decode_header(d);
  ASSERT_TRUE(h.ok());
  auto clear = crypto::gdoi::kek_decrypt(lab.group->policy().kek.cipher, lab.group->kek().algorithm_key,
                                         ByteView(d).subspan(wire::kHeaderSize));
  ASSERT_TRUE(clear.ok()) << clear.error();
  auto chain = wire::decode_payloads(*clear, h->next_payload, 33, wire::kHeaderSize, true);
  ASSERT_TRUE(chain.ok()) << chain.error().message();
  const wire::KeyDownloadPayload* kd = nullptr;
  const wire::GroupSaPayload* sa = nullptr;
  for (const auto& p : chain->payloads) {
    if (auto* k = std::get_if<wire::KeyDownloadPayload>(&p)) kd = k;
    if (auto* g = std::get_if<wire::GroupSaPayload>(&p)) sa = g;
  }
  ASSERT_TRUE(kd && sa && sa->kek);
  int kek_packets = 0;
  for (const auto& packet : kd->packets) {
    if (packet.type != static_cast<std::uint8_t>(wire::KeyPacketType::Kek)) continue;
    ++kek_packets;  // RFC 6407 5.6.2: only one
    EXPECT_TRUE(std::equal(packet.spi.begin(), packet.spi.end(), next_kek.spi.begin(), next_kek.spi.end()));
    const wire::Attribute* key = nullptr;
    for (const auto& a : packet.attributes)
      if (a.type == wire::kek_key_attr::SigAlgorithmKey) key = &a;
    ASSERT_NE(key, nullptr);
    EXPECT_FALSE(key->basic);
    EXPECT_EQ(key->value, spki_of(next_key));
    EXPECT_NE(key->value, spki_of(lab.signing_key));
  }
  EXPECT_EQ(kek_packets, 1);
  std::map<std::uint16_t, std::uint16_t> kek_attrs;
  for (const auto& a : sa->kek->attributes)
    if (a.basic) kek_attrs[a.type] = a.basic_value;
  EXPECT_EQ(kek_attrs[wire::kek_attr::SigAlgorithm],
            next_sig == KekPolicy::Signature::Rsa ? wire::kek_value::SigAlgRsa : wire::kek_value::SigAlgEcdsa256);
  EXPECT_EQ(kek_attrs[wire::kek_attr::SigKeyLength], next_sig == KekPolicy::Signature::Rsa ? 2048 : 256);
}

// The member's rules across a rollover, to a key of the other algorithm
// too: the old key before, the rollover push signed with the old key, the
// new key after, and the old key refused after (named as retired, without
// changing anything).
TEST_P(Push, RolloverOldKeyBeforeNewKeyAfterOldKeyRefusedAfter) {
  for (const auto next_sig : {GetParam(), other(GetParam())}) {
    SCOPED_TRACE(next_sig == GetParam() ? "same algorithm" : "other algorithm");
    Lab lab(GetParam());
    auto next_key = new_key(next_sig);
    const GroupPolicy next_policy = with_signature(lab.group->policy(), next_sig);
    const KekPolicy old_policy = lab.group->policy().kek;

    // Before: the new key is not yet the group's.
    auto early = build_push(lab.rekey(1, lab.tek()), lab.group->kek(), next_policy.kek, next_key);
    ASSERT_TRUE(early.ok()) << early.error();
    auto r = lab.member->receive(*early);
    ASSERT_TRUE(refused(r));
    EXPECT_EQ(refused(r)->reason, R::BadSignature) << describe(r);
    r = lab.member->receive(lab.push(lab.rekey(1, lab.tek())));
    ASSERT_TRUE(accepted(r)) << describe(r);
    EXPECT_FALSE(accepted(r)->signing_key_replaced);

    // The rollover, signed with the old key.
    Kek next_kek;
    r = lab.member->receive(rollover_push(lab, 2, next_key, next_policy, next_kek));
    ASSERT_TRUE(accepted(r)) << describe(r);
    EXPECT_TRUE(accepted(r)->signing_key_replaced);
    EXPECT_TRUE(accepted(r)->kek_replaced);
    EXPECT_EQ(lab.member->kek().signature_public_key, spki_of(next_key));
    EXPECT_EQ(lab.member->kek_policy().signature, next_sig);

    // After: the new key is accepted.
    PushContent c3 = lab.rekey(3, lab.tek());
    c3.sa = encode_group_sa(next_policy, std::nullopt, c3.keys.teks, false, PeerTraits{true});
    auto d3 = build_push(c3, next_kek, next_policy.kek, next_key);
    ASSERT_TRUE(d3.ok()) << d3.error();
    r = lab.member->receive(*d3);
    ASSERT_TRUE(accepted(r)) << describe(r);
    EXPECT_FALSE(accepted(r)->signing_key_replaced);

    // The old key after: refused as retired, under the current KEK and
    // with a fresh SEQ (what a holder of the KEK and the old private key
    // could send), and nothing changes.
    Snapshot before(*lab.member);
    PushContent c4 = lab.rekey(4, lab.tek());
    auto d4 = build_push(c4, next_kek, old_policy, lab.signing_key);
    ASSERT_TRUE(d4.ok()) << d4.error();
    r = lab.member->receive(*d4);
    ASSERT_TRUE(refused(r)) << describe(r);
    EXPECT_EQ(refused(r)->reason, R::RetiredSigningKey) << describe(r);
    EXPECT_STREQ(refused(r)->counter(), "retired_signing_key");
    EXPECT_NE(refused(r)->detail.find("retired signing key (SHA-256 " + signing_key_id(spki_of(lab.signing_key))),
              std::string::npos)
        << refused(r)->detail;
    EXPECT_NE(refused(r)->detail.find("rekey SEQ 2 replaced"), std::string::npos) << refused(r)->detail;
    EXPECT_EQ(Snapshot(*lab.member), before);
    EXPECT_EQ(lab.member->kek().signature_public_key, spki_of(next_key));
    // A third key is a bad signature, as before any rollover.
    auto stranger = new_key(next_sig);
    auto d5 = build_push(c4, next_kek, next_policy.kek, stranger);
    ASSERT_TRUE(d5.ok()) << d5.error();
    r = lab.member->receive(*d5);
    ASSERT_TRUE(refused(r));
    EXPECT_EQ(refused(r)->reason, R::BadSignature) << describe(r);
    // SEQ 4 was not consumed: the new key's is accepted.
    c4.sa = encode_group_sa(next_policy, std::nullopt, c4.keys.teks, false, PeerTraits{true});
    auto d6 = build_push(c4, next_kek, next_policy.kek, next_key);
    ASSERT_TRUE(d6.ok()) << d6.error();
    EXPECT_TRUE(accepted(lab.member->receive(*d6)));
  }
}

// A KD key the SA KEK's SIG_ALGORITHM cannot use would leave the member
// unable to verify any later push: refused, nothing changes.
TEST_P(Push, RolloverKeyUnlikeTheSaKeksAlgorithmIsMalformed) {
  Lab lab(GetParam());
  auto next_key = new_key(other(GetParam()));
  Kek next_kek;
  Snapshot before(*lab.member);
  auto r = lab.member->receive(rollover_push(lab, 1, next_key, lab.group->policy(), next_kek));
  ASSERT_TRUE(refused(r)) << describe(r);
  EXPECT_EQ(refused(r)->reason, R::Malformed) << describe(r);
  EXPECT_NE(refused(r)->detail.find("SIG_ALGORITHM_KEY (new, SHA-256 " + signing_key_id(spki_of(next_key))),
            std::string::npos)
      << refused(r)->detail;
  EXPECT_EQ(Snapshot(*lab.member), before);
  EXPECT_EQ(lab.member->kek().signature_public_key, spki_of(lab.signing_key));
}

// ------------------------------------------------------------------ RFC 8263

TEST_P(Push, AckRoundTripAndTamperRefusal) {
  Lab lab(GetParam());
  auto r = lab.member->receive(lab.push(lab.rekey(1, lab.tek())));
  const PushAccepted* a = accepted(r);
  ASSERT_TRUE(a) << describe(r);
  auto ack = build_ack(a->ack_key, a->seq, kGm);
  ASSERT_TRUE(ack.ok()) << ack.error();
  auto h = wire::decode_header(*ack);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->exchange, 35);
  EXPECT_EQ(h->flags, 0);
  EXPECT_EQ(h->message_id, 0u);
  EXPECT_EQ(h->next_payload, static_cast<std::uint8_t>(wire::PayloadType::Hash));

  const auto cipher = lab.group->policy().kek.cipher;
  auto v = verify_ack(lab.group->kek(), cipher, *ack);
  ASSERT_TRUE(v.ok()) << v.error();
  EXPECT_EQ(v->seq, 1u);
  EXPECT_EQ(v->member, kGm);

  for (std::size_t bit = 0; bit < ack->size() * 8; ++bit) {
    Bytes bad = *ack;
    bad[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    EXPECT_FALSE(verify_ack(lab.group->kek(), cipher, bad).ok()) << "bit " << bit;
  }
  auto other = verify_ack(lab.fresh_kek(), cipher, *ack);
  EXPECT_FALSE(other.ok());
  Kek same_spi = lab.fresh_kek();
  same_spi.spi = lab.group->kek().spi;
  auto wrong_key = verify_ack(same_spi, cipher, *ack);
  ASSERT_FALSE(wrong_key.ok());
  EXPECT_NE(wrong_key.error().find("HASH mismatch"), std::string::npos) << wrong_key.error();

  auto v6 = build_ack(a->ack_key, 9, *Address::parse("2001:db8::23"));
  ASSERT_TRUE(v6.ok());
  auto got6 = verify_ack(lab.group->kek(), cipher, *v6);
  ASSERT_TRUE(got6.ok()) << got6.error();
  EXPECT_EQ(got6->member.str(), "2001:db8::23");
  EXPECT_EQ(got6->seq, 9u);
}

namespace {

// Values computed by data/crypto/push_ack_kat.py with Python's hashlib and hmac.
const fixtures::PythonKat& kat_values() {
  static const fixtures::PythonKat kat(COVEY_TEST_DATA "/crypto/push_ack_kat.py");
  return kat;
}

}  // namespace

TEST(GroupkeyPushAck, MatchesAnIndependentReadingOfRfc8263) {
  const fixtures::PythonKat& kat = kat_values();
  ASSERT_TRUE(kat.error().empty()) << kat.error();
  Bytes spi = kat["in.spi"];
  Bytes seq_b = kat["in.seq"];
  ASSERT_EQ(spi.size(), 16u);
  ASSERT_EQ(seq_b.size(), 4u);
  const auto seq = static_cast<std::uint32_t>(seq_b[0] << 24 | seq_b[1] << 16 | seq_b[2] << 8 | seq_b[3]);
  const std::pair<const char*, CipherAlgorithm> ciphers[] = {{"aes128", CipherAlgorithm::Aes128Cbc},
                                                             {"aes256", CipherAlgorithm::Aes256Cbc},
                                                             {"3des", CipherAlgorithm::TripleDesCbc}};
  for (const auto& [cname, cipher] : ciphers) {
    SCOPED_TRACE(cname);
    Kek kek;
    std::copy(spi.begin(), spi.end(), kek.spi.begin());
    kek.algorithm_key = crypto::SecretBytes(ByteView(kat[std::string("in.kek_algorithm_key.") + cname]));
    auto key = derive_ack_key(kek, cipher);
    ASSERT_TRUE(key.ok()) << key.error();
    EXPECT_EQ(to_hex(key->key), to_hex(kat[std::string("ack_key.") + cname]));
    EXPECT_EQ(key->spi, kek.spi);
    for (const char* fam : {"v4", "v6"}) {
      SCOPED_TRACE(fam);
      Bytes addr = kat[std::string("in.member.") + fam];
      Address member;
      member.family = addr.size() == 4 ? 4 : 6;
      std::copy(addr.begin(), addr.end(), member.bytes.begin());
      auto ack = build_ack(*key, seq, member);
      ASSERT_TRUE(ack.ok()) << ack.error();
      EXPECT_EQ(to_hex(*ack), to_hex(kat[std::string("ack.") + cname + "." + fam]));
      // The HASH payload's data sits after HDR and the HASH payload header.
      EXPECT_EQ(to_hex(ByteView(*ack).subspan(32, 32)), to_hex(kat[std::string("hash.") + cname + "." + fam]));
      auto v = verify_ack(kek, cipher, kat[std::string("ack.") + cname + "." + fam]);
      ASSERT_TRUE(v.ok()) << v.error();
      EXPECT_EQ(v->seq, seq);
      EXPECT_EQ(v->member, member);
    }
  }
}
