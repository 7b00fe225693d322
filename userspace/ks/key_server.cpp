#include "ks/key_server.h"

#include <algorithm>
#include <chrono>

#include "apps/phase1_setup.h"
#include "crypto/x509.h"
#include "ks/reload.h"
#include "ks/status.h"

namespace covey::ks {

namespace {

bool specific(const Address& a) { return a != Address{} && !(a.family == 6 && a == *Address::parse("::")); }

}  // namespace

KeyServer::KeyServer(config::KsConfig cfg, std::string config_path, std::unique_ptr<Store> store, Address address,
                     DispatcherOptions dispatcher_options)
    : cfg_(std::move(cfg)),
      config_path_(std::move(config_path)),
      store_(std::move(store)),
      address_(address),
      dispatcher_(std::move(dispatcher_options), groups_, Address{}),
      rekeyer_(groups_) {
  dispatcher_.set_rekeyer(&rekeyer_);
}

crypto::Result<std::unique_ptr<KeyServer>> KeyServer::open(config::KsConfig cfg, std::string config_path,
                                                           std::unique_ptr<Store> store, bool keylog,
                                                           std::int64_t now_ms) {
  std::string error;
  auto creds = apps::phase1_credentials(cfg.isakmp, &error);
  if (!creds) return crypto::Error{error};
  Address address = cfg.server.address.value_or(Address{});
  if (!cfg.server.address)
    for (const Address& a : cfg.server.listen)
      if (specific(a)) {
        address = a;
        break;
      }
  DispatcherOptions options;
  options.phase1 = apps::phase1_transforms(cfg.isakmp);
  options.credentials = std::move(creds);
  options.half_open_cap = cfg.server.max_half_open;
  options.keylog = keylog;

  std::unique_ptr<KeyServer> ks(new KeyServer(std::move(cfg), std::move(config_path), std::move(store), address,
                                              std::move(options)));
  ks->now_ms_ = now_ms;
  for (const config::KsGroupConfig& g : ks->cfg_.groups) {
    // A key file is read into memory that wipes itself.
    auto pem = crypto::read_pem_file(g.signing_key);
    if (!pem) return crypto::Error{"group " + g.policy.name + ": rekey signing key: " + pem.error()};
    auto key = crypto::PrivateKey::from_pem(crypto::pem_text(*pem));
    if (!key) return crypto::Error{"group " + g.policy.name + ": rekey signing key " + g.signing_key + ": " + key.error()};
    // A multicast group's rekeys leave from, and its SA KEK names, an
    // address of the group's family: a dual-stack key server's IPv6
    // address for an ff05:: group even when [server] address is IPv4.
    const bool multicast = g.policy.rekey.mode == gdoi::RekeyTransport::Mode::Multicast;
    auto group = Group::create(
        g.policy, Authorization{g.authorization, g.authorization_subjects}, std::move(*key),
        multicast ? ks->address(g.policy.rekey.multicast_address.family) : address, seconds_of(now_ms));
    if (!group) return crypto::Error{group.error()};
    ks->log(Severity::Info, "group " + g.policy.name + " (" + std::to_string(g.policy.identity) + "): " +
                                std::to_string(g.policy.acl.size()) + " ACL entries, TEK " + g.policy.tek.str() +
                                ", TEK lifetime " + std::to_string(g.policy.tek_lifetime_s) + " s");
    ks->groups_.add(std::move(*group));
    ks->rekeyer_.set_margins(g.policy.identity, RekeyMargins{g.tek_margin_s, g.kek_margin_s});
  }

  // The groups carry on from the store, or start afresh and are written
  // before any key in them is sent. A store that cannot be read is the
  // operator's to look at: replacing it would strand every member.
  auto restored = ks->store_->restore(ks->groups_);
  if (!restored) return crypto::Error{restored.error()};
  if (*restored) {
    for (const auto& [id, g] : ks->groups_.all())
      ks->log(Severity::Info, "group " + g->policy().name + ": state restored from " + ks->store_->describe() + ": " +
                                  std::to_string(g->members().size()) + " members, SEQ " + std::to_string(g->seq()) +
                                  ", next SID " + std::to_string(g->next_sid()));
  } else {
    ks->log(Severity::Info, "nothing stored yet in " + ks->store_->describe() + ": groups start with new keys");
  }
  // Written even after a restore: the store then also holds what the
  // running key server will hand out first.
  if (auto written = ks->save(); !written) return crypto::Error{written.error()};
  // Rekeys and SID reservations save at once, never delayed.
  KeyServer* self = ks.get();
  ks->groups_.set_write_now([self] { return self->save(); });
  ks->groups_.set_reserve_sids(ks->store_->sid_reserver());
  // A member may have registered to another key server of the cluster.
  ks->rekeyer_.set_send_from_own_address(ks->cfg_.cluster.has_value());
  for (const auto& [id, g] : ks->groups_.all()) {
    const RekeyMargins m = ks->rekeyer_.margins(*g);
    ks->log(Severity::Info,
            "group " + g->policy().name + ": next rekey in " +
                std::to_string(std::max<std::int64_t>(ks->rekeyer_.next_rekey_at(*g) - seconds_of(now_ms), 0)) +
                " s (TEK margin " + std::to_string(tek_margin(m, g->policy())) + " s, KEK margin " +
                std::to_string(kek_margin(m, g->policy())) + " s)");
  }
  return ks;
}

Address KeyServer::address(std::uint8_t family) const {
  if (address_.family == family) return address_;
  for (const Address& a : cfg_.server.listen)
    if (specific(a) && a.family == family) return a;
  Address none;
  none.family = family;
  return none;
}

crypto::Result<void> KeyServer::save() {
  // Every save is timed: the lazy member saves are spaced by what the last
  // one cost, which is the disk's, not the protocol's, so real time.
  const auto start = std::chrono::steady_clock::now();
  auto r = store_->save(groups_);
  last_save_took_ms_ =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  last_save_end_ms_ = now_ms_ + last_save_took_ms_;
  if (r) groups_.mark_state_written();
  return r;
}

std::int64_t KeyServer::member_save_due_ms() const {
  return last_save_end_ms_ + std::max(kMemberSaveIntervalMs, kMemberSaveCostFactor * last_save_took_ms_);
}

std::vector<Outgoing> KeyServer::receive(const Endpoint& from, const Address& local, ByteView datagram,
                                         std::int64_t now_ms) {
  now_ms_ = now_ms;
  return dispatcher_.receive(from, local, datagram, now_ms);
}

void KeyServer::poll(std::int64_t now_ms) {
  now_ms_ = now_ms;
  switch (store_->poll(groups_, now_ms)) {
    case Store::RoleChange::BecamePrimary:
      for (const auto& [id, g] : groups_.all()) rekeyer_.take_over(*g, now_ms);
      break;
    case Store::RoleChange::BecameSecondary:
      rekeyer_.stand_down();
      break;
    case Store::RoleChange::None:
      break;
  }
}

void KeyServer::tick(std::int64_t now_ms) {
  poll(now_ms);
  dispatcher_.expire(seconds_of(now_ms));
  // Only the primary of a cluster rekeys and retransmits; the others
  // follow its keys (ks/coop.h).
  if (store_->primary()) rekeyer_.tick(now_ms);
  if (groups_.state_dirty() && now_ms >= member_save_due_ms())
    if (auto r = save(); !r) log(Severity::Error, "members not saved (will retry): " + r.error());
}

std::vector<PushDatagram> KeyServer::take_outgoing() {
  std::vector<PushDatagram> out = rekeyer_.take_outgoing();
  if (!out.empty() && !store_->primary()) {
    // Its successor finishes the push from etcd, with the same bytes.
    log(Severity::Warning, std::to_string(out.size()) + " push datagrams not sent: key server " +
                               (cfg_.cluster ? cfg_.cluster->name : std::string()) +
                               " is no longer the primary (its etcd lease may have ended)");
    out.clear();
  }
  return out;
}

std::vector<Event> KeyServer::take_events() {
  std::vector<Event> all = dispatcher_.take_events();
  for (Event& e : rekeyer_.take_events()) all.push_back(std::move(e));
  for (Event& e : store_->take_events()) all.push_back(std::move(e));
  for (Event& e : events_) all.push_back(std::move(e));
  events_.clear();
  return all;
}

void KeyServer::set_min_severity(Severity min) {
  dispatcher_.set_min_severity(min);
  rekeyer_.set_min_severity(min);
}

Group* KeyServer::find_group(const std::string& name) {
  if (Group* g = groups_.find(name)) return g;
  for (const auto& [id, g] : groups_.all())
    if (std::to_string(id) == name) return g.get();
  return nullptr;
}

nlohmann::json KeyServer::reload(std::int64_t now_ms) {
  now_ms_ = now_ms;
  auto next = config::load_ks_config(config_path_);
  std::vector<std::string> problems;
  for (const auto& p : next.problems)
    if (p.is_error()) problems.push_back(p.str());
  KsReload r;
  // In a cluster the primary rekeys to the new policy and publishes it; a
  // secondary takes it only once published, and quietly.
  if (next.ok())
    if (auto allowed = store_->check_reload(*next.config, groups_); !allowed) problems.push_back(allowed.error());
  if (problems.empty()) {
    const config::KsConfig before = cfg_;
    const bool rekey = store_->primary();
    if (rekey) store_->reconfigure(*next.config, groups_);
    r = ks::reload(cfg_, std::move(*next.config), groups_, dispatcher_, rekeyer_, now_ms, rekey);
    store_->reconfigure(r.ok ? cfg_ : before, groups_);
    // A change no rekey carried (authorization, margins) is published too.
    if (r.ok && rekey)
      if (auto saved = save(); !saved) r.errors.push_back("the new policy was not published: " + saved.error());
  }
  for (auto& p : r.problems) problems.push_back(std::move(p));
  if (!problems.empty()) {
    std::string text;
    for (const auto& p : problems) text += (text.empty() ? "" : "; ") + p;
    log(Severity::Error, "reload of " + config_path_ + " refused, nothing changed: " + text);
    return {{"ok", false}, {"error", "reload refused, nothing changed: " + text}, {"problems", problems}};
  }
  for (const auto& p : next.problems) log(Severity::Warning, p.str());
  std::string message = r.rekeyed.empty() ? "configuration reloaded; no group's member-visible policy changed"
                                          : "configuration reloaded; rekeyed for the policy change:";
  for (const auto& g : r.rekeyed) message += " " + g;
  if (!r.rolled_over.empty()) message += "; signing key rolled over:";
  for (const auto& g : r.rolled_over) message += " " + g;
  log(Severity::Info, message);
  nlohmann::json reply = {{"ok", r.errors.empty()}, {"rekeyed", r.rekeyed}, {"rolled_over", r.rolled_over},
                          {"message", message}};
  if (!r.errors.empty()) {
    std::string text;
    for (const auto& e : r.errors) text += (text.empty() ? "" : "; ") + e;
    reply["error"] = "configuration reloaded, but " + text;
    reply["problems"] = r.errors;
  }
  return reply;
}

nlohmann::json KeyServer::handle(const nlohmann::json& req, std::int64_t now_ms, std::int64_t wall_offset_s) {
  now_ms_ = now_ms;
  const std::string cmd = req.value("cmd", "");
  std::optional<std::string> group;
  if (req.contains("group") && req["group"].is_string()) group = req["group"].get<std::string>();
  if (cmd == "ks.group")
    return group_status(groups_, &rekeyer_, group, req.value("show_keys", false), now_ms, wall_offset_s);
  if (cmd == "ks.members") {
    std::string why;
    auto filter = MemberFilter::of(req, wall_offset_s, &why);
    if (!filter) return {{"ok", false}, {"error", "ks.members: " + why}};
    if (req.value("count", false) == true) return member_count(groups_, group, *filter);
    return member_status(groups_, group, wall_offset_s, *filter);
  }
  if (cmd == "ks.cluster") return store_->cluster_status(groups_, now_ms, wall_offset_s);
  if (cmd == "ks.rekey" || cmd == "ks.remove-member") {
    // Only the primary changes keys; the others send the operator there.
    if (!store_->primary())
      return {{"ok", false}, {"error", cmd + " refused: " + store_->not_primary()}, {"primary", store_->primary_name()}};
  }
  if (cmd == "ks.reload") return reload(now_ms);
  if (cmd == "ks.rekey") {
    if (!group) return {{"ok", false}, {"error", "ks.rekey needs \"group\", e.g. {\"cmd\":\"ks.rekey\",\"group\":\"GET_VPN\"}"}};
    Group* g = find_group(*group);
    if (!g) return {{"ok", false}, {"error", "no group named " + *group}};
    auto seq = rekeyer_.rekey(*g, RekeyReason::Operator, now_ms);
    if (!seq) return {{"ok", false}, {"error", seq.error()}};
    auto last = rekeyer_.last_rekey(*g);
    return {{"ok", true},
            {"seq", *seq},
            {"message", "group " + g->policy().name + ": rekey SEQ " + std::to_string(*seq) + " sent to " +
                            std::to_string(last ? last->members : 0) + " members"}};
  }
  if (cmd == "ks.remove-member") {
    std::string text = req.contains("address") && req["address"].is_string() ? req["address"].get<std::string>() : "";
    auto address = Address::parse(text);
    if (!address)
      return {{"ok", false},
              {"error", "ks.remove-member needs \"address\", the member's IP address, e.g. "
                        "{\"cmd\":\"ks.remove-member\",\"address\":\"10.1.24.4\"}"}};
    auto seq = rekeyer_.remove_member(*address, group, now_ms);
    if (!seq) return {{"ok", false}, {"error", seq.error()}};
    return {{"ok", true},
            {"seq", *seq},
            {"message", "GM " + address->str() + " removed; rekey SEQ " + std::to_string(*seq) +
                            " (new KEK and TEK) sent by unicast to the remaining members. It may register again "
                            "unless the group's authorization excludes it"}};
  }
  return {{"ok", false},
          {"error", "unknown command \"" + cmd +
                        "\" (covey-ks answers ks.group, ks.members, ks.cluster, ks.reload, ks.rekey, ks.remove-member)"}};
}

}  // namespace covey::ks
