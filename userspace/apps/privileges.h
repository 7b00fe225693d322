// Least privilege for the daemons (docs/ARCHITECTURE.md, "Running as a
// service"): covey-ks, started as root, becomes an ordinary user once its
// sockets are bound; covey-gm keeps only the capabilities its data path
// uses, and says which one is missing rather than failing later on EPERM.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace covey::apps {

struct Account {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};

// The user NAME and its primary group, from the passwd database.
bool find_account(const std::string& name, Account* out, std::string* error);

// Hands PATH (a file or folder, if it exists) to ACCOUNT, so that the key
// server can still write its state and remove its socket once it is that user.
bool give_to(const Account& account, const std::string& path, std::string* error);

// Becomes ACCOUNT for good: its group as the only group, then its uid, and
// no capability left (checked, not assumed).
bool become(const Account& account, std::string* error);

// Drops every capability (used once the privileged work is done: covey-ks
// under systemd keeps CAP_NET_BIND_SERVICE only until it has bound 848).
bool drop_all_capabilities(std::string* error);

struct Capability {
  int number;         // CAP_NET_ADMIN
  const char* name;   // "CAP_NET_ADMIN"
  const char* needed_for;  // "XFRM states and policies, tc and XDP attachment"
};

// Checks that every capability of NEEDED is effective, then keeps those
// alone: the others leave the effective, permitted, inheritable, ambient
// and (with CAP_SETPCAP) bounding sets. The error names each missing one.
bool keep_only(const std::vector<Capability>& needed, std::string* error);

}  // namespace covey::apps
