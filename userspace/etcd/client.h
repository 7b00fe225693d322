// A client of etcd's v3 API over its JSON gateway (etcd 3.4: POST /v3/...,
// keys and values base64), on Boost.Beast. Why not gRPC: Debian packages
// libgrpc++ but not etcd's .proto files in a form that builds without
// gogoproto and google.api; the gateway covers everything covey needs (KV,
// Txn, Lease, Watch, cluster and maintenance status) with code we read in
// an afternoon, and Boost is already a dependency.
//
// The network edge of the cooperative key servers (ks/coop.h): nothing here
// knows GDOI. Every call is synchronous with a deadline (Options::timeout)
// and tries the endpoints in turn, starting with the one that answered
// last, so a dead etcd member costs one timeout, not the call. Errors name
// the endpoint and what failed ("etcd http://127.0.0.1:23791: txn: HTTP 400:
// etcdserver: too many operations in txn request").
//
// Not thread-safe: one Client per thread (the key server's core has one;
// coop's keep-alive and watch thread another).
#pragma once

#include <chrono>
#include <memory>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/result.h"

namespace covey::etcd {

struct Tls {
  std::string ca;    // PEM file of the CA that signed etcd's server certificates
  std::string cert;  // this client's certificate (PEM), empty for none
  std::string key;   // its private key (PEM)
};

struct Options {
  // "http://127.0.0.1:2379", "https://etcd1.example.net:2379"; several
  // members of one cluster.
  std::vector<std::string> endpoints;
  std::optional<Tls> tls;  // required by https:// endpoints
  std::chrono::milliseconds timeout{2000};
};

struct KeyValue {
  std::string key, value;  // raw bytes (decoded from base64)
  std::int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

// A Txn's compare (etcdserverpb.Compare).
struct Compare {
  enum class Target { Version, Create, Mod, Value, Lease };
  enum class Result { Equal, Greater, Less, NotEqual };
  std::string key;
  Target target = Target::Version;
  Result result = Result::Equal;
  std::int64_t number = 0;  // for Version, Create, Mod, Lease
  std::string value;        // for Value

  static Compare version(std::string key, Result r, std::int64_t v);
  static Compare create_revision(std::string key, Result r, std::int64_t rev);
  static Compare mod_revision(std::string key, Result r, std::int64_t rev);
  static Compare value_is(std::string key, std::string value);
};

// A Txn's request op (etcdserverpb.RequestOp).
struct Op {
  enum class Kind { Put, Delete, Range };
  Kind kind = Kind::Put;
  std::string key, value;
  std::int64_t lease = 0;      // Put: attach to this lease (0: none)
  bool prefix = false;         // Delete, Range: every key starting with `key`
  static Op put(std::string key, std::string value, std::int64_t lease = 0);
  static Op del(std::string key, bool prefix = false);
  static Op get(std::string key, bool prefix = false);
};

struct TxnResult {
  bool succeeded = false;
  std::int64_t revision = 0;  // the store's revision after the txn
  // One entry per op of the branch taken; the KeyValues of each Range op,
  // empty for Put and Delete.
  std::vector<std::vector<KeyValue>> ranges;
};

struct Range {
  std::vector<KeyValue> kvs;
  std::int64_t revision = 0;  // the store's revision the read saw
};

struct Lease {
  std::int64_t id = 0;
  std::int64_t ttl_s = 0;  // as granted; 0 or less from keep_alive: expired
};

struct MemberStatus {
  std::string name;
  std::uint64_t id = 0;
  std::vector<std::string> client_urls;
  bool reachable = false;  // answered /v3/maintenance/status
  bool leader = false;
  std::string error;       // when not reachable: why
};

struct Event {
  enum class Type { Put, Delete };
  Type type = Type::Put;
  KeyValue kv;  // Delete: key and mod_revision only
};

class Client {
 public:
  explicit Client(Options options);
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  // Checks the options (URLs parse, https has TLS files that load); the
  // error names the endpoint or file.
  static crypto::Result<void> check(const Options& options);

  crypto::Result<Range> get(const std::string& key, bool prefix = false);
  crypto::Result<std::int64_t> put(const std::string& key, const std::string& value, std::int64_t lease = 0);
  crypto::Result<TxnResult> txn(const std::vector<Compare>& compare, const std::vector<Op>& success,
                                const std::vector<Op>& failure = {});

  // Forgets the history before `revision` (POST /v3/kv/compaction, physical):
  // a watch from an older revision fails after this.
  crypto::Result<void> compact(std::int64_t revision);

  crypto::Result<Lease> grant(std::int64_t ttl_s);
  // One keep-alive (POST /v3/lease/keepalive): the TTL the lease has again,
  // 0 when it has already expired.
  crypto::Result<Lease> keep_alive(std::int64_t lease_id);
  crypto::Result<void> revoke(std::int64_t lease_id);

  // The cluster's members (/v3/cluster/member/list), each asked for its
  // status on its own client URL.
  crypto::Result<std::vector<MemberStatus>> members();

  // The endpoint that answered last ("http://127.0.0.1:23791").
  const std::string& endpoint() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A watch (POST /v3/watch, a streamed response) on its own connection, for
// the thread that waits on it. Survives a member restart or leader change:
// on any error it reconnects to the next endpoint and resumes from the
// revision after the last event it delivered, so no event is lost or
// delivered twice. Only a compacted start revision is an error for the
// caller (re-read everything, then watch from the read's revision + 1).
class Watch {
 public:
  Watch(Options options, std::string prefix, std::int64_t start_revision);
  ~Watch();
  // Waits up to `wait` for events; empty on timeout. An error only when
  // the revision to resume from was compacted (the text says so) or the
  // options are unusable; connection failures are retried inside (a round
  // over the endpoints at most every 100 ms, each attempt bounded by
  // Options::timeout, so a round in progress may outlast `wait`) and
  // reported through last_error() while they last. A member that loses
  // its leader ends the stream (etcd's require-leader), so the watch moves
  // to a member that has one.
  crypto::Result<std::vector<Event>> next(std::chrono::milliseconds wait);
  // The revision the next event will have at least.
  std::int64_t next_revision() const;
  // Why the watch is not connected now; empty when it is.
  std::string last_error() const;
  // The endpoint the watch is connected to now; empty when it is not.
  std::string endpoint() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The gateway's encoding of bytes (RFC 4648 base64 with padding); decoding
// refuses anything else (nullopt).
std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

// The range_end that makes [prefix, range_end) every key starting with
// prefix (etcd's rule): the prefix without its trailing 0xff bytes, last
// byte + 1; "\0" (no upper bound) when nothing is left. The caller turns an
// empty prefix into the key "\0" itself (every key).
std::string prefix_range_end(std::string_view prefix);

}  // namespace covey::etcd
