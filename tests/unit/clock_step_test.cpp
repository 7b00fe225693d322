// The daemons' clocks against an NTP step: a key server and a member, the
// real ks::Server and gm::Agent on 127.0.0.1 in one io_context, see the
// host's wall clock jump 5 h forward and 5 h back after the member
// registered. Lifetimes, rekey schedules, retransmissions and the member's
// re-registration must follow the time that passed, not the wall clock:
// nothing expires at the step, nothing is kept past its lifetime.
//
// The clocks are injected where the daemons read them, at clock_gettime:
// this binary defines it (the C library's and libstdc++'s callers bind to
// the executable's definition first), so every clock moves on by
// `g_elapsed_ns` beyond real time, and the wall clocks (CLOCK_REALTIME,
// CLOCK_TAI) also by `g_step_ns`, the NTP step. Advancing time this way
// also brings the Asio timers due, so an hour passes in a second of test.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <chrono>
#include <memory>
#include <optional>

#include "common/clock.h"
#include "fixtures.h"
#include "gm/agent.h"
#include "ks/key_server.h"
#include "ks/server.h"

namespace {
std::atomic<std::int64_t> g_elapsed_ns{0};  // only grows, like time
std::atomic<std::int64_t> g_step_ns{0};
}  // namespace

extern "C" int clock_gettime(clockid_t id, struct timespec* ts) noexcept {
  if (::syscall(SYS_clock_gettime, id, ts) != 0) return -1;
  std::int64_t shift = g_elapsed_ns.load();
  if (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE || id == CLOCK_TAI) shift += g_step_ns.load();
  const std::int64_t ns = static_cast<std::int64_t>(ts->tv_sec) * 1000000000 + ts->tv_nsec + shift;
  ts->tv_sec = static_cast<time_t>(ns / 1000000000);
  ts->tv_nsec = static_cast<long>(ns % 1000000000);
  return 0;
}

using namespace covey;
using covey::fixtures::prefix;
using covey::fixtures::psk;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

constexpr std::int64_t kTekLifetime = 3600, kKekLifetime = 86400;

