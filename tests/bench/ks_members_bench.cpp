// `coveyctl ks members` at 100,000 members (issue 14: "answers in under a
// second, with filters and a count; --json streams"): the whole answer, from
// the request to the last line printed, over a real control socket. The
// key server's side (control::Server and ks::MemberStream, as covey-ks
// answers) runs on its own io_context thread; the client's is what coveyctl
// runs (control::stream and coveyctl::MembersPrinter), printing to
// /dev/null. The "max_piece_ms" counter is the longest the key server's
// loop spent on one piece: what a registration waits behind at worst.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "control/client.h"
#include "control/server.h"
#include "coveyctl/render.h"
#include "ks/status.h"

using namespace covey;
using Json = nlohmann::json;

namespace {

constexpr int kMembers = 100'000;
constexpr std::int64_t kNow = 1'763'900'000;

// 100,000 members over 127.0.0.0/8, as gm-swarm registers them, one every
// 10 ms from kNow - 1000 s, with what a registration records.
ks::Groups& groups() {
  static ks::Groups* g = [] {
    auto* groups = new ks::Groups;
    gdoi::GroupPolicy p;
    p.name = "GET_VPN";
    p.identity = 134;
    p.kek.signature = gdoi::KekPolicy::Signature::EcdsaP256;
    p.kek.signature_key_bits = 256;
    auto group = ks::Group::create(p, ks::Authorization{},
                                   crypto::PrivateKey::generate_ec(crypto::EcCurve::P256).value(),
                                   *Address::parse("127.0.0.1"), kNow - 2000);
    if (!group) std::abort();
    for (int i = 0; i < kMembers; ++i) {
      ks::Member m;
      m.address.family = 4;
      m.address.bytes[0] = 127;
      m.address.bytes[1] = static_cast<std::uint8_t>(1 + i / 65536);
      m.address.bytes[2] = static_cast<std::uint8_t>(i / 256 % 256);
      m.address.bytes[3] = static_cast<std::uint8_t>(i % 256);
      m.identity = m.address.str();
      m.registered_at = kNow - 1000 + i / 100;
      m.registrations = 1;
      m.sids = {static_cast<std::uint32_t>(i)};
      m.port = static_cast<std::uint16_t>(10000 + i % 50000);
      m.registered_to = *Address::parse("127.0.0.1");
      m.last_acked_seq = 1;
      m.traits = gdoi::PeerTraits{true, 15};
      (*group)->put_member(std::move(m));
    }
    groups->add(std::move(*group));
    return groups;
  }();
  return *g;
}

// A control socket answering ks.members as covey-ks does, on its own thread.
class KeyServerSide {
 public:
  KeyServerSide() {
    path_ = (std::filesystem::temp_directory_path() /
             ("covey-members-bench." + std::to_string(::getpid()) + ".sock"))
                .string();
    server_ = std::make_unique<control::Server>(io_, path_, [this](const Json& req) -> control::Reply {
      std::string why;
      auto filter = ks::MemberFilter::of(req, 0, &why);
      if (!filter) return control::error_reply(why);
      if (!ks::streams_members(req)) return ks::member_count(groups(), std::nullopt, *filter);
      auto stream = std::make_shared<ks::MemberStream>(groups(), req, 0);
      return control::Reply::stream([this, stream] {
        auto start = std::chrono::steady_clock::now();
        auto piece = stream->next();
        max_piece_ = std::max(max_piece_, std::chrono::steady_clock::now() - start);
        return piece;
      });
    });
    thread_ = std::thread([this] { io_.run(); });
  }
  ~KeyServerSide() {
    boost::asio::post(io_, [this] {
      server_.reset();
      work_.reset();
    });
    thread_.join();
  }
  const std::string& path() const { return path_; }
  // Read after the exchange: the server thread wrote it before the end line.
  double take_max_piece_ms() {
    double ms = std::chrono::duration<double, std::milli>(max_piece_).count();
    max_piece_ = {};
    return ms;
  }

