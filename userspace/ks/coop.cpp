#include "ks/coop.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/clock.h"
#include "crypto/hash.h"
#include "crypto/seal.h"
#include "crypto/sign.h"
#include "crypto/x509.h"
#include "ks/state_store.h"

namespace covey::ks {

using crypto::Error;
using json = nlohmann::json;

namespace {

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A lease counts from when etcd's leader took the keep-alive, which is
// after this key server sent it: the TTL from the sending, less this
// guard for the clocks' rates and the send itself, is a time by which the
// lease has certainly not ended.
constexpr std::int64_t kLeaseGuardMs = 250;
// Member writes go in transactions of at most this many operations (etcd's
// --max-txn-ops is 128 by default).
constexpr std::size_t kOpsPerTxn = 100;

ByteView view_of(std::string_view s) { return ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()); }

Bytes sha256(std::string_view s) {
  auto d = crypto::digest(crypto::HashAlgorithm::Sha256, {view_of(s)});
  return d ? *d : Bytes{};
}

void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
}

std::string join(const std::vector<gdoi::AclEntry>& acl) {
  std::string out;
  for (const auto& e : acl) out += (out.empty() ? "" : "; ") + e.str();
  return out;
}

std::string spi_text(std::uint32_t spi) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", spi);
  return buf;
}

// Everything about a group that must be the same on every key server of a
// cluster, field by field, so that a difference is named. The signing key
// by its public key's SHA-256, which is no secret.
json policy_fields(const config::KsGroupConfig& c, ByteView signature_public_key) {
  const gdoi::GroupPolicy& p = c.policy;
  auto opt = [](const std::optional<std::uint32_t>& v) { return v ? std::to_string(*v) : std::string("default"); };
  std::vector<std::string> who;
  for (const auto& a : c.authorization) who.push_back(a.str());
  for (const auto& a : c.authorization_subjects) who.push_back(a);
  std::string authorization;
  for (const auto& w : who) {
    if (!authorization.empty()) authorization.push_back(' ');
    authorization.append(w);
  }
  std::string rekey = p.rekey.mode == gdoi::RekeyTransport::Mode::Unicast
                          ? "unicast port " + std::to_string(p.rekey.port)
                          : "multicast " + p.rekey.multicast_address.str() + " port " + std::to_string(p.rekey.port) +
                                " ttl " + std::to_string(p.rekey.ttl);
  return json{{"name", p.name},
              {"acl", join(p.acl)},
              {"transform", p.tek.str()},
              {"tek_lifetime", p.tek_lifetime_s},
              {"kek_cipher", std::string(crypto::name(p.kek.cipher))},
              {"kek_lifetime", p.kek.lifetime_s},
              {"kek_signature", p.kek.signature_str()},
              {"rekey", rekey},
              {"retransmit", std::to_string(p.rekey.retransmit_count) + " every " +
                                 std::to_string(p.rekey.retransmit_period_s) + " s"},
              {"tbar_window", p.tbar_window_ms ? std::to_string(*p.tbar_window_ms) + " ms" : std::string("off")},
              {"fail_close_acl", join(p.fail_close_acl)},
              {"activation_delay", p.activation_delay_s},
              {"deactivation_delay", p.deactivation_delay_s},
              {"tek_margin", opt(c.tek_margin_s)},
              {"kek_margin", opt(c.kek_margin_s)},
              {"authorization", authorization},
              {"signing_key",
               to_hex(sha256(std::string_view(reinterpret_cast<const char*>(signature_public_key.data()),
                                              signature_public_key.size())))}};
}

// "acl is "..." here but "..." in the cluster; signing_key is ...": every
// field that differs, empty when none.
std::string differences(const json& mine, const json& theirs) {
  std::string differ;
  for (const auto& [field, value] : mine.items())
    if (!theirs.contains(field) || theirs[field] != value)
      differ += (differ.empty() ? "" : "; ") + field + " is " + value.dump() + " here but " +
                (theirs.contains(field) ? theirs[field].dump() : std::string("absent")) + " in the cluster";
  return differ;
}

const config::KsGroupConfig* group_config(const config::KsConfig& cfg, std::uint32_t identity) {
  for (const auto& g : cfg.groups)
    if (g.policy.identity == identity) return &g;
  return nullptr;
}

}  // namespace

// ------------------------------------------------------- the store's thread

struct Coop::Shared {
  std::mutex mu;
  std::condition_variable stopping;
  bool stop = false;
  std::vector<etcd::Event> events;
  std::vector<Event> log;
  std::function<void()> wakeup;
  std::atomic<std::int64_t> lease{0};
  std::atomic<std::int64_t> valid_until{0};  // steady ms
  std::thread thread;

  void say(Severity s, std::string text) {
    std::lock_guard lock(mu);
    log.push_back(Event{s, std::move(text)});
  }
  // Under the lock, so that set_wakeup({}) returns only once no call is
  // in progress: the event loop it posts to may be going away.
  void wake() {
    std::lock_guard lock(mu);
    if (wakeup) wakeup();
  }
  bool stopped() {
    std::lock_guard lock(mu);
    return stop;
  }

  // What a whole read says, as the events it stands for: every key put,
  // and the primary gone if it is not there. (Members removed meanwhile
  // stay until the primary drops them for missing rekeys.)
  void resync(const std::string& prefix, const etcd::Range& all) {
    std::lock_guard lock(mu);
    bool primary = false;
    for (const auto& kv : all.kvs) {
      events.push_back(etcd::Event{etcd::Event::Type::Put, kv});
      primary = primary || kv.key == prefix + "/primary";
    }
    if (!primary) {
      etcd::Event gone{etcd::Event::Type::Delete, {}};
      gone.kv.key = prefix + "/primary";
      gone.kv.mod_revision = all.revision;
      events.push_back(std::move(gone));
    }
  }

