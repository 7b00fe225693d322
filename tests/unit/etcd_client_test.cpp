// The etcd client (userspace/etcd) against real etcd: three members of
// Debian's etcd-server on loopback per test (tests/common/etcd_cluster.h),
// killed with SIGKILL and restarted under the client's feet. No root.
#include "etcd/client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "etcd_cluster.h"
#include "test_ca.h"

namespace covey::etcd {
namespace {

using namespace std::chrono_literals;
using test_etcd::EtcdCluster;

#define NEED_ETCD()                                                                            \
  do {                                                                                         \
    if (EtcdCluster::binary().empty()) GTEST_SKIP() << "etcd is not installed (Debian package etcd-server)"; \
  } while (0)

// The value, or the test fails (and stops: the exception ends it).
template <class T>
T ok(crypto::Result<T> r) {
  EXPECT_TRUE(r.ok()) << r.error();
  if (!r.ok()) throw std::runtime_error(r.error());
  return std::move(r).value();
}
void ok(const crypto::Result<void>& r) {
  EXPECT_TRUE(r.ok()) << r.error();
  if (!r.ok()) throw std::runtime_error(r.error());
}

std::vector<std::string> keys_of(const std::vector<KeyValue>& kvs) {
  std::vector<std::string> keys;
  for (const auto& kv : kvs) keys.push_back(kv.key);
  return keys;
}

// ---- Encoding (no etcd) ---------------------------------------------------

TEST(EtcdEncoding, Base64RoundTripsAndRefusesJunk) {
  // RFC 4648 section 10.
  const std::map<std::string, std::string> vectors = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                      {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                                      {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(base64_encode(plain), encoded);
    EXPECT_EQ(base64_decode(encoded), plain);
  }
  const std::string binary("\x00\xff\xfe\x80\x7f", 5);
  EXPECT_EQ(base64_encode(binary), "AP/+gH8=");
  EXPECT_EQ(base64_decode("AP/+gH8="), binary);
  for (const char* junk : {"Zg", "Zg=", "Z===", "Zg==Zg==", "Zm9v!A==", "Z=g=", "Zm9v\n"}) {
    EXPECT_EQ(base64_decode(junk), std::nullopt) << junk;
  }
}

TEST(EtcdEncoding, PrefixRangeEndIncrementsTheLastByteBelow0xff) {
  EXPECT_EQ(prefix_range_end("abc"), "abd");
  EXPECT_EQ(prefix_range_end("a/"), "a0");
  EXPECT_EQ(prefix_range_end(std::string("a\xff", 2)), "b");
  EXPECT_EQ(prefix_range_end(std::string("a\xfe\xff\xff", 4)), std::string("a\xff", 2));
  EXPECT_EQ(prefix_range_end(std::string("\xff\xff", 2)), std::string(1, '\0'));
  EXPECT_EQ(prefix_range_end(""), std::string(1, '\0'));
}

TEST(EtcdOptions, CheckNamesTheBadEndpointOrFile) {
  EXPECT_TRUE(Client::check(Options{{"http://127.0.0.1:2379", "http://[::1]:2379"}, {}, 1s}).ok());
  auto r = Client::check(Options{{"http://127.0.0.1:2379", "ftp://x:1"}, {}, 1s});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("ftp://x:1"), std::string::npos) << r.error();
  r = Client::check(Options{{"https://127.0.0.1:2379"}, {}, 1s});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("https://127.0.0.1:2379"), std::string::npos) << r.error();
  r = Client::check(Options{{"https://127.0.0.1:2379"}, Tls{"/nonexistent/ca.pem", "", ""}, 1s});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("/nonexistent/ca.pem"), std::string::npos) << r.error();
  r = Client::check(Options{{}, {}, 1s});
  EXPECT_FALSE(r.ok());
}

// ---- KV, Txn, Lease ---------------------------------------------------------

