// gm-swarm: many group members from one process, for load on a covey-ks.
// Each member is a real gm::Registrar (Main Mode, then GROUPKEY-PULL, real
// crypto) with its own source address, all sharing one UDP socket (see
// swarm.cpp); one loop drives at most `concurrency` of them at a time, and
// the run ends by itself when every member has finished or `timeout` has
// passed.
#pragma once

#include <chrono>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/address.h"

namespace covey::swarm {

struct SwarmOptions {
  // Member i registers with key_servers[i % size]; pushes are taken from
  // any of them, as a member takes them from any key server of its list
  // (cooperative key servers: the primary pushes to every member, whichever
  // key server it registered with).
  std::vector<Endpoint> key_servers;
  std::uint32_t group_id = 0;
  std::string pre_shared_key;
  std::uint16_t dh_group = 19;
  std::size_t members = 1;
  std::size_t concurrency = 64;
  // Members started per second at most, 0 for as fast as `concurrency`
  // allows: a storm (a site's members coming back after a power cut) is
  // an arrival rate, not a number in flight.
  double start_rate = 0;
  // Member i sends from source_base + i, so the KS sees N distinct members
  // (its member table is keyed by address). With one_address, every member
  // uses source_base and its own ephemeral port instead.
  Address source_base;
  bool one_address = false;
  std::chrono::milliseconds timeout{60'000};
  std::int64_t retransmit_s = 2;
  int retransmits = 4;
  bool verbose = false;  // print each member's registration steps
  // After registering, every member stays and follows this many rekeys:
  // each push is received, decrypted and verified by every member's own
  // gm::RekeyState and acknowledged from its own address (RFC 8263) to
  // the endpoint it came from, which may be another key server of a
  // cluster than `ks` (any source: the group's signature decides). When
  // all members are registered gm-swarm prints "following N rekeys" on a
  // line of its own and waits for the key server to rekey.
  std::size_t follow_rekeys = 0;
};

// One rekey as the members saw it.
struct RekeyResult {
  std::uint32_t seq = 0;
  std::size_t members_acked = 0;     // members that accepted it and sent an ack
  std::size_t members_refused = 0;   // members that refused it (reason in SwarmResult::failures)
  double first_push_to_last_ack_s = 0;
  // The same two moments on CLOCK_MONOTONIC, which every process on the host
  // shares: a bench that splits the members over several gm-swarm processes
  // takes the earliest first push and the latest last ack.
  double first_push_monotonic_s = 0, last_ack_monotonic_s = 0;
  std::size_t push_bytes = 0;        // one datagram (UDP payload)
  std::uint64_t bytes_received = 0;  // pushes to all members, retransmissions included
  double gm_cpu_s = 0;  // gm-swarm's own CPU (user + system) from the first push to the last ack
};

// The GROUPKEY-PUSH datagrams that came from one key server, with the wall
// clock (Unix seconds) of the first and last: when a new primary took over.
struct PushesFrom {
  std::size_t datagrams = 0;
  double first_unix_s = 0, last_unix_s = 0;
};

// Percentiles of the registrations that completed, in milliseconds.
struct Latency {
  double p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
};

struct SwarmResult {
  std::size_t registered = 0;
  std::size_t failed = 0;       // finished without keys (refused, no answer, bind error)
  std::size_t unfinished = 0;   // still registering, or never started, when the timeout hit
  std::map<std::string, std::size_t> failures;  // reason -> members
  double elapsed_s = 0;         // first start to last completion
  double registrations_per_s = 0;
  Latency latency;
  // From when each member was due to start at start_rate (its arrival in
  // a storm), waiting for a slot included; = latency without a rate.
  Latency arrival_latency;
  std::uint64_t datagrams_sent = 0, datagrams_received = 0, retransmissions = 0;
  double cpu_s = 0;             // this process, user + system, during the run
  double cpu_user_s = 0, cpu_system_s = 0;
  double registering_cpu_s = 0;  // of cpu_s, until the last member registered
  std::size_t max_rss_kb = 0;    // this process's peak resident memory
  double last_start_s = 0;       // first start to last start
  int receive_buffer_bytes = 0;  // granted for the shared socket
  double runqueue_wait_s = -1;  // runnable but not running (other load), -1 if unknown
  bool timed_out = false;
  std::vector<RekeyResult> rekeys;  // follow_rekeys
  std::map<Endpoint, PushesFrom> pushes_from;  // follow_rekeys
  // The keys the members held when they registered, and with
  // follow_rekeys at the end: each distinct newest TEK and KEK with how
  // many members hold them, so that "every member holds the same keys" is
  // one entry.
  struct HeldKeys {
    std::string tek_spi, tek_encryption, tek_integrity, kek_spi, kek_algorithm_key;  // hex
    auto operator<=>(const HeldKeys&) const = default;
  };
  std::map<HeldKeys, std::size_t> registered_keys, final_keys;
};

// Fails only before the first member starts (bad options, no epoll); any
// member's failure is counted in the result instead.
SwarmResult run_swarm(const SwarmOptions& options);

// The n-th address after `base` (IPv4: 32-bit arithmetic; IPv6: low 32 bits).
Address nth_address(const Address& base, std::uint32_t n);
// 127.0.0.0/8 or ::1: gm-swarm refuses other targets unless told otherwise.
bool is_loopback(const Address& a);

Latency latency_of(std::vector<double> ms);

}  // namespace covey::swarm