  // Keeps the lease alive at a third of its TTL and waits on the watch in
  // between. A lease etcd has let end (etcd was unreachable for longer
  // than the TTL) is replaced: the key server is then a new candidate.
  void run(etcd::Options options, std::string prefix, std::int64_t start_revision, std::int64_t ttl_s) {
    etcd::Client client(options);
    auto watch = std::make_unique<etcd::Watch>(options, prefix + "/", start_revision);
    std::int64_t next_keep_alive = 0;
    std::string unreachable, watch_down;
    while (!stopped()) {
      const std::int64_t now = steady_ms();
      if (now >= next_keep_alive) {
        auto r = client.keep_alive(lease.load());
        if (r && r->ttl_s > 0) {
          valid_until = now + r->ttl_s * 1000 - kLeaseGuardMs;
          next_keep_alive = now + r->ttl_s * 1000 / 3;
          if (!unreachable.empty()) say(Severity::Info, "etcd reachable again (" + client.endpoint() + ")");
          unreachable.clear();
        } else if (r) {
          auto fresh = client.grant(ttl_s);
          if (fresh) {
            say(Severity::Warning, "etcd let this key server's lease " + std::to_string(lease.load()) +
                                       " end (unreachable for longer than its TTL); taking lease " +
                                       std::to_string(fresh->id));
            lease = fresh->id;
            valid_until = now + fresh->ttl_s * 1000 - kLeaseGuardMs;
            next_keep_alive = now + fresh->ttl_s * 1000 / 3;
            wake();
          } else {
            next_keep_alive = now + 500;
          }
        } else {
          if (unreachable != r.error())
            say(Severity::Error, "etcd lease keep-alive failed: " + r.error() +
                                     (steady_ms() < valid_until ? "" : "; this key server cannot be primary"));
          unreachable = r.error();
          next_keep_alive = now + 500;
          wake();  // the key server's loop notices the lease running out
        }
      }
      const std::int64_t wait = std::clamp<std::int64_t>(next_keep_alive - steady_ms(), 10, 250);
      auto got = watch->next(std::chrono::milliseconds(wait));
      if (!got) {
        // Only a compacted revision ends a watch: what changed meanwhile is
        // read whole instead, and the watch starts again after that read.
        say(Severity::Warning, "etcd watch of " + prefix + "/ ended (" + got.error() + "); reading it whole");
        if (auto all = client.get(prefix + "/", true)) {
          resync(prefix, *all);
          watch = std::make_unique<etcd::Watch>(options, prefix + "/", all->revision + 1);
          wake();
        } else {
          std::unique_lock lock(mu);
          stopping.wait_for(lock, std::chrono::milliseconds(500), [this] { return stop; });
        }
        continue;
      }
      if (watch->last_error() != watch_down) {
        watch_down = watch->last_error();
        say(watch_down.empty() ? Severity::Info : Severity::Warning,
            watch_down.empty() ? "etcd watch connected again" : "etcd watch reconnecting: " + watch_down);
      }
      if (got->empty()) continue;
      {
        std::lock_guard lock(mu);
        for (auto& e : *got) events.push_back(std::move(e));
      }
      wake();
    }
  }
};

// ------------------------------------------------------------ setting up

Coop::Coop(const config::KsConfig& cfg, etcd::Options options, crypto::SecretBytes sealing_key)
    : cfg_(cfg),
      options_(options),
      prefix_(cfg.cluster->prefix),
      name_(cfg.cluster->name),
      address_(cfg.server.address.value_or(Address{})),
      priority_(cfg.cluster->priority),
      ttl_s_(cfg.cluster->lease_ttl_s),
      sealing_key_(std::move(sealing_key)),
      client_(std::move(options)),
      shared_(std::make_unique<Shared>()) {}

namespace {

etcd::Options etcd_options(const config::KsClusterConfig& c) {
  etcd::Options o;
  o.endpoints = c.endpoints;
  if (!c.ca.empty()) o.tls = etcd::Tls{c.ca, c.cert, c.key};
  // A call must end well within the lease: a primary blocked on etcd for
  // longer than its TTL would act on a role it may have lost.
  o.timeout = std::chrono::milliseconds(std::min<std::int64_t>(2000, c.lease_ttl_s * 1000 / 3));
  return o;
}

}  // namespace

crypto::Result<std::unique_ptr<Coop>> Coop::open(const config::KsConfig& cfg) {
  if (!cfg.cluster) return Error{"no [cluster] in the configuration"};
  auto key = crypto::read_sealing_key(cfg.cluster->sealing_key);
  if (!key) return Error{"[cluster] " + key.error()};
  etcd::Options options = etcd_options(*cfg.cluster);
  if (auto ok = etcd::Client::check(options); !ok) return Error{"[cluster] " + ok.error()};
  return std::unique_ptr<Coop>(new Coop(cfg, std::move(options), std::move(*key)));
}

Coop::~Coop() {
  if (shared_->thread.joinable()) {
    {
      std::lock_guard lock(shared_->mu);
      shared_->stop = true;
    }
    shared_->stopping.notify_all();
    shared_->thread.join();
  }
  // Leaving now rather than when the lease runs out: a successor is
  // elected at once, not a TTL later.
  if (shared_->lease.load() != 0) (void)client_.revoke(shared_->lease.load());
}

std::string Coop::describe() const {
  std::string endpoints;
  for (const auto& e : options_.endpoints) endpoints += (endpoints.empty() ? "" : ", ") + e;
  return "etcd cluster " + endpoints + " (prefix " + prefix_ + ", key server " + name_ + ")";
}

