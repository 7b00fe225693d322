#include "gm/agent.h"

#include <chrono>
#include <cstdio>

#include "common/clock.h"
#include "common/log.h"
#include "gm/metrics.h"
#include "gm/status.h"
#include "wire/message.h"

namespace covey::gm {

using nlohmann::json;

namespace {

RekeyOptions rekey_options(const AgentOptions& o) {
  RekeyOptions r;
  r.group_name = o.group_name;
  r.member = o.local.address;
  return r;
}

bool is_push(ByteView datagram) {
  auto h = wire::decode_header(datagram);
  return h && h->exchange == static_cast<std::uint8_t>(wire::ExchangeType::GroupkeyPush);
}

}  // namespace

Agent::Agent(boost::asio::io_context& io, AgentOptions options)
    : io_(io), options_(std::move(options)), clock_(io), rng_(std::random_device{}()), keys_(rekey_options(options_)) {}

bool Agent::start(std::string* error) {
  if (options_.key_servers.empty()) {
    if (error) *error = "no key servers configured";
    return false;
  }
  if (options_.keylog_path && !keylog_.open(*options_.keylog_path, error)) return false;
  if (options_.dataplane) {
    auto dp = Dataplane::start(*options_.dataplane);
    if (!dp) {
      if (error) *error = dp.error();
      return false;
    }
    dataplane_ = std::move(*dp);
    address_watch_.emplace(io_, ::dup(dataplane_->address_fd()));
    wait_addresses();
  }
  socket_ = UdpSocket::bind(options_.local, error);
  if (!socket_) return false;
  watch_.emplace(io_, ::dup(socket_->fd()));
  wait_readable();
  // With a fail-close ACL in the kernel, nothing leaves in clear from now
  // on: the member serves before it has keys.
  serving_ = dataplane_ && !options_.dataplane->fail_close.empty();
  tell(std::string(serving_ ? "fail-close in place; " : "") + "registering with KS " +
       options_.key_servers[ks_index_].address.str() + " for group " + options_.group_name);
  begin_registration();
  tick();
  return true;
}

void Agent::begin_registration() {
  const Endpoint& ks = options_.key_servers[ks_index_];
  attempt_.emplace(options_.registrar, ks, options_.local.address);
  state_ = State::Registering;
  send(attempt_->start(clock::now_s()));
  flush_events();
}

void Agent::send(const std::vector<Bytes>& datagrams) {
  if (!attempt_) return;
  for (const Bytes& d : datagrams)
    if (!socket_->send(attempt_->key_server(), std::nullopt, d))
      log(LogLevel::Warning, "could not send to KS " + attempt_->key_server().str());
}

void Agent::wait_readable() {
  watch_->async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec) return;
    on_readable();
    wait_readable();
  });
}

void Agent::on_readable() {
  for (int i = 0; i < 64; ++i) {
    auto r = socket_->receive(buffer_);
    if (!r) break;
    // Unicast rekeys come to the socket this member registered from, from
    // the key server's GDOI socket, while registration replies come from
    // the same endpoint: the exchange type tells them apart.
    if (is_push(ByteView(buffer_).first(r->size))) {
      on_push(ByteView(buffer_).first(r->size), r->from, PushVia::Unicast);
      continue;
    }
    if (!attempt_ || !(r->from == attempt_->key_server())) {
      log(LogLevel::Debug, "dropped datagram from " + r->from.str() + ": not the key server being registered with");
      continue;
    }
    send(attempt_->receive(ByteView(buffer_).first(r->size), clock::now_s()));
    keylog_phase1();
    flush_events();
    if (attempt_->done()) finish_attempt();
  }
}

void Agent::flush_events() {
  if (!attempt_) return;
  for (const std::string& e : attempt_->take_events()) log(LogLevel::Info, e);
}

// As soon as phase 1 is up, so that a GROUPKEY-PULL that fails can be
// decrypted too (the key server's keylog works the same way).
void Agent::keylog_phase1() {
  if (!keylog_.is_open() || !attempt_ || !attempt_->phase1() || attempt_->phase1()->initiator_cookie == keylogged_) return;
  keylogged_ = attempt_->phase1()->initiator_cookie;
  keylog_.write(keylogged_, attempt_->phase1()->key);
}

