#include "etcd/client.h"

#include <openssl/ssl.h>

#include <algorithm>
#include <cstddef>
#include <exception>
#include <limits>
#include <stdexcept>
#include <thread>
#include <utility>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>

namespace covey::etcd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using crypto::Error;
using crypto::Result;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// ---- Encoding ---------------------------------------------------------------

namespace {

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  auto byte = [&](std::size_t i) { return i < bytes.size() ? static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) : 0u; };
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::uint32_t n = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    out += kBase64[n >> 18 & 63];
    out += kBase64[n >> 12 & 63];
    out += i + 1 < bytes.size() ? kBase64[n >> 6 & 63] : '=';
    out += i + 2 < bytes.size() ? kBase64[n & 63] : '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    std::uint32_t n = 0;
    int padding = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      const char c = text[i + j];
      int v = 0;
      if (c == '=') {
        // Padding: only the last one or two characters of the last quantum.
        if (i + 4 != text.size() || j < 2) return std::nullopt;
        ++padding;
      } else if (padding > 0 || (v = base64_value(c)) < 0) {
        return std::nullopt;
      }
      n = n << 6 | static_cast<std::uint32_t>(v);
    }
    out += static_cast<char>(n >> 16 & 0xff);
    if (padding < 2) out += static_cast<char>(n >> 8 & 0xff);
    if (padding < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

std::string prefix_range_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
  if (end.empty()) return std::string(1, '\0');
  end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  return end;
}

// ---- Requests and answers ----------------------------------------------------

Compare Compare::version(std::string key, Result r, std::int64_t v) {
  return Compare{std::move(key), Target::Version, r, v, {}};
}
Compare Compare::create_revision(std::string key, Result r, std::int64_t rev) {
  return Compare{std::move(key), Target::Create, r, rev, {}};
}
Compare Compare::mod_revision(std::string key, Result r, std::int64_t rev) {
  return Compare{std::move(key), Target::Mod, r, rev, {}};
}
Compare Compare::value_is(std::string key, std::string value) {
  return Compare{std::move(key), Target::Value, Result::Equal, 0, std::move(value)};
}

Op Op::put(std::string key, std::string value, std::int64_t lease) {
  return Op{Kind::Put, std::move(key), std::move(value), lease, false};
}
Op Op::del(std::string key, bool prefix) { return Op{Kind::Delete, std::move(key), {}, 0, prefix}; }
Op Op::get(std::string key, bool prefix) { return Op{Kind::Range, std::move(key), {}, 0, prefix}; }

namespace {

// The gateway writes int64 as JSON strings and leaves out zeros (proto3 JSON).
std::int64_t int64_field(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end() || it->is_null()) return 0;
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (!it->is_string()) throw std::runtime_error(std::string("field ") + name + " is not an integer");
  const std::string& s = it->get_ref<const std::string&>();
  std::size_t used = 0;
  const long long v = std::stoll(s, &used);
  if (used != s.size()) throw std::runtime_error(std::string("field ") + name + " is not an integer: " + s);
  return v;
}

std::uint64_t uint64_field(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end() || it->is_null()) return 0;
  if (it->is_number_unsigned()) return it->get<std::uint64_t>();
  if (!it->is_string()) throw std::runtime_error(std::string("field ") + name + " is not an integer");
  const std::string& s = it->get_ref<const std::string&>();
  std::size_t used = 0;
  const unsigned long long v = std::stoull(s, &used);
  if (used != s.size()) throw std::runtime_error(std::string("field ") + name + " is not an integer: " + s);
  return v;
}

std::string bytes_field(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end() || it->is_null()) return {};
  if (!it->is_string()) throw std::runtime_error(std::string("field ") + name + " is not base64");
  auto decoded = base64_decode(it->get_ref<const std::string&>());
  if (!decoded) throw std::runtime_error(std::string("field ") + name + " is not base64");
  return std::move(*decoded);
}

