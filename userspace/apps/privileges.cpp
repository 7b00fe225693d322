#include "apps/privileges.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>

namespace covey::apps {

namespace {

std::string errno_text() { return std::strerror(errno); }

// The raw capget/capset of <linux/capability.h>: two 32-bit words per set
// (version 3), so no libcap for three calls.
struct CapSets {
  std::uint64_t effective = 0, permitted = 0, inheritable = 0;
};

bool get_caps(CapSets* out) {
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[2]{};
  if (::syscall(SYS_capget, &h, d) != 0) return false;
  auto join = [](std::uint32_t lo, std::uint32_t hi) { return lo | (std::uint64_t{hi} << 32); };
  out->effective = join(d[0].effective, d[1].effective);
  out->permitted = join(d[0].permitted, d[1].permitted);
  out->inheritable = join(d[0].inheritable, d[1].inheritable);
  return true;
}

bool set_caps(const CapSets& s) {
  __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct d[2]{};
  for (int i = 0; i < 2; ++i) {
    d[i].effective = static_cast<std::uint32_t>(s.effective >> (32 * i));
    d[i].permitted = static_cast<std::uint32_t>(s.permitted >> (32 * i));
    d[i].inheritable = static_cast<std::uint32_t>(s.inheritable >> (32 * i));
  }
  return ::syscall(SYS_capset, &h, d) == 0;
}

}  // namespace

bool find_account(const std::string& name, Account* out, std::string* error) {
  errno = 0;
  const passwd* pw = ::getpwnam(name.c_str());
  if (!pw) {
    *error = "[server] user " + name + ": " + (errno ? errno_text() : "no such user") +
             " (create it, e.g. adduser --system --group " + name + ", or set another)";
    return false;
  }
  *out = Account{name, pw->pw_uid, pw->pw_gid};
  return true;
}

bool give_to(const Account& account, const std::string& path, std::string* error) {
  if (::lchown(path.c_str(), account.uid, account.gid) == 0 || errno == ENOENT) return true;
  *error = "cannot give " + path + " to user " + account.name + ": " + errno_text();
  return false;
}

bool become(const Account& account, std::string* error) {
  const gid_t groups[] = {account.gid};
  if (::setgroups(1, groups) != 0 || ::setgid(account.gid) != 0 || ::setuid(account.uid) != 0) {
    *error = "cannot become user " + account.name + ": " + errno_text();
    return false;
  }
  // setuid() from root to another uid empties the permitted set (without
  // SECBIT_KEEP_CAPS): check that, and that the way back is closed.
  CapSets now;
  if (account.uid != 0 && (!get_caps(&now) || now.permitted != 0 || ::setuid(0) == 0)) {
    *error = "became user " + account.name + " but kept privileges: refusing to run so";
    return false;
  }
  return drop_all_capabilities(error);
}

bool drop_all_capabilities(std::string* error) {
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (!set_caps(CapSets{})) {
    *error = "cannot drop capabilities: " + errno_text();
    return false;
  }
  return true;
}

bool keep_only(const std::vector<Capability>& needed, std::string* error) {
  CapSets now;
  if (!get_caps(&now)) {
    *error = "cannot read this process's capabilities: " + errno_text();
    return false;
  }
  std::uint64_t keep = 0;
  std::string missing;
  for (const Capability& c : needed) {
    keep |= std::uint64_t{1} << c.number;
    if (!(now.effective & (std::uint64_t{1} << c.number)))
      missing += std::string(missing.empty() ? "" : "; ") + c.name + " (" + c.needed_for + ")";
  }
  if (!missing.empty()) {
    *error = "missing capability " + missing + ": run as root, or grant it (covey-gm.service: CapabilityBoundingSet= and AmbientCapabilities=)";
    return false;
  }
  // The bounding set first: dropping from it needs CAP_SETPCAP, which goes next.
  if (now.effective & (std::uint64_t{1} << CAP_SETPCAP))
    for (int c = 0; c <= CAP_LAST_CAP; ++c)
      if (!(keep & (std::uint64_t{1} << c))) ::prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
  ::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (!set_caps(CapSets{keep, keep, 0})) {
    *error = "cannot drop the capabilities covey-gm does not need: " + errno_text();
    return false;
  }
  return true;
}

}  // namespace covey::apps