 private:
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{
      io_.get_executor()};
  std::string path_;
  std::unique_ptr<control::Server> server_;
  std::chrono::steady_clock::duration max_piece_{};
  std::thread thread_;
};

// What `coveyctl ks members [--json] [filters]` does with the stream.
void members(benchmark::State& state, Json request, bool json, std::size_t expect) {
  groups();
  KeyServerSide ks;
  std::FILE* out = std::fopen("/dev/null", "w");
  double max_piece_ms = 0;
  std::size_t bytes = 0;
  for (auto _ : state) {
    coveyctl::MembersPrinter printer(coveyctl::RenderContext{kNow, true}, json);
    std::size_t listed = 0;
    bool first = true;
    bytes = 0;
    std::string error = control::stream(ks.path(), request, [&](const Json& line) {
      std::string text = first ? printer.start() : printer.line(line);
      first = false;
      if (line.contains("members")) listed += line["members"].size();
      bytes += text.size();
      std::fwrite(text.data(), 1, text.size(), out);
      return !printer.done();
    });
    if (!error.empty() || listed != expect) {
      state.SkipWithError((error.empty() ? "listed " + std::to_string(listed) : error).c_str());
      break;
    }
    max_piece_ms = std::max(max_piece_ms, ks.take_max_piece_ms());
  }
  std::fclose(out);
  state.counters["max_piece_ms"] = max_piece_ms;
  state.counters["output_bytes"] = static_cast<double>(bytes);
}

void count(benchmark::State& state, Json request, std::int64_t expect) {
  groups();
  KeyServerSide ks;
  for (auto _ : state) {
    control::Result r = control::request(ks.path(), request);
    std::string text =
        r.reply ? coveyctl::render_ks_member_count(*r.reply, coveyctl::RenderContext{kNow, true}) : "";
    if (!r.reply || (*r.reply)["count"] != expect) {
      state.SkipWithError(r.reply ? r.reply->dump().c_str() : r.error.c_str());
      break;
    }
    benchmark::DoNotOptimize(text);
  }
}

const Json kStream = {{"cmd", "ks.members"}, {"stream", true}};

// The key server's side alone: every piece of the full listing.
void BM_KsMembers_100000_Produce(benchmark::State& state) {
  groups();
  std::size_t bytes = 0;
  for (auto _ : state) {
    ks::MemberStream stream(groups(), kStream, 0);
    bytes = 0;
    while (auto piece = stream.next()) bytes += piece->size();
  }
  state.counters["reply_bytes"] = static_cast<double>(bytes);
}

void BM_KsMembers_100000_Table(benchmark::State& state) {
  members(state, kStream, false, kMembers);
}
void BM_KsMembers_100000_Json(benchmark::State& state) {
  members(state, kStream, true, kMembers);
}
// 127.1.16.0/20: 4,096 members out of 100,000.
void BM_KsMembers_100000_Prefix(benchmark::State& state) {
  Json req = kStream;
  req["prefix"] = "127.1.16.0/20";
  members(state, req, false, 4096);
}
// Registered in the last 10 s of 1000: 1,000 members, every record examined.
void BM_KsMembers_100000_Since(benchmark::State& state) {
  Json req = kStream;
  req["since"] = kNow - 10;
  members(state, req, false, 1000);
}
// A count with a filter that examines every member (without one, it is the map's size).
void BM_KsMembers_100000_Count(benchmark::State& state) {
  count(state, {{"cmd", "ks.members"}, {"count", true}, {"since", kNow - 10}}, 1000);
}

}  // namespace

BENCHMARK(BM_KsMembers_100000_Produce)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_KsMembers_100000_Table)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_KsMembers_100000_Json)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_KsMembers_100000_Prefix)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_KsMembers_100000_Since)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK(BM_KsMembers_100000_Count)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

BENCHMARK_MAIN();
