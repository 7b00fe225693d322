// covey-ks's reload (SIGHUP, `coveyctl ks reload`): the configuration file
// read again and applied to the running key server, or refused whole, with
// every reason, when any part cannot change without a restart.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/ks_config.h"
#include "ks/dispatcher.h"
#include "ks/rekey.h"

namespace covey::ks {

struct KsReload {
  bool ok = false;
  std::vector<std::string> problems;  // when !ok: every one, nothing changed
  std::vector<std::string> rekeyed;   // groups rekeyed for a member-visible policy change
  std::vector<std::string> rolled_over;  // of those, groups whose rekey rolled the signing key over
  std::vector<std::string> errors;    // ok but a group's rekey failed (its policy unchanged)
};

// What a running key server cannot take from `next` without a restart:
// [server] settings, groups added or removed, a group's identity, a
// group's rekey signing key in a cluster. Empty: reloadable.
std::vector<std::string> reload_problems(const config::KsConfig& running, const config::KsConfig& next,
                                         const Groups& groups);

// Applies `next` when reload_problems finds nothing: phase-1 proposals
// and credentials, authorization, rekey margins, and each group's policy,
// rekeying the groups whose members would see the change, and rolling a
// group's signing key over to the one its file holds now (ks/rekey.h). `running`
// becomes `next` on success.
// `rekey` false (a secondary of a cluster): the policy is taken quietly,
// since the primary's rekey brings it to the members.
KsReload reload(config::KsConfig& running, config::KsConfig next, Groups& groups, Dispatcher& dispatcher,
                Rekeyer& rekeyer, std::int64_t now_ms, bool rekey = true);

}  // namespace covey::ks