TEST(EtcdClient, PutGetAndPrefixGet) {
  NEED_ETCD();
  EtcdCluster cluster;
  Client client(cluster.options());
  const std::string binary_key("k/\x00\xff", 4);
  const std::int64_t r1 = ok(client.put("k/a", "1"));
  const std::int64_t r2 = ok(client.put("k/b", std::string("\x00\x01\xff", 3)));
  ok(client.put(binary_key, "bin"));
  ok(client.put("k0", "outside the prefix"));
  ok(client.put(std::string("k/\xff\xff", 4), "high"));
  EXPECT_LT(r1, r2);

  const Range one = ok(client.get("k/b"));
  ASSERT_EQ(one.kvs.size(), 1u);
  EXPECT_EQ(one.kvs[0].value, std::string("\x00\x01\xff", 3));
  EXPECT_EQ(one.kvs[0].create_revision, r2);
  EXPECT_EQ(one.kvs[0].mod_revision, r2);
  EXPECT_EQ(one.kvs[0].version, 1);
  EXPECT_GE(one.revision, r2);

  EXPECT_TRUE(ok(client.get("k/none")).kvs.empty());

  const Range all = ok(client.get("k/", true));
  EXPECT_EQ(keys_of(all.kvs), (std::vector<std::string>{binary_key, "k/a", "k/b", std::string("k/\xff\xff", 4)}));
  // Under a prefix ending in 0xff: the range end is computed below it.
  const Range high = ok(client.get(std::string("k/\xff", 3), true));
  EXPECT_EQ(keys_of(high.kvs), (std::vector<std::string>{std::string("k/\xff\xff", 4)}));
  // The empty prefix: every key.
  EXPECT_EQ(ok(client.get("", true)).kvs.size(), 5u);
  EXPECT_FALSE(client.endpoint().empty());
}

TEST(EtcdClient, TxnTakesTheBranchItsComparesChooseWithRanges) {
  NEED_ETCD();
  EtcdCluster cluster;
  Client client(cluster.options());
  const std::int64_t created = ok(client.put("t/x", "one"));
  ok(client.put("t/y", "two"));

  const TxnResult yes = ok(client.txn({Compare::create_revision("t/x", Compare::Result::Equal, created),
                                       Compare::value_is("t/y", "two"), Compare::version("t/x", Compare::Result::Equal, 1)},
                                      {Op::put("t/z", "three"), Op::get("t/", true), Op::del("t/y")}, {Op::get("t/x")}));
  EXPECT_TRUE(yes.succeeded);
  ASSERT_EQ(yes.ranges.size(), 3u);
  EXPECT_TRUE(yes.ranges[0].empty());
  EXPECT_EQ(keys_of(yes.ranges[1]), (std::vector<std::string>{"t/x", "t/y", "t/z"}));
  EXPECT_TRUE(yes.ranges[2].empty());
  EXPECT_GT(yes.revision, created);

  // t/y is gone, so the value compare fails: the failure branch runs.
  const TxnResult no = ok(client.txn({Compare::value_is("t/y", "two")}, {Op::del("t/", true)},
                                     {Op::get("t/x"), Op::put("t/failed", "yes"), Op::get("t/", true)}));
  EXPECT_FALSE(no.succeeded);
  ASSERT_EQ(no.ranges.size(), 3u);
  ASSERT_EQ(no.ranges[0].size(), 1u);
  EXPECT_EQ(no.ranges[0][0].value, "one");
  EXPECT_EQ(keys_of(no.ranges[2]), (std::vector<std::string>{"t/failed", "t/x", "t/z"}));
  EXPECT_EQ(no.revision, yes.revision + 1);

  // The comparisons' other results.
  EXPECT_TRUE(ok(client.txn({Compare::mod_revision("t/x", Compare::Result::Less, yes.revision)}, {})).succeeded);
  EXPECT_FALSE(ok(client.txn({Compare::mod_revision("t/x", Compare::Result::Greater, yes.revision)}, {})).succeeded);
  EXPECT_TRUE(ok(client.txn({Compare::version("t/x", Compare::Result::NotEqual, 2)}, {})).succeeded);
  EXPECT_TRUE(ok(client.txn({Compare::create_revision("t/none", Compare::Result::Equal, 0)}, {})).succeeded);

  // A prefix delete in a txn.
  ok(client.txn({}, {Op::del("t/", true)}));
  EXPECT_TRUE(ok(client.get("t/", true)).kvs.empty());
}

TEST(EtcdClient, EtcdsRefusalIsAnErrorWithItsMessage) {
  NEED_ETCD();
  EtcdCluster cluster;
  Client client(cluster.options());
  // The same key twice in one txn: etcd refuses it (HTTP 400).
  auto r = client.txn({}, {Op::put("dup", "1"), Op::put("dup", "2")});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("etcd " + client.endpoint() + ": txn: HTTP 400: etcdserver: duplicate key given in txn request"),
            std::string::npos)
      << r.error();
  auto revoked = client.revoke(12345);
  ASSERT_FALSE(revoked.ok());
  EXPECT_NE(revoked.error().find("lease revoke: HTTP 404: etcdserver: requested lease not found"), std::string::npos)
      << revoked.error();
}

