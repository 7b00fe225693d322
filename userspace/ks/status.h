// What `coveyctl ks group` and `coveyctl ks members` show, as JSON (the
// contract is userspace/control/PROTOCOL.md). Key material only on request.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ks/group.h"
#include "ks/rekey.h"

namespace covey::ks {

// `rekeyer` (may be null) adds rekeys_sent, last_rekey and next_rekey_at.
// `now_ms`: the key server's clock (common/clock.h) in ms, for the
// pseudotime; lifetimes count its second. The times shown (last_rekey.at,
// next_rekey_at, registered_at) are moved by `wall_offset_s` onto the
// host's wall clock.
nlohmann::json group_status(const Groups& groups, const Rekeyer* rekeyer, const std::optional<std::string>& name,
                            bool show_keys, std::int64_t now_ms, std::int64_t wall_offset_s = 0);

// Which members a ks.members request lists: an address prefix, registered
// at or after a time. Filtering happens here, in the key server, so a
// listing of a few members out of 100,000 costs what those few cost.
struct MemberFilter {
  std::optional<gdoi::Prefix> prefix;
  std::optional<std::int64_t> since;  // on the key server's clock (common/clock.h)

  bool empty() const { return !prefix && !since; }
  bool matches(const Member& m) const;
  // The request's "prefix" ("10.1.0.0/16", "2001:db8::/32", an address) and
  // "since" (unix seconds on the host's clock, moved by `wall_offset_s`
  // onto the key server's). nullopt and `why` set when either is malformed.
  static std::optional<MemberFilter> of(const nlohmann::json& request, std::int64_t wall_offset_s,
                                        std::string* why);
};

// ks.members answered in one line (PROTOCOL.md): every selected member, or
// with "count": how many per group. A client that sends "stream":true gets
// a MemberStream instead.
nlohmann::json member_status(const Groups& groups, const std::optional<std::string>& name,
                             std::int64_t wall_offset_s = 0, const MemberFilter& filter = {});
nlohmann::json member_count(const Groups& groups, const std::optional<std::string>& name,
                            const MemberFilter& filter = {});
// True for a ks.members request answered by a MemberStream.
bool streams_members(const nlohmann::json& request);

// ks.members as a streamed reply (PROTOCOL.md, "Streamed replies"): a
// header line, per group a group line and member lines of up to
// kMembersPerLine members, an end line with the total. next() produces one
// piece: at most kMembersPerPiece members listed and kExaminedPerPiece
// examined (a filter may pass over many), so the key server's loop serves
// registrations between pieces.
//
// No snapshot is taken: each piece resumes after the last address it
// examined, in address order, and lists the records as they are then. A
// member registered for the whole stream is listed exactly once; one that
// comes or goes meanwhile is listed if it is there when the cursor passes
// its address. Groups are looked up again for each piece by identity.
class MemberStream {
 public:
  static constexpr std::size_t kMembersPerLine = 500;
  static constexpr std::size_t kMembersPerPiece = 2000;
  static constexpr std::size_t kExaminedPerPiece = 20000;

  // `groups` must outlive the stream. An unknown group or a malformed
  // filter makes the stream one {"ok":false,...} line.
  MemberStream(const Groups& groups, const nlohmann::json& request, std::int64_t wall_offset_s);
  // The next piece (whole lines; "" when a piece examined members but
  // listed none), or nullopt once the end line has been produced.
  std::optional<std::string> next();

 private:
  const Groups& groups_;
  std::vector<std::uint32_t> selected_;  // group identities, in order
  MemberFilter filter_;
  std::int64_t wall_offset_s_;
  std::string refusal_;  // set: the reply is this one line
  bool header_sent_ = false, done_ = false;
  std::size_t group_ = 0;  // index into selected_
  bool in_group_ = false;
  std::optional<Address> cursor_;  // last address examined in the current group
  std::size_t listed_ = 0;
};
// {"rekeys_sent":..,"last_rekey":..,"next_rekey_at":..} of one group.
nlohmann::json rekey_status(const Group& g, const Rekeyer& rekeyer, std::int64_t now, std::int64_t wall_offset_s = 0);

}  // namespace covey::ks