std::string Coop::group_key(const Group& g, const std::string& rest) const {
  return key("group/" + std::to_string(g.policy().identity) + "/" + rest);
}

std::int64_t Coop::lease() const { return shared_->lease.load(); }
bool Coop::lease_valid() const { return lease() != 0 && steady_ms() < shared_->valid_until.load(); }
bool Coop::primary() const {
  return leader_rev_ != 0 && primary_ == name_ && leader_lease_ == lease() && lease_valid();
}

std::string Coop::not_primary() const {
  if (!lease_valid())
    return "key server " + name_ + " cannot rekey: etcd has not renewed its lease for longer than the lease TTL " +
           "(etcd unreachable?), and no key server rekeys until etcd is back";
  if (primary_.empty()) return "no primary is elected now; try again in a few seconds";
  return "key server " + name_ + " is a secondary; run it on the primary, " + primary_;
}

void Coop::set_wakeup(std::function<void()> wakeup) {
  std::lock_guard lock(shared_->mu);
  shared_->wakeup = std::move(wakeup);
}

std::vector<Event> Coop::take_events() {
  std::vector<Event> out;
  {
    std::lock_guard lock(shared_->mu);
    out = std::exchange(shared_->log, {});
  }
  for (Event& e : events_) out.push_back(std::move(e));
  events_.clear();
  return out;
}

crypto::Result<void> Coop::check_policy(const Group& g) {
  const config::KsGroupConfig* c = group_config(cfg_, g.policy().identity);
  if (!c) return Error{"group " + g.policy().name + " is not configured"};
  const json mine = policy_fields(*c, g.kek().signature_public_key);
  const std::string k = group_key(g, "policy");
  auto r = client_.txn({etcd::Compare::version(k, etcd::Compare::Result::Equal, 0)},
                       {etcd::Op::put(k, mine.dump())}, {etcd::Op::get(k)});
  if (!r) return Error{"group " + g.policy().name + ": " + r.error()};
  sync_[g.policy().identity].policy = mine.dump();
  if (r->succeeded) {
    log(Severity::Info, "group " + g.policy().name + ": this key server's policy is now the cluster's (" + k + ")");
    return {};
  }
  if (r->ranges.empty() || r->ranges[0].empty()) return Error{"group " + g.policy().name + ": " + k + " vanished"};
  json theirs = json::parse(r->ranges[0][0].value, nullptr, false);
  if (!theirs.is_object()) return Error{"group " + g.policy().name + ": " + k + " is not JSON"};
  const std::string differ = differences(mine, theirs);
  if (!differ.empty())
    return Error{"group " + g.policy().name + " (" + std::to_string(g.policy().identity) + "): key server " + name_ +
                 " is configured unlike the cluster (" + k + "), so it does not serve the group: " + differ};
  return {};
}

crypto::Result<void> Coop::join() {
  auto lease = client_.grant(ttl_s_);
  if (!lease) return Error{"etcd lease: " + lease.error()};
  shared_->lease = lease->id;
  shared_->valid_until = steady_ms() + lease->ttl_s * 1000 - kLeaseGuardMs;
  // A name is one key server: another live one under it (a copied config)
  // would be taken for this one by everybody. The same address is this
  // key server restarted before its old lease ended.
  const std::string k = key("ks/" + name_);
  const std::string record =
      json{{"name", name_}, {"address", address_.str()}, {"priority", priority_}, {"seen", clock::now_ms()}}.dump();
  auto r = client_.txn({etcd::Compare::version(k, etcd::Compare::Result::Equal, 0)},
                       {etcd::Op::put(k, record, lease->id)}, {etcd::Op::get(k)});
  if (!r) return Error{"etcd: " + r.error()};
  if (!r->succeeded && !r->ranges.empty() && !r->ranges[0].empty()) {
    json other = json::parse(r->ranges[0][0].value, nullptr, false);
    if (other.is_object() && other.value("address", "") != address_.str())
      return Error{"[cluster] name " + name_ + " is already used by the live key server at " +
                   other.value("address", "?") + "; give each key server its own name"};
    if (auto again = client_.put(k, record, lease->id); !again) return Error{"etcd: " + again.error()};
  }
  joined_at_ = steady_ms();
  return {};
}

crypto::Result<void> Coop::seed(Groups& groups, Group& g, bool from_file) {
  // Only when etcd holds no keys for the group: the first key server to
  // get here wins; the others take what it wrote.
  std::string text = encode_group_keys(g);
  auto sealed = crypto::seal(sealing_key_, group_key(g, "keys"), view_of(text));
  const Bytes digest = sha256(text);
  wipe(text);
  if (!sealed) return Error{sealed.error()};
  const std::string k = group_key(g, "keys");
  auto r = client_.txn({etcd::Compare::version(k, etcd::Compare::Result::Equal, 0)},
                       {etcd::Op::put(k, std::string(sealed->begin(), sealed->end())),
                        etcd::Op::put(group_key(g, "sid"), std::to_string(g.sid_mark()))},
                       {etcd::Op::get(k)});
  if (!r) return Error{"group " + g.policy().name + ": seeding etcd: " + r.error()};
  if (!r->succeeded) {
    if (r->ranges.empty() || r->ranges[0].empty()) return Error{"group " + g.policy().name + ": " + k + " vanished"};
    return take_keys(g, r->ranges[0][0]);
  }
  GroupSync& sync = sync_[g.policy().identity];
  sync.keys_rev = r->revision;
  sync.keys_digest = digest;
  log(Severity::Info, "group " + g.policy().name + ": etcd seeded with " +
                          (from_file ? "the keys of the local state file (migration), SEQ " + std::to_string(g.seq())
                                     : std::string("new keys")));
  (void)groups;
  return {};
}