// The key servers' fence: a write only while our lease (and so our key) lives.
TxnResult fenced_put(Client& client, const std::string& owner_key, std::int64_t created) {
  return ok(client.txn({Compare::create_revision(owner_key, Compare::Result::Equal, created)}, {Op::put("fenced/data", "x")}));
}

TEST(EtcdClient, FencedTxnHoldsWhileTheLeaseLivesAndFailsAfterRevoke) {
  NEED_ETCD();
  EtcdCluster cluster;
  Client client(cluster.options());
  const Lease lease = ok(client.grant(30));
  EXPECT_NE(lease.id, 0);
  EXPECT_EQ(lease.ttl_s, 30);
  const std::int64_t created = ok(client.put("fenced/owner", "me", lease.id));
  EXPECT_EQ(ok(client.get("fenced/owner")).kvs.at(0).lease, lease.id);
  EXPECT_TRUE(fenced_put(client, "fenced/owner", created).succeeded);
  ok(client.revoke(lease.id));
  EXPECT_TRUE(ok(client.get("fenced/owner")).kvs.empty());
  EXPECT_FALSE(fenced_put(client, "fenced/owner", created).succeeded);
}

TEST(EtcdClient, FencedTxnFailsOnceTheLeaseExpires) {
  NEED_ETCD();
  EtcdCluster cluster;
  Client client(cluster.options());
  const Lease lease = ok(client.grant(1));
  const std::int64_t created = ok(client.put("fenced/owner", "me", lease.id));
  EXPECT_TRUE(fenced_put(client, "fenced/owner", created).succeeded);
  // Nobody keeps it alive: etcd's leader expires it about a second later.
  // (Polled, within a bound only a hung etcd would reach.)
  bool fenced_off = false;
  for (int i = 0; i < 300 && !fenced_off; ++i) {
    fenced_off = !fenced_put(client, "fenced/owner", created).succeeded;
    if (!fenced_off) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(fenced_off);
  EXPECT_TRUE(ok(client.get("fenced/owner")).kvs.empty());
  EXPECT_LE(ok(client.keep_alive(lease.id)).ttl_s, 0);
}

TEST(EtcdClient, KeepAliveRenewsTheTtlAndSaysZeroAfterRevoke) {
  NEED_ETCD();
  EtcdCluster cluster;
  Client client(cluster.options());
  const Lease lease = ok(client.grant(20));
  const Lease renewed = ok(client.keep_alive(lease.id));
  EXPECT_EQ(renewed.id, lease.id);
  EXPECT_EQ(renewed.ttl_s, 20);
  ok(client.revoke(lease.id));
  const Lease gone = ok(client.keep_alive(lease.id));
  EXPECT_EQ(gone.id, lease.id);
  EXPECT_EQ(gone.ttl_s, 0);
}

// ---- Endpoints and members -----------------------------------------------------

TEST(EtcdClient, FailsOverWhenItsMemberIsKilled) {
  NEED_ETCD();
  EtcdCluster cluster;
  Client client(cluster.options());
  ok(client.put("f/before", "1"));
  EXPECT_EQ(client.endpoint(), cluster.endpoint(0));  // the first that answered
  cluster.kill(0);
  // The same client, its connection to m0 now dead: the next member answers.
  // (An election may be under way if m0 led: etcd says so with a 5xx, which
  // also moves on, but every member may say it; try a few times.)
  crypto::Result<std::int64_t> put = crypto::Error{"not tried"};
  for (int i = 0; i < 20 && !put.ok(); ++i) {
    put = client.put("f/after", "2");
    if (!put.ok()) std::this_thread::sleep_for(200ms);
  }
  ASSERT_TRUE(put.ok()) << put.error();
  EXPECT_NE(client.endpoint(), cluster.endpoint(0));
  EXPECT_EQ(ok(client.get("f/", true)).kvs.size(), 2u);
}

TEST(EtcdClient, DeadEndpointsGiveAnErrorNamingEach) {
  // No etcd needed: one port nobody listens on, one that accepts
  // connections (the kernel's backlog) but never answers.
  const int quiet = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(quiet, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(quiet, 16), 0);
  ASSERT_EQ(::getsockname(quiet, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const std::string silent = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  const int closed_fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in b{};
  b.sin_family = AF_INET;
  b.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  len = sizeof b;
  ASSERT_EQ(::bind(closed_fd, reinterpret_cast<sockaddr*>(&b), sizeof b), 0);
  ASSERT_EQ(::getsockname(closed_fd, reinterpret_cast<sockaddr*>(&b), &len), 0);
  const std::string refused = "http://127.0.0.1:" + std::to_string(ntohs(b.sin_port));  // bound, not listening

  Client client(Options{{refused, silent}, {}, 300ms});
  auto r = client.get("x");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("etcd " + refused + ": get: connect: Connection refused"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("etcd " + silent + ": get: answer: no answer in time"), std::string::npos) << r.error();
  auto p = client.put("x", "y");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().find(refused), std::string::npos) << p.error();

  Watch watch(Options{{refused}, {}, 300ms}, "x/", 0);
  auto events = watch.next(200ms);
  ASSERT_TRUE(events.ok()) << events.error();  // not fatal: it keeps trying
  EXPECT_TRUE(events->empty());
  EXPECT_NE(watch.last_error().find("etcd " + refused + ": watch: connect: Connection refused"), std::string::npos)
      << watch.last_error();
  EXPECT_TRUE(watch.endpoint().empty());
  ::close(quiet);
  ::close(closed_fd);
}

TEST(EtcdClient, MembersReportsOneLeaderAndTheKilledOneUnreachable) {
  NEED_ETCD();
  EtcdCluster cluster;
  Client client(cluster.options());
  auto members = ok(client.members());
  ASSERT_EQ(members.size(), 3u);
  int leaders = 0;
  std::set<std::string> urls;
  for (const auto& m : members) {
    EXPECT_TRUE(m.reachable) << m.name << ": " << m.error;
    EXPECT_NE(m.id, 0u);
    EXPECT_FALSE(m.name.empty());
    ASSERT_EQ(m.client_urls.size(), 1u);
    urls.insert(m.client_urls[0]);
    leaders += m.leader;
  }
  EXPECT_EQ(leaders, 1);
  const auto endpoints = cluster.endpoints();
  EXPECT_EQ(urls, (std::set<std::string>(endpoints.begin(), endpoints.end())));

  const std::size_t leader = cluster.leader();
  const std::size_t follower = (leader + 1) % 3;
  cluster.kill(follower);
  members = ok(client.members());
  ASSERT_EQ(members.size(), 3u);
  leaders = 0;
  for (const auto& m : members) {
    const bool killed = m.client_urls.at(0) == cluster.endpoint(follower);
    EXPECT_EQ(m.reachable, !killed) << m.name;
    if (killed) {
      EXPECT_NE(m.error.find(cluster.endpoint(follower)), std::string::npos) << m.error;
    }
    leaders += m.leader;
  }
  EXPECT_EQ(leaders, 1);
}

// ---- Watch --------------------------------------------------------------------------

// Events until `count` have come (or a generous bound passes).
std::vector<Event> collect(Watch& watch, std::size_t count, std::vector<Event> so_far = {}) {
  for (int i = 0; i < 600 && so_far.size() < count; ++i) {
    auto events = watch.next(100ms);
    EXPECT_TRUE(events.ok()) << events.error();
    if (!events.ok()) break;
    so_far.insert(so_far.end(), events->begin(), events->end());
  }
  return so_far;
}

TEST(EtcdWatch, SeesPutsAndDeletesInOrder) {
  NEED_ETCD();
  EtcdCluster cluster;
  Client client(cluster.options());
  const std::int64_t start = ok(client.put("before", "not watched")) + 1;
  Watch watch(cluster.options(), "w/", start);
  EXPECT_TRUE(ok(watch.next(200ms)).empty());  // created, nothing yet
  EXPECT_FALSE(watch.endpoint().empty());
  const std::int64_t r1 = ok(client.put("w/a", "1"));
  ok(client.put("outside", "x"));
  const std::int64_t r2 = ok(client.put("w/a", "2"));
  const TxnResult deleted = ok(client.txn({}, {Op::del("w/a"), Op::put("w/b", "3")}));
  const auto events = collect(watch, 4);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].type, Event::Type::Put);
  EXPECT_EQ(events[0].kv.key, "w/a");
  EXPECT_EQ(events[0].kv.value, "1");
  EXPECT_EQ(events[0].kv.mod_revision, r1);
  EXPECT_EQ(events[1].kv.value, "2");
  EXPECT_EQ(events[1].kv.mod_revision, r2);
  EXPECT_EQ(events[1].kv.version, 2);
  EXPECT_EQ(events[2].type, Event::Type::Delete);
  EXPECT_EQ(events[2].kv.key, "w/a");
  EXPECT_EQ(events[2].kv.mod_revision, deleted.revision);
  EXPECT_EQ(events[3].type, Event::Type::Put);
  EXPECT_EQ(events[3].kv.key, "w/b");
  EXPECT_EQ(events[3].kv.mod_revision, deleted.revision);
  EXPECT_EQ(watch.next_revision(), deleted.revision + 1);

  // From now (start revision 0): only what comes after.
  Watch later(cluster.options(), "w/", 0);
  EXPECT_TRUE(ok(later.next(200ms)).empty());
  EXPECT_EQ(later.next_revision(), deleted.revision + 1);
  const std::int64_t r3 = ok(client.put("w/c", "4"));
  const auto more = collect(later, 1);
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].kv.mod_revision, r3);
}