const json& object_field(const json& j, const char* name) {
  static const json empty = json::object();
  const auto it = j.find(name);
  return it == j.end() || !it->is_object() ? empty : *it;
}

bool bool_field(const json& j, const char* name) {
  const auto it = j.find(name);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::string string_field(const json& j, const char* name) {
  const auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

KeyValue key_value(const json& j) {
  KeyValue kv;
  kv.key = bytes_field(j, "key");
  kv.value = bytes_field(j, "value");
  kv.create_revision = int64_field(j, "create_revision");
  kv.mod_revision = int64_field(j, "mod_revision");
  kv.version = int64_field(j, "version");
  kv.lease = int64_field(j, "lease");
  return kv;
}

std::vector<KeyValue> key_values(const json& j) {
  std::vector<KeyValue> kvs;
  const auto it = j.find("kvs");
  if (it == j.end() || !it->is_array()) return kvs;
  for (const auto& kv : *it) kvs.push_back(key_value(kv));
  return kvs;
}

std::int64_t header_revision(const json& j) { return int64_field(object_field(j, "header"), "revision"); }

// key and range_end for one key or, with prefix, every key starting with it
// (an empty prefix: every key, etcd's "\0".."\0").
void set_range(json& j, const std::string& key, bool prefix) {
  if (!prefix) {
    j["key"] = base64_encode(key);
    return;
  }
  const std::string first = key.empty() ? std::string(1, '\0') : key;
  j["key"] = base64_encode(first);
  j["range_end"] = base64_encode(prefix_range_end(key));
}

json compare_json(const Compare& c) {
  json j;
  j["key"] = base64_encode(c.key);
  static constexpr const char* kResult[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
  j["result"] = kResult[static_cast<int>(c.result)];
  const std::string number = std::to_string(c.number);
  switch (c.target) {
    case Compare::Target::Version:
      j["target"] = "VERSION";
      j["version"] = number;
      break;
    case Compare::Target::Create:
      j["target"] = "CREATE";
      j["create_revision"] = number;
      break;
    case Compare::Target::Mod:
      j["target"] = "MOD";
      j["mod_revision"] = number;
      break;
    case Compare::Target::Value:
      j["target"] = "VALUE";
      j["value"] = base64_encode(c.value);
      break;
    case Compare::Target::Lease:
      j["target"] = "LEASE";
      j["lease"] = number;
      break;
  }
  return j;
}

json op_json(const Op& op) {
  json body;
  switch (op.kind) {
    case Op::Kind::Put:
      body["key"] = base64_encode(op.key);
      body["value"] = base64_encode(op.value);
      if (op.lease != 0) body["lease"] = std::to_string(op.lease);
      return json{{"request_put", body}};
    case Op::Kind::Delete:
      set_range(body, op.key, op.prefix);
      return json{{"request_delete_range", body}};
    case Op::Kind::Range:
      set_range(body, op.key, op.prefix);
      return json{{"request_range", body}};
  }
  return body;
}

// The message of an error answer: {"error":"...","message":"...","code":N} on
// a unary call, {"error":{"message":...}} inside a stream.
std::string error_message(const json& j) {
  if (std::string m = string_field(j, "message"); !m.empty()) return m;
  const auto it = j.find("error");
  if (it != j.end() && it->is_string()) return it->get<std::string>();
  if (it != j.end() && it->is_object()) return error_message(*it);
  return j.dump();
}

// ---- Endpoints and connections -------------------------------------------------

struct Url {
  std::string text;  // as configured, for messages
  std::string host, port;
  bool https = false;
};

Result<Url> parse_url(const std::string& text) {
  Url url;
  url.text = text;
  std::string_view rest = text;
  if (rest.substr(0, 7) == "http://") {
    rest.remove_prefix(7);
  } else if (rest.substr(0, 8) == "https://") {
    rest.remove_prefix(8);
    url.https = true;
  } else {
    return Error{"etcd endpoint \"" + text + "\": not an http:// or https:// URL"};
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) return Error{"etcd endpoint \"" + text + "\": has a path"};
  std::string_view host = rest, port = "2379";
  if (!rest.empty() && rest.front() == '[') {  // [v6]:port
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return Error{"etcd endpoint \"" + text + "\": unclosed ["};
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') return Error{"etcd endpoint \"" + text + "\": junk after ]"};
      port = rest.substr(close + 2);
    }
  } else if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) return Error{"etcd endpoint \"" + text + "\": no host"};
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoul(std::string(port)) > 65535 || std::stoul(std::string(port)) == 0) {
    return Error{"etcd endpoint \"" + text + "\": bad port"};
  }
  url.host = host;
  url.port = port;
  return url;
}