crypto::Result<void> Coop::take_keys(Group& g, const etcd::KeyValue& kv) {
  auto text = crypto::unseal(sealing_key_, kv.key, view_of(kv.value));
  if (!text) return Error{"group " + g.policy().name + ": " + kv.key + ": " + text.error()};
  const std::string_view plain(reinterpret_cast<const char*>(text->data()), text->size());
  auto state = decode_group_keys(plain, g, "etcd " + kv.key);
  if (!state) return Error{state.error()};
  const std::uint32_t before = g.seq();
  if (auto r = g.adopt_keys(std::move(*state)); !r) return r;
  std::string mine = encode_group_keys(g);
  GroupSync& sync = sync_[g.policy().identity];
  sync.keys_rev = kv.mod_revision;
  sync.keys_digest = sha256(mine);
  wipe(mine);
  if (g.seq() != before)
    log(Severity::Info, "group " + g.policy().name + ": keys of SEQ " + std::to_string(g.seq()) +
                            " taken from the cluster (TEK " +
                            (g.teks().empty() ? std::string("none") : spi_text(g.teks().back().tek.spi)) + ")");
  return {};
}

crypto::Result<void> Coop::take_push(Group& g, const etcd::KeyValue& kv) {
  auto text = crypto::unseal(sealing_key_, kv.key, view_of(kv.value));
  if (!text) return Error{"group " + g.policy().name + ": " + kv.key + ": " + text.error()};
  json j = json::parse(std::string_view(reinterpret_cast<const char*>(text->data()), text->size()), nullptr, false);
  auto fail = [&](const std::string& why) { return Error{"group " + g.policy().name + ": " + kv.key + ": " + why}; };
  if (!j.is_object()) return fail("not JSON");
  try {
    Group::LastPush p;
    p.seq = j.at("seq").get<std::uint32_t>();
    p.at = j.at("at").get<std::int64_t>();
    p.reason = j.at("reason").get<std::uint8_t>();
    p.unicast = j.at("unicast").get<bool>();
    p.retransmit_period_s = j.at("retransmit_period").get<std::uint32_t>();
    p.retransmit_count = j.at("retransmit_count").get<std::uint32_t>();
    Bytes spi, ack;
    if (!from_hex(j.at("ack_spi").get<std::string>(), spi) || spi.size() != p.ack_key.spi.size())
      return fail("ack_spi is not 16 bytes of hex");
    std::copy(spi.begin(), spi.end(), p.ack_key.spi.begin());
    std::string ack_hex = j.at("ack_key").get<std::string>();
    const bool ok = from_hex(ack_hex, ack);
    wipe(ack_hex);
    j["ack_key"] = "";
    if (!ok) return fail("ack_key is not hex");
    p.ack_key.key = crypto::SecretBytes(ByteView(ack));
    OPENSSL_cleanse(ack.data(), ack.size());
    for (const json& d : j.at("datagrams")) {
      Bytes bytes;
      if (!from_hex(d.at("bytes").get<std::string>(), bytes)) return fail("a datagram is not hex");
      gdoi::PeerTraits traits;
      if (!d.at("covey_features").is_null()) traits = gdoi::PeerTraits{true, d.at("covey_features").get<std::uint32_t>()};
      p.datagrams.emplace(traits, std::make_shared<const Bytes>(std::move(bytes)));
    }
    GroupSync& sync = sync_[g.policy().identity];
    sync.push_rev = kv.mod_revision;
    sync.push_seq = p.seq;
    g.set_last_push(std::move(p));
  } catch (const json::exception& e) {
    return fail(std::string("malformed: ") + e.what());
  }
  return {};
}

void Coop::take_member(Group& g, const etcd::KeyValue& kv, const std::string& address) {
  GroupSync& sync = sync_[g.policy().identity];
  const std::size_t h = std::hash<std::string>{}(kv.value);
  auto a = Address::parse(address);
  if (!a) return;
  if (auto it = sync.member_hash.find(*a); it != sync.member_hash.end() && it->second == h) return;  // our own
  auto m = decode_member(kv.value, "etcd " + kv.key);
  if (!m) {
    log(Severity::Warning, "group " + g.policy().name + ": member record ignored: " + m.error());
    return;
  }
  if (const Member* held = g.member(m->address)) m->registered_seq = held->registered_seq;
  g.put_member(std::move(*m));
  sync.member_hash[*a] = h;
}

crypto::Result<bool> Coop::restore(Groups& groups) {
  if (auto r = join(); !r) return Error{r.error()};
  for (const auto& [id, g] : groups.all())
    if (auto r = check_policy(*g); !r) return Error{r.error()};

  auto all = client_.get(key(""), true);
  if (!all) return Error{"etcd: reading " + prefix_ + "/: " + all.error()};
  bool found = false;
  std::vector<Group*> unseeded;
  for (const auto& [id, owned] : groups.all()) {
    Group& g = *owned;
    const std::string gp = group_key(g, "");
    const etcd::KeyValue* keys = nullptr;
    for (const auto& kv : all->kvs) {
      if (kv.key.rfind(gp, 0) != 0) continue;
      const std::string rest = kv.key.substr(gp.size());
      if (rest == "keys") keys = &kv;
    }
    if (!keys) {
      unseeded.push_back(&g);
      continue;
    }
    found = true;
    if (auto r = take_keys(g, *keys); !r) return Error{r.error()};
    for (const auto& kv : all->kvs) {
      if (kv.key.rfind(gp, 0) != 0) continue;
      const std::string rest = kv.key.substr(gp.size());
      if (rest == "push") {
        if (auto r = take_push(g, kv); !r) return Error{r.error()};
      } else if (rest.rfind("member/", 0) == 0) {
        take_member(g, kv, rest.substr(7));
      }
    }
  }
  for (const auto& kv : all->kvs) {
    if (kv.key == key("primary")) primary_ = kv.value;
    if (kv.key.rfind(key("ks/"), 0) == 0) apply(groups, etcd::Event{etcd::Event::Type::Put, kv});
  }
  if (!unseeded.empty()) {
    // Migration: a key server that ran alone brings its groups and members.
    bool from_file = false;
    StateFile file(cfg_.server.state_dir);
    if (!found) {
      auto restored = file.restore(groups);
      if (!restored) return Error{"migrating from " + file.describe() + ": " + restored.error()};
      from_file = *restored;
    }
    for (Group* g : unseeded)
      if (auto r = seed(groups, *g, from_file); !r) return Error{r.error()};
    found = found || from_file;
  }
  // A range of SIDs now, so that registrations go on while etcd is away.
  for (const auto& [id, g] : groups.all())
    if (auto r = reserve(*g, 1); !r) return Error{"group " + g->policy().name + ": reserving SIDs: " + r.error()};
  shared_->thread = std::thread([s = shared_.get(), o = options_, p = prefix_, rev = all->revision + 1, t = ttl_s_] {
    s->run(o, p, rev, t);
  });
  return found;
}