// Puts keys [from, to) once each: put-if-absent, so a retry after an
// ambiguous failure (the member died mid-call) cannot write twice.
void put_keys(Client& client, int from, int to) {
  for (int i = from; i < to; ++i) {
    char key[16];
    std::snprintf(key, sizeof key, "e/%03d", i);
    crypto::Result<TxnResult> r = crypto::Error{"not tried"};
    for (int attempt = 0; attempt < 50 && !r.ok(); ++attempt) {
      r = client.txn({Compare::create_revision(key, Compare::Result::Equal, 0)}, {Op::put(key, std::to_string(i))});
      if (!r.ok()) std::this_thread::sleep_for(100ms);
    }
    ASSERT_TRUE(r.ok()) << key << ": " << r.error();
  }
}

TEST(EtcdWatch, SurvivesKillingItsMemberAndTheLeaderWithEveryEventOnce) {
  NEED_ETCD();
  EtcdCluster cluster;
  Client client(cluster.options());
  const std::int64_t start = ok(client.put("start", "")) + 1;

  // The watch on the leader first, so one kill takes both.
  std::size_t leader = cluster.leader();
  Options watched = cluster.options();
  std::rotate(watched.endpoints.begin(), watched.endpoints.begin() + static_cast<long>(leader), watched.endpoints.end());
  Watch watch(watched, "e/", start);
  put_keys(client, 0, 10);
  std::vector<Event> events = collect(watch, 10);
  ASSERT_EQ(watch.endpoint(), cluster.endpoint(leader));

  // SIGKILL its member, the leader: writes go on (after an election)
  // while the watch reconnects elsewhere.
  cluster.kill(leader);
  put_keys(client, 10, 20);
  events = collect(watch, 20, std::move(events));
  EXPECT_NE(watch.endpoint(), cluster.endpoint(leader));
  EXPECT_FALSE(watch.endpoint().empty());

  // Back with its data; then kill the member the watch is on now, and the
  // new leader if that is another one.
  cluster.start(leader);
  put_keys(client, 20, 30);
  events = collect(watch, 30, std::move(events));
  std::size_t on = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    if (cluster.endpoint(i) == watch.endpoint()) on = i;
  }
  cluster.kill(on);
  put_keys(client, 30, 35);
  cluster.start(on);
  put_keys(client, 35, 40);
  events = collect(watch, 40, std::move(events));

  // Exactly once, in order: nothing lost across the kills, nothing twice.
  ASSERT_EQ(events.size(), 40u);
  for (std::size_t i = 0; i < events.size(); ++i) {
    char key[32];
    std::snprintf(key, sizeof key, "e/%03zu", i);
    EXPECT_EQ(events[i].kv.key, key);
    EXPECT_EQ(events[i].kv.value, std::to_string(i));
    if (i > 0) {
      EXPECT_GT(events[i].kv.mod_revision, events[i - 1].kv.mod_revision);
    }
  }
  EXPECT_TRUE(ok(watch.next(300ms)).empty());
  EXPECT_EQ(watch.next_revision(), events.back().kv.mod_revision + 1);
}