void Agent::finish_attempt() {
  Registrar& a = *attempt_;
  std::int64_t t = clock::now_s();
  crypto::Result<void> taken;
  if (a.registration()) taken = keys_.registered(*a.registration(), t);
  if (a.registration() && taken) {
    registered_with_ = a.key_server();
    failed_rounds_ = 0;
    last_error_.reset();
    const gdoi::Registration& r = *a.registration();
    std::string teks;
    std::uint32_t lifetime = 0;
    for (const auto& tek : r.keys.teks) {
      teks += (teks.empty() ? "" : ", ") + spi_hex(tek.spi);
      lifetime = lifetime ? std::min(lifetime, tek.lifetime_s) : tek.lifetime_s;
    }
    LogFields fields{{"COVEY_PEER", registered_with_.address.str()}, {"COVEY_GROUP", options_.group_name},
                     {"COVEY_EVENT", "registration"}};
    if (!r.keys.teks.empty()) fields.push_back({"COVEY_SPI", spi_hex(r.keys.teks.back().spi)});
    if (r.seq) fields.push_back({"COVEY_SEQ", std::to_string(*r.seq)});
    log(LogLevel::Info, "Registration to KS " + registered_with_.address.str() + " complete for group " + options_.group_name,
        fields);
    log(LogLevel::Info, "Received policy: " + std::to_string(r.policy.acl.size()) + " ACL entries, TEK SPI " + teks + " " +
                            r.policy.tek.str() + ", lifetime " + std::to_string(lifetime) + " s");
    if (r.keys.kek) {
      const auto group = multicast_group(r.policy);
      log(LogLevel::Info, "Received rekey SA for group " + options_.group_name + ": KEK SPI " + to_hex(r.keys.kek->spi) + ", " +
                              (group ? "multicast to " + group->str()
                                     : std::string("unicast") + (r.kek_ack_requested ? ", acknowledged" : "")) +
                              ", SEQ " + std::to_string(r.seq.value_or(0)));
    }
    update_multicast();
    state_ = State::Registered;
    sync_dataplane(true);
    serving_ = true;
    tell("registered with KS " + registered_with_.address.str() + " for group " + options_.group_name + ", TEK SPI " + teks);
  } else {
    last_error_ = a.registration() ? "KS " + a.key_server().address.str() + ": " + taken.error() : a.failure();
    log(LogLevel::Warning, *last_error_);
    // The next key server at once; after a full round, back off.
    ks_index_ = (ks_index_ + 1) % options_.key_servers.size();
    if (ks_index_ == 0) ++failed_rounds_;
    if (failed_rounds_ == 0) {
      attempt_.reset();
      begin_registration();
      return;
    }
    std::int64_t base = std::min<std::int64_t>(options_.backoff_max_s, options_.backoff_min_s << std::min(failed_rounds_ - 1, 16));
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    retry_at_ = t + std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(base) * jitter(rng_)));
    log(LogLevel::Info, "all key servers failed; retrying in " + std::to_string(retry_at_ - t) + " s");
    tell("all key servers failed (" + *last_error_ + "); retrying in " + std::to_string(retry_at_ - t) + " s");
    state_ = keys_.is_registered() ? State::Registered : State::Waiting;
  }
  attempt_.reset();
}

void Agent::on_push(ByteView datagram, const Endpoint& from, PushVia via) {
  PushOutcome out = keys_.receive_push(datagram, from, via, clock::now_s());
  for (const LogEvent& e : out.log) log(e.level, e.text, e.fields);
  if (out.ack) {
    // RFC 8263 3: to the key server endpoint the push came from, from the
    // socket (and so the address) this member registered with.
    const std::string seq = keys_.last_seq() ? std::to_string(*keys_.last_seq()) : "?";
    if (socket_->send(from, std::nullopt, *out.ack)) {
      keys_.ack_sent();
      log(LogLevel::Debug, "Sent ACK for rekey SEQ " + seq + " of group " + options_.group_name + " to KS " + from.str());
    } else {
      log(LogLevel::Warning, "could not send the ACK for rekey SEQ " + seq + " of group " + options_.group_name + " to KS " + from.str());
    }
  }
  if (out.transport_changed) update_multicast();
  if (out.kind == PushOutcome::Kind::Applied) sync_dataplane(false);
  if (out.reregister && !attempt_) {
    retry_at_ = 0;
    log(LogLevel::Info, "Registering again with KS " + options_.key_servers[ks_index_].address.str() + " for group " +
                            options_.group_name);
    begin_registration();
  }
}

void Agent::update_multicast() {
  std::optional<Endpoint> want;
  if (keys_.is_registered() && keys_.receiver()) want = multicast_group(keys_.policy());
  if (want == multicast_group_ && (multicast_ || !want)) return;
  ++multicast_generation_;
  multicast_watch_.reset();  // cancels its wait; the socket closes with it
  multicast_.reset();
  if (multicast_group_ && multicast_group_ != want)
    log(LogLevel::Info, "Left multicast group " + multicast_group_->str() + " of group " + options_.group_name);
  multicast_group_ = want;
  if (!want) return;
  std::string error;
  multicast_ = UdpSocket::join_multicast(*want, options_.local.address, &error);
  if (!multicast_) {
    // Rekeys will not arrive; the member registers again before its TEK
    // ends (next_rekey_expected_by), and tries to join again then.
    log(LogLevel::Error, "Group " + options_.group_name + ": " + error + "; multicast rekeys will be missed");
    return;
  }
  multicast_watch_.emplace(io_, ::dup(multicast_->fd()));
  log(LogLevel::Info, "Joined multicast group " + want->str() + " for rekeys of group " + options_.group_name +
                          " on the interface of " + options_.local.address.str());
  wait_multicast();
}

