#include "control/server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/log.h"

namespace covey::control {

namespace asio = boost::asio;
using Json = nlohmann::json;
using local = asio::local::stream_protocol;
using boost::system::error_code;

namespace detail {

class Session;

struct ServerState : std::enable_shared_from_this<ServerState> {
  ServerState(asio::io_context& io, std::string p, Handler h, ServerLimits l)
      : acceptor(io), accept_retry(io), path(std::move(p)), handler(std::move(h)), limits(l) {}

  void accept();
  void admit(local::socket socket);
  void stop();

  local::acceptor acceptor;
  asio::steady_timer accept_retry;
  std::string path;
  Handler handler;
  ServerLimits limits;
  std::unordered_set<Session*> sessions;
  bool stopped = false;
  bool accept_failing = false;
  // The socket file we bound: on the way out we remove only that one, not
  // a file a newer daemon has since put in its place.
  dev_t dev = 0;
  ino_t ino = 0;
};

// One client: read a line, answer it, read the next. Completion handlers
// hold a shared_ptr to the session, so it lives while an operation is
// pending; every handler first checks whether the server has stopped, as
// the Handler may reference objects that are gone by then.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<ServerState> state, local::socket socket)
      : state_(std::move(state)),
        socket_(std::move(socket)),
        in_(state_->limits.max_request_bytes + 1),  // + the newline
        idle_(socket_.get_executor()) {
    state_->sessions.insert(this);
  }
  ~Session() { state_->sessions.erase(this); }

  void read() {
    arm_idle_timer();
    asio::async_read_until(socket_, in_, '\n', [self = shared_from_this()](error_code ec, std::size_t n) {
      if (self->state_->stopped) return;
      if (ec == asio::error::not_found) {
        // The buffer filled without a newline: framing is lost, so answer
        // and hang up rather than guess where the next request starts.
        self->reply(error_reply("request line longer than " + std::to_string(self->state_->limits.max_request_bytes) +
                                " bytes; send one JSON object per line"),
                    true);
        return;
      }
      if (ec) return self->close();  // EOF or reset: the client is done
      self->on_line(n);
    });
  }

  void close() {
    error_code ignored;
    idle_.cancel();
    socket_.close(ignored);
  }

 private:
  void on_line(std::size_t n) {
    std::string line(asio::buffers_begin(in_.data()), asio::buffers_begin(in_.data()) + static_cast<std::ptrdiff_t>(n));
    in_.consume(n);
    line.pop_back();  // '\n'
    if (!line.empty() && line.back() == '\r') line.pop_back();  // typed at socat
    Reply r = answer(line);
    if (r.producer) return stream(std::move(r.producer), cmd_);
    reply(r.json, false);
  }

  Reply answer(const std::string& line) {
    cmd_.clear();
    if (line.empty()) return error_reply("empty request line; send one JSON object per line");
    Json request;
    try {
      request = Json::parse(line);
    } catch (const Json::parse_error& e) {
      return error_reply("malformed JSON request: " + without_exception_tag(e.what()));
    }
    if (!request.is_object())
      return error_reply(std::string("request must be a JSON object, got ") + request.type_name());
    auto cmd = request.find("cmd");
    if (cmd == request.end() || !cmd->is_string())
      return error_reply("request has no \"cmd\" string, e.g. {\"cmd\":\"ks.group\"}");
    cmd_ = cmd->get<std::string>();
    try {
      return state_->handler(request);
    } catch (const std::exception& e) {
      return error_reply("internal error answering " + cmd->get<std::string>() + ": " + e.what());
    }
  }

  // nlohmann's messages start "[json.exception.parse_error.101] ": noise to an operator.
  static std::string without_exception_tag(std::string_view what) {
    if (what.starts_with("[json.exception.")) {
      auto end = what.find("] ");
      if (end != std::string_view::npos) what.remove_prefix(end + 2);
    }
    return std::string(what);
  }

  void reply(const Json& answer, bool then_close) {
    // Replace rather than throw should a handler put invalid UTF-8 in a string.
    out_ = answer.dump(-1, ' ', false, Json::error_handler_t::replace);
    out_ += '\n';
    arm_idle_timer();
    asio::async_write(socket_, asio::buffer(out_), [self = shared_from_this(), then_close](error_code ec, std::size_t) {
      if (self->state_->stopped) return;
      if (ec || then_close) return self->close();
      self->read();
    });
  }

  // One piece of a streamed reply, then the next once it is written: the
  // io_context runs other work between pieces (asio never completes an
  // async_write inline, and an empty piece is posted), and a reader that
  // stops reading stops the producer.
  void stream(Producer produce, const std::string& cmd) {
    bool failed = false;
    std::optional<std::string> piece;
    try {
      piece = produce();
    } catch (const std::exception& e) {
      piece = error_reply("internal error answering " + cmd + ": " + e.what()).dump() + "\n";
      failed = true;
    }
    if (!piece) return read();
    arm_idle_timer();
    auto next = [self = shared_from_this(), produce = std::move(produce), cmd, failed](error_code ec,
                                                                                       std::size_t) mutable {
      if (self->state_->stopped) return;
      if (ec || failed) return self->close();
      self->stream(std::move(produce), cmd);
    };
    if (piece->empty())
      return asio::post(socket_.get_executor(), [next = std::move(next)]() mutable { next({}, 0); });
    out_ = std::move(*piece);
    asio::async_write(socket_, asio::buffer(out_), std::move(next));
  }

  void arm_idle_timer() {
    idle_.expires_after(state_->limits.idle_timeout);
    idle_.async_wait([self = shared_from_this()](error_code ec) {
      // A handler already queued when the timer was re-armed still runs
      // without an error; the expiry tells it apart.
      if (ec || self->state_->stopped || self->idle_.expiry() > asio::steady_timer::clock_type::now()) return;
      self->close();
    });
  }