// A member without a quorum keeps a plain watch open and silent; with
// etcd's require-leader the stream ends, and the watch says why.
TEST(EtcdWatch, LeavesAMemberThatLostItsLeader) {
  NEED_ETCD();
  EtcdCluster cluster;
  Client client(cluster.options());
  const std::int64_t start = ok(client.put("e/000", "0"));
  Watch watch(cluster.options(), "e/", start);  // on m0, the first endpoint
  ASSERT_EQ(collect(watch, 1).size(), 1u);
  ASSERT_EQ(watch.endpoint(), cluster.endpoint(0));
  cluster.kill(1);
  cluster.kill(2);
  bool said = false;
  for (int i = 0; i < 100 && !said; ++i) {
    EXPECT_TRUE(ok(watch.next(100ms)).empty());
    said = watch.last_error().find("etcdserver: no leader") != std::string::npos;
  }
  EXPECT_TRUE(said) << watch.last_error();
  cluster.start(1);
  cluster.start(2);
  put_keys(client, 1, 4);  // keys e/001..e/003
  const auto events = collect(watch, 3);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].kv.key, "e/001");
  EXPECT_EQ(events[2].kv.key, "e/003");
}

TEST(EtcdWatch, ACompactedStartRevisionIsTheError) {
  NEED_ETCD();
  EtcdCluster cluster;
  Client client(cluster.options());
  const std::int64_t first = ok(client.put("c/a", "1"));
  ok(client.put("c/a", "2"));
  const std::int64_t last = ok(client.put("c/a", "3"));
  ok(client.compact(last));
  Watch watch(cluster.options(), "c/", first);
  crypto::Result<std::vector<Event>> r = std::vector<Event>{};
  for (int i = 0; i < 50 && r.ok(); ++i) r = watch.next(100ms);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("watch: revision " + std::to_string(first) + " has been compacted"), std::string::npos)
      << r.error();
  EXPECT_FALSE(watch.next(10ms).ok());  // and stays so
  // From the compaction on, the watch works.
  Watch fresh(cluster.options(), "c/", last);
  const auto events = collect(fresh, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kv.value, "3");
}

