// Prometheus metrics: the exposition format (escaping, one HELP and TYPE
// per family), the member's metrics generated from COVEY_STATS, and the
// HTTP endpoint's bounds, against a real Beast client on loopback.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "gm/metrics.h"
#include "metrics/exposition.h"
#include "metrics/http_server.h"

namespace covey::metrics {
namespace {

// Every family's HELP and TYPE exactly once, before its samples; every
// sample under the family declared last. Returns the families' types.
std::map<std::string, std::string> check_families(const std::string& text) {
  std::map<std::string, std::string> types;
  std::map<std::string, int> helps;
  std::string current;
  std::istringstream in(text);
  std::string line;
  static const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? -?[0-9]+$)");
  while (std::getline(in, line)) {
    if (line.starts_with("# HELP ")) {
      std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_EQ(++helps[name], 1) << "second HELP for " << name;
      current = name;
    } else if (line.starts_with("# TYPE ")) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      EXPECT_EQ(name, current) << "TYPE without its HELP: " << line;
      EXPECT_TRUE(types.emplace(name, type).second) << "second TYPE for " << name;
    } else {
      std::smatch m;
      EXPECT_TRUE(std::regex_match(line, m, sample)) << "not a sample line: " << line;
      EXPECT_EQ(m[1].str(), current) << "sample outside its family: " << line;
    }
  }
  for (const auto& [name, type] : types) {
    EXPECT_TRUE(type != "counter" || name.ends_with("_total")) << name;
  }
  return types;
}

// COVEY_STATS's sections as the stage label spells them.
std::string stage_of(const std::string& section) {
  static const std::map<std::string, std::string> stages{{"Classification", "classification"}, {"Steering", "steering"},
                                                         {"Inbound", "inbound"}, {"TBAR", "tbar"},
                                                         {"Path MTU", "path_mtu"}};
  return stages.at(section);
}

TEST(Exposition, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(escape_help("a\\b\"c\nd"), "a\\\\b\"c\\nd");  // quotes stay in HELP
  Exposition x;
  x.family("covey_test_total", Type::Counter, "Line one\nline \\two");
  x.sample({{"line", "permit ip any any \"x\"\\"}, {"entry", "1"}}, std::uint64_t{7});
  x.sample({}, 0);
  EXPECT_EQ(x.text(),
            "# HELP covey_test_total Line one\\nline \\\\two\n"
            "# TYPE covey_test_total counter\n"
            "covey_test_total{line=\"permit ip any any \\\"x\\\"\\\\\",entry=\"1\"} 7\n"
            "covey_test_total 0\n");
  check_families(x.text());
}

TEST(Exposition, RefusesASecondHelpAndTypeOrASeriesTwice) {
  Exposition x;
  x.family("covey_a", Type::Gauge, "a");
  x.sample({{"group", "G"}}, -3);
  EXPECT_THROW(x.sample({{"group", "G"}}, 4), std::logic_error);
  x.family("covey_b", Type::Gauge, "b");
  EXPECT_THROW(x.family("covey_a", Type::Gauge, "a again"), std::logic_error);
  EXPECT_THROW(x.family("covey-c", Type::Gauge, "bad name"), std::logic_error);
  EXPECT_THROW(x.sample({{"__reserved", "v"}}, 1), std::logic_error);
  EXPECT_THROW(Exposition().sample({}, 1), std::logic_error);
}

