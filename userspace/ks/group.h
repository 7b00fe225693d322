// A group as the key server keeps it: policy, the current keys, who may
// join and who has, the numbers that must never repeat (SPIs, SIDs, SEQ)
// and its pseudotime clock. Pure: the caller passes the time.
//
// Time is common/clock.h's: Unix time that NTP steps after the start do
// not move. Lifetimes and schedules count whole seconds (`now`);
// calls that may build a message take milliseconds (`now_ms`), because the
// pseudotime a message carries counts milliseconds.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "crypto/sign.h"
#include "gdoi/pull.h"
#include "gdoi/push.h"

namespace covey::ks {

// The second `now_ms` falls in (floor, also before 1970).
constexpr std::int64_t seconds_of(std::int64_t now_ms) { return (now_ms - ((now_ms % 1000) + 1000) % 1000) / 1000; }

// Time-based anti-replay (TBAR) runs on the key server's pseudotime: the
// milliseconds since the group's epoch, modulo 2^32 (about 49.7 days), as
// members compare stamps. Members learn it from GAP COVEY_PSEUDOTIME_MS.
constexpr std::uint32_t pseudotime_ms(std::int64_t epoch_ms, std::int64_t now_ms) {
  return static_cast<std::uint32_t>(static_cast<std::uint64_t>(now_ms) - static_cast<std::uint64_t>(epoch_ms));
}

// Who may register: addresses or prefixes, and certificate subjects when
// certificates authenticate phase 1. Empty lists allow nobody.
struct Authorization {
  std::vector<gdoi::Prefix> prefixes;
  std::vector<std::string> subjects;  // exact, or ending in '*' for a prefix match

  // nullopt when allowed, else the reason ("10.1.99.9 is not in the authorization list").
  std::optional<std::string> refuse(const Address& peer, const std::string& subject) const;
};

struct Member {
  Address address;
  std::string identity;  // ID payload or certificate subject, for logs
  std::int64_t registered_at = 0;
  std::vector<std::uint32_t> sids;
  std::uint32_t registrations = 0;
  // Where unicast rekeys go: the UDP port the member registered from (its
  // address is `address`), and the key server address it registered to,
  // which the push must come from: a member's socket may be connected to it.
  std::uint16_t port = 848;
  std::optional<Address> registered_to;
  // Delivery of unicast rekeys (RFC 8263): the last SEQ it acknowledged,
  // and how many rekeys in a row it did not (three drop it, as GET VPN does).
  std::optional<std::uint32_t> last_acked_seq;
  std::uint32_t missed_rekeys = 0;
  // The SEQ its registration's message 4 carried: a push at or below it
  // brought nothing the registration did not. Memory only.
  std::uint32_t registered_seq = 0;
  // What it announced in Main Mode (covey's Vendor ID or none), and so
  // what its registration and every unicast push to it carry.
  gdoi::PeerTraits traits;

  Endpoint endpoint() const { return Endpoint{address, port}; }
};

class Group {
 public:
  // Generates the first KEK and TEK from the CSPRNG, and starts the
  // pseudotime at 0 (within the second `now`).
  static crypto::Result<std::unique_ptr<Group>> create(gdoi::GroupPolicy policy, Authorization auth,
                                                       crypto::PrivateKey signing_key, Address ks_address,
                                                       std::int64_t now);

  const gdoi::GroupPolicy& policy() const { return policy_; }
  const std::map<Address, Member>& members() const { return members_; }
  const gdoi::Kek& kek() const { return kek_; }
  std::int64_t kek_expires_at() const { return kek_expires_at_; }
  struct LiveTek {
    gdoi::Tek tek;
    std::int64_t created_at = 0, expires_at = 0;
  };
  const std::vector<LiveTek>& teks() const { return teks_; }
  std::uint32_t seq() const { return seq_; }
  // Unix ms at which the pseudotime was 0. Set when the group is first
  // created and kept in the state file, never changed after: members'
  // stamps stay comparable across key server restarts and rekeys.
  std::int64_t pseudotime_epoch_ms() const { return pseudotime_epoch_ms_; }
  std::uint32_t pseudotime_ms(std::int64_t now_ms) const { return ks::pseudotime_ms(pseudotime_epoch_ms_, now_ms); }

