// gm-swarm: N group members registering to one covey-ks, from one process.
//
//   gm-swarm --ks 127.0.0.1:848 --group 134 --psk K --members 1000
//            [--concurrency 64] [--dh 19|14] [--source-base 127.1.0.1] [--json out.json]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "gm-swarm/swarm.h"

using namespace covey;

namespace {

// "A", "A:port", "[v6]:port"; port 848 when absent.
std::optional<Endpoint> parse_endpoint(const std::string& text) {
  std::string host = text;
  std::uint16_t port = 848;
  auto colon = text.rfind(':');
  bool bracketed = !text.empty() && text.front() == '[';
  if (bracketed || (colon != std::string::npos && text.find(':') == colon)) {
    auto close = bracketed ? text.find(']') : colon;
    if (close == std::string::npos) return std::nullopt;
    host = bracketed ? text.substr(1, close - 1) : text.substr(0, colon);
    std::size_t port_at = bracketed ? close + 1 : colon;
    if (port_at < text.size()) {
      if (text[port_at] != ':') return std::nullopt;
      try {
        unsigned long p = std::stoul(text.substr(port_at + 1));
        if (p == 0 || p > 65535) return std::nullopt;
        port = static_cast<std::uint16_t>(p);
      } catch (const std::exception&) {
        return std::nullopt;
      }
    }
  }
  auto a = Address::parse(host);
  if (!a) return std::nullopt;
  return Endpoint{*a, port};
}

nlohmann::json to_json(const swarm::SwarmOptions& o, const swarm::SwarmResult& r) {
  nlohmann::json rekeys = nlohmann::json::array();
  for (const auto& k : r.rekeys)
    rekeys.push_back({{"seq", k.seq}, {"members_acked", k.members_acked}, {"members_refused", k.members_refused},
                      {"first_push_to_last_ack_s", k.first_push_to_last_ack_s},
                      {"first_push_monotonic_s", k.first_push_monotonic_s}, {"last_ack_monotonic_s", k.last_ack_monotonic_s},
                      {"push_bytes", k.push_bytes},
                      {"bytes_received", k.bytes_received}, {"gm_cpu_s", k.gm_cpu_s}});
  // As coveyctl gm status --show-keys shows them.
  auto keys_json = [](const std::map<swarm::SwarmResult::HeldKeys, std::size_t>& held) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [k, n] : held)
      out.push_back({{"members", n},
                     {"tek", {{"spi", k.tek_spi}, {"keys", {{"encryption", k.tek_encryption}, {"integrity", k.tek_integrity}}}}},
                     {"kek", {{"spi", k.kek_spi}, {"keys", {{"algorithm_key", k.kek_algorithm_key}}}}}});
    return out;
  };
  nlohmann::json failures = nlohmann::json::object();
  for (const auto& [why, n] : r.failures) failures[why] = n;
  nlohmann::json key_servers = nlohmann::json::array(), pushes_from = nlohmann::json::object();
  for (const auto& ks : o.key_servers) key_servers.push_back(ks.str());
  for (const auto& [ks, p] : r.pushes_from)
    pushes_from[ks.str()] = {{"datagrams", p.datagrams}, {"first_unix_s", p.first_unix_s}, {"last_unix_s", p.last_unix_s}};
  return {
      {"ks", o.key_servers.at(0).str()},
      {"key_servers", key_servers},
      {"group", o.group_id},
      {"dh_group", o.dh_group},
      {"members", o.members},
      {"concurrency", o.concurrency},
      {"registered", r.registered},
      {"failed", r.failed},
      {"unfinished", r.unfinished},
      {"timed_out", r.timed_out},
      {"failures", failures},
      {"elapsed_s", r.elapsed_s},
      {"registrations_per_s", r.registrations_per_s},
      {"latency_ms", {{"p50", r.latency.p50}, {"p90", r.latency.p90}, {"p99", r.latency.p99}, {"max", r.latency.max}, {"mean", r.latency.mean}}},
      {"datagrams_sent", r.datagrams_sent},
      {"datagrams_received", r.datagrams_received},
      {"retransmissions", r.retransmissions},
      {"arrival_latency_ms", {{"p50", r.arrival_latency.p50}, {"p90", r.arrival_latency.p90}, {"p99", r.arrival_latency.p99},
                              {"max", r.arrival_latency.max}, {"mean", r.arrival_latency.mean}}},
      {"start_rate", o.start_rate},
      {"last_start_s", r.last_start_s},
      {"gm_cpu_s", r.cpu_s},
      {"gm_cpu_user_s", r.cpu_user_s},
      {"gm_cpu_system_s", r.cpu_system_s},
      {"gm_registering_cpu_s", r.registering_cpu_s},
      {"gm_max_rss_kb", r.max_rss_kb},
      {"gm_receive_buffer_bytes", r.receive_buffer_bytes},
      {"gm_runqueue_wait_s", r.runqueue_wait_s},
      {"rekeys", rekeys},
      {"pushes_from", pushes_from},
      {"registered_keys", keys_json(r.registered_keys)},
      {"final_keys", keys_json(r.final_keys)},
  };
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gm-swarm: many GDOI group members from one process, to load a covey-ks (loopback only by default)"};
  std::vector<std::string> key_servers{"127.0.0.1:848"};
  std::string source_base = "127.1.0.1", json_path;
  swarm::SwarmOptions o;
  double timeout_s = 60;
  bool allow_nonlocal = false;
  app.add_option("--ks", key_servers,
                 "key server, A[:port] or [v6]:port; several (cooperative key servers): member i registers with the "
                 "(i mod n)-th, and every member takes pushes from any")
      ->capture_default_str();
  app.add_option("--group", o.group_id, "group identity")->required();
  app.add_option("--psk", o.pre_shared_key, "pre-shared key (Main Mode, every member)")->required();
  app.add_option("--members", o.members, "members to register, each once")->required()->check(CLI::Range(1, 16'000'000));
  app.add_option("--concurrency", o.concurrency, "registrations in flight at once")->capture_default_str()->check(CLI::Range(1, 10'000));
  app.add_option("--start-rate", o.start_rate,
                 "members started per second at most (a storm's arrival rate); 0: as --concurrency allows")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--dh", o.dh_group, "DH group offered in phase 1")->capture_default_str()->check(CLI::IsMember({19, 20, 14}));
  app.add_option("--source-base", source_base, "member i sends from this address + i")->capture_default_str();
  app.add_flag("--one-address", o.one_address, "every member from --source-base, each on its own port");
  app.add_option("--timeout", timeout_s, "seconds; the run stops then, counting who had not finished")->capture_default_str()->check(CLI::Range(0.1, 86400.0));
  app.add_option("--retransmit", o.retransmit_s, "seconds before a member retransmits")->capture_default_str()->check(CLI::Range(1, 60));
  app.add_option("--retransmits", o.retransmits, "retransmissions before a member gives up")->capture_default_str()->check(CLI::Range(0, 100));
  app.add_option("--json", json_path, "also write the results as JSON to this file");
  app.add_flag("--allow-nonlocal", allow_nonlocal, "allow a key server and sources outside 127.0.0.0/8 and ::1");
  app.add_flag("-v,--verbose", o.verbose, "print each member's registration steps");
  app.add_option("--follow-rekeys", o.follow_rekeys,
                 "after registering, every member follows and acknowledges this many rekeys")
      ->excludes("--one-address");
  CLI11_PARSE(app, argc, argv);

  for (const std::string& ks : key_servers) {
    auto ep = parse_endpoint(ks);
    if (!ep) {
      std::cerr << "gm-swarm: --ks " << ks << ": not an address with an optional port (127.0.0.1:848, [::1]:848)\n";
      return 2;
    }
    o.key_servers.push_back(*ep);
  }
  auto base = Address::parse(source_base);
  if (!base) {
    std::cerr << "gm-swarm: --source-base " << source_base << ": not an address\n";
    return 2;
  }
  o.source_base = *base;
  o.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1000));
  Address last = o.one_address ? *base : swarm::nth_address(*base, static_cast<std::uint32_t>(o.members - 1));
  if (!allow_nonlocal) {
    // A load generator aimed at a production KS by a typo is a denial of service.
    for (const Endpoint& ks : o.key_servers)
      if (!swarm::is_loopback(ks.address)) {
        std::cerr << "gm-swarm: KS " << ks.str() << " is not a loopback address; pass --allow-nonlocal to load it anyway\n";
        return 2;
      }
    if (!swarm::is_loopback(*base) || !swarm::is_loopback(last) || (base->family == 4 && last.bytes[0] != 127)) {
      std::cerr << "gm-swarm: sources " << base->str() << " to " << last.str()
                << " leave 127.0.0.0/8; lower --members or --source-base, or pass --allow-nonlocal\n";
      return 2;
    }
  }
  for (const Endpoint& ks : o.key_servers)
    if (base->family != ks.address.family) {
      std::cerr << "gm-swarm: --source-base " << base->str() << " and KS " << ks.str() << " are of different families\n";
      return 2;
    }

  std::string ks_list;
  for (const Endpoint& ks : o.key_servers) ks_list += (ks_list.empty() ? "" : ",") + ks.str();
  swarm::SwarmResult r;
  try {
    r = swarm::run_swarm(o);
  } catch (const std::exception& e) {
    std::cerr << "gm-swarm: " << e.what() << '\n';
    return 1;
  }

  std::printf("gm-swarm: %zu members to KS %s group %u, DH group %u, %zu in flight, sources %s..%s\n", o.members,
              ks_list.c_str(), o.group_id, unsigned{o.dh_group}, std::min(o.concurrency, o.members), base->str().c_str(), last.str().c_str());
  std::printf("  registered   %zu in %.2f s: %.1f registrations/s\n", r.registered, r.elapsed_s, r.registrations_per_s);
  std::printf("  latency      p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n", r.latency.p50, r.latency.p90,
              r.latency.p99, r.latency.max);
  std::printf("  datagrams    %llu sent, %llu received, %llu retransmitted\n",
              static_cast<unsigned long long>(r.datagrams_sent), static_cast<unsigned long long>(r.datagrams_received),
              static_cast<unsigned long long>(r.retransmissions));
  std::printf("  gm-swarm     %.2f s CPU (%.2f user, %.2f system; %.2f until all registered), %.2f s waiting for a CPU "
              "(other load), peak RSS %.1f MB\n",
              r.cpu_s, r.cpu_user_s, r.cpu_system_s, r.registering_cpu_s, r.runqueue_wait_s,
              static_cast<double>(r.max_rss_kb) / 1024);
  if (o.start_rate > 0) {
    std::printf("  started      at most %.0f/s: the last %.2f s after the first\n", o.start_rate, r.last_start_s);
    std::printf("  from arrival p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms (waiting for a slot included)\n",
                r.arrival_latency.p50, r.arrival_latency.p90, r.arrival_latency.p99, r.arrival_latency.max);
  }
  std::printf("  failed       %zu\n", r.failed);
  for (const auto& [why, n] : r.failures) std::printf("    %6zu  %s\n", n, why.c_str());
  for (const auto& k : r.rekeys)
    std::printf("  rekey SEQ %u  %zu members acked, %zu refused, first push to last ack %.3f s, %zu-byte push, "
                "gm-swarm CPU %.2f s\n",
                k.seq, k.members_acked, k.members_refused, k.first_push_to_last_ack_s, k.push_bytes, k.gm_cpu_s);
  for (const auto& [ks, p] : r.pushes_from) std::printf("  pushes from  %s: %zu datagrams\n", ks.str().c_str(), p.datagrams);
  if (r.unfinished) std::printf("  unfinished   %zu (the %.1f s timeout passed)\n", r.unfinished, timeout_s);

  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << to_json(o, r).dump(2) << '\n';
    if (!f) {
      std::cerr << "gm-swarm: cannot write " << json_path << '\n';
      return 1;
    }
  }
  bool followed = r.rekeys.size() >= o.follow_rekeys;
  for (const auto& k : r.rekeys) followed = followed && k.members_acked == r.registered;
  return r.registered == o.members && followed ? 0 : 3;
}
