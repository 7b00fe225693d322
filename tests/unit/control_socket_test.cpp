// The control socket end to end: a Server on an io_context in a thread,
// spoken to by control::request() and by a raw socket for what a well-
// behaved client never sends.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "control/client.h"
#include "control/server.h"

namespace covey::control {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

Json echo(const Json& request) { return {{"ok", true}, {"echo", request}}; }

// A blocking Unix-socket client with a receive timeout, so a server that
// fails to answer fails the test instead of hanging it.
class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }

  void send(const std::string& bytes) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << std::strerror(errno);
      sent += static_cast<std::size_t>(n);
    }
  }

  // The next line without its newline; nullopt on EOF, error or timeout.
  std::optional<std::string> line() {
    for (;;) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string out = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return out;
      }
      char chunk[4096];
      ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return std::nullopt;
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  Json reply() {
    auto l = line();
    return l ? Json::parse(*l) : Json();
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string buffer_;
};

class ControlSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/covey-control-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    // A directory that does not exist yet: the server makes it.
    path_ = dir_ + "/run/ks.sock";
  }

  void TearDown() override {
    stop();
    std::filesystem::remove_all(dir_);
  }

  void start(Handler handler = echo, ServerLimits limits = {}) {
    server_ = std::make_unique<Server>(io_, path_, std::move(handler), limits);
    thread_ = std::thread([this] { io_.run(); });
  }

  // The Server is destroyed on the io_context's thread, as it requires;
  // run() returns once the aborted operations have drained.
  void stop() {
    if (!thread_.joinable()) return;
    boost::asio::post(io_, [this] {
      server_.reset();
      work_.reset();
    });
    thread_.join();
  }

  // A socket file nobody listens on, as a crashed daemon leaves behind.
  void make_stale_socket() {
    std::filesystem::create_directories(std::filesystem::path(path_).parent_path());
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    ::close(fd);
    ASSERT_TRUE(std::filesystem::is_socket(path_));
  }

  std::string dir_, path_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{io_.get_executor()};
  std::unique_ptr<Server> server_;
  std::thread thread_;
};

TEST_F(ControlSocketTest, RoundTrip) {
  start();
  Result r = request(path_, {{"cmd", "ks.group"}, {"group", "GET_VPN"}}, 5s);
  ASSERT_TRUE(r.reply) << r.error;
  EXPECT_EQ((*r.reply)["ok"], true);
  EXPECT_EQ((*r.reply)["echo"]["group"], "GET_VPN");
}

// A reply in pieces: "n" lines of one piece each, an empty piece between,
// then the connection takes the next request.
Reply counting(const Json& request) {
  if (request["cmd"] != "stream") return echo(request);
  int n = request.value("n", 3);
  auto i = std::make_shared<int>(0);
  return Reply::stream([n, i]() -> std::optional<std::string> {
    int k = (*i)++;
    if (k == 2 * n) return std::nullopt;
    if (k % 2) return "";  // a piece with nothing to say
    return Json{{"line", k / 2}}.dump() + "\n";
  });
}

TEST_F(ControlSocketTest, StreamedReplyArrivesLineByLine) {
  start(counting);
  std::vector<int> got;
  std::string error = stream(
      path_, {{"cmd", "stream"}, {"n", 5}},
      [&](const Json& line) {
        got.push_back(line["line"]);
        return got.size() < 5;
      },
      5s);
  EXPECT_EQ(error, "");
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4}));
  // Then the connection answers the next request.
  RawClient c(path_);
  c.send("{\"cmd\":\"stream\",\"n\":2}\n{\"cmd\":\"b\"}\n");
  EXPECT_EQ(c.reply()["line"], 0);
  EXPECT_EQ(c.reply()["line"], 1);
  EXPECT_EQ(c.reply()["echo"]["cmd"], "b");
}

// A reader that stops reading holds up its own stream, not other clients:
// the producer runs only when its last piece has been written.
TEST_F(ControlSocketTest, StalledStreamDoesNotHoldUpOthers) {
  auto produced = std::make_shared<std::atomic<int>>(0);
  start([produced](const Json& request) -> Reply {
    if (request["cmd"] != "stream") return echo(request);
    return Reply::stream([produced]() -> std::optional<std::string> {
      ++*produced;
      return std::string(64 * 1024, ' ') + "{}\n";  // endless
    });
  });
  RawClient stalled(path_);
  stalled.send("{\"cmd\":\"stream\"}\n");
  std::this_thread::sleep_for(100ms);
  Result r = request(path_, {{"cmd", "a"}}, 5s);
  ASSERT_TRUE(r.reply) << r.error;
  EXPECT_EQ((*r.reply)["echo"]["cmd"], "a");
  int now = *produced;
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(*produced, now) << "the producer ran on while nobody read";
  EXPECT_LT(now, 100) << "socket buffers are not that large";
}