// ------------------------------------------------------------ writing

crypto::Result<void> Coop::write_keys(const std::vector<const Group*>& changed) {
  if (!primary()) return Error{not_primary() + " (only the primary changes keys)"};
  // One transaction for every group whose keys changed: a rekey never
  // commits while another group's write fails (the caller would undo it).
  std::vector<etcd::Compare> compare{
      etcd::Compare::create_revision(key("primary"), etcd::Compare::Result::Equal, leader_rev_)};
  std::vector<etcd::Op> ops;
  std::vector<etcd::Op> read{etcd::Op::get(key("primary"))};
  std::string names, seqs;
  for (const Group* g : changed) {
    const GroupSync& sync = sync_[g->policy().identity];
    const std::string k = group_key(*g, "keys");
    std::string text = encode_group_keys(*g);
    auto sealed = crypto::seal(sealing_key_, k, view_of(text));
    wipe(text);
    if (!sealed) return Error{sealed.error()};
    compare.push_back(etcd::Compare::mod_revision(k, etcd::Compare::Result::Equal, sync.keys_rev));
    ops.push_back(etcd::Op::put(k, std::string(sealed->begin(), sealed->end())));
    read.push_back(etcd::Op::get(k));
    names += (names.empty() ? "" : ", ") + g->policy().name;
    seqs += (seqs.empty() ? "" : ", ") + std::to_string(g->seq());
    // A reload on the primary publishes the policy every key server must have.
    if (const config::KsGroupConfig* c = group_config(cfg_, g->policy().identity)) {
      const std::string policy = policy_fields(*c, g->kek().signature_public_key).dump();
      if (policy != sync.policy) ops.push_back(etcd::Op::put(group_key(*g, "policy"), policy));
    }
    const std::optional<Group::LastPush>& push = g->last_push();
    if (!push || push->seq == sync.push_seq) continue;
    json datagrams = json::array();
    for (const auto& [traits, bytes] : push->datagrams)
      datagrams.push_back({{"covey_features", traits.covey ? json(traits.features) : json(nullptr)},
                           {"bytes", to_hex(*bytes)}});
    json j = {{"seq", push->seq},
              {"at", push->at},
              {"reason", push->reason},
              {"unicast", push->unicast},
              {"retransmit_period", push->retransmit_period_s},
              {"retransmit_count", push->retransmit_count},
              {"ack_spi", to_hex(push->ack_key.spi)},
              {"ack_key", to_hex(push->ack_key.key)},
              {"datagrams", std::move(datagrams)}};
    std::string pt = j.dump();
    j["ack_key"] = "";
    auto sealed_push = crypto::seal(sealing_key_, group_key(*g, "push"), view_of(pt));
    wipe(pt);
    if (!sealed_push) return Error{sealed_push.error()};
    ops.push_back(etcd::Op::put(group_key(*g, "push"), std::string(sealed_push->begin(), sealed_push->end())));
  }
  auto r = client_.txn(compare, ops, read);
  if (!r) return Error{"etcd: " + r.error()};
  if (!r->succeeded) {
    const bool still = !r->ranges.empty() && !r->ranges[0].empty() && r->ranges[0][0].create_revision == leader_rev_;
    if (!still) {
      primary_ = r->ranges.empty() || r->ranges[0].empty() ? "" : r->ranges[0][0].value;
      leader_rev_ = 0;
      log(Severity::Warning, "key server " + name_ + " is no longer the primary" +
                                 (primary_.empty() ? std::string() : " (" + primary_ + " is)"));
      return Error{"key server " + name_ + " lost the primary role before SEQ " + seqs + " of " + names +
                   " was written; nothing was sent"};
    }
    return Error{"group " + names + ": the cluster's keys changed since this key server last saw them; nothing "
                 "was sent, and the next try uses them"};
  }
  for (const Group* g : changed) {
    GroupSync& sync = sync_[g->policy().identity];
    std::string text = encode_group_keys(*g);
    sync.keys_rev = r->revision;
    sync.keys_digest = sha256(text);
    wipe(text);
    if (g->last_push()) {
      sync.push_rev = r->revision;
      sync.push_seq = g->last_push()->seq;
    }
    if (const config::KsGroupConfig* c = group_config(cfg_, g->policy().identity))
      sync.policy = policy_fields(*c, g->kek().signature_public_key).dump();
  }
  return {};
}

