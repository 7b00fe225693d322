// A real etcd cluster for tests: three `etcd` processes (Debian's
// etcd-server) on 127.0.0.1, on free ports, with their data in a scratch
// folder; killed and removed when this dies. Started with short raft timers
// so an election takes well under a second. A failure throws, which
// GoogleTest reports as the test's failure (with the members' logs).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "etcd/client.h"

namespace covey::test_etcd {

// Files for https client URLs (peer URLs stay http).
struct ServerTls {
  std::string cert, key;  // the members' certificate and key (PEM)
  std::string ca;         // the CA clients' certificates must chain to
  bool client_cert_auth = false;
};

class EtcdCluster {
 public:
  // The etcd binary (PATH), or empty when Debian's etcd-server is not installed.
  static std::string binary();

  explicit EtcdCluster(std::size_t members = 3, std::optional<ServerTls> tls = std::nullopt);
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  std::size_t size() const { return members_.size(); }
  // The members' client URLs, in member order.
  std::vector<std::string> endpoints() const;
  const std::string& endpoint(std::size_t i) const { return members_.at(i).client_url; }
  // Options for a client of every member (tls: for https clusters).
  etcd::Options options(std::optional<etcd::Tls> tls = std::nullopt) const;

  void kill(std::size_t i);     // SIGKILL, and reaped
  void start(std::size_t i);    // again, with the same data and ports
  void restart(std::size_t i);  // kill (if running) and start
  bool running(std::size_t i) const { return members_.at(i).pid > 0; }

  // The index of the member that says it leads, once one does (waits up
  // to `patience`; throws after).
  std::size_t leader(std::chrono::milliseconds patience = std::chrono::seconds(20));

  // The members' logs, for failure messages.
  std::string logs() const;

 private:
  struct Member {
    std::string name, client_url, peer_url, dir, log;
    pid_t pid = -1;
  };
  std::string dir_;
  std::string initial_cluster_;
  std::optional<ServerTls> tls_;
  std::vector<Member> members_;
};

}  // namespace covey::test_etcd