void pass(std::chrono::seconds s) {
  g_elapsed_ns += std::chrono::nanoseconds(s).count();
}
void step_wall(std::chrono::hours h) {
  g_step_ns += std::chrono::nanoseconds(h).count();
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A free UDP port on 127.0.0.1.
std::uint16_t free_port() {
  std::string error;
  auto s = UdpSocket::bind(Endpoint{*Address::parse("127.0.0.1"), 0}, &error);
  EXPECT_TRUE(s) << error;
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  ::getsockname(s->fd(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
}

std::optional<json> tek_of(const json& status, const std::string& spi) {
  for (const json& t : status["tek"])
    if (t["spi"] == spi) return t;
  return std::nullopt;
}

// A key server for group GET_VPN (134) with the configuration's default
// lifetimes (TEK 1 h, KEK 1 day; unicast rekeys, acknowledged, retransmitted
// every 10 s), and a member of it, on 127.0.0.1.
struct Lab {
  boost::asio::io_context io;
  Endpoint ks_ep{*Address::parse("127.0.0.1"), free_port()};
  Endpoint gm_ep{*Address::parse("127.0.0.1"), free_port()};
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("covey-clock-step." + std::to_string(::getpid()) + "." + std::to_string(ks_ep.port));
  std::unique_ptr<ks::KeyServer> core;
  std::unique_ptr<ks::Server> server;
  std::unique_ptr<gm::Agent> agent;

  Lab() {
    g_step_ns = 0;  // each test starts on a true wall clock
    std::filesystem::create_directories(dir);
    EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048});  // the default KEK signature
    FILE* f = std::fopen((dir / "rekey.pem").c_str(), "w");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    EVP_PKEY_free(key);
    std::filesystem::permissions(dir / "rekey.pem",
                                 std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    std::ofstream(dir / "ks.toml") << "[server]\nlisten = [\"127.0.0.1\"]\nport = " << ks_ep.port
                                   << "\naddress = \"127.0.0.1\"\nstate_dir = \"" << (dir / "state").string()
                                   << "\"\n\n[isakmp]\npre_shared_key = \"lab\"\n\n[[group]]\nname = \"GET_VPN\"\n"
                                      "identity = 134\nacl = [\"permit ip 192.168.0.0/16 192.168.0.0/16\"]\nlifetime = "
                                   << kTekLifetime << "\nauthorization = [\"127.0.0.0/8\"]\n\n[group.rekey]\nsigning_key = \""
                                   << (dir / "rekey.pem").string() << "\"\nlifetime = " << kKekLifetime << "\n";
    auto cfg = config::load_ks_config((dir / "ks.toml").string());
    EXPECT_TRUE(cfg.ok());
    const std::string state = cfg.config->server.state_dir;
    auto opened = ks::KeyServer::open(std::move(*cfg.config), (dir / "ks.toml").string(),
                                      std::make_unique<ks::StateFile>(state), false, clock::now_ms());
    EXPECT_TRUE(opened) << opened.error();
    core = std::move(*opened);
    ks::ServerOptions so;
    so.listen = {ks_ep};
    so.address = ks_ep.address;
    server = std::make_unique<ks::Server>(io, so, *core);
    std::string error;
    EXPECT_TRUE(server->start(&error)) << error;
    agent = make_agent({ks_ep});
  }
  ~Lab() { std::filesystem::remove_all(dir); }

  std::unique_ptr<gm::Agent> make_agent(std::vector<Endpoint> key_servers, std::int64_t retransmit_s = 2) {
    gm::AgentOptions o;
    o.group_name = "GET_VPN";
    o.registrar.group_id = 134;
    o.registrar.offers = {ike::Phase1Transform{}};
    o.registrar.credentials = psk("lab");
    o.registrar.retransmit_s = retransmit_s;
    o.key_servers = std::move(key_servers);
    o.local = gm_ep;
    auto a = std::make_unique<gm::Agent>(io, o);
    std::string error;
    EXPECT_TRUE(a->start(&error)) << error;
    return a;
  }

  ks::Group& group() { return *core->groups().find("GET_VPN"); }
  json member() const { return agent->status(false); }

  // Long enough for a tick of both daemons (the KS's every second, the
  // member's every half second) and what they send each other.
  void run(std::chrono::milliseconds d = 1100ms) { io.run_for(d); }
  // What must happen: at most 5 s of real time, so that a loaded machine
  // delaying a tick does not fail the test (the next check says if it never came).
  template <typename Done>
  void run_until(Done done) {
    for (int i = 0; i < 50 && !done(); ++i) io.run_for(100ms);
  }

  void register_member() {
    for (int i = 0; i < 100 && member()["state"] != "registered"; ++i) io.run_for(100ms);
    ASSERT_EQ(member()["state"], "registered") << member().dump();
    ASSERT_EQ(member()["tek"].size(), 1u) << member().dump();
  }
};

}  // namespace

// The clock itself: an NTP step moves the offset to the wall clock that
// status replies add, not the time keys and timers run on.
TEST(ClockStep, ClockFollowsElapsedTimeAndShowsTheStep) {
  g_step_ns = 0;
  const std::int64_t t0 = clock::now_s();
  EXPECT_NEAR(double(t0), double(unix_ms() / 1000), 1);
  EXPECT_EQ(clock::wall_offset_s(), 0);
  step_wall(5h);
  EXPECT_NEAR(double(clock::now_s()), double(t0), 1);
  EXPECT_EQ(clock::wall_offset_s(), 5 * 3600);
  pass(10s);
  EXPECT_NEAR(double(clock::now_s()), double(t0 + 10), 1);
  step_wall(-10h);
  EXPECT_EQ(clock::wall_offset_s(), -5 * 3600);
  EXPECT_NEAR(double(clock::now_ms() / 1000), double(t0 + 10), 1);
}

// The key server rekeys when its TEK's lifetime has passed (less the rekey
// margin), and the member holds that TEK for exactly its lifetime, however
// the wall clock is stepped in between.
TEST(ClockStep, TekAndKekLifetimesRunOnElapsedTimeAcrossWallSteps) {
  Lab lab;
  lab.register_member();
  ks::Group& g = lab.group();
  ks::Rekeyer& rekeyer = lab.core->rekeyer();
  const std::string spi0 = lab.member()["tek"][0]["spi"];
  // Time since registration, as it passes (really, or by pass()).
  const auto registered = std::chrono::steady_clock::now();
  auto since = [&] {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - registered)
        .count();
  };
  // When the KS means to rekey, counted from now on its own clock.
  const std::int64_t rekey_in = rekeyer.next_rekey_at(g) - unix_ms() / 1000;
  ASSERT_GT(rekey_in, 60);
  ASSERT_LT(rekey_in, kTekLifetime);

  auto unchanged = [&](const char* when) {
    SCOPED_TRACE(when);
    EXPECT_EQ(rekeyer.rekeys_sent(g), 0u);
    EXPECT_EQ(g.teks().size(), 1u);
    const json m = lab.member();
    EXPECT_EQ(m["state"], "registered") << m.dump();
    std::optional<json> t = tek_of(m, spi0);
    ASSERT_TRUE(t) << m.dump();
    EXPECT_EQ((*t)["state"], "active");
    EXPECT_NEAR((*t)["remaining_s"].get<double>(), double(kTekLifetime - since()), 2) << m.dump();
    EXPECT_NEAR(m["kek"]["remaining_s"].get<double>(), double(kKekLifetime - since()), 2) << m.dump();
    EXPECT_EQ(lab.core->dispatcher().counters().registrations, 1u) << "the member registered again";
  };
  step_wall(5h);
  lab.run();
  unchanged("wall clock 5 h ahead");
  // What the member shows is on the wall clock as it reads now.
  EXPECT_NEAR(lab.member()["registered_at"].get<double>(), double(unix_ms() / 1000 - since()), 2);
  step_wall(-10h);
  lab.run();
  unchanged("wall clock 5 h behind");

  // Not early: 5 s before the rekey is due, nothing yet.
  pass(std::chrono::seconds(rekey_in - 5 - since()));
  lab.run();
  unchanged("5 s before the scheduled rekey");
  // Not late: 5 s after, the rekey went out and the member took its TEK.
  pass(10s);
  lab.run_until([&] { return lab.member()["rekeys_received"] == 1u; });
  EXPECT_EQ(rekeyer.rekeys_sent(g), 1u);
  ASSERT_TRUE(rekeyer.last_rekey(g));
  EXPECT_STREQ(ks::reason_name(rekeyer.last_rekey(g)->reason), "tek-lifetime");
  EXPECT_EQ(lab.member()["rekeys_received"], 1u) << lab.member().dump();
  EXPECT_EQ(lab.member()["tek"].size(), 2u) << lab.member().dump();
  EXPECT_EQ(lab.core->dispatcher().counters().registrations, 1u);

  // The first TEK ends after its lifetime: received on until then, gone after.
  pass(std::chrono::seconds(kTekLifetime - 5 - since()));
  lab.run();
  EXPECT_TRUE(tek_of(lab.member(), spi0)) << "first TEK dropped before its lifetime: " << lab.member().dump();
  pass(10s);
  lab.run_until([&] { return !tek_of(lab.member(), spi0) && lab.group().teks().size() == 1u; });
  std::optional<json> t = tek_of(lab.member(), spi0);
  EXPECT_TRUE(!t || (*t)["state"] == "expired")
      << "first TEK kept past its lifetime: " << lab.member().dump();
  EXPECT_EQ(g.teks().size(), 1u) << "the key server kept the first TEK past its lifetime";
}