crypto::Result<void> Coop::write_members(const Groups& groups) {
  // Known unreachable: fail at once rather than hold the key server's only
  // thread, which answers registrations, for a timeout per etcd member.
  if (!lease_valid()) return Error{"etcd unreachable (the lease is not being renewed); written once it is back"};
  for (const auto& [id, owned] : groups.all()) {
    const Group& g = *owned;
    GroupSync& sync = sync_[id];
    std::vector<etcd::Op> ops;
    std::vector<std::pair<Address, std::size_t>> written;
    std::vector<Address> removed;
    auto flush = [&]() -> crypto::Result<void> {
      if (ops.empty()) return {};
      // Removing members is the primary's, fenced like its keys.
      std::vector<etcd::Compare> fence;
      if (!removed.empty()) fence.push_back(etcd::Compare::create_revision(key("primary"), etcd::Compare::Result::Equal, leader_rev_));
      auto r = client_.txn(fence, ops);
      if (!r) return Error{"etcd: writing members of group " + g.policy().name + ": " + r.error()};
      if (!r->succeeded) return Error{"group " + g.policy().name + ": members not removed: no longer the primary"};
      for (const auto& [a, h] : written) sync.member_hash[a] = h;
      for (const Address& a : removed) sync.member_hash.erase(a);
      ops.clear();
      written.clear();
      removed.clear();
      return {};
    };
    for (const auto& [addr, m] : g.members()) {
      std::string record = encode_member(m);
      const std::size_t h = std::hash<std::string>{}(record);
      auto it = sync.member_hash.find(addr);
      if (it != sync.member_hash.end() && it->second == h) continue;
      ops.push_back(etcd::Op::put(group_key(g, "member/" + addr.str()), std::move(record)));
      written.emplace_back(addr, h);
      if (ops.size() >= kOpsPerTxn)
        if (auto r = flush(); !r) return r;
    }
    if (primary()) {
      std::vector<Address> gone;
      for (const auto& [addr, h] : sync.member_hash)
        if (!g.members().count(addr)) gone.push_back(addr);
      for (const Address& a : gone) {
        ops.push_back(etcd::Op::del(group_key(g, "member/" + a.str())));
        removed.push_back(a);
        if (ops.size() >= kOpsPerTxn)
          if (auto r = flush(); !r) return r;
      }
    }
    if (auto r = flush(); !r) return r;
  }
  return {};
}

crypto::Result<void> Coop::save(const Groups& groups) {
  // Members first: a failure after the keys committed would have the
  // caller undo a rekey that the cluster already holds.
  if (auto r = write_members(groups); !r) return r;
  std::vector<const Group*> changed;
  for (const auto& [id, owned] : groups.all()) {
    std::string text = encode_group_keys(*owned);
    bool differs = sha256(text) != sync_[id].keys_digest;
    wipe(text);
    const config::KsGroupConfig* c = group_config(cfg_, id);
    if (!differs && c && primary())
      differs = policy_fields(*c, owned->kek().signature_public_key).dump() != sync_[id].policy;
    if (differs) changed.push_back(owned.get());
  }
  return changed.empty() ? crypto::Result<void>{} : write_keys(changed);
}

Groups::ReserveSids Coop::sid_reserver() {
  return [this](Group& g, unsigned need) { return reserve(g, need); };
}

crypto::Result<void> Coop::reserve(Group& g, unsigned need) {
  if (!lease_valid()) return Error{"etcd unreachable (the lease is not being renewed), and this key server's SID range is used up"};
  const std::string k = group_key(g, "sid");
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto r = client_.get(k);
    if (!r) return Error{"etcd: " + r.error()};
    std::uint32_t first = 0;
    std::int64_t rev = 0;
    if (!r->kvs.empty()) {
      first = static_cast<std::uint32_t>(std::strtoul(r->kvs[0].value.c_str(), nullptr, 10));
      rev = r->kvs[0].mod_revision;
    }
    if (first + need > 0xffff) return Error{"the cluster's SID space is exhausted (" + k + " is " + std::to_string(first) + ")"};
    const std::uint32_t end = std::min<std::uint32_t>(first + need + Groups::kSidBlock, 0xffff);
    auto t = client_.txn({rev ? etcd::Compare::mod_revision(k, etcd::Compare::Result::Equal, rev)
                              : etcd::Compare::version(k, etcd::Compare::Result::Equal, 0)},
                         {etcd::Op::put(k, std::to_string(end))});
    if (!t) return Error{"etcd: " + t.error()};
    if (t->succeeded) {
      g.set_sid_range(first, end);
      return {};
    }
  }
  return Error{"another key server kept reserving SIDs at the same moment (" + k + "); try again"};
}

// ------------------------------------------------------------ following

