// Cooperative key servers (GET VPN's COOP) on etcd: the key server's
// second Store. Several covey-ks serve one group; etcd holds what they
// share, elects one primary, and fences it.
//
// Keys under the cluster's prefix P ([cluster] prefix, "/covey"):
//   P/ks/<name>                     this key server: address, priority, the
//                                   SEQ and SPIs it holds; under its lease,
//                                   so it is gone when the key server is
//   P/primary                       the primary's name, under its lease
//   P/group/<id>/policy             what every key server of the group must
//                                   be configured with (a digest would say
//                                   only that, not which field differs)
//   P/group/<id>/keys               sealed: KEK, TEKs, used SPIs, SEQ,
//                                   pseudotime epoch (ks/state_store.h's
//                                   group text without members and SIDs)
//   P/group/<id>/push               sealed: the newest push, its datagrams
//                                   and ack key, for a new primary to finish
//   P/group/<id>/sid                the first SID no key server reserved
//   P/group/<id>/member/<address>   a member and its delivery record
//
// Sealing (crypto/seal.h): AES-256-GCM under the cluster's sealing key with
// the etcd key as associated data; etcd's data alone yields no key.
//
// Election: the best live key server (priority, then the higher address)
// creates P/primary under its lease when there is none. A returning key
// server of higher priority does not take the role back while the
// primary lives (GET VPN behaves so until the next election): a
// change of primary costs the members nothing, but needlessly moving
// rekeys between key servers does invite races. A key server waits one
// lease TTL after it joins before it may stand, so that key servers
// started together see each other and elect the best.
//
// Fencing: the primary changes keys, SEQ and pushes only in transactions
// that compare P/primary's create revision with the one its election
// created (so a deposed primary's write fails) and the keys' mod revision
// with the one it last saw (so a primary that has not yet seen its
// predecessor's last write cannot overwrite it). A push leaves only after
// its transaction committed: the state file's rule, saved before sent. It
// also sends nothing once its lease may have ended: it counts the TTL from
// when it sent its last successful keep-alive, and stands down then; a push
// it queued before but had not handed to its socket by then (the rest of its
// tick may have waited that long on etcd) is dropped.
//
// Policy: every key server checks its groups against P/group/<id>/policy
// when it joins. A reload on the primary rekeys and rewrites that record in
// the same fenced transaction; a secondary's reload is taken (quietly: the
// primary's push carries it) only when it matches the record.
//
// Members and SIDs: any key server records the members it admits; SIDs come
// from ranges each reserves with a compare-and-swap on P/group/<id>/sid,
// the first when it joins.
//
// etcd unreachable: no key server can rekey (the primary's fenced writes
// fail, and it stops when its lease may have ended); every key server goes
// on admitting members with the keys it holds, from its reserved SIDs, and
// writes them when etcd is back.
//
// Threads: the key server's thread makes every write here; one thread of
// the store's own keeps the lease alive and waits on the watch of P/, and
// wakes the key server's loop when events arrive.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/ks_config.h"
#include "crypto/secret.h"
#include "etcd/client.h"
#include "ks/store.h"

namespace covey::ks {

class Coop : public Store {
 public:
  // Connects to etcd and reads the sealing key; nothing is written yet.
  // `state_dir`: where a state file to migrate from may be.
  static crypto::Result<std::unique_ptr<Coop>> open(const config::KsConfig& cfg);
  ~Coop() override;

  std::string describe() const override;
  // Joins the cluster: checks each group's policy against the cluster's
  // (the error names every field that differs), then takes the shared
  // keys, members and last push; a group etcd does not hold yet is seeded
  // from the local state file when there is one (migration), else from
  // the new keys in `groups`.
  crypto::Result<bool> restore(Groups& groups) override;
  crypto::Result<void> save(const Groups& groups) override;
  Groups::ReserveSids sid_reserver() override;
  bool primary() const override;
  std::string primary_name() const override { return primary_; }
  std::string not_primary() const override;
  RoleChange poll(Groups& groups, std::int64_t now_ms) override;
  void set_wakeup(std::function<void()> wakeup) override;
  nlohmann::json cluster_status(const Groups& groups, std::int64_t now_ms, std::int64_t wall_offset_s) override;
  std::vector<Event> take_events() override;
  crypto::Result<void> check_reload(const config::KsConfig& next, const Groups& groups) override;
  void reconfigure(const config::KsConfig& cfg, Groups& groups) override;

  // `covey-ks --check` against the running cluster, writing nothing: each
  // group's policy and signing key compared with the cluster's, and the
  // sealing key tried on the cluster's keys. The problems, empty when none;
  // an error when etcd or a key file cannot be read.
  static crypto::Result<std::vector<std::string>> check(const config::KsConfig& cfg);

 private:
  struct Shared;  // between the key server's thread and the store's
  struct GroupSync {
    std::int64_t keys_rev = 0;  // mod revision of P/group/<id>/keys as last seen or written
    Bytes keys_digest;          // SHA-256 of the keys text then
    std::int64_t push_rev = 0;
    std::uint32_t push_seq = 0;
    std::map<Address, std::size_t> member_hash;  // of the record as last seen or written
    std::string policy;  // P/group/<id>/policy as last seen or written
  };
  struct Peer {
    std::string name;
    Address address;
    std::uint32_t priority = 0;
    std::int64_t seen_ms = 0;
    nlohmann::json groups;
  };

  Coop(const config::KsConfig& cfg, etcd::Options options, crypto::SecretBytes sealing_key);
  std::string key(const std::string& rest) const { return prefix_ + "/" + rest; }
  std::string group_key(const Group& g, const std::string& rest) const;
  crypto::Result<void> check_policy(const Group& g);
  crypto::Result<void> join();
  crypto::Result<void> seed(Groups& groups, Group& g, bool from_file);
  crypto::Result<void> take_keys(Group& g, const etcd::KeyValue& kv);
  crypto::Result<void> take_push(Group& g, const etcd::KeyValue& kv);
  void take_member(Group& g, const etcd::KeyValue& kv, const std::string& address);
  void apply(Groups& groups, const etcd::Event& e);
  crypto::Result<void> write_keys(const std::vector<const Group*>& changed);
  crypto::Result<void> write_members(const Groups& groups);
  crypto::Result<void> reserve(Group& g, unsigned need);
  void announce(const Groups& groups, std::int64_t now_ms);
  bool campaign(std::int64_t now_ms);
  bool lease_valid() const;
  std::int64_t lease() const;
  void log(Severity s, std::string text) { events_.push_back(Event{s, std::move(text)}); }

  config::KsConfig cfg_;
  etcd::Options options_;
  std::string prefix_, name_;
  Address address_;
  std::uint32_t priority_ = 0;
  std::int64_t ttl_s_ = 0;
  crypto::SecretBytes sealing_key_;
  etcd::Client client_;
  std::unique_ptr<Shared> shared_;
  std::map<std::uint32_t, GroupSync> sync_;
  std::map<std::string, Peer> peers_;
  std::string primary_;
  std::int64_t leader_rev_ = 0;    // P/primary's create revision while this key server holds it
  std::int64_t leader_lease_ = 0;  // the lease it was elected under: a later one holds no role
  bool acting_ = false;            // the role poll() last reported: primary

  std::int64_t joined_at_ = 0;   // steady ms
  std::int64_t announced_lease_ = 0, announced_at_ = 0;
  std::string announced_view_;
  std::vector<Event> events_;
};

}  // namespace covey::ks
