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
//   at any member count (ks/key_server.h). Those saves append to the
//   journal (below), so each costs what changed since the last, not the
//   member count. A member whose record is
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
//
// The journal, <state_dir>/ks-state.journal (mode 0600), continues one
// snapshot (the file above) with what changed since it was written:
//
//   covey-ks-journal
//   version 1
//   base <the snapshot's sha256 line's hex>
//   record <length> <hex SHA-256 of the payload>
//   <payload: JSON, {"groups":[{"identity":134,"next_sid":N,"keys":{..},
//     "members":[member, ...],"removed":["10.1.2.3", ...]}]}>
//
// one record per save, appended and fsynced (fdatasync) before the save
// returns: "keys" (a group's keys and counters as the snapshot writes them,
// no members) only when they changed, the SID mark always, each member
// changed since the last save, and each member removed. restore_state
// applies the records in order over the snapshot. A journal whose base is
// not the snapshot's predates it (a crash between the snapshot's rename
// and the journal's removal) and is ignored: the snapshot holds all of
// it. A record cut short at the end is a save that never returned (a
// crash mid-append) and is ignored; one that does not match its digest
// with records after it is corruption, and refused. When the journal
// grows past the snapshot's size, the next save writes a new snapshot and
// removes the journal: each byte of journal is rewritten once at most, so
// a save costs O(changes) amortized at any member count. A key server
// that finds no journal (files before it) reads the snapshot alone.
#pragma once

#include <map>
#include <string>

#include "crypto/result.h"
#include "ks/group.h"

namespace covey::ks {

inline constexpr const char* kStateFileName = "ks-state";
inline constexpr int kStateFormatVersion = 1;
inline constexpr const char* kJournalSuffix = ".journal";
inline constexpr int kJournalFormatVersion = 1;

// The snapshot a journal continues, as the state file's writer keeps it
// between saves. An empty `base`: the next save writes a snapshot.
struct JournalMark {
  Bytes base;  // SHA-256 of the snapshot's body (its sha256 line)
  std::uint64_t snapshot_bytes = 0, journal_bytes = 0;  // 0: no journal file yet
  std::map<std::uint32_t, Bytes> keys;  // per group, SHA-256 of its keys as the file holds them
};

// <state_dir>/ks-state
std::string state_file_path(const std::string& state_dir);

// Writes `groups` to `path` atomically: a temporary file in the same
// directory, written and fsynced, renamed over `path`, then the directory
// fsynced. On any failure `path` is as it was and the temporary is removed.
// The directory is created (0700) if missing.
// Removes the journal (the snapshot holds everything); `mark`, when
// given, is set for append_state to continue it.
crypto::Result<void> save_state(const std::string& path, const Groups& groups, JournalMark* mark = nullptr);

// Appends to `path`'s journal what changed since `mark` (Group::changed_members,
// keys, SID marks), fsynced; the caller clears the groups' changed members
// once it returns. Fails without writing when `mark` has no base (write a
// snapshot instead); on a failed write `mark` loses its base, so that the
// next save writes a snapshot rather than append after a partial record.
crypto::Result<void> append_state(const std::string& path, const Groups& groups, JournalMark& mark);

// Replaces the keys and counters of `groups` (already created from the
// config) with those in `path`. Errors name the file, the group and the
// defect. All groups are checked before any is changed. The journal, if
// any, is applied. `mark`, when given, is set so that append_state may go
// on with the journal, or left without a base when the next save must
// write a snapshot (the journal's last record was cut short).
crypto::Result<void> restore_state(const std::string& path, Groups& groups, JournalMark* mark = nullptr);

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