Result<std::shared_ptr<ssl::context>> tls_context(const Tls& tls) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::no_sslv2 | ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  error_code ec;
  if (tls.ca.empty()) return Error{"etcd TLS: no CA file"};
  if (ctx->load_verify_file(tls.ca, ec); ec) return Error{"etcd TLS CA file " + tls.ca + ": " + ec.message()};
  if (tls.cert.empty() != tls.key.empty()) return Error{"etcd TLS: a client certificate needs its key and a key its certificate"};
  if (!tls.cert.empty()) {
    if (ctx->use_certificate_chain_file(tls.cert, ec); ec) {
      return Error{"etcd TLS certificate file " + tls.cert + ": " + ec.message()};
    }
    if (ctx->use_private_key_file(tls.key, ssl::context::pem, ec); ec) {
      return Error{"etcd TLS key file " + tls.key + ": " + ec.message()};
    }
  }
  return ctx;
}

// The endpoints and TLS context of one Options, checked once.
struct Config {
  std::vector<Url> urls;
  std::shared_ptr<ssl::context> tls;
  std::string error;  // why these options are unusable; empty when they are fine

  explicit Config(const Options& options) {
    if (options.endpoints.empty()) {
      error = "etcd: no endpoints";
      return;
    }
    if (options.tls) {
      auto ctx = tls_context(*options.tls);
      if (!ctx) {
        error = ctx.error();
        return;
      }
      tls = std::move(*ctx);
    }
    for (const auto& text : options.endpoints) {
      auto url = parse_url(text);
      if (!url) {
        error = url.error();
        return;
      }
      if (url->https && !tls) {
        error = "etcd endpoint " + text + ": https needs Options::tls (at least the CA file)";
        return;
      }
      urls.push_back(std::move(*url));
    }
  }
};

std::string describe(const error_code& ec) {
  return ec == asio::error::timed_out ? std::string("no answer in time") : ec.message();
}