  std::shared_ptr<ServerState> state_;
  local::socket socket_;
  asio::streambuf in_;
  asio::steady_timer idle_;
  std::string out_;
  std::string cmd_;  // of the request being answered, for errors
};

void ServerState::accept() {
  acceptor.async_accept([self = shared_from_this()](error_code ec, local::socket socket) {
    if (self->stopped || ec == asio::error::operation_aborted) return;
    if (!ec) {
      self->accept_failing = false;
      self->admit(std::move(socket));
      return self->accept();
    }
    // EMFILE and friends repeat at once: pause instead of spinning, and
    // log the first failure of a run rather than ten a second.
    if (!self->accept_failing)
      log(LogLevel::Warning, "control socket " + self->path + ": accept failed: " + ec.message() + "; retrying");
    self->accept_failing = true;
    self->accept_retry.expires_after(std::chrono::milliseconds(100));
    self->accept_retry.async_wait([self](error_code wait_ec) {
      if (!wait_ec && !self->stopped) self->accept();
    });
  });
}

void ServerState::admit(local::socket socket) {
  if (sessions.size() >= limits.max_clients) {
    // A fresh socket's send buffer is empty, so this short write does not
    // wait; non-blocking makes sure of it.
    std::string refusal = error_reply("too many control clients (" + std::to_string(limits.max_clients) +
                                      " connected); try again when one has finished")
                              .dump() +
                          "\n";
    error_code ignored;
    socket.non_blocking(true, ignored);
    asio::write(socket, asio::buffer(refusal), ignored);
    return;
  }
  std::make_shared<Session>(shared_from_this(), std::move(socket))->read();
}

void ServerState::stop() {
  if (stopped) return;
  stopped = true;
  error_code ignored;
  acceptor.close(ignored);
  accept_retry.cancel();
  // close() does not erase (the destructor does, later), but copy anyway
  // so the loop never depends on that.
  for (Session* s : std::vector<Session*>(sessions.begin(), sessions.end())) s->close();
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino) ::unlink(path.c_str());
}

}  // namespace detail

namespace {

std::string errno_text(int err) { return std::strerror(err); }

// mkdir -p with mode 0755 on the directories it makes (the umask would
// otherwise decide), leaving existing ones as the administrator set them.
void make_parent_directories(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::filesystem::path partial;
  for (const auto& part : parent) {
    partial /= part;
    if (::mkdir(partial.c_str(), 0755) == 0) {
      ::chmod(partial.c_str(), 0755);
    } else if (errno != EEXIST) {
      throw std::runtime_error("cannot create directory " + partial.string() + " for control socket " + path + ": " +
                               errno_text(errno));
    }
  }
}

// A socket file at `path` is either a live daemon's or a leftover from one
// that died. Connecting tells them apart: refused means nobody listens.
// Non-blocking, so a live daemon with a full backlog answers EAGAIN at once
// instead of holding us up; that counts as live.
void remove_stale_socket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    throw std::runtime_error("cannot inspect control socket " + path + ": " + errno_text(errno));
  }
  if (!S_ISSOCK(st.st_mode))
    throw std::runtime_error(path + " exists and is not a socket; remove it or choose another control socket path");

  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("cannot create a Unix socket: " + errno_text(errno));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);  // length checked by the caller
  int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::close(fd);
  if (rc == 0 || err == EAGAIN)
    throw std::runtime_error("another daemon is already answering on control socket " + path +
                             "; stop it first, or give this one another socket path");
  if (err != ECONNREFUSED)
    throw std::runtime_error("cannot tell whether control socket " + path + " is in use: " + errno_text(err));
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    throw std::runtime_error("cannot remove stale control socket " + path + ": " + errno_text(errno));
}

}  // namespace

Server::Server(asio::io_context& io, std::string path, Handler handler, ServerLimits limits)
    : state_(std::make_shared<detail::ServerState>(io, std::move(path), std::move(handler), limits)) {
  const std::string& p = state_->path;
  if (p.empty() || p.size() >= sizeof(sockaddr_un{}.sun_path))
    throw std::runtime_error("control socket path \"" + p + "\" must be 1 to " +
                             std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes long");
  make_parent_directories(p);
  remove_stale_socket(p);

  error_code ec;
  auto fail = [&](const char* what) {
    std::string hint = ec == asio::error::access_denied ? " (the daemon needs root, or a writable directory)" : "";
    return std::runtime_error("cannot " + std::string(what) + " control socket " + p + ": " + ec.message() + hint);
  };
  if (state_->acceptor.open(local(), ec)) throw fail("open");
  // Linux creates the socket file with the socket inode's mode (less the
  // umask), so setting 0660 before bind() leaves no moment in which anyone
  // but the daemon's user and group could connect; the chmod after bind()
  // makes it exact. The group decides who may use coveyctl.
  ::fchmod(state_->acceptor.native_handle(), 0660);
  if (state_->acceptor.bind(local::endpoint(p), ec)) throw fail("bind");
  if (::chmod(p.c_str(), 0660) != 0) {
    ec = error_code(errno, boost::system::system_category());
    ::unlink(p.c_str());
    throw fail("set mode 0660 on");
  }
  struct stat st {};
  if (::stat(p.c_str(), &st) == 0) {
    state_->dev = st.st_dev;
    state_->ino = st.st_ino;
  }
  if (state_->acceptor.listen(asio::socket_base::max_listen_connections, ec)) {
    ::unlink(p.c_str());
    throw fail("listen on");
  }
  state_->accept();
}

Server::~Server() { state_->stop(); }

const std::string& Server::path() const { return state_->path; }

std::size_t Server::clients() const { return state_->sessions.size(); }

}  // namespace covey::control
