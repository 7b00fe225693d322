// A group's ACL compiled into the tables the BPF classifier reads
// (bpf/covey_maps.h, design in bpf/README.md), the same lookups done in
// user space over those tables, and the reference: a plain first-match
// walk over the entries that the compiled form must always agree with.
// Pure: no BPF, no kernel; the loader (datapath.h) copies the tables into
// maps.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "covey_maps.h"
#include "crypto/result.h"
#include "datapath/acl_tables.h"
#include "gdoi/policy.h"

namespace covey::datapath {

// What the classifier sees of a packet (what bpf/parse.h extracts).
struct PacketFields {
  std::uint8_t family = 4;                       // 4 or 6
  std::array<std::uint8_t, 16> source{};         // IPv4 in the first 4 bytes
  std::array<std::uint8_t, 16> destination{};
  std::uint32_t protocol = 0;                    // 0..255, or COVEY_PROTO_UNSEEN
  std::uint32_t source_port = COVEY_PORT_UNSEEN;  // 0..65535, or COVEY_PORT_UNSEEN
  std::uint32_t destination_port = COVEY_PORT_UNSEEN;
};

// Cisco extended-ACL semantics for one entry: family, prefixes, protocol
// (0 = any), ports for TCP and UDP entries only. An unseen protocol or
// port matches a non-"any" field of a permit and not of a deny
// (bpf/covey_maps.h says why).
bool entry_matches(const gdoi::AclEntry& entry, const PacketFields& packet);

// The reference: the position of the first matching entry, in entry order.
std::optional<std::size_t> first_match(std::span<const gdoi::AclEntry> acl, const PacketFields& packet);

// Memory the compiler may ask for, per family. The cross-product tables
// are what grows with an ACL's shape (bpf/README.md); past these limits
// compile_acl refuses with the numbers rather than loading a table the
// kernel may fail to allocate.
struct CompileLimits {
  std::size_t max_cross_cells = std::size_t{1} << 24;  // 64 MiB of u32
  std::size_t max_trie_cells = std::size_t{1} << 23;   // 32 MiB of u32
};

crypto::Result<CompiledAcl> compile_acl(std::span<const gdoi::AclEntry> acl, const CompileLimits& limits = {});

// The lookups bpf/acl.h does, over compiled tables: a COVEY_RESULT_* cell.
std::uint32_t classify(const FamilyTables& tables, const PacketFields& packet);
std::uint32_t classify(const CompiledAcl& acl, const PacketFields& packet);

}  // namespace covey::datapath
