// covey-ks's core: the groups, the dispatcher that answers registrations,
// the rekeyer with its delivery records, the store the state lives in and
// when it is written, and the control commands. Pure in the sense that
// matters: no socket, no signal, no timer; the event loop (ks/server.h)
// hands it datagrams, the control socket hands it commands, and both pass
// the time. covey-ks's main() only wires Asio and signals to it.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "config/ks_config.h"
#include "crypto/result.h"
#include "ks/dispatcher.h"
#include "ks/event.h"
#include "ks/rekey.h"
#include "ks/store.h"

namespace covey::ks {

class KeyServer {
 public:
  // The groups made from `cfg` (each rekey signing key read from its file),
  // carried on from `store` or started with new keys, and the store written
  // before anything in it can be sent. An error says why not to start.
  // `config_path`: where reload() reads the configuration again. `keylog`:
  // hand out phase-1 keys for a keylog (the file's keylog or the command
  // line's, which wins over it).
  static crypto::Result<std::unique_ptr<KeyServer>> open(config::KsConfig cfg, std::string config_path,
                                                         std::unique_ptr<Store> store, bool keylog, std::int64_t now_ms);

  Groups& groups() { return groups_; }
  const Groups& groups() const { return groups_; }
  Dispatcher& dispatcher() { return dispatcher_; }
  const Dispatcher& dispatcher() const { return dispatcher_; }
  Rekeyer& rekeyer() { return rekeyer_; }
  const Rekeyer& rekeyer() const { return rekeyer_; }
  const config::KsConfig& config() const { return cfg_; }
  // The key server's own address: SA KEK source ID, where multicast
  // rekeys leave from ([server] address, else the first specific listen
  // address, else unspecified).
  const Address& address() const { return address_; }
  // Its address of `family`: address() when of that family, else the first
  // specific listen address of it, else the unspecified one (the kernel
  // chooses the source).
  Address address(std::uint8_t family) const;

  // A datagram from a member: the replies to send. Pushes the rekeyer
  // hands out meanwhile (acknowledged ones retire) are in take_outgoing().
  std::vector<Outgoing> receive(const Endpoint& from, const Address& local, ByteView datagram, std::int64_t now_ms);
  // A control command (userspace/control/PROTOCOL.md): ks.group,
  // ks.members, ks.cluster, ks.reload, ks.rekey, ks.remove-member. The
  // JSON reply. In a cluster, only the primary rekeys.
  // `wall_offset_s`: what to add to covey's clock (common/clock.h) for the
  // host's wall clock, so that the times shown are the host's.
  nlohmann::json handle(const nlohmann::json& command, std::int64_t now_ms, std::int64_t wall_offset_s = 0);
  // The configuration file read again and applied whole, or refused whole
  // with every reason (SIGHUP and ks.reload).
  nlohmann::json reload(std::int64_t now_ms);
  // The clock: what other key servers of a cluster changed, exchanges that
  // timed out ended, rekeys that are due, pushes retransmitted, and the
  // members written when a lazy save is due.
  void tick(std::int64_t now_ms);
  // What other key servers of a cluster changed (the store's thread calls
  // `wakeup` when there is something), and the role this one has now.
  void poll(std::int64_t now_ms);
  void set_wakeup(std::function<void()> wakeup) { store_->set_wakeup(std::move(wakeup)); }
  // Writes the store now; the daemon calls it at shutdown.
  crypto::Result<void> save();

  // The pushes to send now. In a cluster, none once the lease may have
  // ended: a push queued while primary waits for the rest of the tick, whose
  // etcd calls can last as long as the lease (ks/coop.h).
  std::vector<PushDatagram> take_outgoing();
  // What the dispatcher, the rekeyer and the core itself logged.
  std::vector<Event> take_events();
  std::vector<KeylogEntry> take_keylog() { return dispatcher_.take_keylog(); }
  void set_min_severity(Severity min);

  // Members are written lazily (ks/state_store.h): a second after the last
  // save of any kind at the earliest, and no sooner than 20 times what
  // that save took. A save appends the members changed since the last to
  // the state file's journal; the one in a while that rewrites the whole
  // file (the journal outgrew it) takes longer, and this keeps even those
  // to a twentieth of the one thread that answers registrations whatever
  // the member count. Waiting longer costs little: a member whose record a
  // crash loses registers again.
  static constexpr std::int64_t kMemberSaveIntervalMs = 1000;
  static constexpr std::int64_t kMemberSaveCostFactor = 20;
  // When the next lazy save of dirty members may happen.
  std::int64_t member_save_due_ms() const;

 private:
  KeyServer(config::KsConfig cfg, std::string config_path, std::unique_ptr<Store> store, Address address,
            DispatcherOptions dispatcher_options);
  Group* find_group(const std::string& name_or_identity);
  void log(Severity s, std::string text, LogFields fields = {}) { events_.push_back(Event{s, std::move(text), std::move(fields)}); }

  config::KsConfig cfg_;
  std::string config_path_;
  std::unique_ptr<Store> store_;
  Address address_;
  Groups groups_;
  Dispatcher dispatcher_;
  Rekeyer rekeyer_;
  std::vector<Event> events_;
  // The time of the call in progress: saves made inside it (a rekey, a SID
  // reservation) are stamped with it.
  std::int64_t now_ms_ = 0;
  std::int64_t last_save_end_ms_ = 0;
  std::int64_t last_save_took_ms_ = 0;
};

}  // namespace covey::ks
