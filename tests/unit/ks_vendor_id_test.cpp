// covey's Vendor ID (docs/ARCHITECTURE.md, "covey's Vendor ID"): covey's
// key server and member announce themselves in Main Mode messages 1 and 2,
// and only a member that did gets covey's private-range attributes, at
// registration and in every push; any other GDOI member gets RFC 6407
// alone. The key server's dispatcher and rekeyer and the member's registrar
// wired together in memory, as the daemons run them minus sockets. A member
// that is not covey is the registrar with the Vendor ID taken out of its
// message 1, which is what such a member sends.
#include <gtest/gtest.h>

#include <map>

#include "fixtures.h"
#include "crypto/hash.h"
#include "gdoi/push.h"
#include "gdoi/vendor_id.h"
#include "gm/registrar.h"
#include "ks/dispatcher.h"
#include "ks/rekey.h"
#include "wire/message.h"

using namespace covey;
using covey::fixtures::prefix;
using covey::fixtures::psk;

namespace {

// The Vendor ID as documented: the first 16 octets of SHA-256("covey
// GDOI"), version 1, features 0x0000000f (ACL action, port ranges, TBAR,
// fail-close ACL).
const Bytes kCoveyMagic = {0x92, 0x17, 0xd2, 0xf5, 0x1c, 0x64, 0x6b, 0xae,
                           0x33, 0x6b, 0x51, 0xa0, 0x4c, 0xb3, 0x0a, 0xeb};
Bytes covey_vid() {
  Bytes v = kCoveyMagic;
  v.insert(v.end(), {0x00, 0x01, 0x00, 0x00, 0x00, 0x0f});
  return v;
}

const std::int64_t kNow = 1'000'000;

// What a policy needs covey's extensions for: a deny entry, a port range,
// a TBAR window (on by default) and a fail-close ACL.
gdoi::GroupPolicy rich_policy(gdoi::RekeyTransport::Mode mode) {
  gdoi::GroupPolicy p;
  p.name = "GET_VPN";
  p.identity = 134;
  gdoi::AclEntry deny;
  deny.action = gdoi::AclEntry::Action::Deny;
  deny.protocol = 17;
  deny.source = prefix("0.0.0.0", 0);
  deny.destination = prefix("0.0.0.0", 0);
  deny.destination_port = {848, 848};
  gdoi::AclEntry web;
  web.protocol = 6;
  web.source = prefix("192.168.0.0", 16);
  web.destination = prefix("192.168.0.0", 16);
  web.destination_port = {8000, 8099};
  gdoi::AclEntry permit;
  permit.source = prefix("192.168.0.0", 16);
  permit.destination = prefix("192.168.0.0", 16);
  p.acl = {deny, web, permit};
  p.fail_close_acl = {permit};
  p.kek.signature = gdoi::KekPolicy::Signature::EcdsaP256;
  p.kek.signature_key_bits = 256;
  p.rekey.mode = mode;
  if (mode == gdoi::RekeyTransport::Mode::Multicast) p.rekey.multicast_address = prefix("239.192.1.1", 32);
  return p;
}

struct World {
  ks::Groups groups;
  std::unique_ptr<ks::Dispatcher> ks;
  std::unique_ptr<ks::Rekeyer> rekeyer;
  Endpoint ks_ep{*Address::parse("10.1.12.1"), 848};
  std::vector<Bytes> message1s, message2s;  // Main Mode, as they went on the wire

  explicit World(gdoi::RekeyTransport::Mode mode = gdoi::RekeyTransport::Mode::Unicast) {
    auto key = crypto::PrivateKey::generate_ec(crypto::EcCurve::P256);
    auto g = ks::Group::create(rich_policy(mode), ks::Authorization{{prefix("10.1.0.0", 16)}, {}},
                               std::move(*key), ks_ep.address, kNow);
    groups.add(std::move(*g));
    ks::DispatcherOptions o;
    o.phase1 = {ike::Phase1Transform{}};
    o.credentials = psk("lab");
    ks = std::make_unique<ks::Dispatcher>(o, groups, ks_ep.address);
    rekeyer = std::make_unique<ks::Rekeyer>(groups);
    ks->set_rekeyer(rekeyer.get());
  }