void Agent::wait_multicast() {
  const std::uint64_t generation = multicast_generation_;
  multicast_watch_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                               [this, generation](const boost::system::error_code& ec) {
                                 if (ec || generation != multicast_generation_ || !multicast_) return;
                                 on_multicast_readable();
                                 if (generation == multicast_generation_ && multicast_watch_) wait_multicast();
                               });
}

void Agent::on_multicast_readable() {
  const std::uint64_t generation = multicast_generation_;
  for (int i = 0; i < 64 && generation == multicast_generation_ && multicast_; ++i) {
    auto r = multicast_->receive(buffer_);
    if (!r) break;
    if (!is_push(ByteView(buffer_).first(r->size))) {
      log(LogLevel::Debug, "dropped datagram from " + r->from.str() + " on the rekey multicast group: not a GROUPKEY-PUSH");
      continue;
    }
    on_push(ByteView(buffer_).first(r->size), r->from, PushVia::Multicast);  // may rejoin: the loop checks
  }
}

void Agent::tick() {
  std::int64_t t = clock::now_s();
  for (const LogEvent& e : keys_.tick(t)) log(e.level, e.text, e.fields);
  sync_dataplane(false);
  if (attempt_) {
    send(attempt_->tick(t));
    flush_events();
    if (attempt_->done()) finish_attempt();
  } else if (retry_at_ && t >= retry_at_) {
    retry_at_ = 0;
    begin_registration();
  } else if (state_ == State::Registered && !retry_at_ && t >= keys_.next_rekey_expected_by().value_or(t)) {
    log(LogLevel::Info, "No rekey for group " + options_.group_name + " before the TEK ends: registering again with KS " +
                            options_.key_servers[ks_index_].address.str());
    begin_registration();
  }
  clock_.expires_after(std::chrono::milliseconds(500));
  clock_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) tick();
  });
}

void Agent::sync_dataplane(bool registration) {
  if (!dataplane_) return;
  if (auto pt = keys_.pseudotime(); pt && (registration || pt->serial != pseudotime_serial_)) {
    pseudotime_serial_ = pt->serial;
    dataplane_->pseudotime(pt->ms, monotonic_ns(), registration);
  }
  if (auto ok = dataplane_->sync(keys_, clock::now_s()); !ok) log(LogLevel::Error, ok.error());
}

void Agent::wait_addresses() {
  address_watch_->async_wait(boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec || !dataplane_) return;
    if (auto ok = dataplane_->follow_addresses(); !ok) log(LogLevel::Error, ok.error());
    wait_addresses();
  });
}

void Agent::tell(const std::string& status) {
  if (options_.on_state) options_.on_state(serving_, status);
}

void Agent::stop() {
  address_watch_.reset();
  if (!dataplane_) return;
  dataplane_->stop();
  dataplane_.reset();
  log(LogLevel::Info, "Group " + options_.group_name + ": data path removed from the kernel");
}

json Agent::status(bool show_keys) const {
  std::int64_t t = clock::now_s();
  // Times as the host's wall clock reads them now (common/clock.h).
  const std::int64_t wall = clock::wall_offset_s();
  const bool registered = keys_.is_registered();
  json j;
  j["ok"] = true;
  j["group"] = {{"name", options_.group_name}, {"identity", options_.registrar.group_id}};
  j["state"] = attempt_ ? "registering" : (registered ? "registered" : "waiting");
  json kss = json::array();
  for (std::size_t i = 0; i < options_.key_servers.size(); ++i)
    kss.push_back({{"address", options_.key_servers[i].str()}, {"active", registered && options_.key_servers[i] == registered_with_}});
  j["key_servers"] = kss;
  j["registered_at"] = registered ? json(*keys_.registered_at() + wall) : json(nullptr);
  const auto expected_by = keys_.next_rekey_expected_by();
  j["reregister_at"] = retry_at_                   ? json(retry_at_ + wall)
                       : registered && expected_by ? json(*expected_by + wall)
                                                   : json(nullptr);
  j["last_error"] = last_error_ ? json(*last_error_) : json(nullptr);
  j.update(key_status(keys_, t, show_keys, multicast_.has_value(), wall));
  j["data_path"] = dataplane_ ? dataplane_->status() : json{{"state", "off"}};
  return j;
}

std::string Agent::metrics() const {
  MetricsInput in;
  in.group = options_.group_name;
  in.keys = &keys_;
  in.now = clock::now_s();
  if (dataplane_) {
    in.datapath_state = dataplane_->state();
    in.datapath = dataplane_->counters();
  }
  return metrics_text(in);
}

}  // namespace covey::gm
