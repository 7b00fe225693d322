// The tables a compiled ACL is (acl_compile.h builds them, the loader,
// kmod-free/datapath.h, copies them into maps): plain data in
// bpf/covey_maps.h's layout, nothing of the GDOI policy they came from.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "covey_maps.h"

namespace covey::datapath {

// How many classes each stage found: the tables' sizes follow from them.
struct ClassCounts {
  std::size_t source = 0, destination = 0, protocol = 0, source_port = 0, destination_port = 0;
  std::size_t address = 0;        // (source, destination) pairs
  std::size_t protocol_port = 0;  // (protocol, source port) pairs
  std::size_t service = 0;        // (protocol-port, destination port) pairs
};

// One address family of one ACL. Offsets in `head` and trie pointers are
// relative to these vectors; the loader relocates them to where it puts
// them (head.entry_base is 0: entries are indexed by ACL position).
struct FamilyTables {
  covey_acl_head head{};
  std::vector<std::uint32_t> trie;
  std::vector<std::uint32_t> ports;
  std::vector<std::uint32_t> cross;
  ClassCounts classes;
};

struct CompiledAcl {
  std::vector<covey_acl_entry> entries;  // one per ACL line, in order
  FamilyTables v4, v6;

  const FamilyTables& family(std::uint8_t f) const { return f == 6 ? v6 : v4; }
  std::size_t bytes() const;    // table memory, both families
  std::string summary() const;  // classes and table sizes, for logs
};

}  // namespace covey::datapath
