#include "etcd_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace covey::test_etcd {

namespace {

// Ports the kernel hands out as free, all held until every one is picked so
// none repeats. (Another process may still take one before etcd binds it;
// rare on a test machine, and the start then fails loudly.)
std::vector<int> free_ports(std::size_t n) {
  std::vector<int> fds, ports;
  for (std::size_t i = 0; i < n; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error(std::string("EtcdCluster: no free port: ") + std::strerror(errno));
    }
    fds.push_back(fd);
    ports.push_back(ntohs(a.sin_port));
  }
  for (const int fd : fds) ::close(fd);
  return ports;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

std::string EtcdCluster::binary() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/etcd";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

EtcdCluster::EtcdCluster(std::size_t members, std::optional<ServerTls> tls) : tls_(std::move(tls)) {
  if (binary().empty()) throw std::runtime_error("EtcdCluster: no etcd binary (Debian package etcd-server)");
  std::string templ = (std::filesystem::temp_directory_path() / "covey-etcd-XXXXXX").string();
  if (!::mkdtemp(templ.data())) throw std::runtime_error(std::string("EtcdCluster: mkdtemp: ") + std::strerror(errno));
  dir_ = templ;
  const auto ports = free_ports(2 * members);
  for (std::size_t i = 0; i < members; ++i) {
    Member m;
    m.name = "m" + std::to_string(i);
    m.client_url = (tls_ ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(ports[2 * i]);
    m.peer_url = "http://127.0.0.1:" + std::to_string(ports[2 * i + 1]);
    m.dir = dir_ + "/" + m.name;
    m.log = dir_ + "/" + m.name + ".log";
    initial_cluster_ += (i ? "," : "") + m.name + "=" + m.peer_url;
    members_.push_back(std::move(m));
  }
  try {
    for (std::size_t i = 0; i < members; ++i) start(i);
    leader();
  } catch (...) {
    for (std::size_t i = 0; i < members; ++i) kill(i);
    std::filesystem::remove_all(dir_);
    throw;
  }
}

EtcdCluster::~EtcdCluster() {
  for (std::size_t i = 0; i < members_.size(); ++i) kill(i);
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> urls;
  for (const auto& m : members_) urls.push_back(m.client_url);
  return urls;
}

etcd::Options EtcdCluster::options(std::optional<etcd::Tls> tls) const {
  etcd::Options o;
  o.endpoints = endpoints();
  o.tls = std::move(tls);
  if (!o.tls && tls_) o.tls = etcd::Tls{tls_->ca, tls_->cert, tls_->key};
  return o;
}

void EtcdCluster::start(std::size_t i) {
  Member& m = members_.at(i);
  if (m.pid > 0) return;
  std::vector<std::string> args = {binary(),
                                   "--name", m.name,
                                   "--data-dir", m.dir,
                                   "--listen-client-urls", m.client_url,
                                   "--advertise-client-urls", m.client_url,
                                   "--listen-peer-urls", m.peer_url,
                                   "--initial-advertise-peer-urls", m.peer_url,
                                   "--initial-cluster", initial_cluster_,
                                   "--initial-cluster-token", "covey-test-" + dir_.substr(dir_.rfind('-') + 1),
                                   "--initial-cluster-state", "new",
                                   "--heartbeat-interval", "50",
                                   "--election-timeout", "500",
                                   "--logger", "zap",
                                   "--log-level", "error"};
  if (tls_) {
    args.insert(args.end(), {"--cert-file", tls_->cert, "--key-file", tls_->key, "--trusted-ca-file", tls_->ca});
    if (tls_->client_cert_auth) args.push_back("--client-cert-auth");
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int log = ::open(m.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) throw std::runtime_error("EtcdCluster: " + m.log + ": " + std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("EtcdCluster: fork: ") + std::strerror(errno));
  if (pid == 0) {
    // No etcd outlives a test that dies.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::dup2(log, 1);
    ::dup2(log, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(log);
  m.pid = pid;
}

void EtcdCluster::kill(std::size_t i) {
  Member& m = members_.at(i);
  if (m.pid <= 0) return;
  ::kill(m.pid, SIGKILL);
  ::waitpid(m.pid, nullptr, 0);
  m.pid = -1;
}

void EtcdCluster::restart(std::size_t i) {
  kill(i);
  start(i);
}

std::size_t EtcdCluster::leader(std::chrono::milliseconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  etcd::Options o = options();
  o.timeout = std::chrono::milliseconds(500);
  etcd::Client client(o);
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    for (std::size_t i = 0; i < members_.size(); ++i) {
      if (members_[i].pid > 0 && ::waitpid(members_[i].pid, nullptr, WNOHANG) == members_[i].pid) {
        members_[i].pid = -1;
        throw std::runtime_error("EtcdCluster: member " + members_[i].name + " exited:\n" + logs());
      }
    }
    auto members = client.members();
    if (!members) {
      last = members.error();
    } else {
      for (const auto& s : *members) {
        if (!s.leader) continue;
        for (std::size_t i = 0; i < members_.size(); ++i) {
          for (const auto& url : s.client_urls) {
            if (url == members_[i].client_url) return i;
          }
        }
      }
      last = "no member leads yet";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("EtcdCluster: no leader: " + last + "\n" + logs());
}

std::string EtcdCluster::logs() const {
  std::string all;
  for (const auto& m : members_) all += "--- " + m.name + " (" + m.client_url + "):\n" + read_file(m.log);
  return all;
}

}  // namespace covey::test_etcd
