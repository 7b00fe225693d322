// Internal to covey_config: checks on the PEM files a config names, so a
// wrong path or a key that cannot serve shows up in --check, not at the
// first rekey.
#pragma once

#include <optional>
#include <string>
#include <variant>

namespace covey::config::detail {

struct KeyInfo {
  std::string type;   // OpenSSL's base name: "RSA", "EC", "ED25519", ...
  unsigned bits = 0;  // modulus or field size
  std::string curve;  // EC only: "prime256v1", "secp384r1", ...
  bool others_can_read = false;
};

// Why the file cannot be read ("does not exist", "Permission denied", ...).
std::optional<std::string> unreadable(const std::string& path);

// An unencrypted PEM private key's type and size, or why not.
std::variant<KeyInfo, std::string> read_private_key(const std::string& path);

// A PEM certificate whose public key matches the private key in key_path,
// or why not. `cert_key` gets the certificate key's type and size.
std::optional<std::string> check_certificate(const std::string& cert_path, const std::string& key_path,
                                             KeyInfo& cert_key);

// At least one PEM certificate in the file, or why not.
std::optional<std::string> check_ca_file(const std::string& path);

}  // namespace covey::config::detail
