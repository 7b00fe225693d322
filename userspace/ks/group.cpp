#include "ks/group.h"

#include <algorithm>
#include <cstdio>

#include "common/bytes.h"
#include "crypto/random.h"
#include "gdoi/policy_codec.h"

namespace covey::ks {

using crypto::Error;
using gdoi::GroupDirectory;

std::optional<std::string> Authorization::refuse(const Address& peer, const std::string& subject) const {
  for (const auto& p : prefixes)
    if (p.contains(peer)) return std::nullopt;
  if (!subject.empty()) {
    for (const auto& s : subjects) {
      bool wild = !s.empty() && s.back() == '*';
      if (wild ? subject.compare(0, s.size() - 1, s, 0, s.size() - 1) == 0 : subject == s) return std::nullopt;
    }
    return "GM " + peer.str() + " (" + subject + ") is not in the authorization list";
  }
  return "GM " + peer.str() + " is not in the authorization list";
}

crypto::Result<std::unique_ptr<Group>> Group::create(gdoi::GroupPolicy policy, Authorization auth,
                                                     crypto::PrivateKey signing_key, Address ks_address,
                                                     std::int64_t now) {
  auto pub = signing_key.public_key();
  if (!pub) return Error{"group " + policy.name + ": rekey signing key: " + pub.error()};
  auto der = pub->to_der();
  if (!der) return Error{"group " + policy.name + ": rekey signing key: " + der.error()};
  std::unique_ptr<Group> g(new Group(std::move(policy), std::move(auth), std::move(signing_key), ks_address));
  g->kek_.signature_public_key = std::move(*der);
  // Any fixed epoch would do; this one starts the clock near 0, so that
  // its wrap at 2^32 ms is 49 days away. A state file replaces it.
  g->pseudotime_epoch_ms_ = now * 1000;
  auto kek = g->new_kek();
  if (!kek) return Error{kek.error()};
  g->kek_ = std::move(*kek);
  g->kek_expires_at_ = now + g->policy_.kek.lifetime_s;
  auto tek = g->new_tek(now);
  if (!tek) return Error{tek.error()};
  g->teks_.push_back(LiveTek{std::move(*tek), now, now + g->policy_.tek_lifetime_s});
  return g;
}

crypto::Result<gdoi::Tek> Group::new_tek(std::int64_t) {
  gdoi::Tek t;
  // RFC 4303 2.1: SPIs 1-255 are reserved; 0 means none. An SPI is never
  // reused within the group, so old captures cannot be confused with new.
  for (int tries = 0;; ++tries) {
    auto b = crypto::random_bytes(4);
    if (!b) return Error{"group " + policy_.name + ": no randomness for an SPI"};
    t.spi = static_cast<std::uint32_t>((*b)[0] << 24 | (*b)[1] << 16 | (*b)[2] << 8 | (*b)[3]);
    if (t.spi > 255 && used_spis_.insert(t.spi).second) break;
    if (tries > 64) return Error{"group " + policy_.name + ": could not find an unused SPI"};
  }
  auto ek = crypto::random_secret(gdoi::tek_encryption_key_size(policy_.tek.cipher));
  auto ik = crypto::random_secret(gdoi::tek_integrity_key_size(policy_.tek.integrity));
  if (!ek || !ik) return Error{"group " + policy_.name + ": no randomness for a TEK"};
  t.encryption_key = std::move(*ek);
  t.integrity_key = std::move(*ik);
  t.lifetime_s = policy_.tek_lifetime_s;
  return t;
}

crypto::Result<gdoi::Kek> Group::new_kek() const {
  gdoi::Kek k;
  // RFC 6407 4: a new KEK comes with a new cookie pair. 128 random bits
  // cannot repeat in practice, so KEK SPIs are not recorded as TEK SPIs are.
  auto spi = crypto::random_bytes(16);
  auto key = crypto::random_secret(crypto::block_size(policy_.kek.cipher) + crypto::key_size(policy_.kek.cipher));
  if (!spi || !key) return Error{"group " + policy_.name + ": no randomness for the KEK"};
  std::copy(spi->begin(), spi->end(), k.spi.begin());
  if (k.spi == kek_.spi) return Error{"group " + policy_.name + ": the CSPRNG repeated a KEK SPI"};
  k.algorithm_key = std::move(*key);
  k.signature_public_key = kek_.signature_public_key;
  k.lifetime_s = policy_.kek.lifetime_s;
  return k;
}

Member* Group::find_member(const Address& a) {
  auto it = members_.find(a);
  if (it == members_.end()) return nullptr;
  changed_members_.insert(a);
  return &it->second;
}

const Member* Group::member(const Address& a) const {
  auto it = members_.find(a);
  return it == members_.end() ? nullptr : &it->second;
}

bool Group::remove_member(const Address& a) {
  if (members_.erase(a) == 0) return false;
  changed_members_.insert(a);
  return true;
}

void Group::set_policy(gdoi::GroupPolicy policy) {
  policy.name = policy_.name;
  policy.identity = policy_.identity;
  policy_ = std::move(policy);
}

void Group::install_kek(gdoi::Kek kek, std::int64_t expires_at) {
  kek_ = std::move(kek);
  kek_.lifetime_s = policy_.kek.lifetime_s;
  kek_expires_at_ = expires_at;
}

void Group::set_tek_expiry(std::uint32_t spi, std::int64_t expires_at) {
  for (LiveTek& t : teks_)
    if (t.tek.spi == spi) t.expires_at = expires_at;
}

void Group::keep_only_tek(std::uint32_t spi) {
  std::erase_if(teks_, [&](const LiveTek& t) { return t.tek.spi != spi; });
}

std::size_t Group::prune_teks(std::int64_t now) {
  return std::erase_if(teks_, [&](const LiveTek& t) { return t.expires_at <= now; });
}

void Group::restore_keys(Keys k) {
  policy_ = std::move(k.policy);
  kek_ = std::move(k.kek);
  kek_expires_at_ = k.kek_expires_at;
  teks_ = std::move(k.teks);
  seq_ = k.seq;
}

bool Group::offer_current(const GroupDirectory::Offer& offer) const {
  if (offer.keys.kek && offer.keys.kek->spi != kek_.spi) return false;
  // Every rekey adds a TEK: the newest one must be among those offered.
  if (teks_.empty() || offer.keys.teks.empty()) return true;
  const std::uint32_t newest = teks_.back().tek.spi;
  return std::any_of(offer.keys.teks.begin(), offer.keys.teks.end(), [&](const gdoi::Tek& t) { return t.spi == newest; });
}

GroupDirectory::Offer Group::offer(gdoi::PeerTraits peer, std::int64_t now_ms) const {
  const std::int64_t now = seconds_of(now_ms);
  GroupDirectory::Offer o;
  o.group_id = policy_.identity;
  std::vector<gdoi::Tek> teks;
  for (const auto& lt : teks_) {
    if (lt.expires_at <= now) continue;
    gdoi::Tek t = lt.tek;
    t.lifetime_s = static_cast<std::uint32_t>(lt.expires_at - now);
    teks.push_back(std::move(t));
  }
  gdoi::KekAnnouncement ann;
  ann.spi = kek_.spi;
  ann.source = ks_address_;
  ann.remaining_s = static_cast<std::uint32_t>(std::max<std::int64_t>(kek_expires_at_ - now, 0));
  o.sa = gdoi::encode_group_sa(policy_, ann, teks, true, peer, pseudotime_ms(now_ms));
  o.keys.teks = teks;
  o.keys.kek = kek_;
  o.keys.kek->lifetime_s = ann.remaining_s;
  return o;
}

crypto::Result<GroupDirectory::Admission> Group::admit(const ike::Phase1Sa& member, std::uint16_t sid_request,
                                                       std::int64_t now, const std::optional<Address>& registered_to) {
  GroupDirectory::Admission a;
  // RFC 6407 3.5: new SIDs at every registration, never handed out twice.
  unsigned n = sid_count(sid_request);
  if (next_sid_ + n > 0xffff) return Error{"group " + policy_.name + ": SID space exhausted; rekey the group"};
  for (unsigned i = 0; i < n; ++i) a.sids.push_back(next_sid_++);
  a.seq = seq_;
  Member& m = members_[member.peer.address];
  changed_members_.insert(member.peer.address);
  m.address = member.peer.address;
  m.identity = member.peer_subject.empty() ? member.peer.address.str() : member.peer_subject;
  m.registered_at = now;
  m.sids = a.sids;
  ++m.registrations;
  m.port = member.peer.port;
  m.registered_to = registered_to;
  m.traits = gdoi::peer_traits(member.peer_vendor_ids);
  // A registration hands out the current keys: what it missed before is moot.
  m.missed_rekeys = 0;
  m.registered_seq = seq_;
  return a;
}

unsigned Group::sid_count(std::uint16_t sid_request) const {
  const bool counter_mode = policy_.tek.cipher == gdoi::TekTransform::Cipher::AesGcm128 ||
                            policy_.tek.cipher == gdoi::TekTransform::Cipher::AesGcm256;
  if (!counter_mode && !policy_.tbar_window_ms) return 0;
  unsigned n = std::max<unsigned>(1, sid_request);
  return n > 16 ? 16 : n;  // a member asking for thousands is not helped by getting them
}

Group::State Group::export_state() const {
  State s = export_keys();
  s.members = members_;
  return s;
}

Group::State Group::export_keys() const {
  State s;
  s.kek = kek_;
  s.kek_expires_at = kek_expires_at_;
  s.teks = teks_;
  s.used_spis = used_spis_;
  s.next_sid = std::max(sid_mark_, next_sid_);
  s.seq = seq_;
  s.pseudotime_epoch_ms = pseudotime_epoch_ms_;
  return s;
}

std::optional<std::string> Group::refuse_state(const State& s) const {
  std::size_t kek_size = crypto::block_size(policy_.kek.cipher) + crypto::key_size(policy_.kek.cipher);
  if (s.kek.algorithm_key.size() != kek_size)
    return "KEK key is " + std::to_string(s.kek.algorithm_key.size()) + " bytes, the configured KEK cipher " +
           std::string(crypto::name(policy_.kek.cipher)) + " needs " + std::to_string(kek_size);
  // Members verify rekeys with the key they were given; a new signing key
  // in the config reaches them only by a rollover push signed with the old
  // one, which a key server started with the new key cannot sign.
  if (s.kek.signature_public_key != kek_.signature_public_key)
    return "the KEK signature public key members hold (SHA-256 " + gdoi::signing_key_id(s.kek.signature_public_key) +
           ") is not that of the configured signing key (SHA-256 " + gdoi::signing_key_id(kek_.signature_public_key) +
           "); to replace the key, start with the old key file and reload with the new one (coveyctl ks reload)";
  for (const LiveTek& t : s.teks) {
    const std::string spi = spi_hex(t.tek.spi);
    if (t.tek.encryption_key.size() != gdoi::tek_encryption_key_size(policy_.tek.cipher) ||
        t.tek.integrity_key.size() != gdoi::tek_integrity_key_size(policy_.tek.integrity))
      return std::string("TEK ") + spi + " key sizes do not fit the configured transform " + policy_.tek.str();
    if (!s.used_spis.count(t.tek.spi)) return std::string("TEK ") + spi + " is not among the used SPIs";
  }
  for (const auto& [addr, m] : s.members)
    for (std::uint32_t sid : m.sids)
      if (sid >= s.next_sid)
        return "member " + addr.str() + " holds SID " + std::to_string(sid) + ", not below next_sid " +
               std::to_string(s.next_sid);
  if (s.next_sid > 0xffff) return "next_sid " + std::to_string(s.next_sid) + " is beyond the 16-bit SID space";
  return std::nullopt;
}

crypto::Result<void> Group::adopt_keys(State s) {
  s.next_sid = 0xffff;  // SIDs are not the keys' business here
  s.members.clear();
  if (auto why = refuse_state(s)) return Error{"group " + policy_.name + ": " + *why};
  kek_ = std::move(s.kek);
  kek_.lifetime_s = policy_.kek.lifetime_s;
  kek_expires_at_ = s.kek_expires_at;
  teks_ = std::move(s.teks);
  used_spis_ = std::move(s.used_spis);
  seq_ = s.seq;
  if (s.pseudotime_epoch_ms != 0) pseudotime_epoch_ms_ = s.pseudotime_epoch_ms;
  return {};
}

crypto::Result<void> Group::restore_state(State s) {
  if (auto why = refuse_state(s)) return Error{"group " + policy_.name + ": " + *why};
  // Everything below the stored mark may have been handed out before the crash.
  const std::uint32_t mark = s.next_sid;
  std::map<Address, Member> members = std::move(s.members);
  if (auto r = adopt_keys(std::move(s)); !r) return r;  // its checks are a part of those above
  next_sid_ = sid_mark_ = mark;
  members_ = std::move(members);
  changed_members_.clear();  // as the store holds them
  return {};
}

crypto::Result<void> Groups::write_now() {
  if (!write_now_) return {};
  return write_now_();
}

void Groups::add(std::unique_ptr<Group> g) {
  std::uint32_t id = g->policy().identity;
  groups_[id] = std::move(g);
}

Group* Groups::find(std::uint32_t identity) {
  auto it = groups_.find(identity);
  return it == groups_.end() ? nullptr : it->second.get();
}

Group* Groups::find(const std::string& name) {
  for (auto& [id, g] : groups_)
    if (g->policy().name == name) return g.get();
  return nullptr;
}

std::variant<GroupDirectory::Offer, ike::Failure> Groups::offer(const wire::IdentificationPayload& id,
                                                                  const ike::Phase1Sa& member) {
  Group* g = nullptr;
  std::string named;
  std::string note;
  if (auto gid = id.group_id()) {
    g = find(*gid);
    named = "group " + std::to_string(*gid);
    // Interop quirk "gdoid group ID": the reference implementation copies
    // the group number in host order, so on x86-64 group 1234 arrives as
    // d2 04 00 00. Only when the RFC reading names no group and the
    // byte-swapped one does; an exact match always wins.
    std::uint32_t swapped = __builtin_bswap32(*gid);
    if (!g && swapped != *gid && (g = find(swapped)))
      note = "GM named group " + std::to_string(swapped) + " little-endian (" + to_hex(id.data) +
             "), as gdoid does; accepted";
  } else {
    named = "group ID of type " + std::to_string(id.type);
  }
  if (!g)
    return ike::Failure{wire::NotifyType::InvalidIdInformation, "GM " + member.peer.address.str() + " asked for unknown " + named};
  if (auto why = g->authorization().refuse(member.peer.address, member.peer_subject))
    return ike::Failure{wire::NotifyType::AuthenticationFailed, "group " + g->policy().name + ": " + *why};
  // covey's private attributes only for a member that sent covey's Vendor
  // ID (docs/ARCHITECTURE.md, "covey's Vendor ID"); any other gets RFC
  // 6407 alone. It is still a member: the operator hears what it will not
  // enforce.
  const gdoi::PeerTraits traits = gdoi::peer_traits(member.peer_vendor_ids);
  auto offer = g->offer(traits, now_ms_);
  offer.interop_note = std::move(note);
  if (std::uint32_t lost = traits.lacks(gdoi::features_needed(g->policy()))) {
    const std::string group = g->policy().name + " (" + std::to_string(g->policy().identity) + ")";
    offer.warning = "GM " + member.peer.address.str() +
                    (traits.covey ? "'s covey Vendor ID lacks features the policy needs; group " + group +
                                        " sends it the policy without: "
                                  : " sent no covey Vendor ID; group " + group + " sends it RFC 6407 policy alone, without: ") +
                    gdoi::feature_names(lost);
  }
  return offer;
}

std::variant<GroupDirectory::Admission, ike::Failure> Groups::admit(const Offer& offer, const ike::Phase1Sa& member,
                                                                      std::uint16_t sid_request) {
  Group* g = find(offer.group_id);
  if (!g) return ike::Failure{wire::NotifyType::InvalidIdInformation, "group " + std::to_string(offer.group_id) + " was removed"};
  if (reserve_sids_ && !g->sids_reserved_for(sid_request)) {
    if (auto reserved = reserve_sids_(*g, g->sid_count(sid_request)); !reserved)
      return ike::Failure{wire::NotifyType::InvalidIdInformation,
                          "group " + g->policy().name + ": cannot reserve SIDs: " + reserved.error()};
  } else if (write_now_ && !g->sids_reserved_for(sid_request)) {
    std::uint32_t old = g->sid_mark();
    g->set_sid_mark(std::min<std::uint32_t>(g->next_sid() + g->sid_count(sid_request) + kSidBlock, 0xffff));
    auto written = write_now_();
    if (!written) {
      g->set_sid_mark(old);
      return ike::Failure{wire::NotifyType::InvalidIdInformation,
                          "group " + g->policy().name + ": cannot reserve SIDs in the state file: " + written.error()};
    }
  }
  // A rekey between message 1 (which fixed the keys offered) and now would
  // admit the member with keys older than the SEQ message 4 gives it, so
  // that it would ignore the push carrying the new ones. It registers again.
  if (!g->offer_current(offer))
    return ike::Failure{wire::NotifyType::InvalidIdInformation,
                        "group " + g->policy().name + " was rekeyed during the registration of GM " +
                            member.peer.address.str() + "; it must register again"};
  auto a = g->admit(member, sid_request, seconds_of(now_ms_), local_);
  if (a) dirty_ = true;
  if (!a) return ike::Failure{wire::NotifyType::InvalidIdInformation, a.error()};
  return std::move(*a);
}

}  // namespace covey::ks
