#include "gdoi/policy.h"

#include <algorithm>
#include <charconv>

namespace covey::gdoi {

namespace {

// The address with every bit beyond `length` cleared.
std::array<std::uint8_t, 16> network_of(std::array<std::uint8_t, 16> a, unsigned length, unsigned size) {
  for (unsigned i = 0; i < size; ++i) {
    unsigned bits = length > i * 8 ? std::min(8u, length - i * 8) : 0;
    a[i] &= static_cast<std::uint8_t>(0xff00u >> bits);
  }
  return a;
}

std::string address_str(std::uint8_t family, const std::array<std::uint8_t, 16>& bytes) {
  Address a;
  a.family = family;
  a.bytes = bytes;
  return a.str();
}

// Cisco's names for the protocols people write in GET VPN ACLs.
std::string protocol_str(std::uint8_t protocol, std::uint8_t family) {
  switch (protocol) {
    case 0: return "ip";
    case 1: return "icmp";
    case 6: return "tcp";
    case 17: return "udp";
    case 47: return "gre";
    case 50: return "esp";
    case 51: return "ahp";
    case 58:
      if (family == 6) return "icmp";  // Cisco's IPv6 ACLs call ICMPv6 "icmp"
      break;
  }
  return std::to_string(protocol);
}

// Cisco's shortest form of a port match: "eq 848", "lt 1024", "gt 1023", "range 5000 5100".
std::string port_str(const PortRange& p) {
  if (p.first == p.last) return "eq " + std::to_string(p.first);
  if (p.first == 0) return "lt " + std::to_string(p.last + 1);
  if (p.last == 65535) return "gt " + std::to_string(p.first - 1);
  return "range " + std::to_string(p.first) + " " + std::to_string(p.last);
}

std::string acl_address_str(const Prefix& p) {
  if (p.is_any()) return "any";
  if (p.length == (p.family == 4 ? 32 : 128)) return "host " + address_str(p.family, p.address);
  return p.str();
}

}  // namespace

std::string Prefix::str() const {
  if (is_any()) return "any";
  return address_str(family, address) + "/" + std::to_string(length);
}

std::optional<Prefix> Prefix::parse(std::string_view text, std::string* why) {
  auto fail = [&](std::string reason) -> std::optional<Prefix> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  if (text == "any") return Prefix{};
  auto slash = text.find('/');
  auto addr = Address::parse(text.substr(0, slash));
  if (!addr) return fail(std::string(text.substr(0, slash)).append(" is not an IPv4 or IPv6 address"));
  const unsigned max = addr->family == 4 ? 32 : 128;
  unsigned length = max;
  if (slash != std::string_view::npos) {
    auto len = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(len.data(), len.data() + len.size(), length);
    if (len.empty() || ec != std::errc() || end != len.data() + len.size() || length > max)
      return fail("prefix length \"" + std::string(len) + "\" must be 0.." + std::to_string(max));
  }
  Prefix p;
  p.family = addr->family;
  p.length = static_cast<std::uint8_t>(length);
  p.address = network_of(addr->bytes, length, max / 8);
  if (p.address != addr->bytes) {
    return fail(std::string(text) + " has host bits set beyond /" + std::to_string(length) +
                ": did you mean " + address_str(p.family, p.address) + "/" + std::to_string(length) + "?");
  }
  return p;
}

Prefix Prefix::host(const Address& a) {
  Prefix p;
  p.family = a.family;
  p.address = a.bytes;
  p.length = static_cast<std::uint8_t>(a.family == 4 ? 32 : 128);
  return p;
}

bool Prefix::contains(const Address& a) const {
  if (family != a.family) return false;
  return network_of(a.bytes, length, static_cast<unsigned>(a.size())) == address;
}

std::string AclEntry::str() const {
  const bool ports = protocol == 6 || protocol == 17;
  std::string s = action == Action::Permit ? "permit" : "deny";
  auto word = [&s](const std::string& w) { s.append(1, ' ').append(w); };
  // Both sides any: only the protocol word or "::/0" can say IPv6, as the
  // parser reads them ("permit ipv6 any any", "deny tcp ::/0 any eq 179").
  const bool any_ipv6 = source.is_any() && destination.is_any() && source.family == 6;
  word(any_ipv6 && protocol == 0 ? "ipv6" : protocol_str(protocol, source.family));
  word(any_ipv6 && protocol != 0 ? "::/0" : acl_address_str(source));
  if (ports && !source_port.is_any()) word(port_str(source_port));
  word(acl_address_str(destination));
  if (ports && !destination_port.is_any()) word(port_str(destination_port));
  return s;
}

std::string TekTransform::str() const {
  std::string s;
  switch (cipher) {
    case Cipher::Aes128Cbc: s = "esp-aes-128"; break;
    case Cipher::Aes256Cbc: s = "esp-aes-256"; break;
    case Cipher::TripleDesCbc: s = "esp-3des"; break;
    case Cipher::AesGcm128: s = "esp-gcm-128"; break;
    case Cipher::AesGcm256: s = "esp-gcm-256"; break;
  }
  switch (integrity) {
    case Integrity::None: break;
    case Integrity::HmacSha1_96: s += " esp-sha-hmac"; break;
    case Integrity::HmacSha256_128: s += " esp-sha256-hmac"; break;
  }
  return s;
}

std::string KekPolicy::signature_str() const {
  std::string s = signature == Signature::Rsa         ? "RSA"
                  : signature == Signature::EcdsaP256 ? "ECDSA P-256"
                                                      : "ECDSA P-384";
  // A member learns the RSA size from SIG_KEY_LENGTH, which is optional.
  // (append, not +: GCC 12's false -Wrestrict on "x" + std::string, bug 105651)
  if (signature == Signature::Rsa && signature_key_bits) s.append(" ").append(std::to_string(signature_key_bits));
  return s.append(" ").append(crypto::name(signature_hash));
}

}  // namespace covey::gdoi