// The member's registration retransmissions come every retransmit_s of
// elapsed time: a step back does not stall them, a step forward does not
// fire them early.
TEST(ClockStep, MemberRetransmitsOnElapsedTime) {
  Lab lab;
  lab.agent.reset();
  // A key server that never answers: a socket that only counts.
  std::string error;
  Endpoint silent_ep{*Address::parse("127.0.0.1"), free_port()};
  auto silent = UdpSocket::bind(silent_ep, &error);
  ASSERT_TRUE(silent) << error;
  Bytes buffer(65536);
  std::size_t heard = 0;
  auto count = [&] {
    while (silent->receive(buffer)) ++heard;
    return heard;
  };
  lab.agent = lab.make_agent({silent_ep}, 5);
  lab.run_until([&] { return count() == 1u; });
  EXPECT_EQ(count(), 1u);  // Main Mode message 1

  step_wall(-5h);
  lab.run(600ms);
  EXPECT_EQ(count(), 1u);
  pass(5s);
  lab.run_until([&] { return count() == 2u; });
  EXPECT_EQ(count(), 2u) << "no retransmission 5 s after the first message (wall clock stepped back)";
  step_wall(10h);
  lab.run(600ms);
  EXPECT_EQ(count(), 2u) << "retransmitted at once when the wall clock stepped forward";
  pass(5s);
  lab.run_until([&] { return count() == 3u; });
  EXPECT_EQ(count(), 3u);
}

