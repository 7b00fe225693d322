#include "apps/phase1_setup.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "crypto/x509.h"
#include "ike/certificates.h"

namespace covey::apps {

std::vector<ike::Phase1Transform> phase1_transforms(const config::Phase1Config& c) {
  std::vector<ike::AuthMethod> auths;
  if (c.rsa_sig()) auths.push_back(ike::AuthMethod::RsaSignature);
  if (c.pre_share()) auths.push_back(ike::AuthMethod::PreSharedKey);
  std::vector<ike::Phase1Transform> out;
  for (auto auth : auths)
    for (auto group : c.dh_group)
      for (auto cipher : c.encryption)
        for (auto hash : c.hash) {
          ike::Phase1Transform t;
          t.cipher = cipher;
          t.hash = hash;
          t.auth = auth;
          t.dh_group = group;
          t.lifetime_s = c.lifetime_s;
          out.push_back(t);
        }
  return out;
}

std::shared_ptr<const ike::Credentials> phase1_credentials(const config::Phase1Config& c, std::string* error) {
  auto creds = std::make_shared<ike::Credentials>();
  auto keys = std::make_shared<config::Phase1Config>();
  keys->default_key = c.default_key;
  keys->peer_keys = c.peer_keys;
  creds->pre_shared_key = [keys](const Address& peer) -> std::optional<crypto::SecretBytes> {
    const crypto::SecretBytes* k = keys->pre_shared_key_for(peer);
    if (!k) return std::nullopt;
    return *k;
  };
  if (c.rsa_sig()) {
    auto signer = ike::load_signer(c.certificate, c.private_key);
    if (!signer) {
      if (error) *error = "[isakmp] certificate: " + signer.error();
      return nullptr;
    }
    auto ca = crypto::CertificateAuthority::load(c.ca);
    if (!ca) {
      if (error) *error = "[isakmp] ca: " + ca.error();
      return nullptr;
    }
    creds->signer = std::make_shared<const ike::Credentials::Signer>(std::move(*signer));
    creds->verify_certificate = ike::make_verifier(std::make_shared<const crypto::CertificateAuthority>(std::move(*ca)));
  }
  return creds;
}

std::optional<Address> source_address_for(const Endpoint& peer) {
  int family = peer.address.family == 4 ? AF_INET : AF_INET6;
  int fd = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET) {
    auto* s = reinterpret_cast<sockaddr_in*>(&ss);
    s->sin_family = AF_INET;
    s->sin_port = htons(peer.port);
    std::memcpy(&s->sin_addr, peer.address.bytes.data(), 4);
    len = sizeof *s;
  } else {
    auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(peer.port);
    std::memcpy(&s->sin6_addr, peer.address.bytes.data(), 16);
    len = sizeof *s;
  }
  std::optional<Address> out;
  // connect() on UDP sends nothing: it only asks the routing table.
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0) {
    sockaddr_storage me{};
    socklen_t ml = sizeof me;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&me), &ml) == 0) {
      Address a;
      a.family = peer.address.family;
      if (family == AF_INET) std::memcpy(a.bytes.data(), &reinterpret_cast<sockaddr_in*>(&me)->sin_addr, 4);
      else std::memcpy(a.bytes.data(), &reinterpret_cast<sockaddr_in6*>(&me)->sin6_addr, 16);
      out = a;
    }
  }
  ::close(fd);
  return out;
}

}  // namespace covey::apps