// One HTTP/1.1 connection to one endpoint, kept open between requests.
// Every operation is asynchronous on the caller's io_context, which runs
// until the operation completes or the deadline passes; then the socket is
// closed, which ends the operation.
class Connection {
 public:
  Connection(asio::io_context& ioc, Url url, ssl::context* tls) : ioc_(ioc), url_(std::move(url)), tls_ctx_(tls), resolver_(ioc) {}
  ~Connection() { close(); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const Url& url() const { return url_; }
  bool is_open() const { return plain_ || tls_; }

  void close() {
    error_code ignored;
    resolver_.cancel();
    if (plain_) plain_->close(ignored);
    if (tls_) tls_->next_layer().close(ignored);
  }
  // After close(): forget the streams, once no operation is pending on them.
  void reset() {
    close();
    plain_.reset();
    tls_.reset();
    buffer_.clear();
  }

  // Connects (and for https, handshakes); an error says which step failed.
  std::optional<std::string> open(Clock::time_point deadline) {
    reset();
    tcp::resolver::results_type addresses;
    error_code ec = await(
        [&](auto done) {
          resolver_.async_resolve(url_.host, url_.port, [&addresses, done](error_code e, tcp::resolver::results_type r) mutable {
            addresses = std::move(r);
            done(e);
          });
        },
        deadline);
    if (ec) return "resolve " + url_.host + ": " + describe(ec);
    if (url_.https) {
      tls_.emplace(ioc_, *tls_ctx_);
    } else {
      plain_.emplace(ioc_);
    }
    ec = await([&](auto done) { asio::async_connect(socket(), addresses, done); }, deadline);
    if (ec) return fail("connect: " + describe(ec));
    socket().set_option(tcp::no_delay(true), ec);
    if (tls_) {
      error_code address_error;
      asio::ip::make_address(url_.host, address_error);
      if (address_error && !SSL_set_tlsext_host_name(tls_->native_handle(), url_.host.c_str())) {
        return fail("TLS: cannot set the server name");
      }
      tls_->set_verify_mode(ssl::verify_peer);
      tls_->set_verify_callback(ssl::host_name_verification(url_.host));
      ec = await([&](auto done) { tls_->async_handshake(ssl::stream_base::client, done); }, deadline);
      if (ec) return fail("TLS handshake: " + describe(ec));
    }
    return std::nullopt;
  }

  // Sends POST target with a JSON body.
  std::optional<std::string> send(const std::string& target, const std::string& body, Clock::time_point deadline,
                                  bool require_leader = false) {
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, url_.host + ":" + url_.port);
    req.set(http::field::content_type, "application/json");
    // etcd's "require leader" (gRPC metadata hasleader=true, forwarded by
    // the gateway): a member cut off from its leader ends the stream
    // instead of leaving it silent.
    if (require_leader) req.set("Grpc-Metadata-Hasleader", "true");
    req.keep_alive(true);
    req.body() = body;
    req.prepare_payload();
    const error_code ec = await([&](auto done) { with_stream([&](auto& s) { http::async_write(s, req, done); }); }, deadline);
    if (ec) return fail("request: " + describe(ec));
    return std::nullopt;
  }

  // Reads a whole response (unary calls).
  std::optional<std::string> receive(Clock::time_point deadline, unsigned& status, std::string& body) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    const error_code ec = await([&](auto done) { with_stream([&](auto& s) { http::async_read(s, buffer_, parser, done); }); }, deadline);
    if (ec) return fail("answer: " + describe(ec));
    status = parser.get().result_int();
    body = std::move(parser.get().body());
    if (!parser.get().keep_alive()) reset();
    return std::nullopt;
  }

  // A streamed response: the header now, the body as it comes.
  std::optional<std::string> receive_header(Clock::time_point deadline, http::response_parser<http::string_body>& parser) {
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    const error_code ec =
        await([&](auto done) { with_stream([&](auto& s) { http::async_read_header(s, buffer_, parser, done); }); }, deadline);
    if (ec) return fail("answer: " + describe(ec));
    return std::nullopt;
  }
  // The rest of a response whose header receive_header() read.
  std::optional<std::string> receive_rest(Clock::time_point deadline, http::response_parser<http::string_body>& parser) {
    const error_code ec = await([&](auto done) { with_stream([&](auto& s) { http::async_read(s, buffer_, parser, done); }); }, deadline);
    if (ec) return fail("answer: " + describe(ec));
    return std::nullopt;
  }
  // Starts reading more of a streamed body into parser; handler(ec) runs
  // from the io_context.
  template <class Handler>
  void read_some(http::response_parser<http::string_body>& parser, Handler handler) {
    with_stream([&](auto& s) { http::async_read_some(s, buffer_, parser, [handler](error_code ec, std::size_t) mutable { handler(ec); }); });
  }

 private:
  tcp::socket& socket() { return tls_? tls_->next_layer() : *plain_; }

  template <class F>
  void with_stream(F&& f) {
    if (tls_) {
      f(*tls_);
    } else {
      f(*plain_);
    }
  }

  std::string fail(std::string why) {
    reset();
    return why;
  }

  // Starts one operation (start(done), done(error_code, ...)) and runs the
  // io_context until it completes or the deadline passes.
  template <class Start>
  error_code await(Start&& start, Clock::time_point deadline) {
    bool finished = false;
    error_code result;
    start([&finished, &result](error_code ec, auto&&...) {
      result = ec;
      finished = true;
    });
    ioc_.restart();
    ioc_.run_until(deadline);
    if (finished) return result;
    close();
    ioc_.restart();
    ioc_.run();  // the cancelled operation's handler
    return asio::error::timed_out;
  }

  asio::io_context& ioc_;
  Url url_;
  ssl::context* tls_ctx_;
  tcp::resolver resolver_;
  std::optional<tcp::socket> plain_;
  std::optional<ssl::stream<tcp::socket>> tls_;
  beast::flat_buffer buffer_;
};

