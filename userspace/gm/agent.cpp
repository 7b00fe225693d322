#include "gm/agent.h"

#include <chrono>
#include <cstdio>

#include "common/log.h"

namespace covey::gm {

using nlohmann::json;

namespace {

std::string spi_hex(std::uint32_t spi) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08X", spi);
  return b;
}

}  // namespace

Agent::Agent(boost::asio::io_context& io, AgentOptions options)
    : io_(io), options_(std::move(options)), clock_(io), rng_(std::random_device{}()) {}

std::int64_t Agent::now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool Agent::start(std::string* error) {
  if (options_.key_servers.empty()) {
    if (error) *error = "no key servers configured";
    return false;
  }
  if (options_.keylog_path && !keylog_.open(*options_.keylog_path, error)) return false;
  socket_ = UdpSocket::bind(options_.local, error);
  if (!socket_) return false;
  watch_.emplace(io_, ::dup(socket_->fd()));
  wait_readable();
  begin_registration();
  tick();
  return true;
}

void Agent::begin_registration() {
  const Endpoint& ks = options_.key_servers[ks_index_];
  attempt_.emplace(options_.registrar, ks, options_.local.address);
  state_ = State::Registering;
  send(attempt_->start(now()));
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
    if (!attempt_ || !(r->from == attempt_->key_server())) {
      log(LogLevel::Debug, "dropped datagram from " + r->from.str() + ": not the key server being registered with");
      continue;
    }
    send(attempt_->receive(ByteView(buffer_).first(r->size), now()));
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
  std::int64_t t = now();
  if (a.registration()) {
    registration_ = a.registration();
    registered_with_ = a.key_server();
    registered_at_ = t;
    failed_rounds_ = 0;
    last_error_.reset();
    const gdoi::Registration& r = *registration_;
    log(LogLevel::Info, "Registration to KS " + registered_with_.address.str() + " complete for group " + options_.group_name);
    std::string teks;
    std::uint32_t lifetime = 0;
    for (const auto& tek : r.keys.teks) {
      teks += (teks.empty() ? "" : ", ") + spi_hex(tek.spi);
      lifetime = lifetime ? std::min(lifetime, tek.lifetime_s) : tek.lifetime_s;
    }
    log(LogLevel::Info, "Received policy: " + std::to_string(r.policy.acl.size()) + " ACL entries, TEK SPI " + teks + " " +
                            r.policy.tek.str() + ", lifetime " + std::to_string(lifetime) + " s");
    // Register again before the TEK runs out: a tenth of its life early,
    // at least a minute when it is long enough, never later than halfway.
    std::int64_t margin = std::max<std::int64_t>(lifetime / 10, std::min<std::int64_t>(60, lifetime / 2));
    reregister_at_ = t + std::max<std::int64_t>(lifetime - margin, 1);
    state_ = State::Registered;
  } else {
    last_error_ = a.failure();
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
    state_ = registration_ ? State::Registered : State::Waiting;
  }
  attempt_.reset();
}

void Agent::tick() {
  std::int64_t t = now();
  if (attempt_) {
    send(attempt_->tick(t));
    flush_events();
    if (attempt_->done()) finish_attempt();
  } else if (retry_at_ && t >= retry_at_) {
    retry_at_ = 0;
    begin_registration();
  } else if (state_ == State::Registered && !retry_at_ && t >= reregister_at_) {
    log(LogLevel::Info, "TEK lifetime ending: registering again with KS " + options_.key_servers[ks_index_].address.str());
    begin_registration();
  }
  clock_.expires_after(std::chrono::milliseconds(500));
  clock_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) tick();
  });
}

json Agent::status(bool show_keys) const {
  std::int64_t t = now();
  json j;
  j["ok"] = true;
  j["group"] = {{"name", options_.group_name}, {"identity", options_.registrar.group_id}};
  j["state"] = attempt_ ? "registering" : (registration_ ? "registered" : "waiting");
  json kss = json::array();
  for (std::size_t i = 0; i < options_.key_servers.size(); ++i)
    kss.push_back({{"address", options_.key_servers[i].str()}, {"active", registration_ && options_.key_servers[i] == registered_with_}});
  j["key_servers"] = kss;
  j["registered_at"] = registration_ ? json(registered_at_) : json(nullptr);
  j["reregister_at"] = registration_ ? json(reregister_at_) : json(nullptr);
  j["last_error"] = last_error_ ? json(*last_error_) : json(nullptr);
  json acl = json::array(), fc = json::array(), teks = json::array();
  json kek = nullptr;
  if (registration_) {
    const gdoi::Registration& r = *registration_;
    for (const auto& e : r.policy.acl) acl.push_back(e.str());
    for (const auto& e : r.policy.fail_close_acl) fc.push_back(e.str());
    for (const auto& tek : r.keys.teks) {
      std::int64_t left = std::max<std::int64_t>(0, registered_at_ + tek.lifetime_s - t);
      json tj = {{"spi", spi_hex(tek.spi)}, {"transform", r.policy.tek.str()}, {"lifetime_s", tek.lifetime_s},
                 {"remaining_s", left}, {"state", left > 0 ? "active" : "expired"}};
      if (show_keys) tj["keys"] = {{"encryption", to_hex(tek.encryption_key)}, {"integrity", to_hex(tek.integrity_key)}};
      teks.push_back(tj);
    }
    if (r.keys.kek) {
      kek = {{"spi", to_hex(r.keys.kek->spi)},
             {"cipher", std::string(crypto::name(r.policy.kek.cipher))},
             {"signature", r.policy.kek.signature_str()},
             {"lifetime_s", r.keys.kek->lifetime_s},
             {"remaining_s", std::max<std::int64_t>(0, registered_at_ + r.keys.kek->lifetime_s - t)}};
      if (show_keys) kek["keys"] = {{"algorithm_key", to_hex(r.keys.kek->algorithm_key)}};
    }
    j["tbar_window_ms"] = r.policy.tbar_window_ms ? json(*r.policy.tbar_window_ms) : json(nullptr);
    j["seq"] = r.seq ? json(*r.seq) : json(nullptr);
    j["sids"] = r.keys.sids;
  } else {
    j["tbar_window_ms"] = nullptr;
    j["seq"] = nullptr;
    j["sids"] = json::array();
  }
  j["acl"] = acl;
  j["fail_close_acl"] = fc;
  j["tek"] = teks;
  j["kek"] = kek;
  j["rekeys_received"] = 0;  // GROUPKEY-PUSH handling arrives with the rekey issue
  return j;
}

}  // namespace covey::gm