  // What the state file (ks/state_store.h) keeps of a group: everything
  // that must survive a restart for members to carry on without
  // registering again, and for no SPI, SID or SEQ to be used twice.
  struct State {
    gdoi::Kek kek;
    std::int64_t kek_expires_at = 0;
    std::vector<LiveTek> teks;
    std::set<std::uint32_t> used_spis;
    // No SID below this is ever handed out again: the reservation mark,
    // not the next SID in memory (see Groups::admit).
    std::uint32_t next_sid = 0;
    std::uint32_t seq = 0;
    // 0 in files written before covey kept pseudotime: the group then
    // keeps the epoch it was created with, and the next save records it.
    std::int64_t pseudotime_epoch_ms = 0;
    std::map<Address, Member> members;
  };
  State export_state() const;
  // export_state() but for the members, which the state file writes from
  // members() in place: copying thousands of them for every save would cost
  // more than writing them.
  State export_keys() const;
  // nullopt when `s` can replace this group's keys and counters, else why
  // not ("KEK signature public key differs from the configured signing key").
  std::optional<std::string> refuse_state(const State& s) const;
  crypto::Result<void> restore_state(State s);
  // The keys and counters another key server of the cluster made (ks/coop.h):
  // KEK, TEKs, used SPIs, SEQ and pseudotime epoch. Members and SIDs stay:
  // those are shared record by record, and SIDs by range.
  crypto::Result<void> adopt_keys(State s);

  // The last push of the group's newest rekey, as the rekeyer built it: a
  // new primary of a cluster finishes its delivery (ks/coop.h). The
  // datagrams are ciphertext signed by the group; the ack key is secret.
  struct LastPush {
    std::uint32_t seq = 0;
    std::int64_t at = 0;  // Unix seconds it was first sent
    std::uint8_t reason = 0;  // ks::RekeyReason
    bool unicast = true;
    std::uint32_t retransmit_period_s = 0, retransmit_count = 0;
    gdoi::AckKey ack_key;
    std::map<gdoi::PeerTraits, std::shared_ptr<const Bytes>> datagrams;
  };
  const std::optional<LastPush>& last_push() const { return last_push_; }
  void set_last_push(std::optional<LastPush> p) { last_push_ = std::move(p); }

  // SIDs below the mark are covered by the state file; Groups::admit raises
  // it (and writes the file) before handing out any SID at or above it.
  bool sids_reserved_for(std::uint16_t sid_request) const { return next_sid_ + sid_count(sid_request) <= sid_mark_; }
  std::uint32_t sid_mark() const { return sid_mark_; }
  void set_sid_mark(std::uint32_t mark) { sid_mark_ = mark; }
  // A cluster hands each key server SID ranges of its own: [first, end).
  void set_sid_range(std::uint32_t first, std::uint32_t end) {
    next_sid_ = first;
    sid_mark_ = end;
  }
  std::uint32_t next_sid() const { return next_sid_; }
  // SIDs a registration asking for `sid_request` gets: none when the policy
  // needs none (RFC 6407 3.5: they are for counter-mode TEKs; covey's TBAR
  // stamp also names its sender by SID), so that the 16-bit SID space does
  // not cap a group that uses neither at 65,535 registrations.
  unsigned sid_count(std::uint16_t sid_request) const;

  // What message 2 and 4 carry for `peer`, with lifetimes and the
  // pseudotime as of `now_ms`.
  gdoi::GroupDirectory::Offer offer(gdoi::PeerTraits peer, std::int64_t now_ms) const;
  // False when a rekey replaced the keys of `offer` since it was made: the
  // member would be admitted with keys older than the SEQ it is given.
  bool offer_current(const gdoi::GroupDirectory::Offer& offer) const;
  // Records the member and allocates its SIDs (at least one: TBAR needs it).
  // `registered_to`: the key server address the member registered to.
  crypto::Result<gdoi::GroupDirectory::Admission> admit(const ike::Phase1Sa& member, std::uint16_t sid_request,
                                                        std::int64_t now,
                                                        const std::optional<Address>& registered_to = std::nullopt);
  const Authorization& authorization() const { return auth_; }
  void set_authorization(Authorization auth) { auth_ = std::move(auth); }

  // A new TEK with an SPI this group has never used.
  crypto::Result<gdoi::Tek> new_tek(std::int64_t now);
  // A new KEK: new SPI (cookie pair) and key for the configured KEK cipher;
  // the signature key stays (members verify with the one they hold; only a
  // rollover, ks/rekey.h, announces another).
  crypto::Result<gdoi::Kek> new_kek() const;