void Coop::apply(Groups& groups, const etcd::Event& e) {
  const std::string& k = e.kv.key;
  const bool put = e.type == etcd::Event::Type::Put;
  if (k == key("primary")) {
    // Older than this key server's own election: already settled.
    if (leader_rev_ != 0 && e.kv.mod_revision < leader_rev_) return;
    const std::string before = primary_;
    primary_ = put ? e.kv.value : "";
    if (put && e.kv.value == name_ && e.kv.create_revision == leader_rev_) return;
    if (leader_rev_ != 0) {
      leader_rev_ = 0;
      log(Severity::Warning, "key server " + name_ + " is no longer the primary" +
                                 (primary_.empty() ? std::string(" (its lease ended)") : " (" + primary_ + " is)"));
    }
    if (put && primary_ != before) log(Severity::Info, "cluster primary is now " + primary_);
    return;
  }
  if (k.rfind(key("ks/"), 0) == 0) {
    const std::string name = k.substr(key("ks/").size());
    if (!put) {
      peers_.erase(name);
      return;
    }
    json j = json::parse(e.kv.value, nullptr, false);
    if (!j.is_object()) return;
    Peer p;
    p.name = name;
    p.address = Address::parse(j.value("address", "")).value_or(Address{});
    p.priority = j.value("priority", 0u);
    p.seen_ms = j.value("seen", std::int64_t{0});
    p.groups = j.value("groups", json::object());
    peers_[name] = std::move(p);
    return;
  }
  const std::string gp = key("group/");
  if (k.rfind(gp, 0) != 0) return;
  const std::string rest = k.substr(gp.size());
  const std::size_t slash = rest.find('/');
  if (slash == std::string::npos) return;
  Group* g = groups.find(static_cast<std::uint32_t>(std::strtoul(rest.substr(0, slash).c_str(), nullptr, 10)));
  if (!g) return;
  GroupSync& sync = sync_[g->policy().identity];
  const std::string what = rest.substr(slash + 1);
  if (what == "policy" && put) {
    if (e.kv.value != sync.policy)
      log(Severity::Info, "group " + g->policy().name + ": the primary published a new policy (" + k +
                              "); reload this key server with it (coveyctl ks reload)");
    sync.policy = e.kv.value;
  } else if (what == "keys" && put && e.kv.mod_revision > sync.keys_rev) {
    if (auto r = take_keys(*g, e.kv); !r) log(Severity::Error, r.error());
  } else if (what == "push" && put && e.kv.mod_revision > sync.push_rev) {
    if (auto r = take_push(*g, e.kv); !r) log(Severity::Error, r.error());
  } else if (what.rfind("member/", 0) == 0) {
    if (put) {
      take_member(*g, e.kv, what.substr(7));
    } else if (auto a = Address::parse(what.substr(7))) {
      if (sync.member_hash.erase(*a) && g->remove_member(*a))
        log(Severity::Info, "group " + g->policy().name + ": GM " + a->str() + " removed by the primary");
    }
  }
}

void Coop::announce(const Groups& groups, std::int64_t now_ms) {
  json view = json::object();
  for (const auto& [id, g] : groups.all()) {
    json teks = json::array();
    for (const auto& t : g->teks()) teks.push_back(spi_text(t.tek.spi));
    view[g->policy().name] = {{"seq", g->seq()}, {"teks", teks}, {"kek", to_hex(g->kek().spi)}};
  }
  const std::string v = view.dump();
  const std::int64_t now = steady_ms();
  if (announced_lease_ == lease() && v == announced_view_ && now - announced_at_ < ttl_s_ * 1000 / 2) return;
  json record = {{"name", name_}, {"address", address_.str()}, {"priority", priority_}, {"seen", now_ms}, {"groups", view}};
  auto r = client_.put(key("ks/" + name_), record.dump(), lease());
  if (!r) return;  // the keep-alive thread says that etcd is unreachable
  announced_lease_ = lease();
  announced_view_ = v;
  announced_at_ = now;
}

bool Coop::campaign(std::int64_t now_ms) {
  (void)now_ms;
  if (!primary_.empty() || !lease_valid() || steady_ms() - joined_at_ < ttl_s_ * 1000) return false;
  // The best live key server stands; etcd's transaction settles a race.
  for (const auto& [name, p] : peers_) {
    if (name == name_) continue;
    if (p.priority > priority_ || (p.priority == priority_ && address_ < p.address)) return false;
  }
  auto r = client_.txn({etcd::Compare::create_revision(key("primary"), etcd::Compare::Result::Equal, 0)},
                       {etcd::Op::put(key("primary"), name_, lease())}, {etcd::Op::get(key("primary"))});
  if (!r) return false;
  if (!r->succeeded) {
    if (!r->ranges.empty() && !r->ranges[0].empty()) primary_ = r->ranges[0][0].value;
    return false;
  }
  leader_rev_ = r->revision;
  leader_lease_ = lease();
  primary_ = name_;
  log(Severity::Info, "key server " + name_ + " (priority " + std::to_string(priority_) + ", " + address_.str() +
                          ") is now the primary of the cluster");
  return true;
}

Store::RoleChange Coop::poll(Groups& groups, std::int64_t now_ms) {
  // What this key server acted as until now: its lease may have lapsed
  // since the last call without any event.
  const bool was = acting_;
  std::vector<etcd::Event> events;
  {
    std::lock_guard lock(shared_->mu);
    events = std::exchange(shared_->events, {});
  }
  for (const etcd::Event& e : events) apply(groups, e);
  if (lease_valid()) announce(groups, now_ms);
  // Primary again without an election: its lease outlived etcd's
  // unavailability, so the role it stood down from is still its own.
  if (!was && (primary() || campaign(now_ms))) {
    acting_ = true;
    return RoleChange::BecamePrimary;
  }
  if (was && !primary()) {
    acting_ = false;
    if (!lease_valid())
      log(Severity::Warning, "key server " + name_ + " stands down as primary: etcd has not renewed its lease for "
                             "longer than the lease TTL, so another may be primary by now");
    return RoleChange::BecameSecondary;
  }
  return RoleChange::None;
}

// ------------------------------------------------------------ showing

