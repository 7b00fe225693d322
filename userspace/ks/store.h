// Where the key server's state lives between runs: the seam the
// cooperative key servers plug their shared store into. Today's one
// implementation is the local state file (ks/state_store.h); whatever the
// store, the rule is the same: a key, SPI, SID or SEQ is durable in the
// store before any datagram carrying it is sent.
#pragma once

#include <memory>
#include <string>

#include "crypto/result.h"
#include "ks/group.h"

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
};

}  // namespace covey::ks