// Every covey_stats counter once, drops in the drops family, ACL lines
// escaped; the whole text well formed.
TEST(GmMetrics, GeneratedFromCoveyStatsWithEveryFamilyOnce) {
  gm::RekeyState keys(gm::RekeyOptions{});
  gm::DataplaneCounters dp;
  std::uint64_t n = 1;
#define COVEY_STAT(field, section, drop, text) dp.stats.field = n++;
  COVEY_STATS(COVEY_STAT)
#undef COVEY_STAT
  dp.acl = {{"deny udp any eq 848 any eq 848", 5}, {"permit ip 192.168.0.0/16 192.168.0.0/16", 9}};
  dp.fail_close = {{"permit ip any \"odd\\\" any", 2}};
  gm::MetricsInput in{"GET_VPN", &keys, 1000, std::string("fail-close"), dp};
  const std::string text = gm::metrics_text(in);
  auto types = check_families(text);
  EXPECT_EQ(types.at("covey_gm_datapath_drops_total"), "counter");
  EXPECT_EQ(types.at("covey_gm_build_info"), "gauge");
  EXPECT_EQ(types.at("covey_gm_tek_remaining_seconds"), "gauge");
  // Each counter on one line of its family, with its value.
  auto lines_with = [&](const std::string& field) {
    std::vector<std::string> out;
    std::istringstream lines(text);
    for (std::string l; std::getline(lines, l);)
      if (l.starts_with("covey_gm_datapath_") && l.find("=\"" + field + "\"}") != std::string::npos) out.push_back(l);
    return out;
  };
  n = 1;
#define COVEY_STAT(field, section, drop, text_)                                                                \
  EXPECT_EQ(lines_with(#field),                                                                               \
            std::vector<std::string>{std::string((drop) ? "covey_gm_datapath_drops_total" : "covey_gm_datapath_packets_total") + \
                                     "{group=\"GET_VPN\",stage=\"" + stage_of(section) + "\"," +               \
                                     ((drop) ? "reason" : "event") + "=\"" #field "\"} " + std::to_string(n++)});
  COVEY_STATS(COVEY_STAT)
#undef COVEY_STAT
  EXPECT_NE(text.find("covey_gm_datapath_drops_total{group=\"GET_VPN\",stage=\"tbar\",reason=\"tbar_late\"}"),
            std::string::npos);
  EXPECT_NE(text.find("stage=\"path_mtu\""), std::string::npos);
  EXPECT_NE(text.find("covey_gm_acl_hits_total{group=\"GET_VPN\",acl=\"main\",entry=\"2\",line=\"permit ip "
                      "192.168.0.0/16 192.168.0.0/16\"} 9\n"),
            std::string::npos);
  EXPECT_NE(text.find("acl=\"fail_close\",entry=\"1\",line=\"permit ip any \\\"odd\\\\\\\" any\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("covey_gm_datapath_state{group=\"GET_VPN\",state=\"fail-close\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("covey_gm_registered{group=\"GET_VPN\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("covey_gm_pushes_refused_total{group=\"GET_VPN\",reason=\"bad_signature\"} 0\n"),
            std::string::npos);
}

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

class HttpServerTest : public ::testing::Test {
 protected:
  void start(HttpLimits limits) {
    server_ = std::make_unique<HttpServer>(io_, Endpoint{*Address::parse("127.0.0.1"), 0}, [this] {
      ++renders_;
      return "covey_test " + std::to_string(renders_) + "\n";
    }, limits);
    port_ = server_->local_endpoint().port;
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    asio::post(io_, [this] { server_.reset(); });
    io_.stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }
  tcp::socket connect() {
    tcp::socket s(client_io_);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    return s;
  }
  http::response<http::string_body> get(tcp::socket& s, const std::string& target,
                                        http::verb verb = http::verb::get) {
    http::request<http::string_body> req(verb, target, 11);
    req.set(http::field::host, "127.0.0.1");
    http::write(s, req);
    boost::beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(s, buf, res);
    return res;
  }

  asio::io_context io_, client_io_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
  int renders_ = 0;  // written on the server's thread only
};

TEST_F(HttpServerTest, ServesMetricsAndNothingElse) {
  start(HttpLimits{.min_render_interval = std::chrono::milliseconds(0)});
  auto s = connect();
  auto res = get(s, "/metrics");
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(res.body(), "covey_test 1\n");
  // Keep-alive: the same connection, rendered again.
  EXPECT_EQ(get(s, "/metrics?x=1").body(), "covey_test 2\n");
  EXPECT_EQ(get(s, "/").result(), http::status::not_found);
  EXPECT_EQ(get(s, "/metrics", http::verb::post).result(), http::status::method_not_allowed);
}

TEST_F(HttpServerTest, RendersAtMostOncePerInterval) {
  start(HttpLimits{.min_render_interval = std::chrono::hours(1)});
  auto s = connect();
  EXPECT_EQ(get(s, "/metrics").body(), "covey_test 1\n");
  EXPECT_EQ(get(s, "/metrics").body(), "covey_test 1\n");
}

TEST_F(HttpServerTest, BoundsConnectionsRequestSizeAndIdleTime) {
  start(HttpLimits{.max_connections = 2, .max_request_bytes = 512, .timeout = std::chrono::milliseconds(300)});
  auto a = connect();
  auto b = connect();
  EXPECT_EQ(get(a, "/metrics").result(), http::status::ok);
  EXPECT_EQ(get(b, "/metrics").result(), http::status::ok);
  // A third while two are open: 503, closed.
  auto c = connect();
  std::string busy(128, '\0');
  boost::system::error_code ec;
  busy.resize(asio::read(c, asio::buffer(busy), ec));
  EXPECT_TRUE(busy.starts_with("HTTP/1.1 503")) << busy;
  EXPECT_EQ(ec, asio::error::eof);
  // A request larger than the limit: 431, closed.
  http::request<http::string_body> big(http::verb::get, "/metrics", 11);
  big.set("X-Padding", std::string(1024, 'x'));
  http::write(a, big);
  boost::beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(a, buf, res);
  EXPECT_EQ(res.result(), http::status::request_header_fields_too_large);
  // An idle connection is closed after the timeout, which frees its slot.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  char byte;
  asio::read(b, asio::buffer(&byte, 1), ec);
  EXPECT_EQ(ec, asio::error::eof);
  auto d = connect();
  EXPECT_EQ(get(d, "/metrics").result(), http::status::ok);
}

}  // namespace
}  // namespace covey::metrics