nlohmann::json Coop::cluster_status(const Groups& groups, std::int64_t now_ms, std::int64_t wall_offset_s) {
  json servers = json::array();
  std::map<std::string, Peer> all = peers_;
  for (const auto& [name, p] : all) {
    servers.push_back({{"name", name},
                       {"address", p.address.str()},
                       {"priority", p.priority},
                       {"role", name == primary_ ? "primary" : "secondary"},
                       {"self", name == name_},
                       {"last_seen", p.seen_ms / 1000 + wall_offset_s},
                       {"seen_ago_s", std::max<std::int64_t>(0, (now_ms - p.seen_ms) / 1000)},
                       {"groups", p.groups}});
  }
  std::sort(servers.begin(), servers.end(), [](const json& a, const json& b) {
    return std::pair(a["priority"].get<std::uint32_t>(), a["address"].get<std::string>()) >
           std::pair(b["priority"].get<std::uint32_t>(), b["address"].get<std::string>());
  });
  json etcd = {{"endpoints", options_.endpoints}};
  auto members = client_.members();
  if (!members) {
    etcd["reachable"] = false;
    etcd["error"] = members.error();
  } else {
    etcd["reachable"] = true;
    json list = json::array();
    for (const auto& m : *members)
      list.push_back({{"name", m.name},
                      {"id", m.id},
                      {"client_urls", m.client_urls},
                      {"reachable", m.reachable},
                      {"leader", m.leader},
                      {"error", m.error}});
    etcd["members"] = list;
  }
  json mine = json::object();
  for (const auto& [id, g] : groups.all()) {
    json teks = json::array();
    for (const auto& t : g->teks()) teks.push_back(spi_text(t.tek.spi));
    mine[g->policy().name] = {{"seq", g->seq()}, {"teks", teks}, {"kek", to_hex(g->kek().spi)}};
  }
  return {{"ok", true},
          {"name", name_},
          {"address", address_.str()},
          {"priority", priority_},
          {"role", primary() ? "primary" : "secondary"},
          {"primary", primary_},
          {"lease_ttl", ttl_s_},
          {"lease_valid", lease_valid()},
          {"prefix", prefix_},
          {"groups", mine},
          {"key_servers", servers},
          {"etcd", etcd}};
}

// ------------------------------------------------------------ reloading

crypto::Result<void> Coop::check_reload(const config::KsConfig& next, const Groups& groups) {
  if (primary()) return {};  // it publishes the new policy with its rekey
  if (!lease_valid() || primary_.empty()) return Error{"in a cluster, " + not_primary()};
  std::string differ;
  for (const config::KsGroupConfig& c : next.groups) {
    auto found = groups.all().find(c.policy.identity);
    if (found == groups.all().end()) continue;  // reload_problems names it
    const Group* g = found->second.get();
    auto record = client_.get(group_key(*g, "policy"));
    if (!record) return Error{"etcd: " + record.error()};
    json theirs = record->kvs.empty() ? json::object() : json::parse(record->kvs[0].value, nullptr, false);
    const std::string d = differences(policy_fields(c, g->kek().signature_public_key), theirs);
    if (!d.empty()) differ += (differ.empty() ? "group " : "; group ") + c.policy.name + ": " + d;
  }
  if (!differ.empty())
    return Error{"key server " + name_ + " is a secondary and takes only the policy the primary published; reload "
                 "the primary, " + primary_ + ", first (" + differ + ")"};
  return {};
}

void Coop::reconfigure(const config::KsConfig& cfg, Groups& groups) {
  cfg_ = cfg;
  if (primary()) return;
  // Keys the primary made under the new policy could not be taken under
  // the old one: take them now.
  for (const auto& [id, g] : groups.all()) {
    auto r = client_.get(group_key(*g, "keys"));
    if (!r || r->kvs.empty()) continue;
    if (r->kvs[0].mod_revision == sync_[id].keys_rev) continue;
    if (auto taken = take_keys(*g, r->kvs[0]); !taken) log(Severity::Error, taken.error());
  }
}

// ------------------------------------------------------------ checking

crypto::Result<std::vector<std::string>> Coop::check(const config::KsConfig& cfg) {
  if (!cfg.cluster) return Error{"no [cluster] in the configuration"};
  auto sealing_key = crypto::read_sealing_key(cfg.cluster->sealing_key);
  if (!sealing_key) return Error{"[cluster] " + sealing_key.error()};
  etcd::Options options = etcd_options(*cfg.cluster);
  if (auto ok = etcd::Client::check(options); !ok) return Error{"[cluster] " + ok.error()};
  etcd::Client client(options);
  std::vector<std::string> problems;
  for (const config::KsGroupConfig& g : cfg.groups) {
    const std::string where = "group " + g.policy.name + " (" + std::to_string(g.policy.identity) + ")";
    const std::string base = cfg.cluster->prefix + "/group/" + std::to_string(g.policy.identity) + "/";
    auto pem = crypto::read_pem_file(g.signing_key);
    if (!pem) return Error{where + ": rekey signing key: " + pem.error()};
    auto key = crypto::PrivateKey::from_pem(crypto::pem_text(*pem));
    if (!key) return Error{where + ": rekey signing key " + g.signing_key + ": " + key.error()};
    auto der = key->public_key();
    if (!der) return Error{where + ": " + der.error()};
    auto spki = der->to_der();
    if (!spki) return Error{where + ": " + spki.error()};
    auto stored = client.get(base, true);
    if (!stored) return Error{"etcd: " + stored.error()};
    const etcd::KeyValue *policy = nullptr, *keys = nullptr;
    for (const auto& kv : stored->kvs) {
      if (kv.key == base + "policy") policy = &kv;
      if (kv.key == base + "keys") keys = &kv;
    }
    if (!policy) continue;  // a group the cluster does not serve yet: this key server would bring it
    json theirs = json::parse(policy->value, nullptr, false);
    if (const std::string d = differences(policy_fields(g, *spki), theirs); !d.empty())
      problems.push_back(where + ": configured unlike the cluster (" + policy->key + "): " + d);
    if (keys)
      if (auto opened = crypto::unseal(*sealing_key, keys->key, view_of(keys->value)); !opened)
        problems.push_back(where + ": the cluster's keys (" + keys->key + ") " + opened.error() +
                           ": sealing_key " + cfg.cluster->sealing_key + " is not the cluster's");
  }
  return problems;
}

}  // namespace covey::ks