// ---- https -------------------------------------------------------------------------------

// A CA, a server certificate for 127.0.0.1 (serverAuth and clientAuth, so it
// serves as the client's too) and a second, unrelated CA, by the openssl CLI.
struct Pki {
  test_pki::ScratchDir dir;
  std::string path(const char* name) const { return dir.path() + "/" + name; }
  Pki() {
    dir.write("leaf.ext", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n");
    const std::string d = dir.path();
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes ";
    const std::string script =
        "(cd " + d + " && openssl req -x509" + ec + "-keyout ca.key -out ca.pem -subj /CN=covey-etcd-test-ca -days 2 &&" +
        " openssl req -x509" + ec + "-keyout other.key -out other.pem -subj /CN=another-ca -days 2 &&" +
        " openssl req" + ec + "-keyout server.key -out server.csr -subj /CN=etcd &&" +
        " openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2" +
        " -extfile leaf.ext) >/dev/null 2>&1";
    if (std::system(script.c_str()) != 0) throw std::runtime_error("openssl: cannot make the test PKI");
  }
};

TEST(EtcdTls, GetAndPutOverHttpsWithAClientCertificate) {
  NEED_ETCD();
  Pki pki;
  EtcdCluster cluster(1, test_etcd::ServerTls{pki.path("server.pem"), pki.path("server.key"), pki.path("ca.pem"), true});
  ASSERT_EQ(cluster.endpoint(0).rfind("https://", 0), 0u);
  Client client(cluster.options(Tls{pki.path("ca.pem"), pki.path("server.pem"), pki.path("server.key")}));
  const std::int64_t rev = ok(client.put("tls/k", "v"));
  const Range r = ok(client.get("tls/k"));
  ASSERT_EQ(r.kvs.size(), 1u);
  EXPECT_EQ(r.kvs[0].mod_revision, rev);
  Watch watch(cluster.options(Tls{pki.path("ca.pem"), pki.path("server.pem"), pki.path("server.key")}), "tls/", rev);
  const auto events = collect(watch, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kv.value, "v");
}

TEST(EtcdTls, AServerCertificateFromAnotherCaIsRefused) {
  NEED_ETCD();
  Pki pki;
  EtcdCluster cluster(1, test_etcd::ServerTls{pki.path("server.pem"), pki.path("server.key"), pki.path("ca.pem"), true});
  Client client(cluster.options(Tls{pki.path("other.pem"), pki.path("server.pem"), pki.path("server.key")}));
  auto r = client.get("tls/k");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("etcd " + cluster.endpoint(0) + ": get: TLS handshake: certificate verify failed"), std::string::npos)
      << r.error();
  // And without a client certificate, etcd (--client-cert-auth) refuses us.
  Client anonymous(cluster.options(Tls{pki.path("ca.pem"), "", ""}));
  auto a = anonymous.get("tls/k");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.error().find("etcd " + cluster.endpoint(0) + ": get: "), std::string::npos) << a.error();
}

}  // namespace
}  // namespace covey::etcd