TEST_F(ControlSocketTest, StreamThatThrowsEndsWithAnError) {
  start([](const Json&) -> Reply {
    auto i = std::make_shared<int>(0);
    return Reply::stream([i]() -> std::optional<std::string> {
      if ((*i)++ == 0) return "{\"ok\":true}\n";
      throw std::runtime_error("group vanished");
    });
  });
  std::vector<Json> got;
  std::string error = stream(
      path_, {{"cmd", "ks.members"}},
      [&](const Json& line) {
        got.push_back(line);
        return true;
      },
      5s);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1],
            Json::parse(R"({"ok":false,"error":"internal error answering ks.members: group vanished"})"));
  EXPECT_NE(error.find("closed the connection before the end of its reply"), std::string::npos) << error;
}

TEST_F(ControlSocketTest, SeveralRequestsOnOneConnectionAnsweredInOrder) {
  start();
  RawClient c(path_);
  ASSERT_TRUE(c.connected());
  c.send("{\"cmd\":\"a\"}\n{\"cmd\":\"b\"}\r\n");  // one write, and a CRLF as socat may send
  EXPECT_EQ(c.reply()["echo"]["cmd"], "a");
  EXPECT_EQ(c.reply()["echo"]["cmd"], "b");
}

TEST_F(ControlSocketTest, MalformedLinesAreAnsweredAndTheConnectionStaysUsable) {
  start();
  RawClient c(path_);
  ASSERT_TRUE(c.connected());
  struct Case {
    const char* line;
    const char* error;
  };
  for (const Case& t : {Case{"{\"cmd\": nope}", "malformed JSON request: parse error at line 1, column 10: syntax error"},
                        Case{"[1,2]", "request must be a JSON object, got array"},
                        Case{"{\"group\":\"x\"}", "request has no \"cmd\" string"},
                        Case{"{\"cmd\":7}", "request has no \"cmd\" string"},
                        Case{"", "empty request line"}}) {
    c.send(std::string(t.line) + "\n");
    Json reply = c.reply();
    EXPECT_EQ(reply["ok"], false) << t.line;
    EXPECT_NE(reply["error"].get<std::string>().find(t.error), std::string::npos) << reply["error"];
  }
  c.send("{\"cmd\":\"ping\"}\n");
  EXPECT_EQ(c.reply()["ok"], true);
}

TEST_F(ControlSocketTest, HandlerExceptionBecomesAnError) {
  start([](const Json&) -> Json { throw std::runtime_error("group table locked"); });
  Result r = request(path_, {{"cmd", "ks.rekey"}}, 5s);
  ASSERT_TRUE(r.reply) << r.error;
  EXPECT_EQ((*r.reply)["ok"], false);
  EXPECT_EQ((*r.reply)["error"], "internal error answering ks.rekey: group table locked");
}

TEST_F(ControlSocketTest, LineOfExactlyTheLimitIsAccepted) {
  start();
  Json request{{"cmd", "ping"}, {"pad", ""}};
  request["pad"] = std::string(kMaxRequestBytes - request.dump().size(), 'x');
  ASSERT_EQ(request.dump().size(), kMaxRequestBytes);
  RawClient c(path_);
  c.send(request.dump() + "\n");
  EXPECT_EQ(c.reply()["ok"], true);
}

TEST_F(ControlSocketTest, OversizeLineIsRefusedAndClosed) {
  start();
  RawClient c(path_);
  ASSERT_TRUE(c.connected());
  // One byte past the limit and no newline: exactly what fills the server's
  // buffer, so it closes with nothing unread and the reply arrives intact.
  c.send(std::string(kMaxRequestBytes + 1, 'x'));
  Json reply = c.reply();
  EXPECT_EQ(reply["ok"], false);
  EXPECT_EQ(reply["error"], "request line longer than 65536 bytes; send one JSON object per line");
  EXPECT_EQ(c.line(), std::nullopt);  // hung up
}

