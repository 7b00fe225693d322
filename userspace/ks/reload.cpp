#include "ks/reload.h"

#include <set>

#include "apps/phase1_setup.h"
#include "crypto/x509.h"

namespace covey::ks {

namespace {

std::string addresses(const std::vector<Address>& list) {
  std::string out;
  for (const Address& a : list) out += (out.empty() ? "" : ", ") + a.str();
  return out;
}

std::string or_none(const std::optional<Address>& a) { return a ? a->str() : std::string("none"); }
std::string or_off(const std::optional<Endpoint>& e) { return e ? e->str() : std::string("off"); }

// The PEM private key at `path` and its DER public key.
struct SigningKey {
  crypto::PrivateKey key;
  Bytes spki;
};
crypto::Result<SigningKey> read_signing_key(const std::string& path) {
  auto pem = crypto::read_pem_file(path);
  if (!pem) return crypto::Error{pem.error()};
  auto key = crypto::PrivateKey::from_pem(crypto::pem_text(*pem));
  if (!key) return crypto::Error{key.error()};
  auto pub = key->public_key();
  if (!pub) return crypto::Error{pub.error()};
  auto der = pub->to_der();
  if (!der) return crypto::Error{der.error()};
  return SigningKey{std::move(*key), std::move(*der)};
}

}  // namespace

std::vector<std::string> reload_problems(const config::KsConfig& running, const config::KsConfig& next,
                                         const Groups& groups) {
  std::vector<std::string> problems;
  const auto& a = running.server;
  const auto& b = next.server;
  auto server = [&](const std::string& key, const std::string& was, const std::string& now) {
    if (was != now)
      problems.push_back("[server] " + key + " changed from " + was + " to " + now + ": restart covey-ks to apply it");
  };
  server("listen", addresses(a.listen), addresses(b.listen));
  server("port", std::to_string(a.port), std::to_string(b.port));
  server("address", or_none(a.address), or_none(b.address));
  server("max_half_open", std::to_string(a.max_half_open), std::to_string(b.max_half_open));
  server("workers", a.workers ? std::to_string(*a.workers) : "one per CPU", b.workers ? std::to_string(*b.workers) : "one per CPU");
  server("state_dir", a.state_dir, b.state_dir);
  server("control_socket", a.control_socket, b.control_socket);
  server("user", a.user.empty() ? "none" : a.user, b.user.empty() ? "none" : b.user);
  server("keylog", a.keylog.empty() ? "off" : a.keylog, b.keylog.empty() ? "off" : b.keylog);
  if (running.metrics != next.metrics)
    problems.push_back("[metrics] listen changed from " + or_off(running.metrics.listen) + " to " +
                       or_off(next.metrics.listen) + ": restart covey-ks to apply it");
  if (running.cluster != next.cluster)
    problems.push_back(std::string("[cluster] ") + (!running.cluster ? "added" : !next.cluster ? "removed" : "changed") +
                       ": restart covey-ks to apply it");

  std::set<std::string> names;
  for (const config::KsGroupConfig& g : next.groups) {
    names.insert(g.policy.name);
    const Group* running_group = nullptr;
    for (const auto& [id, owned] : groups.all())
      if (owned->policy().name == g.policy.name) running_group = owned.get();
    if (!running_group) {
      problems.push_back("group " + g.policy.name + " (" + std::to_string(g.policy.identity) +
                         ") is new: adding a group needs a restart of covey-ks");
      continue;
    }
    if (running_group->policy().identity != g.policy.identity)
      problems.push_back("group " + g.policy.name + " identity changed from " +
                         std::to_string(running_group->policy().identity) + " to " + std::to_string(g.policy.identity) +
                         ": members ask for it by number; restart covey-ks (they register again)");
    // Another key is a rollover (ks/rekey.h), but not in a cluster: every
    // key server there must sign with the key members hold, which the
    // cluster checks by its SHA-256 when a key server starts or reloads, and
    // a primary rolling over alone would leave the others (and a failover
    // to one of them) signing with the key members just retired.
    auto key = read_signing_key(g.signing_key);
    if (!key)
      problems.push_back("group " + g.policy.name + " signing_key " + g.signing_key + ": " + key.error());
    else if (key->spki != running_group->kek().signature_public_key && running.cluster)
      problems.push_back("group " + g.policy.name + " signing_key " + g.signing_key + " (SHA-256 " +
                         gdoi::signing_key_id(key->spki) + ") is not the key members verify rekeys with (SHA-256 " +
                         gdoi::signing_key_id(running_group->kek().signature_public_key) +
                         "): a cluster of key servers cannot roll its signing key over; put the old key back (or "
                         "stop every key server of the cluster, remove the group from etcd and let every member "
                         "register again)");
  }
  for (const auto& [id, owned] : groups.all())
    if (!names.count(owned->policy().name))
      problems.push_back("group " + owned->policy().name + " (" + std::to_string(id) +
                         ") is no longer configured: removing a group needs a restart of covey-ks");
  return problems;
}

KsReload reload(config::KsConfig& running, config::KsConfig next, Groups& groups, Dispatcher& dispatcher,
                Rekeyer& rekeyer, std::int64_t now_ms, bool rekey) {
  KsReload out;
  out.problems = reload_problems(running, next, groups);
  std::string error;
  auto credentials = apps::phase1_credentials(next.isakmp, &error);
  if (!credentials) out.problems.push_back(error);
  if (!out.problems.empty()) return out;

  out.ok = true;
  dispatcher.set_phase1(apps::phase1_transforms(next.isakmp), std::move(credentials));
  for (const config::KsGroupConfig& gc : next.groups) {
    Group* g = groups.find(gc.policy.name);
    g->set_authorization(Authorization{gc.authorization, gc.authorization_subjects});
    rekeyer.set_margins(gc.policy.identity, RekeyMargins{gc.tek_margin_s, gc.kek_margin_s});
    if (!rekey) {
      g->set_policy(gc.policy);
      continue;
    }
    // reload_problems read it a moment ago; read again, it may have changed.
    auto key = read_signing_key(gc.signing_key);
    if (!key) {
      out.errors.push_back("group " + gc.policy.name + " signing_key " + gc.signing_key + ": " + key.error());
      continue;
    }
    const bool rollover = key->spki != g->kek().signature_public_key;
    auto seq = rekeyer.change_policy(*g, gc.policy, now_ms,
                                     rollover ? std::optional<crypto::PrivateKey>(std::move(key->key)) : std::nullopt);
    if (!seq) {
      out.errors.push_back(seq.error());
    } else if (*seq) {
      out.rekeyed.push_back(gc.policy.name);
      if (rollover) out.rolled_over.push_back(gc.policy.name);
    }
  }
  running = std::move(next);
  return out;
}

}  // namespace covey::ks