std::string where(const Url& url, const char* op) { return "etcd " + url.text + ": " + op + ": "; }

// The first JSON object of a body: the whole body of a unary call, the first
// line of a stream (lease keep-alive).
json parse_body(const std::string& body) {
  const auto end = body.find('\n');
  return json::parse(end == std::string::npos ? body : body.substr(0, end));
}

}  // namespace

// ---- Client -------------------------------------------------------------------------

struct Client::Impl {
  Options options;
  Config config;
  asio::io_context ioc;
  std::vector<std::unique_ptr<Connection>> connections;  // one per endpoint
  std::size_t current = 0;                                // the one that answered last

  explicit Impl(Options o) : options(std::move(o)), config(options) {
    for (const auto& url : config.urls) connections.push_back(std::make_unique<Connection>(ioc, url, config.tls.get()));
  }

  // One exchange with one endpoint; nullopt and status/body on an answer.
  std::optional<std::string> exchange(Connection& c, const std::string& path, const std::string& body, unsigned& status,
                                      std::string& answer) {
    const auto deadline = Clock::now() + options.timeout;
    const bool reused = c.is_open();
    if (!reused) {
      if (auto e = c.open(deadline)) return e;
    }
    auto e = c.send(path, body, deadline);
    if (!e) e = c.receive(deadline, status, answer);
    if (e && reused && Clock::now() < deadline) {
      // The member may have closed the idle connection: once more on a new one.
      if (auto again = c.open(deadline)) return again;
      e = c.send(path, body, deadline);
      if (!e) e = c.receive(deadline, status, answer);
    }
    return e;
  }

  // POSTs body to path on each endpoint in turn, from the one that answered
  // last, until one answers other than with a connection failure, timeout
  // or 5xx; then decodes the answer with decode(json).
  template <class T, class Decode>
  Result<T> call(const char* op, const std::string& path, const json& request, Decode decode) {
    if (!config.error.empty()) return Error{config.error};
    const std::string body = request.dump();
    std::string failures;
    const std::size_t n = connections.size();
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t index = (current + i) % n;
      Connection& c = *connections[index];
      unsigned status = 0;
      std::string answer;
      if (auto e = exchange(c, path, body, status, answer)) {
        failures += (failures.empty() ? "" : "; ") + where(c.url(), op) + *e;
        continue;
      }
      json j;
      try {
        j = answer.empty() ? json::object() : parse_body(answer);
      } catch (const std::exception& ex) {
        if (status >= 500) {
          failures += (failures.empty() ? "" : "; ") + where(c.url(), op) + "HTTP " + std::to_string(status);
          continue;
        }
        return Error{where(c.url(), op) + "HTTP " + std::to_string(status) + ", not JSON: " + ex.what()};
      }
      if (status >= 500) {  // no leader, timed out inside etcd, ...: another member may do
        failures += (failures.empty() ? "" : "; ") + where(c.url(), op) + "HTTP " + std::to_string(status) + ": " + error_message(j);
        c.reset();
        continue;
      }
      current = index;
      if (status != 200) return Error{where(c.url(), op) + "HTTP " + std::to_string(status) + ": " + error_message(j)};
      if (j.contains("error")) return Error{where(c.url(), op) + error_message(j)};
      try {
        return decode(j.contains("result") ? j["result"] : j);
      } catch (const std::exception& ex) {
        return Error{where(c.url(), op) + "malformed answer: " + ex.what()};
      }
    }
    return Error{failures};
  }
};