// The key server retransmits an unacknowledged push every
// retransmit_period_s of elapsed time, whatever the wall clock does.
TEST(ClockStep, KeyServerRetransmitsOnElapsedTime) {
  Lab lab;
  lab.register_member();
  lab.agent.reset();  // gone: the push goes unacknowledged
  ks::Rekeyer& rekeyer = lab.core->rekeyer();
  auto seq = rekeyer.rekey(lab.group(), ks::RekeyReason::Operator, unix_ms());
  ASSERT_TRUE(seq) << seq.error();
  lab.server->flush();
  EXPECT_EQ(rekeyer.pending(lab.group()), 1u);

  step_wall(-5h);
  lab.run();
  EXPECT_EQ(rekeyer.counters().retransmissions, 0u);
  pass(10s);
  lab.run_until([&] { return rekeyer.counters().retransmissions == 1u; });
  EXPECT_EQ(rekeyer.counters().retransmissions, 1u)
      << "no retransmission 10 s after the push (wall clock stepped back)";
  step_wall(10h);
  lab.run();
  EXPECT_EQ(rekeyer.counters().retransmissions, 1u)
      << "retransmitted at once when the wall clock stepped forward";
  EXPECT_EQ(rekeyer.counters().misses, 0u);
  pass(10s);
  lab.run_until([&] { return rekeyer.counters().retransmissions == 2u; });
  EXPECT_EQ(rekeyer.counters().retransmissions, 2u);
}

// A member whose key server went silent keeps its TEK for the TEK's
// lifetime and registers again near its end (next_rekey_expected_by), not
// at a wall-clock step.
TEST(ClockStep, MemberRegistersAgainWhenItsTekEndsNotAtAWallStep) {
  Lab lab;
  lab.register_member();
  lab.server.reset();  // no rekey will come
  const std::string spi0 = lab.member()["tek"][0]["spi"];

  step_wall(5h);
  lab.run(600ms);
  EXPECT_EQ(lab.member()["state"], "registered") << lab.member().dump();
  step_wall(-10h);
  lab.run(600ms);
  EXPECT_EQ(lab.member()["state"], "registered") << lab.member().dump();

  // The member registers again in the last tenth of the TEK's life, at
  // most 60 s before its end.
  std::optional<json> held = tek_of(lab.member(), spi0);
  ASSERT_TRUE(held) << "TEK dropped at a wall-clock step: " << lab.member().dump();
  const std::int64_t remaining = (*held)["remaining_s"];
  EXPECT_NEAR(double(remaining), double(kTekLifetime), 3);
  pass(std::chrono::seconds(remaining - 65));
  lab.run(600ms);
  EXPECT_EQ(lab.member()["state"], "registered") << "registered again early: " << lab.member().dump();
  pass(10s);
  lab.run_until([&] { return lab.member()["state"] == "registering"; });
  EXPECT_EQ(lab.member()["state"], "registering")
      << "did not register again before the TEK ends: " << lab.member().dump();
  std::optional<json> t = tek_of(lab.member(), spi0);
  ASSERT_TRUE(t) << lab.member().dump();
  EXPECT_EQ((*t)["state"], "active");
  pass(60s);
  lab.run_until([&] { return !tek_of(lab.member(), spi0); });
  t = tek_of(lab.member(), spi0);
  EXPECT_TRUE(!t || (*t)["state"] == "expired") << "TEK kept past its lifetime: " << lab.member().dump();
}