TEST_F(ControlSocketTest, TwoClientsAreServedConcurrently) {
  start();
  RawClient idle(path_), busy(path_);
  ASSERT_TRUE(idle.connected());
  ASSERT_TRUE(busy.connected());
  // The first client has sent nothing; the second is answered regardless.
  busy.send("{\"cmd\":\"second\"}\n");
  EXPECT_EQ(busy.reply()["echo"]["cmd"], "second");
  idle.send("{\"cmd\":\"first\"}\n");
  EXPECT_EQ(idle.reply()["echo"]["cmd"], "first");
}

TEST_F(ControlSocketTest, ClientsBeyondTheLimitAreTurnedAway) {
  start(echo, ServerLimits{.max_clients = 1});
  RawClient first(path_);
  first.send("{\"cmd\":\"a\"}\n");
  ASSERT_EQ(first.reply()["ok"], true);  // now surely admitted
  RawClient second(path_);
  Json reply = second.reply();
  EXPECT_EQ(reply["ok"], false);
  EXPECT_NE(reply["error"].get<std::string>().find("too many control clients (1 connected)"), std::string::npos);
  EXPECT_EQ(second.line(), std::nullopt);
}

TEST_F(ControlSocketTest, IdleClientIsDropped) {
  start(echo, ServerLimits{.idle_timeout = 100ms});
  RawClient c(path_);
  ASSERT_TRUE(c.connected());
  EXPECT_EQ(c.line(), std::nullopt);  // EOF well before the 5 s receive timeout
}

TEST_F(ControlSocketTest, StaleSocketIsReplaced) {
  make_stale_socket();
  start();
  Result r = request(path_, {{"cmd", "ping"}}, 5s);
  ASSERT_TRUE(r.reply) << r.error;
  EXPECT_EQ((*r.reply)["ok"], true);
}

TEST_F(ControlSocketTest, LiveSocketIsRefusedAndLeftAlone) {
  start();
  boost::asio::io_context other;
  try {
    Server second(other, path_, echo);
    FAIL() << "a second server bound a live socket";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("another daemon is already answering on control socket " + path_),
              std::string::npos)
        << e.what();
  }
  // The first daemon's socket is still there and still answers.
  Result r = request(path_, {{"cmd", "ping"}}, 5s);
  ASSERT_TRUE(r.reply) << r.error;
}

TEST_F(ControlSocketTest, PathThatIsNotASocketIsRefused) {
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path());
  { std::ofstream(path_) << "config"; }
  EXPECT_THROW(start(), std::runtime_error);
  EXPECT_TRUE(std::filesystem::is_regular_file(path_));
}

TEST_F(ControlSocketTest, SocketIsRootOnlyAndDirectoryIsCreated0755) {
  // A strict umask must not leave the directory untraversable, nor a lax
  // one the socket open.
  mode_t old = ::umask(0077);
  start();
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  ASSERT_EQ(::stat((dir_ + "/run").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

TEST_F(ControlSocketTest, SocketFileIsRemovedOnDestruction) {
  start();
  ASSERT_TRUE(std::filesystem::exists(path_));
  stop();
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(ControlSocketTest, ClientSaysWhichDaemonIsNotRunning) {
  Result r = request(path_, {{"cmd", "ks.group"}}, 5s);
  EXPECT_FALSE(r.reply);
  EXPECT_EQ(r.error, "cannot connect to " + path_ + ": No such file or directory — is covey-ks running?");

  make_stale_socket();
  r = request(path_, {{"cmd", "ks.group"}}, 5s);
  EXPECT_EQ(r.error,
            "cannot connect to " + path_ + ": nobody is listening (a stale socket) — is covey-ks running?");
}

TEST_F(ControlSocketTest, ClientGivesUpOnASilentDaemon) {
  // Listening, accepting into the backlog, never answering.
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path());
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  Result r = request(path_, {{"cmd", "ks.group"}}, 200ms);
  ::close(fd);
  EXPECT_FALSE(r.reply);
  EXPECT_EQ(r.error, "no reply from " + path_ + " within 200 ms — covey-ks may be busy or hung; see its log");
}

TEST_F(ControlSocketTest, ClientRejectsAnOverlongPath) {
  Result r = request("/run/" + std::string(200, 'x'), {{"cmd", "gm.status"}}, 1s);
  EXPECT_FALSE(r.reply);
  EXPECT_NE(r.error.find("must be 1 to 107 bytes long"), std::string::npos);
}

}  // namespace
}  // namespace covey::control