Client::Client(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

Result<void> Client::check(const Options& options) {
  Config config(options);
  if (!config.error.empty()) return Error{config.error};
  return {};
}

const std::string& Client::endpoint() const {
  static const std::string none;
  const auto& urls = impl_->config.urls;
  return urls.empty() ? none : urls[impl_->current].text;
}

Result<Range> Client::get(const std::string& key, bool prefix) {
  json request;
  set_range(request, key, prefix);
  return impl_->call<Range>("get", "/v3/kv/range", request, [](const json& j) { return Range{key_values(j), header_revision(j)}; });
}

Result<std::int64_t> Client::put(const std::string& key, const std::string& value, std::int64_t lease) {
  json request{{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  if (lease != 0) request["lease"] = std::to_string(lease);
  return impl_->call<std::int64_t>("put", "/v3/kv/put", request, [](const json& j) { return header_revision(j); });
}

Result<TxnResult> Client::txn(const std::vector<Compare>& compare, const std::vector<Op>& success, const std::vector<Op>& failure) {
  json request{{"compare", json::array()}, {"success", json::array()}, {"failure", json::array()}};
  for (const auto& c : compare) request["compare"].push_back(compare_json(c));
  for (const auto& op : success) request["success"].push_back(op_json(op));
  for (const auto& op : failure) request["failure"].push_back(op_json(op));
  return impl_->call<TxnResult>("txn", "/v3/kv/txn", request, [](const json& j) {
    TxnResult result;
    result.succeeded = bool_field(j, "succeeded");
    result.revision = header_revision(j);
    if (const auto it = j.find("responses"); it != j.end() && it->is_array()) {
      for (const auto& response : *it) result.ranges.push_back(key_values(object_field(response, "response_range")));
    }
    return result;
  });
}

Result<void> Client::compact(std::int64_t revision) {
  const json request{{"revision", std::to_string(revision)}, {"physical", true}};
  auto r = impl_->call<bool>("compact", "/v3/kv/compaction", request, [](const json&) { return true; });
  if (!r) return Error{r.error()};
  return {};
}

Result<Lease> Client::grant(std::int64_t ttl_s) {
  const json request{{"TTL", std::to_string(ttl_s)}};
  return impl_->call<Lease>("lease grant", "/v3/lease/grant", request, [](const json& j) {
    if (std::string e = string_field(j, "error"); !e.empty()) throw std::runtime_error(e);
    return Lease{int64_field(j, "ID"), int64_field(j, "TTL")};
  });
}

Result<Lease> Client::keep_alive(std::int64_t lease_id) {
  const json request{{"ID", std::to_string(lease_id)}};
  return impl_->call<Lease>("lease keep-alive", "/v3/lease/keepalive", request, [lease_id](const json& j) {
    return Lease{lease_id, int64_field(j, "TTL")};
  });
}

Result<void> Client::revoke(std::int64_t lease_id) {
  const json request{{"ID", std::to_string(lease_id)}};
  auto r = impl_->call<bool>("lease revoke", "/v3/lease/revoke", request, [](const json&) { return true; });
  if (!r) return Error{r.error()};
  return {};
}

Result<std::vector<MemberStatus>> Client::members() {
  auto listed = impl_->call<std::vector<MemberStatus>>("member list", "/v3/cluster/member/list", json::object(), [](const json& j) {
    std::vector<MemberStatus> members;
    if (const auto it = j.find("members"); it != j.end() && it->is_array()) {
      for (const auto& m : *it) {
        MemberStatus s;
        s.name = string_field(m, "name");
        s.id = uint64_field(m, "ID");
        if (const auto urls = m.find("clientURLs"); urls != m.end() && urls->is_array()) {
          for (const auto& u : *urls) s.client_urls.push_back(u.get<std::string>());
        }
        members.push_back(std::move(s));
      }
    }
    return members;
  });
  if (!listed) return listed;
  for (auto& member : *listed) {
    if (member.client_urls.empty()) {
      member.error = "no client URL (not started yet)";
      continue;
    }
    // Each member on its own URLs: the status says whom it follows.
    Options one = impl_->options;
    one.endpoints = member.client_urls;
    Impl asker(std::move(one));
    auto status = asker.call<std::uint64_t>("status", "/v3/maintenance/status", json::object(),
                                            [](const json& j) { return uint64_field(j, "leader"); });
    if (!status) {
      member.error = status.error();
      continue;
    }
    member.reachable = true;
    member.leader = *status == member.id;
  }
  return listed;
}

// ---- Watch ---------------------------------------------------------------------------

struct Watch::Impl {
  Options options;
  Config config;
  std::string key, range_end;
  std::int64_t next = 0;  // the revision to (re)start from; 0: from now
  asio::io_context ioc;
  std::unique_ptr<Connection> connection;
  std::unique_ptr<http::response_parser<http::string_body>> parser;
  std::size_t current = 0;
  bool reading = false;    // a read is pending on connection
  error_code read_error;   // how the last read ended
  std::string lines;       // the stream's bytes not yet split into lines
  std::string last_error;  // why not connected
  std::string fatal;       // compaction: every next() says so
  Clock::time_point last_round{};  // the last round of connection attempts

  Impl(Options o, const std::string& prefix, std::int64_t start) : options(std::move(o)), config(options), next(start) {
    key = prefix.empty() ? std::string(1, '\0') : prefix;
    range_end = prefix_range_end(prefix);
  }

  ~Impl() { disconnect(""); }

  void disconnect(std::string why) {
    if (connection) {
      connection->close();
      ioc.restart();
      ioc.run();  // a pending read's handler
      connection.reset();
      current = (current + 1) % std::max<std::size_t>(config.urls.size(), 1);
    }
    parser.reset();
    reading = false;
    lines.clear();
    last_error = std::move(why);
  }

  // Tries each endpoint once, from the current one.
  void connect() {
    std::string failures;
    json create{{"key", base64_encode(key)}, {"range_end", base64_encode(range_end)}};
    if (next > 0) create["start_revision"] = std::to_string(next);
    const std::string body = json{{"create_request", create}}.dump();
    for (std::size_t i = 0; i < config.urls.size(); ++i) {
      const std::size_t index = (current + i) % config.urls.size();
      const Url& url = config.urls[index];
      auto c = std::make_unique<Connection>(ioc, url, config.tls.get());
      auto p = std::make_unique<http::response_parser<http::string_body>>();
      const auto deadline = Clock::now() + options.timeout;
      auto e = c->open(deadline);
      if (!e) e = c->send("/v3/watch", body, deadline, true);
      if (!e) e = c->receive_header(deadline, *p);
      if (!e && p->get().result_int() != 200) {
        // The member refused the watch (503 "etcdserver: no leader"): its words.
        e = "HTTP " + std::to_string(p->get().result_int());
        if (!c->receive_rest(deadline, *p)) {
          try {
            *e += ": " + error_message(parse_body(p->get().body()));
          } catch (const std::exception&) {
          }
        }
      }
      if (e) {
        failures += (failures.empty() ? "" : "; ") + where(url, "watch") + *e;
        continue;
      }
      current = index;
      connection = std::move(c);
      parser = std::move(p);
      last_error.clear();
      return;
    }
    last_error = failures;
  }

  // Takes the complete lines of the stream; events go to out. False when
  // the stream says to reconnect (error, cancel) or the watch is over
  // (fatal).
  bool take_lines(std::vector<Event>& out) {
    lines += parser->get().body();
    parser->get().body().clear();
    std::size_t start = 0;
    for (std::size_t end; (end = lines.find('\n', start)) != std::string::npos; start = end + 1) {
      const std::string line = lines.substr(start, end - start);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      try {
        const json j = json::parse(line);
        if (j.contains("error")) {
          disconnect(where(connection->url(), "watch") + error_message(j));
          return false;
        }
        const json& result = object_field(j, "result");
        if (bool_field(result, "canceled")) {
          if (const std::int64_t compacted = int64_field(result, "compact_revision"); compacted > 0) {
            fatal = where(connection->url(), "watch") + "revision " + std::to_string(next) +
                    " has been compacted (the oldest left is " + std::to_string(compacted) + ")";
            disconnect(fatal);
            return false;
          }
          disconnect(where(connection->url(), "watch") + "canceled: " + string_field(result, "cancel_reason"));
          return false;
        }
        if (bool_field(result, "created") && next == 0) next = header_revision(result) + 1;
        if (const auto events = result.find("events"); events != result.end() && events->is_array()) {
          for (const auto& e : *events) {
            Event event;
            event.type = string_field(e, "type") == "DELETE" ? Event::Type::Delete : Event::Type::Put;
            event.kv = key_value(object_field(e, "kv"));
            // After a reconnect the watch starts at next: nothing older comes
            // again, but a member that sends it anyway is not believed.
            if (event.kv.mod_revision < next) continue;
            out.push_back(std::move(event));
          }
          if (!out.empty()) next = std::max(next, out.back().kv.mod_revision + 1);
        }
      } catch (const std::exception& ex) {
        disconnect(where(connection->url(), "watch") + "malformed event: " + ex.what());
        return false;
      }
    }
    lines.erase(0, start);
    return true;
  }
};

Watch::Watch(Options options, std::string prefix, std::int64_t start_revision)
    : impl_(std::make_unique<Impl>(std::move(options), prefix, start_revision)) {}
Watch::~Watch() = default;

std::int64_t Watch::next_revision() const { return impl_->next; }
std::string Watch::last_error() const { return impl_->last_error; }
std::string Watch::endpoint() const { return impl_->connection ? impl_->connection->url().text : std::string(); }

Result<std::vector<Event>> Watch::next(std::chrono::milliseconds wait) {
  Impl& w = *impl_;
  if (!w.config.error.empty()) return Error{w.config.error};
  const auto deadline = Clock::now() + wait;
  std::vector<Event> out;
  for (;;) {
    if (!w.fatal.empty()) return Error{w.fatal};
    if (!w.connection) {
      // At most one round of connections per 100 ms: a member that takes
      // the watch and drops it at once (no leader) is not hammered.
      const auto due = w.last_round + std::chrono::milliseconds(100);
      if (Clock::now() < due) {
        std::this_thread::sleep_until(std::min(deadline, due));
        if (Clock::now() >= deadline) return out;
      }
      w.last_round = Clock::now();
      w.connect();
      if (!w.connection) {
        if (Clock::now() >= deadline) return out;
        continue;
      }
    }
    if (!w.take_lines(out)) {
      if (!out.empty()) return out;
      continue;
    }
    if (!out.empty() || Clock::now() >= deadline) return out;
    if (!w.reading) {
      w.reading = true;
      w.connection->read_some(*w.parser, [&w](error_code ec) {
        w.reading = false;
        w.read_error = ec;
      });
    }
    w.ioc.restart();
    w.ioc.run_one_until(deadline);
    if (w.reading) continue;  // the deadline passed: the read stays pending for the next call
    if (w.read_error) {
      // What came before the failure still counts.
      if (w.take_lines(out)) w.disconnect(where(w.connection->url(), "watch") + "stream: " + w.read_error.message());
    } else if (w.parser->is_done()) {
      if (w.take_lines(out)) w.disconnect(where(w.connection->url(), "watch") + "the member ended the stream");
    }
  }
}

}  // namespace covey::etcd