  // Registers a member at `addr`: covey's registrar, or (covey = false) a
  // GDOI member that sends no Vendor ID, or `vid` alone.
  gm::Registrar join(const char* addr, bool covey, std::optional<Bytes> vid = std::nullopt) {
    if (covey) vid = covey_vid();
    gm::RegistrarOptions o;
    o.group_id = 134;
    o.offers = {ike::Phase1Transform{}};
    o.credentials = psk("lab");
    gm::Registrar r(o, ks_ep, *Address::parse(addr));
    Endpoint me{*Address::parse(addr), 848};
    std::vector<Bytes> to_ks = r.start(kNow);
    for (int i = 0; i < 10 && !to_ks.empty(); ++i) {
      std::vector<Bytes> next;
      for (const Bytes& d : to_ks) {
        Bytes sent = as_member(d, vid);
        for (const ks::Outgoing& out : ks->receive(me, ks_ep.address, sent, kNow * 1000)) {
          if (is_message(out.datagram, true) && starts_with_sa(out.datagram))
            message2s.push_back(out.datagram);
          for (Bytes& b : r.receive(out.datagram, kNow)) next.push_back(std::move(b));
        }
      }
      to_ks = std::move(next);
    }
    EXPECT_TRUE(r.registration()) << addr << ": " << r.failure().value_or("no registration");
    return r;
  }

  // Main Mode message 1 (second = false) or a later clear one: unencrypted Identity
  // Protection with no responder cookie yet, or with one.
  static bool is_message(ByteView d, bool second) {
    auto h = wire::decode_header(d);
    return h && !h->encrypted() &&
           h->exchange == static_cast<std::uint8_t>(wire::ExchangeType::IdentityProtection) &&
           (h->responder_cookie == wire::Cookie{}) != second;
  }

  static bool starts_with_sa(ByteView d) {
    auto m = wire::decode_message(d);
    return m && !m->payloads.empty() && std::holds_alternative<wire::SaPayload>(m->payloads[0]);
  }

  // The registrar's datagram as a member of that kind sends it: message 1
  // with `vid` as its only Vendor ID, or with none.
  Bytes as_member(ByteView d, const std::optional<Bytes>& vid) {
    if (!is_message(d, false)) return Bytes(d.begin(), d.end());
    message1s.emplace_back(d.begin(), d.end());
    auto m = wire::decode_message(d);
    EXPECT_TRUE(m.ok());
    std::vector<wire::Payload> ps;
    for (const auto& p : m->payloads)
      if (!std::holds_alternative<wire::VendorIdPayload>(p)) ps.push_back(p);
    if (vid) ps.push_back(wire::VendorIdPayload{*vid});
    return wire::encode_message(m->header, ps);
  }

