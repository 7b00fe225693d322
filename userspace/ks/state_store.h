// The key server's durable state: every group's KEK, live TEKs, used SPIs,
// SID reservation mark, SEQ, pseudotime epoch and members, in one file,
// <state_dir>/ks-state, so that after a crash (kill -9) and restart the KS
// carries on the group: members need not register again, no SPI or SID is
// handed out twice, and SEQ only grows.
//
// The file (mode 0600; the directory is created 0700) is three text lines
// and a JSON document:
//
//   covey-ks-state
//   version 1
//   sha256 <hex SHA-256 of everything after this line>
//   {"format":"covey-ks-state","version":1,"groups":[...]}
//
// save_state writes the document directly, a group's keys and counters a
// field a line and each member on one line; restore_state parses it as
// JSON, so it also reads the indented files earlier versions wrote.
//
// Times (TEK and KEK expiry, pseudotime epoch, registrations) are Unix
// times of common/clock.h: a wall-clock step between two runs shifts them
// by the step (forward: the keys are rekeyed at once; back: they live
// longer by the step); one while covey-ks runs does not.
//
// Key material is hex: the file is root's alone. A missing first line is
// "not a covey-ks state file", another version is refused by number, and a
// digest mismatch means truncation or corruption. Nothing is ever silently
// replaced: a file that cannot be read is an error for the operator.
//
// When it is written:
// - before any key, SPI or SEQ in it is sent (they are rare: startup and
//   rekeys). ks/rekey.cpp saves after raising SEQ and making the TEK and
//   KEK, and sends nothing when the save fails.
// - SIDs are reserved in blocks (Groups::kSidBlock): the file holds a mark
//   above every SID handed out, written before the first SID past the old
//   mark is sent. One fsync per block, not per registration; a crash skips
//   the rest of the block.
// - members lazily and at clean shutdown: covey-ks saves dirty members a
//   second after the last save at the earliest, and no sooner than 20
//   times what that save took, so that saves stay a small part of its time
//   at any member count (ks/key_server.h). A member whose record is
//   lost misses unicast rekeys and registers again, which is a nuisance,
//   not a security fault, and not worth an fsync per registration at
//   thousands of registrations a second. The same holds
//   for each member's rekey delivery record (port, last acknowledged SEQ,
//   consecutive misses).
//
// Policy: the file must name exactly the configured groups (identity and
// name), and each group's TEK transform, KEK cipher and KEK signature
// algorithm and key must be those configured, since the stored keys are
// only usable with them; changing them needs a rekey to the new policy
// (`coveyctl ks reload` on the running key server) or removing the file,
// which makes every member register again. Other policy (ACL, lifetimes,
// rekey transport) may change across a restart: new registrations get it,
// existing members when they next register or are rekeyed.
#pragma once

#include <string>

#include "crypto/result.h"
#include "ks/group.h"

namespace covey::ks {

inline constexpr const char* kStateFileName = "ks-state";
inline constexpr int kStateFormatVersion = 1;

// <state_dir>/ks-state
std::string state_file_path(const std::string& state_dir);

// Writes `groups` to `path` atomically: a temporary file in the same
// directory, written and fsynced, renamed over `path`, then the directory
// fsynced. On any failure `path` is as it was and the temporary is removed.
// The directory is created (0700) if missing.
crypto::Result<void> save_state(const std::string& path, const Groups& groups);

// Replaces the keys and counters of `groups` (already created from the
// config) with those in `path`. Errors name the file, the group and the
// defect. All groups are checked before any is changed.
crypto::Result<void> restore_state(const std::string& path, Groups& groups);

// What the cooperative key servers' etcd store (ks/coop.h) shares with the
// file: one group's keys and counters as the file writes a group, with no
// members, and one member as the file writes it. The group's text holds key
// material: the caller seals it and wipes it. decode_group_keys checks, as
// restore_state does, that the text is this group's and fits its policy;
// `stored_in` names where it came from in errors.
std::string encode_group_keys(const Group& g);
crypto::Result<Group::State> decode_group_keys(std::string_view text, const Group& g, const std::string& stored_in);
std::string encode_member(const Member& m);
crypto::Result<Member> decode_member(std::string_view text, const std::string& where);

}  // namespace covey::ks
