// Where the key server's state lives between runs: the seam the
// cooperative key servers plug their shared store into. Today's one
// implementation is the local state file (ks/state_store.h); whatever the
// store, the rule is the same: a key, SPI, SID or SEQ is durable in the
// store before any datagram carrying it is sent.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/ks_config.h"
#include "crypto/result.h"
#include "ks/event.h"
#include "ks/group.h"
#include "ks/state_store.h"

namespace covey::ks {

class Store {
 public:
  virtual ~Store() = default;
  // For log lines and errors: "state file /var/lib/covey/ks-state".
  virtual std::string describe() const = 0;
  // Replaces the keys and counters of `groups` (created from the config)
  // with the stored ones: true. false when the store holds nothing yet (a
  // first start). An error names the defect; the caller must not start
  // then, since replacing the state would strand every member.
  virtual crypto::Result<bool> restore(Groups& groups) = 0;
  // Writes all of `groups`, and returns only once it is durable.
  virtual crypto::Result<void> save(const Groups& groups) = 0;

  // What a shared store (ks/coop.h) adds; a local one has defaults.
  // SIDs for `g` beyond those it holds, at least `need`, durable before any
  // is handed out. Empty: the state file's way (Groups::set_reserve_sids).
  virtual Groups::ReserveSids sid_reserver() { return {}; }
  // Whether this key server may rekey and send pushes now: always alone,
  // only while it is the primary in a cluster. `primary_name`: who is.
  virtual bool primary() const { return true; }
  virtual std::string primary_name() const { return {}; }
  // Why not, for the operator, when primary() is false.
  virtual std::string not_primary() const { return {}; }
  // What other key servers changed since the last call, applied to
  // `groups`, and whether this key server's role changed: become primary,
  // it finishes its predecessor's pushes (Rekeyer::take_over); deposed, it
  // stops retransmitting its own (Rekeyer::stand_down).
  enum class RoleChange { None, BecamePrimary, BecameSecondary };
  virtual RoleChange poll(Groups& /*groups*/, std::int64_t /*now_ms*/) { return RoleChange::None; }
  // Called from another thread when poll() has something to do.
  virtual void set_wakeup(std::function<void()> /*wakeup*/) {}
  // `coveyctl ks cluster`: the reply to ks.cluster.
  virtual nlohmann::json cluster_status(const Groups& /*groups*/, std::int64_t /*now_ms*/, std::int64_t /*wall_offset_s*/) {
    return {{"ok", false}, {"error", "this key server is not in a cluster (no [cluster] in its configuration)"}};
  }
  // A reload: whether `next` may be taken (a secondary of a cluster takes
  // only the policy its primary has published), and then that it was.
  virtual crypto::Result<void> check_reload(const config::KsConfig& /*next*/, const Groups& /*groups*/) { return {}; }
  virtual void reconfigure(const config::KsConfig& /*cfg*/, Groups& /*groups*/) {}
    // What the store itself logged (elections, etcd errors).
  virtual std::vector<Event> take_events() { return {}; }
};

// <state_dir>/ks-state (ks/state_store.h has the format and its rules).
class StateFile : public Store {
 public:
  explicit StateFile(std::string state_dir);
  std::string describe() const override { return "state file " + path_; }
  crypto::Result<bool> restore(Groups& groups) override;
  crypto::Result<void> save(const Groups& groups) override;

 private:
  std::string path_;
  JournalMark mark_;  // ks/state_store.h: saves append to the journal while it has a base
};

}  // namespace covey::ks