  std::string log() {
    std::string s;
    for (auto& e : ks->take_events()) s += e.text + "\n";
    for (auto& e : rekeyer->take_events()) s += e.text + "\n";
    return s;
  }
};

std::vector<wire::VendorIdPayload> vendor_ids(ByteView d) {
  std::vector<wire::VendorIdPayload> out;
  auto m = wire::decode_message(d);
  EXPECT_TRUE(m.ok());
  if (!m) return out;
  for (const auto& p : m->payloads)
    if (const auto* v = std::get_if<wire::VendorIdPayload>(&p)) out.push_back(*v);
  return out;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::size_t denies(const gdoi::GroupPolicy& p) {
  return static_cast<std::size_t>(std::count_if(p.acl.begin(), p.acl.end(), [](const gdoi::AclEntry& e) {
    return e.action == gdoi::AclEntry::Action::Deny;
  }));
}

bool has_port_range(const gdoi::GroupPolicy& p) {
  return std::any_of(p.acl.begin(), p.acl.end(), [](const gdoi::AclEntry& e) {
    return e.destination_port.first == 8000 && e.destination_port.last == 8099;
  });
}

// What covey's private attributes carry, all of it, as a covey member reads it.
void expect_covey_policy(const gdoi::GroupPolicy& p, const std::optional<std::uint32_t>& pseudotime,
                         const char* who) {
  SCOPED_TRACE(who);
  EXPECT_EQ(denies(p), 1u);
  EXPECT_TRUE(has_port_range(p));
  EXPECT_EQ(p.tbar_window_ms, std::optional<std::uint32_t>(5000));
  EXPECT_EQ(p.fail_close_acl.size(), 1u);
  EXPECT_TRUE(pseudotime.has_value());
}

// RFC 6407 alone: none of it.
void expect_rfc_policy(const gdoi::GroupPolicy& p, const std::optional<std::uint32_t>& pseudotime,
                       const char* who) {
  SCOPED_TRACE(who);
  EXPECT_EQ(denies(p), 0u);
  EXPECT_FALSE(has_port_range(p));
  EXPECT_FALSE(p.tbar_window_ms.has_value());
  EXPECT_TRUE(p.fail_close_acl.empty());
  EXPECT_FALSE(pseudotime.has_value());
  EXPECT_FALSE(p.acl.empty());  // the permit entries, which any GDOI member reads
}

// A member's receiver, as its registration set it up.
gdoi::PushReceiver receiver(const gdoi::Registration& r) {
  auto rx = gdoi::PushReceiver::create(*r.keys.kek, r.policy.kek, r.seq.value_or(0), r.kek_ack_requested);
  EXPECT_TRUE(rx.ok()) << rx.error();
  return std::move(*rx);
}

gdoi::PushAccepted accept(gdoi::PushReceiver& rx, ByteView datagram, const char* who) {
  auto r = rx.receive(datagram);
  auto* ok = std::get_if<gdoi::PushAccepted>(&r);
  EXPECT_TRUE(ok) << who << ": " << (ok ? "" : std::get<gdoi::PushRefused>(r).detail);
  EXPECT_TRUE(!ok || ok->sa) << who;
  return ok ? std::move(*ok) : gdoi::PushAccepted{};
}

}  // namespace

TEST(VendorId, TheMagicIsTheDocumentedDigest) {
  auto d = crypto::digest(crypto::HashAlgorithm::Sha256, {as_bytes("covey GDOI")});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(to_hex(ByteView(*d).first(16)), to_hex(kCoveyMagic));
  EXPECT_EQ(to_hex(gdoi::covey_vendor_id()), to_hex(covey_vid()));
  EXPECT_EQ(gdoi::peer_traits({Bytes{1, 2}, covey_vid()}), gdoi::PeerTraits{true});
  EXPECT_FALSE(gdoi::peer_traits({kCoveyMagic}).covey);
}

TEST(VendorId, MainModeMessagesOneAndTwoCarryCoveysVendorId) {
  World w;
  auto r = w.join("10.1.23.3", true);
  ASSERT_EQ(w.message1s.size(), 1u);
  ASSERT_EQ(w.message2s.size(), 1u);
  // The registrar's own message 1, before the test touched it.
  auto gm_vids = vendor_ids(w.message1s[0]);
  ASSERT_EQ(gm_vids.size(), 1u);
  EXPECT_EQ(to_hex(gm_vids[0].data), to_hex(covey_vid()));
  auto ks_vids = vendor_ids(w.message2s[0]);
  ASSERT_EQ(ks_vids.size(), 1u);
  EXPECT_EQ(to_hex(ks_vids[0].data), to_hex(covey_vid()));
}

TEST(VendorId, PrivateAttributesOnlyForMembersThatSentIt) {
  World w;
  auto covey = w.join("10.1.23.3", true);
  auto plain = w.join("10.1.24.4", false);
  ASSERT_TRUE(covey.registration() && plain.registration());
  expect_covey_policy(covey.registration()->policy, covey.registration()->pseudotime_ms, "covey member");
  expect_rfc_policy(plain.registration()->policy, plain.registration()->pseudotime_ms,
                    "GDOI member without the Vendor ID");
  // The operator hears which member will not enforce what, once.
  std::string log = w.log();
  EXPECT_TRUE(has(log,
                  "GM 10.1.24.4 sent no covey Vendor ID; group GET_VPN (134) sends it RFC 6407 policy alone, "
                  "without: deny entries, port ranges, TBAR, fail-close ACL"))
      << log;
  EXPECT_FALSE(has(log, "GM 10.1.23.3 sent no covey Vendor ID")) << log;
}

TEST(VendorId, AnotherVendorsIdIsIgnored) {
  World w;
  // RFC 3706's DEAD PEER DETECTION Vendor ID, and covey's magic cut short:
  // neither makes the member covey, and neither stops its registration.
  Bytes dpd = {0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9,
               0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01, 0x00};
  auto other = w.join("10.1.23.3", false, dpd);
  auto cut = w.join("10.1.24.4", false, kCoveyMagic);
  ASSERT_TRUE(other.registration() && cut.registration());
  expect_rfc_policy(other.registration()->policy, other.registration()->pseudotime_ms,
                    "member with RFC 3706's Vendor ID");
  expect_rfc_policy(cut.registration()->policy, cut.registration()->pseudotime_ms,
                    "member with covey's magic alone");
}

TEST(VendorId, UnicastRekeyOfAMixedGroupSendsEachKindItsVariant) {
  World w;
  auto covey = w.join("10.1.23.3", true);
  auto plain = w.join("10.1.24.4", false);
  ASSERT_TRUE(covey.registration() && plain.registration());
  auto covey_rx = receiver(*covey.registration());
  auto plain_rx = receiver(*plain.registration());
  w.log();

  auto seq = w.rekeyer->rekey(*w.groups.find(134), ks::RekeyReason::Operator, (kNow + 5) * 1000);
  ASSERT_TRUE(seq.ok()) << seq.error();
  std::map<Address, Bytes> got;
  for (const auto& d : w.rekeyer->take_outgoing()) got[d.to.address] = *d.datagram;
  ASSERT_EQ(got.size(), 2u);
  const Address a = *Address::parse("10.1.23.3"), b = *Address::parse("10.1.24.4");
  EXPECT_TRUE(got[a] != got[b]);
  const auto ca = accept(covey_rx, got[a], "covey member");
  const auto pb = accept(plain_rx, got[b], "GDOI member");
  ASSERT_TRUE(ca.sa && pb.sa);
  EXPECT_EQ(ca.seq, *seq);
  EXPECT_EQ(pb.seq, *seq);
  expect_covey_policy(ca.sa->policy, ca.sa->pseudotime_ms, "covey member's push");
  expect_rfc_policy(pb.sa->policy, pb.sa->pseudotime_ms, "GDOI member's push");
  // The same keys in both: one rekey, two encodings of its policy.
  ASSERT_EQ(ca.keys.teks.size(), 1u);
  ASSERT_EQ(pb.keys.teks.size(), 1u);
  EXPECT_EQ(ca.keys.teks[0].spi, pb.keys.teks[0].spi);

  // Retransmitted, each gets its own variant again, byte for byte.
  w.rekeyer->tick((kNow + 5 + 10) * 1000);
  std::map<Address, Bytes> again;
  for (const auto& d : w.rekeyer->take_outgoing()) again[d.to.address] = *d.datagram;
  EXPECT_EQ(again, got);

  // Both acknowledge the one SEQ under the one ack key.
  for (const auto& [who, accepted] : {std::pair{a, &ca}, std::pair{b, &pb}}) {
    auto ack = gdoi::build_ack(accepted->ack_key, accepted->seq, who);
    ASSERT_TRUE(ack.ok()) << ack.error();
    w.ks->receive(Endpoint{who, 848}, w.ks_ep.address, *ack, (kNow + 16) * 1000);
  }
  EXPECT_EQ(w.rekeyer->counters().acks, 2u) << w.log();
  EXPECT_EQ(w.rekeyer->counters().acks_refused, 0u);
  EXPECT_EQ(w.rekeyer->pending(*w.groups.find(134)), 0u);
  auto rec = w.rekeyer->last_rekey(*w.groups.find(134));
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->members, 2u);
  EXPECT_EQ(rec->acked, 2u);
}