  // ----------------------------------------------------- rekeys (ks/rekey.h)
  const crypto::PrivateKey& signing_key() const { return signing_key_; }
  // After the rollover push (signed with the old key, its KEK carrying the
  // new public key) is on its way: every later push is signed with `key`.
  void set_signing_key(crypto::PrivateKey key) { signing_key_ = std::move(key); }
  const Address& ks_address() const { return ks_address_; }
  // A member found here may be changed by the caller: it is recorded as
  // changed, as are those admitted, put and removed.
  Member* find_member(const Address& a);
  // The same to read only: not recorded, so not written to the state file.
  const Member* member(const Address& a) const;
  bool remove_member(const Address& a);
  void put_member(Member m) {
    changed_members_.insert(m.address);
    members_[m.address] = std::move(m);
  }
  // Members changed (or removed: no longer in members()) since the state
  // file last recorded them: what its journal appends (ks/state_store.h),
  // so that a lazy save costs what changed, not the member count.
  const std::set<Address>& changed_members() const { return changed_members_; }
  void clear_changed_members() { changed_members_.clear(); }
  // A new policy from a reload; name and identity never change.
  void set_policy(gdoi::GroupPolicy policy);
  void install_tek(LiveTek tek) { teks_.push_back(std::move(tek)); }
  void install_kek(gdoi::Kek kek, std::int64_t expires_at);
  void set_seq(std::uint32_t seq) { seq_ = seq; }
  void set_tek_expiry(std::uint32_t spi, std::int64_t expires_at);
  // Forgets every TEK but `spi` (members keep theirs until deactivation):
  // after a transform change the old ones cannot be offered under the new one.
  void keep_only_tek(std::uint32_t spi);
  // Forgets TEKs past their lifetime; returns how many.
  std::size_t prune_teks(std::int64_t now);
  // What a rekey changes, so that one whose state cannot be saved is undone
  // (SPIs it drew stay used: never handing them out is harmless).
  struct Keys {
    gdoi::GroupPolicy policy;
    gdoi::Kek kek;
    std::int64_t kek_expires_at = 0;
    std::vector<LiveTek> teks;
    std::uint32_t seq = 0;
  };
  Keys keys() const { return Keys{policy_, kek_, kek_expires_at_, teks_, seq_}; }
  void restore_keys(Keys k);

 private:
  Group(gdoi::GroupPolicy policy, Authorization auth, crypto::PrivateKey key, Address ks_address)
      : policy_(std::move(policy)), auth_(std::move(auth)), signing_key_(std::move(key)), ks_address_(ks_address) {}

  gdoi::GroupPolicy policy_;
  Authorization auth_;
  crypto::PrivateKey signing_key_;
  Address ks_address_;
  gdoi::Kek kek_;
  std::int64_t kek_expires_at_ = 0;
  std::vector<LiveTek> teks_;
  std::set<std::uint32_t> used_spis_;
  std::uint32_t next_sid_ = 0;
  std::uint32_t sid_mark_ = 0;
  std::uint32_t seq_ = 0;
  std::int64_t pseudotime_epoch_ms_ = 0;
  std::map<Address, Member> members_;
  std::set<Address> changed_members_;
  std::optional<LastPush> last_push_;
};

// The key server's groups by identity, answering GROUPKEY-PULL.
class Groups : public gdoi::GroupDirectory {
 public:
  void add(std::unique_ptr<Group> g);
  Group* find(std::uint32_t identity);
  Group* find(const std::string& name);
  const std::map<std::uint32_t, std::unique_ptr<Group>>& all() const { return groups_; }
  // The time of the datagram being answered, in ms (the pseudotime of
  // message 2); lifetimes and registration times use its second.
  void set_clock_ms(std::int64_t now_ms) { now_ms_ = now_ms; }
  // The key server address the exchange being answered arrived on: admit()
  // records it as where the member's rekeys must come from.
  void set_local(const Address& local) { local_ = local; }

  // Durability (ks/state_store.h). `write_now` must write the state file
  // and return only once it is on disk; admit() calls it before handing out
  // a SID beyond the reserved mark, reserving kSidBlock more at a time, so
  // an fsync is paid once per block, not per registration. A crash skips
  // the rest of a block and never reuses a SID. Member records are only
  // marked dirty: the caller writes them lazily (at most once a second and
  // at shutdown), because a lost record only means that member misses
  // unicast rekeys and registers again. Unset (tests): nothing is written.
  static constexpr std::uint32_t kSidBlock = 1024;
  void set_write_now(std::function<crypto::Result<void>()> write_now) { write_now_ = std::move(write_now); }
  // How admit() gets SIDs beyond those reserved: at least `need` more for
  // the group, durable before any is handed out. Unset: write_now() after
  // raising the group's mark by kSidBlock (the state file's way).
  using ReserveSids = std::function<crypto::Result<void>(Group&, unsigned need)>;
  void set_reserve_sids(ReserveSids reserve) { reserve_sids_ = std::move(reserve); }
  bool state_dirty() const { return dirty_; }
  void mark_state_written() {
    dirty_ = false;
    for (auto& [id, g] : groups_) g->clear_changed_members();
  }
  void mark_state_dirty() { dirty_ = true; }
  // Writes the state file now (rekeys: before the push carrying a new key,
  // SPI or SEQ is sent). Without a writer (tests), nothing is written.
  crypto::Result<void> write_now();

  std::variant<Offer, ike::Failure> offer(const wire::IdentificationPayload& id, const ike::Phase1Sa& member) override;
  std::variant<Admission, ike::Failure> admit(const Offer& offer, const ike::Phase1Sa& member,
                                              std::uint16_t sid_request) override;

 private:
  std::map<std::uint32_t, std::unique_ptr<Group>> groups_;
  std::int64_t now_ms_ = 0;
  std::optional<Address> local_;
  std::function<crypto::Result<void>()> write_now_;
  ReserveSids reserve_sids_;
  bool dirty_ = false;
};

}  // namespace covey::ks