TEST(VendorId, MulticastRekeyCarriesPrivateAttributesOnlyWhenEveryMemberIsCovey) {
  World w(gdoi::RekeyTransport::Mode::Multicast);
  auto covey = w.join("10.1.23.3", true);
  ASSERT_TRUE(covey.registration());
  auto rx = receiver(*covey.registration());
  ks::Group& g = *w.groups.find(134);

  // All members covey: the push carries covey's extensions.
  ASSERT_TRUE(w.rekeyer->rekey(g, ks::RekeyReason::Operator, (kNow + 5) * 1000).ok());
  auto out = w.rekeyer->take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  const auto first = accept(rx, *out[0].datagram, "all-covey group");
  ASSERT_TRUE(first.sa);
  expect_covey_policy(first.sa->policy, first.sa->pseudotime_ms, "all-covey group's push");
  w.log();

  // One member that is not: one datagram for all, RFC 6407 alone, and the
  // operator is told what the group loses.
  auto plain = w.join("10.1.24.4", false);
  ASSERT_TRUE(plain.registration());
  w.log();
  ASSERT_TRUE(w.rekeyer->rekey(g, ks::RekeyReason::Operator, (kNow + 10) * 1000).ok());
  out = w.rekeyer->take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  const auto second = accept(rx, *out[0].datagram, "mixed group");
  ASSERT_TRUE(second.sa);
  expect_rfc_policy(second.sa->policy, second.sa->pseudotime_ms, "mixed group's push");
  std::string log = w.log();
  EXPECT_TRUE(
      has(log,
          "Group GET_VPN (134) has members without covey's Vendor ID (10.1.24.4): its multicast rekeys "
          "carry RFC 6407 policy alone, without: deny entries, port ranges, TBAR, fail-close ACL"))
      << log;
  // Said once, not at every rekey.
  ASSERT_TRUE(w.rekeyer->rekey(g, ks::RekeyReason::Operator, (kNow + 15) * 1000).ok());
  EXPECT_FALSE(has(w.log(), "has members without covey's Vendor ID"));
}
